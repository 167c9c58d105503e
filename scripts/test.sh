#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs and starts every server the tests need,
# then runs formatting, lints, the tests and the doc tests, printing each stage's time.
#
#   scripts/test.sh            # everything
#   scripts/test.sh --quick    # skip fmt and clippy
#
# With CI=true a missing server is a failure, never a skipped test.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=false
[ "${1:-}" = "--quick" ] && quick=true

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
# A one-shot build gains nothing from incremental compilation's caches, and pays to write them.
[ "${CI:-}" = "true" ] && export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

declare -a stage_names=() stage_secs=()
stage() {
  local name=$1; shift
  echo "::: stage: $name"
  local t0=$SECONDS
  "$@"
  local dt=$((SECONDS - t0))
  stage_names+=("$name"); stage_secs+=("$dt")
  echo "::: stage: $name done in ${dt}s"
}

# One exit handler: stops the servers if they were started, then prints the stage table, once
# (a guard, so that a second EXIT, e.g. after a signal, prints nothing more).
servers_started=false
summary_printed=false
on_exit() {
  local status=$?
  if $servers_started; then
    scripts/servers.sh stop || true
    servers_started=false
  fi
  if ! $summary_printed; then
    summary_printed=true
    echo "::: stage timings"
    local i
    for i in "${!stage_names[@]}"; do
      printf ':::   %-28s %5ss\n' "${stage_names[$i]}" "${stage_secs[$i]}"
    done
  fi
  return "$status"
}
trap on_exit EXIT

# Servers (scripts/servers.sh installs what is missing and exports their URLs).
if [ -x scripts/servers.sh ]; then
  stage "servers" scripts/servers.sh start
  servers_started=true
  # shellcheck disable=SC1091
  [ -f target/test-servers.env ] && source target/test-servers.env
fi

if ! $quick; then
  stage "fmt" cargo fmt --all -- --check
  stage "module graph" python3 scripts/module-cycles.py
  # The bindings' builds below reuse the test build's dependencies only if they ask for the
  # same features (crates/workspace-hack); this says which one differs (no compiling).
  stage "feature unification" python3 scripts/check-feature-unification.py
  # Clippy rides on the builds: clippy-driver as the workspace wrapper (what `cargo clippy`
  # sets, with its CLIPPY_ARGS encoding of `-- -D warnings`) compiles the workspace's own crates
  # for real and lints them as it goes, so the dependencies are compiled once instead of being
  # checked for clippy and then built again (about 10 minutes of a cold CI run). Every later
  # cargo build in this script (tests, doc tests, maturin, the Node addon) runs under it too, so
  # each finds the others' artifacts fresh and the bindings' crates are linted as they build.
  # `cargo clippy --workspace --all-targets --all-features -- -D warnings` checks the same lints.
  export RUSTC_WORKSPACE_WRAPPER
  RUSTC_WORKSPACE_WRAPPER="$(rustc --print sysroot)/bin/clippy-driver"
  export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
  [ -x "$RUSTC_WORKSPACE_WRAPPER" ] || { echo "clippy-driver not found at $RUSTC_WORKSPACE_WRAPPER (rustup component add clippy)" >&2; exit 1; }
fi
# The Python extension and the Node addon (cdylibs linked by their interpreters: a test binary
# of theirs could not link) are built and tested below, by maturin and by cargo for Node.
RUST=(--workspace --exclude openai-agents-session-py --exclude openai-agents-session-node --all-features --locked)
if $quick; then
  stage "build tests" cargo test "${RUST[@]}" --no-run
else
  stage "build tests + clippy" cargo test "${RUST[@]}" --all-targets --no-run
fi
# cargo-nextest (on this kind of machine) runs every binary's tests side by side: most of them
# wait on servers, not on the CPU, and `cargo test` runs the binaries one after another.
# Its settings: .config/nextest.toml. Without it, `cargo test` runs the same tests.
if cargo nextest --version >/dev/null 2>&1; then
  stage "tests" cargo nextest run "${RUST[@]}" --no-fail-fast
else
  echo "cargo-nextest is not installed: the tests run through cargo test, one binary at a time"
  stage "tests" cargo test "${RUST[@]}" --no-fail-fast --tests --bins --lib
fi
stage "doc tests" cargo test "${RUST[@]}" --doc
# The session inspector in a real browser (Debian chromium, playwright-core; installs chromium if missing).
stage "browser" scripts/browser-tests.sh
stage "python package" scripts/python-tests.sh
stage "node package" scripts/node-tests.sh
