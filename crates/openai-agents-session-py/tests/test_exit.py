"""The interpreter exits cleanly after an operation: no SIGABRT from a runtime thread that still
needed the GIL (to deliver a result) while the interpreter finalized (exit code 134, about one
run in five before the package's atexit gate).

The repeated runs are children forked from one interpreter: each imports the package, does one
write and finalizes its interpreter as a fresh process would. Importing the Agents SDK takes
about 4 s and finalizing its modules about 1 s, so most children run without it (the package's
own base classes, the same native code) and some with it loaded before the fork, as in a user's
process. One run per scheme is a fresh interpreter from the start."""

import subprocess
import sys

import pytest

RUNS = 30  # without the SDK
RUNS_WITH_SDK = 8

SNIPPET = (
    "import asyncio, sys; from openai_agents_session import open_session; "
    "asyncio.run(open_session(sys.argv[1], 'exit-test').add_items([{'a': 1}]))"
)

# argv: runs, a URL template with {i}, "sdk" or "no-sdk". Prints each child's exit code
# (negative: killed by that signal).
FORKING = r"""
import os, sys
runs, template, sdk = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "sdk"
if sdk:
    import agents  # noqa: F401  (loaded before the forks: every child finalizes with it loaded)
else:
    sys.modules["agents"] = None  # the package's fallback base classes: no SDK to import
for i in range(runs):
    pid = os.fork()
    if pid == 0:
        import asyncio
        from openai_agents_session import open_session
        asyncio.run(open_session(template.format(i=i), 'exit-test').add_items([{'a': 1}]))
        sys.exit(0)  # raises out of the loop: the child's interpreter finalizes normally
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), flush=True)
"""


def url_template(scheme, tmp_path):
    return "memory://" if scheme == "memory" else f"sqlite://{tmp_path}/exit-{{i}}.db"


@pytest.mark.parametrize("sdk", ["no-sdk", "sdk"])
@pytest.mark.parametrize("scheme", ["memory", "sqlite"])
def test_exit_after_one_write_is_clean(scheme, sdk, tmp_path):
    runs = RUNS_WITH_SDK if sdk == "sdk" else RUNS
    done = subprocess.run([sys.executable, "-c", FORKING, str(runs), url_template(scheme, tmp_path), sdk], capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    codes = [int(line) for line in done.stdout.decode().split()]
    assert codes == [0] * runs, f"exit codes {codes}, stderr: {done.stderr.decode(errors='replace')[-2000:]}"
    if scheme == "sqlite":
        assert len(list(tmp_path.glob("exit-*.db"))) == runs  # every child wrote its own file


@pytest.mark.parametrize("scheme", ["memory", "sqlite"])
def test_exit_of_a_fresh_interpreter_is_clean(scheme, tmp_path):
    url = url_template(scheme, tmp_path).format(i="fresh")
    done = subprocess.run([sys.executable, "-c", SNIPPET, url], capture_output=True, timeout=60)
    assert done.returncode == 0, f"exit code {done.returncode}, stderr: {done.stderr.decode(errors='replace')[-2000:]}"
