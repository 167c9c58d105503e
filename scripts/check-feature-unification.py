#!/usr/bin/env python3
"""Checks that the Python extension's and the Node addon's builds compile every dependency with
the same features as the workspace test build, so that CI compiles each dependency once (a
dependency built with other features is a different unit, and so is everything above it).

It compares cargo's unit graphs (`--unit-graph`, a -Z flag: RUSTC_BOOTSTRAP=1 lets the stable
cargo print it; nothing is compiled). Workspace crates may differ (the library builds with the
bindings' feature set there); a dependency that differs is printed with the features to add to
crates/workspace-hack/Cargo.toml. Exit status 1 when one differs.
"""
import json
import os
import subprocess
import sys

TEST = ["test", "--workspace", "--exclude", "openai-agents-session-py", "--exclude",
        "openai-agents-session-node", "--all-features", "--all-targets", "--no-run"]
BINDINGS = {
    "python": ["build", "-p", "openai-agents-session-py"],
    "node": ["build", "-p", "openai-agents-session-node"],
}


def features(args):
    env = dict(os.environ, RUSTC_BOOTSTRAP="1")
    done = subprocess.run(["cargo", *args, "--locked", "--unit-graph", "-Z", "unstable-options"],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"cargo {' '.join(args)} --unit-graph failed:\n{done.stderr}")
    out = done.stdout
    found = {}
    for unit in json.loads(out)["units"]:
        pkg = unit["pkg_id"]
        if unit["mode"] != "build" or pkg.startswith("path+"):
            continue
        key = (pkg.split("#")[-1], unit["target"]["name"], unit["platform"] or "host")
        found.setdefault(key, set()).add(frozenset(unit["features"]))
    return found


def main():
    test = features(TEST)
    bad = 0
    for name, args in BINDINGS.items():
        for key, sets in sorted(features(args).items()):
            if key not in test:
                continue  # only this build has it: compiled once anyway
            for fs in sets:
                if fs not in test[key]:
                    bad += 1
                    wanted = sorted(set().union(*test[key]) - fs)
                    extra = sorted(fs - set().union(*test[key]))
                    print(f"{name}: {key[0]} ({key[1]}) builds with other features than the test build:"
                          f" missing {wanted}, extra {extra}")
    if bad:
        print("add them to crates/workspace-hack/Cargo.toml")
        return 1
    print("feature unification: the Python and Node builds share the test build's dependencies")
    return 0


if __name__ == "__main__":
    sys.exit(main())
