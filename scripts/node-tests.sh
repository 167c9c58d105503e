#!/usr/bin/env bash
# Builds the Node package (the napi-rs addon, with the dev profile and the features the Python
# package builds with, so that CI compiles their dependencies once), runs the
# type-level test (tsc --strict) and node's test runner against the test servers (started by
# scripts/servers.sh; scripts/test.sh runs this after the Python stage), then checks that the
# `npm pack` tarball installs into a fresh project and works there.
#
#   scripts/node-tests.sh                      # everything
#   scripts/node-tests.sh test/history.test.mjs   # some test files (paths in the package)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PKG=crates/openai-agents-session-node
cd "$PKG"

# Dependencies from the committed lock file; reinstalled only when it changed.
if [ ! -d node_modules ] || ! cmp -s package-lock.json node_modules/.oas-package-lock.json; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.oas-package-lock.json
fi

# The addon is built by cargo for the host, not by `napi build` (`npm run build`, what a
# packager runs: it always passes `--target`, which gives it a target directory of its own and
# so compiles every dependency again). This way the build reuses the workspace test build's and
# the Python build's dependencies (the same features: crates/workspace-hack). On Linux the addon
# is the cdylib as cargo links it; native.cjs loads it under the name without a triple.
t0=$SECONDS
(cd "$ROOT" && cargo build -p openai-agents-session-node --locked)
rm -f openai-agents-session.*.node
cp "$ROOT/target/debug/libopenai_agents_session_node.so" openai-agents-session.node
echo "node-tests: addon built in $((SECONDS - t0))s"

npx tsc -p test/tsconfig.json
echo "node-tests: tsc --strict passed (test/types.ts)"

# For the cross-language tests: the CLI of the Rust stages and the Python stage's venv.
export OAS_TEST_CLI_BIN="${OAS_TEST_CLI_BIN:-$ROOT/target/debug/agent-session}"
export OAS_TEST_PYTHON="${OAS_TEST_PYTHON:-$ROOT/target/py-test/bin/python}"

if [ $# -gt 0 ]; then
  node --test "$@"
  exit 0
fi
# The tests wait on servers, not on the CPU: several files at once. The event-loop lag
# measurement runs alone afterwards, so that the other files' work does not count in it.
node --test --test-concurrency=3 $(ls test/*.test.mjs | grep -v '/lag\.test\.mjs$')
node --test test/lag.test.mjs

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# The README's offline example runs (twice: the conversation continues in its SQLite file).
second=$(cd "$scratch" && node "$ROOT/$PKG/examples/quickstart.mjs" >/dev/null && node "$ROOT/$PKG/examples/quickstart.mjs")
grep -q 'seen 2 item' <<<"$second" || { echo "examples/quickstart.mjs did not continue the conversation: $second" >&2; exit 1; }
echo "node-tests: examples/quickstart.mjs ran"

# The tarball installs into a fresh project (no network: the peer dependency is optional) and
# works from both entry points.
tarball=$(npm pack --silent --pack-destination "$scratch")
(
  cd "$scratch"
  npm init -y >/dev/null
  npm install --no-audit --no-fund --loglevel=error "./$tarball"
  node -e "
    const { SQLiteSession } = require('openai-agents-session');
    const s = new SQLiteSession('packed', { path: 'packed.db' });
    s.addItems([{ role: 'user', content: 'hi' }]).then(() => s.getItems()).then((items) => {
      if (JSON.stringify(items) !== '[{\"role\":\"user\",\"content\":\"hi\"}]') throw new Error('round trip: ' + JSON.stringify(items));
    });"
  node --input-type=module -e "
    import { SQLiteSession, SessionError } from 'openai-agents-session';
    const items = await new SQLiteSession('packed', { path: 'packed.db' }).getItems();
    if (items.length !== 1 || !(new SessionError('x') instanceof Error)) throw new Error('esm: ' + JSON.stringify(items));"
)
echo "node-tests: npm pack tarball $tarball ($(du -h "$scratch/$tarball" | cut -f1)) installs and works in a fresh project"
