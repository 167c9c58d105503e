#!/usr/bin/env python3
"""Lists the dependencies between the library's top-level units (a file directly under src/,
one backend folder, or the conformance kit) and any cycle among them. Exit 1 on a cycle.

    scripts/module-cycles.py            # crates/openai-agents-session/src
"""
import os, re, sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "crates", "openai-agents-session", "src")
units = {}
for dirpath, _, files in os.walk(root):
    for f in files:
        if not f.endswith(".rs"):
            continue
        rel = os.path.relpath(os.path.join(dirpath, f), root)
        parts = rel.split(os.sep)
        if parts[0] == "backend" and len(parts) > 2:
            unit = "backend/" + parts[1]
        elif parts[0] == "backend" and parts[1] != "mod.rs":
            unit = "backend/" + parts[1][:-3]
        elif parts[0] == "conformance" or parts[0] == "conformance.rs":
            unit = "conformance"
        else:
            unit = parts[0][:-3] if parts[0].endswith(".rs") else parts[0]
        units.setdefault(unit, []).append(os.path.join(dirpath, f))

def strip_tests(text):
    # Unit tests may use anything; they are not part of the module graph.
    i = text.find("#[cfg(test)]")
    return text if i < 0 else text[:i]

edges = {u: set() for u in units}
for unit, files in units.items():
    for path in files:
        text = strip_tests(open(path, encoding="utf-8").read())
        text = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//"))
        for m in re.finditer(r"crate::(backend::)?([a-z_]+)", text):
            target = ("backend/" + m.group(2)) if m.group(1) else m.group(2)
            if target in units and target != unit:
                edges[unit].add(target)
        if unit.startswith("backend/"):
            for m in re.finditer(r"super::super::([a-z_]+)", text):
                target = "backend/" + m.group(1)
                if target in units and target != unit:
                    edges[unit].add(target)

for u in sorted(edges):
    print(f"{u:20} -> {', '.join(sorted(edges[u])) or '-'}")

cycles = []
def visit(node, stack, seen):
    for nxt in sorted(edges[node]):
        if nxt in stack:
            cyc = stack[stack.index(nxt):] + [nxt]
            key = tuple(sorted(set(cyc)))
            if key not in seen:
                seen.add(key)
                cycles.append(cyc)
        else:
            visit(nxt, stack + [nxt], seen)
seen = set()
for u in sorted(edges):
    visit(u, [u], seen)
if cycles:
    print("cycles:")
    for c in cycles:
        print("  " + " -> ".join(c))
    sys.exit(1)
print("no cycles")
