import os
import subprocess
import sys


def test_sample_type_checks_with_mypy():
    here = os.path.dirname(__file__)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--ignore-missing-imports", os.path.join(here, "sample_typed.py")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_imports_without_optional_dependencies():
    code = (
        "import sys\n"
        "for name in ('redis', 'boto3', 'aiobotocore', 'agents'):\n"
        "    sys.modules[name] = None\n"
        "import openai_agents_session as m\n"
        "s = m.SQLiteSession('x')\n"
        "import asyncio\n"
        "asyncio.run(s.add_items([{'a': 1}]))\n"
        "assert asyncio.run(s.get_items()) == [{'a': 1}]\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr
