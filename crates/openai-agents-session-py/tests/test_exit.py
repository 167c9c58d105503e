"""The interpreter exits cleanly after an operation: no SIGABRT from a runtime thread that still
needed the GIL (to deliver a result) while the interpreter finalized (exit code 134, about one
run in five before the package's atexit gate)."""

import subprocess
import sys

import pytest

RUNS = 30

SNIPPET = (
    "import asyncio, sys; from openai_agents_session import open_session; "
    "asyncio.run(open_session(sys.argv[1], 'exit-test').add_items([{'a': 1}]))"
)


@pytest.mark.parametrize("scheme", ["memory", "sqlite"])
def test_exit_after_one_write_is_clean(scheme, tmp_path):
    codes = []
    for i in range(RUNS):
        url = "memory://" if scheme == "memory" else f"sqlite://{tmp_path}/exit-{i}.db"
        done = subprocess.run([sys.executable, "-c", SNIPPET, url], capture_output=True, timeout=60)
        codes.append(done.returncode)
        assert done.returncode == 0, f"run {i}: exit code {done.returncode}, stderr: {done.stderr.decode(errors='replace')[-2000:]}"
    assert codes == [0] * RUNS
