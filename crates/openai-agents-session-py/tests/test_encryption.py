"""Encryption at rest through the Python package (docs/encryption.md): encryption_key= on every
class and on open_session, the real agents.Runner on encrypted sessions, wrong and missing keys.
Run by scripts/python-tests.sh."""

import asyncio
import base64
import os
import shutil
import tempfile
import time

import pytest

from openai_agents_session import (
    ConfigError,
    EncryptionKeyMissingError,
    RedisSession,
    SQLiteSession,
    UnreadableRecordError,
    generate_encryption_key,
    open_session,
)

from openai_agents_session import create_table_if_not_exists
from test_sessions import FACTORIES, TAG, _boto3, _conversation, env  # noqa: F401


@pytest.fixture(scope="module", autouse=True)
def dynamodb_table():
    asyncio.run(create_table_if_not_exists(_boto3(), f"py_{os.getpid()}"))

KEY = generate_encryption_key()
OTHER = base64.b64decode(generate_encryption_key())  # raw bytes work too


_DIRS = []


@pytest.fixture(scope="module", autouse=True)
def _remove_db_dirs():
    """The temporary directories of _db() go when the module ends, passed or failed."""
    yield
    for d in _DIRS:
        shutil.rmtree(d, ignore_errors=True)


def _db():
    d = tempfile.mkdtemp(prefix="oas-py-enc-")
    _DIRS.append(d)
    return os.path.join(d, "s.db")


def test_keys_in_every_form_and_errors_name_no_key():
    assert len(base64.b64decode(KEY)) == 32
    db = _db()
    for key in [KEY, base64.b64decode(KEY), KEY.rstrip("=").replace("+", "-").replace("/", "_"), [KEY, OTHER]]:
        s = SQLiteSession(f"forms-{TAG}", db, encryption_key=key)
        asyncio.run(s.add_items([{"role": "user", "content": "MARKER-4242"}]))
        assert asyncio.run(s.get_items())[-1] == {"role": "user", "content": "MARKER-4242"}
    with open(db, "rb") as f:
        assert b"MARKER-4242" not in f.read()
    for bad in ["not base64!", b"short", [KEY, "QUFB"], []]:
        with pytest.raises(ConfigError) as info:
            SQLiteSession(f"bad-{TAG}", db, encryption_key=bad)
        assert KEY not in str(info.value) and "not base64!" not in str(info.value)


def test_wrong_key_raises_on_pop_and_leaves_the_data_intact():
    db = _db()
    right = SQLiteSession(f"wrong-{TAG}", db, encryption_key=KEY)
    asyncio.run(right.add_items([{"n": 1}, {"n": 2}]))
    wrong = SQLiteSession(f"wrong-{TAG}", db, encryption_key=OTHER)
    assert asyncio.run(wrong.get_items()) == []
    with pytest.raises(UnreadableRecordError):
        asyncio.run(wrong.pop_item())
    missing = SQLiteSession(f"wrong-{TAG}", db)
    with pytest.raises(EncryptionKeyMissingError) as info:
        asyncio.run(missing.get_items())
    assert isinstance(info.value, ConfigError) and info.value.kind == "encryption_key_missing"
    with pytest.raises(EncryptionKeyMissingError):
        asyncio.run(missing.pop_item())
    back = open_session(f"sqlite://{db}", f"wrong-{TAG}", encryption_key=[OTHER, KEY])
    assert asyncio.run(back.get_items()) == [{"n": 1}, {"n": 2}]


@pytest.mark.parametrize("backend", ["sqlite-file", "redis", "redis-cluster", "dynamodb"])
def test_runner_on_encrypted_sessions(backend):
    inputs = []
    session = FACTORIES[backend](f"enc-runner-{backend}-{TAG}", encryption_key=KEY)
    asyncio.run(session.clear_session())
    outputs = _conversation(session, inputs)
    assert outputs == ["answer: found first question", "answer: found second question"]
    history = asyncio.run(session.get_items())
    assert len(history) == 8
    unkeyed = FACTORIES[backend](f"enc-runner-{backend}-{TAG}")
    with pytest.raises(EncryptionKeyMissingError):
        asyncio.run(unkeyed.get_items())
    wrong = FACTORIES[backend](f"enc-runner-{backend}-{TAG}", encryption_key=OTHER)
    assert asyncio.run(wrong.get_items()) == []
    with pytest.raises(UnreadableRecordError):
        asyncio.run(wrong.pop_item())
    assert asyncio.run(session.get_items()) == history, "the data is intact"
    asyncio.run(session.clear_session())


def test_redis_session_takes_a_key():
    url = env("OAS_TEST_REDIS_URL")
    s = RedisSession.from_url(f"enc-redis-{TAG}", url=url, encryption_key=KEY)
    asyncio.run(s.add_items([{"secret": "MARKER-777"}]))
    assert asyncio.run(s.get_items()) == [{"secret": "MARKER-777"}]
    asyncio.run(s.clear_session())
