#!/usr/bin/env bash
# The session inspector in a real browser: Debian's chromium (apt-get installs it when missing),
# headless, driven by playwright-core from npm (tests/browser, its package-lock.json; no browser
# download). Builds the agent-session binary unless AGENT_SESSION_BIN names one.
#
#   scripts/browser-tests.sh                      # the test
#   SCREENSHOT=docs/inspector.png scripts/browser-tests.sh   # and the README's screenshot
#
# With CI=true a missing chromium that cannot be installed fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd -P)

if ! command -v chromium >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "browser-tests: installing Debian's chromium" >&2
  if ! { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
         $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
    echo "browser-tests: chromium is missing and could not be installed" >&2
    exit 1
  fi
fi
if [ -z "${AGENT_SESSION_BIN:-}" ]; then
  cargo build -q -p agent-session-cli --locked
  AGENT_SESSION_BIN=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/agent-session
fi
export AGENT_SESSION_BIN CHROMIUM=${CHROMIUM:-$(command -v chromium)}
if [ -n "${SCREENSHOT:-}" ]; then
  case $SCREENSHOT in /*) ;; *) SCREENSHOT=$ROOT/$SCREENSHOT ;; esac
  export SCREENSHOT
fi
cd tests/browser
npm ci --no-audit --no-fund --silent
node --test inspector.test.mjs
