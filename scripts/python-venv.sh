#!/usr/bin/env bash
# Builds the Python package's wheel (maturin, release) and installs it, with openai-agents and
# redis-py, into a virtualenv: .venv by default, or the directory given.
#   scripts/python-venv.sh && .venv/bin/python crates/openai-agents-session-py/examples/quickstart.py
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "maturin==1.16.0"
rm -rf target/wheels
"$VENV/bin/maturin" build -q --release -m crates/openai-agents-session-py/Cargo.toml -o target/wheels
WHEEL=$(ls target/wheels/openai_agents_session-*.whl)
"$VENV/bin/pip" install -q --disable-pip-version-check --force-reinstall "$WHEEL[agents,redis]" "openai-agents==0.24.0"
echo "installed $(basename "$WHEEL") into $VENV"
