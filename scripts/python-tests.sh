#!/usr/bin/env bash
# Builds the Python package (maturin, into a virtualenv of its own) and runs its pytest suite
# against the test servers (started by scripts/servers.sh; scripts/test.sh runs this).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=target/py-test
# boto3 and aiobotocore pinned together: aiobotocore pins botocore to a narrow range, and an
# unpinned boto3 sends pip's resolver through hundreds of releases.
# asyncpg and SQLAlchemy: the real SQLAlchemySession writes the data the PostgreSQL migration test reads.
PACKAGES=("maturin==1.16.0" "pytest==9.2.0" "mypy==2.4.1" "openai-agents[redis]==0.24.0" "boto3==1.43.117" "aiobotocore==3.10.0" "asyncpg==0.32.0" "sqlalchemy[asyncio]==2.1.9" "greenlet==3.5.6")
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.oas-packages" 2>/dev/null)" != "${PACKAGES[*]}" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PACKAGES[@]}"
  echo "${PACKAGES[*]}" >"$VENV/.oas-packages"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
(cd crates/openai-agents-session-py && maturin develop -q)
python -m pytest -q crates/openai-agents-session-py/tests "$@"
