"""The error table (issue 10, item 3), the seed's signatures and defaults (items 5, 6): every
kind of the Rust core through the production transport, real errors where they are cheap, and
`session_settings` / `create_table_if_not_exists` as the seed's callers use them. Run by
scripts/python-tests.sh."""

import asyncio
import inspect
import os
import time

import pytest
import redis.exceptions

import openai_agents_session as oas
from openai_agents_session import (
    ConfigError,
    EncryptionKeyMissingError,
    DynamoDBSession,
    FencedError,
    HistoryConflictError,
    InvalidInputError,
    InvalidSessionIdError,
    LeaseHeldError,
    LegacyDataError,
    OutcomeUnknownConnectionError,
    OutcomeUnknownError,
    OutcomeUnknownTimeoutError,
    RedisSession,
    SessionClosedError,
    SessionConnectionError,
    SessionError,
    SessionNotFoundError,
    SessionTimeoutError,
    SessionTooLargeError,
    SQLiteSession,
    UnreadableRecordError,
    UnsupportedFormatError,
    create_table_if_not_exists,
    open_session,
)
from openai_agents_session import _native


def env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run scripts/test.sh (or scripts/servers.sh start and source target/test-servers.env)")
    return value


TAG = f"{os.getpid()}-{time.time_ns()}"


def run(coro):
    return asyncio.run(coro)


# (kind, cause) -> (class, every base it must also be an instance of). The table.
TABLE = {
    ("invalid_input", None): (InvalidInputError, [SessionError, ValueError]),
    ("invalid_session_id", None): (InvalidSessionIdError, [InvalidInputError, SessionError, ValueError]),
    ("too_large", None): (SessionTooLargeError, [InvalidInputError, SessionError, ValueError]),
    ("config", None): (ConfigError, [InvalidInputError, SessionError, ValueError]),
    ("encryption_key_missing", None): (EncryptionKeyMissingError, [ConfigError, InvalidInputError, SessionError, ValueError]),
    ("not_found", None): (SessionNotFoundError, [SessionError, LookupError]),
    ("connection", None): (SessionConnectionError, [SessionError, ConnectionError, redis.exceptions.ConnectionError]),
    ("timeout", None): (SessionTimeoutError, [SessionError, TimeoutError, redis.exceptions.TimeoutError]),
    ("outcome_unknown", "timeout"): (
        OutcomeUnknownTimeoutError,
        [OutcomeUnknownError, SessionTimeoutError, SessionError, TimeoutError, redis.exceptions.TimeoutError],
    ),
    ("outcome_unknown", "connection"): (
        OutcomeUnknownConnectionError,
        [OutcomeUnknownError, SessionConnectionError, SessionError, ConnectionError, redis.exceptions.ConnectionError],
    ),
    ("outcome_unknown", None): (OutcomeUnknownError, [SessionError]),
    ("unreadable", None): (UnreadableRecordError, [SessionError]),
    ("unsupported_format", None): (UnsupportedFormatError, [SessionError]),
    ("legacy_data", None): (LegacyDataError, [SessionError]),
    ("conflict", None): (HistoryConflictError, [SessionError, ValueError]),
    ("lease_held", None): (LeaseHeldError, [SessionError, ValueError]),
    ("fenced", None): (FencedError, [SessionError, ValueError]),
    ("backend", None): (SessionError, [Exception]),
}

# Builtin / redis-py bases a class must NOT have (an OutcomeUnknownError without a cause is
# neither a timeout nor a connection error; input errors are not retryable network errors).
NETWORK_BASES = [TimeoutError, ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ConnectionError]


def native_error(kind, cause=None, operation="add_items", session_id="table-1", reason=None, lease=None):
    """A real core Error of `kind`, through the production transport (`to_py` in src/lib.rs)
    and the production conversion (`_call`); a conflict carries a reason, a lease_held or
    fenced error the `lease` given (owner, token, expires_at_millis)."""
    if kind == "conflict" and reason is None:
        reason = "suffix_mismatch"

    async def body():
        async def awaitable():
            _native._raise_for_test(kind, cause, operation, session_id, reason, lease)

        with pytest.raises(SessionError) as caught:
            await oas._call(awaitable)
        return caught.value

    return run(body())


def test_the_table_covers_every_kind_of_the_core():
    kinds = _native._error_kinds()
    assert len(kinds) == len(set(kinds)) == 16, kinds
    assert {kind for kind, _ in TABLE} == set(kinds), "every ErrorKind of the Rust core is in the table"


@pytest.mark.parametrize("kind,cause", list(TABLE), ids=[f"{k}-{c}" if c else k for k, c in TABLE])
def test_error_table_kind_by_kind(kind, cause):
    cls, bases = TABLE[(kind, cause)]
    for operation, session_id in (("add_items", "table-1"), ("get_items", None), ("pop_item", "t:2")):
        err = native_error(kind, cause, operation, session_id)
        assert type(err) is cls, (kind, cause, type(err))
        for base in bases:
            assert isinstance(err, base), (cls, base)
        if cls not in (OutcomeUnknownTimeoutError, OutcomeUnknownConnectionError, SessionTimeoutError, SessionConnectionError):
            assert not any(isinstance(err, b) for b in NETWORK_BASES), (cls, type(err).__mro__)
        assert err.kind == kind
        assert err.operation == operation
        assert err.session_id == session_id
        assert f"a test {kind} error" in str(err) and str(err).startswith(operation)
        assert repr(err) == f"{cls.__name__}({str(err)!r})"
        assert getattr(oas, cls.__name__) is cls and cls.__name__ in oas.__all__


def test_conflict_reason_travels_through_the_native_error():
    """Issue 13: the core's ConflictReason::name() is the sixth arg of the native error and
    becomes `.reason`; other kinds carry none."""
    for reason in ("operation_reused", "suffix_mismatch"):
        err = native_error("conflict", operation="apply_history_transaction", session_id="s", reason=reason)
        assert type(err) is HistoryConflictError and isinstance(err, ValueError)
        assert (err.kind, err.reason, err.operation, err.session_id) == ("conflict", reason, "apply_history_transaction", "s")
    assert not hasattr(native_error("invalid_input"), "reason")
    with pytest.raises(ValueError):
        _native._raise_for_test("conflict", None, "add_items", None, "no_such_reason")


def test_lease_errors_carry_the_lease_through_the_native_error():
    """Issue 14: the core's Error::lease_holder() is the seventh arg of the native error: the
    holder of a lease_held error (`.lease`, `.owner`, `.expires_at`), the session's live lease
    of a fenced one (`.lease`); other kinds carry none."""
    import datetime

    millis = 1_800_000_000_123
    expires = datetime.datetime(2027, 1, 15, 8, 0, 0, 123000, tzinfo=datetime.timezone.utc)
    assert round(expires.timestamp() * 1000) == millis
    held = native_error("lease_held", operation="acquire_lease", session_id="s", lease=("worker-1", 42, millis))
    assert type(held) is LeaseHeldError and isinstance(held, ValueError)
    assert (held.kind, held.operation, held.session_id) == ("lease_held", "acquire_lease", "s")
    assert held.lease == {"owner": "worker-1", "token": 42, "expires_at": expires}
    assert (held.owner, held.expires_at) == ("worker-1", expires) and held.expires_at.tzinfo is not None
    assert '"worker-1"' in str(held) and "2027-01-15T08:00:00.123Z" in str(held)
    fenced = native_error("fenced", operation="pop_item", session_id="s", lease=("worker-2", 43, millis))
    assert type(fenced) is FencedError and fenced.lease == {"owner": "worker-2", "token": 43, "expires_at": expires}
    assert (fenced.kind, fenced.operation) == ("fenced", "pop_item") and "fencing token 1" in str(fenced)
    for kind in ("lease_held", "fenced"):
        assert native_error(kind).lease is None, "no lease known"
    assert not hasattr(native_error("conflict"), "lease")
    with pytest.raises(ValueError):
        _native._raise_for_test("conflict", None, "add_items", None, None, ("w", 1, 0))


def test_unknown_outcome_writes_are_caught_by_the_seeds_except_clauses():
    """Item 2: a write whose answer timed out is caught by `except redis.TimeoutError:` and by
    `except TimeoutError:` (the seed's documented handlers); a lost connection by the
    ConnectionError handlers; both also by `except OutcomeUnknownError:`."""
    for handler in (redis.exceptions.TimeoutError, TimeoutError, OutcomeUnknownError, SessionTimeoutError):
        try:
            raise native_error("outcome_unknown", "timeout")
        except handler as err:
            assert err.kind == "outcome_unknown" and err.operation == "add_items"
    for handler in (redis.exceptions.ConnectionError, ConnectionError, OutcomeUnknownError, SessionConnectionError):
        try:
            raise native_error("outcome_unknown", "connection")
        except handler:
            pass
    # redis-py 8's own __repr__ and handlers read these; the redis-py bases' __init__ never runs.
    err = native_error("outcome_unknown", "timeout")
    assert err.error_type == redis.exceptions.ExceptionType.NETWORK and err.status_code is None


def test_every_class_is_exported_with_its_bases():
    for name in ("SessionError", "InvalidInputError", "InvalidSessionIdError", "SessionTooLargeError", "ConfigError", "SessionNotFoundError",
                 "SessionConnectionError", "SessionTimeoutError", "OutcomeUnknownError", "OutcomeUnknownTimeoutError",
                 "OutcomeUnknownConnectionError", "UnreadableRecordError", "UnsupportedFormatError", "LegacyDataError", "SessionClosedError",
                 "HistoryConflictError", "LeaseHeldError", "FencedError"):
        assert name in oas.__all__ and issubclass(getattr(oas, name), SessionError), name
    assert issubclass(SessionClosedError, RuntimeError)
    assert SessionError.kind == "backend" and SessionError("x").operation is None and SessionError("x").session_id is None
    built = InvalidSessionIdError("m", operation="open", session_id="s")
    assert (built.kind, built.operation, built.session_id, str(built)) == ("invalid_session_id", "open", "s", "m")


# ----------------------------------------------------------------------- real errors ---


def test_real_input_errors_carry_kind_operation_and_session():
    async def body():
        s = SQLiteSession(f"input-{TAG}")
        for bad in (["text"], [{"nan": float("nan")}], [{"ok": 1}, 42]):
            with pytest.raises(InvalidInputError) as caught:
                await s.add_items(bad)
            err = caught.value
            assert type(err) is InvalidInputError
            assert (err.kind, err.operation, err.session_id) == ("invalid_input", "add_items", s.session_id), err
        big = open_session("memory://?max_item_bytes=100", f"big-{TAG}")
        with pytest.raises(SessionTooLargeError) as caught:
            await big.add_items([{"ok": 1}, {"x": "a" * 200}])
        err = caught.value
        assert (err.kind, err.operation, err.session_id) == ("too_large", "add_items", big.session_id), err
        assert await big.get_items() == [], "nothing was written"
        # A bad option value is invalid input; an unusable URL is a config error.
        with pytest.raises(InvalidInputError) as caught:
            await open_session("memory://?ttl=0", f"ttl0-{TAG}").get_items()
        err = caught.value
        assert type(err) is InvalidInputError and err.kind == "invalid_input" and "ttl" in str(err)
        assert (err.operation, err.session_id) == ("get_items", f"ttl0-{TAG}")
        for url in ("ftp://nowhere", f"redis://127.0.0.1:1/?bogus_option=1&n={TAG}"):
            with pytest.raises(ConfigError) as caught:
                await open_session(url, f"cfg-{TAG}").add_items([{"a": 1}])
            err = caught.value
            assert isinstance(err, InvalidInputError) and isinstance(err, ValueError)
            assert (err.kind, err.operation, err.session_id) == ("config", "add_items", f"cfg-{TAG}"), err
            assert f"cfg-{TAG}" in str(err)

    run(body())


def test_real_invalid_session_ids():
    for bad in ("", "x" * 5000):
        with pytest.raises(InvalidSessionIdError) as caught:
            SQLiteSession(bad)
        err = caught.value
        assert isinstance(err, InvalidInputError) and isinstance(err, ValueError)
        assert err.kind == "invalid_session_id" and err.operation == "open"
        assert err.session_id == bad[:64], "the core names (the start of) the id"
        with pytest.raises(InvalidSessionIdError):
            open_session("memory://", bad)


def test_real_connection_error_and_closed_session():
    async def body():
        s = RedisSession.from_url(f"refused-{TAG}", url="redis://127.0.0.1:1/?connect_timeout=1")
        for call, operation in ((lambda: s.get_items(), "get_items"), (lambda: s.add_items([{"a": 1}]), "add_items"), (lambda: s.pop_item(), "pop_item"), (lambda: s.clear_session(), "clear_session")):
            with pytest.raises(SessionConnectionError) as caught:
                await call()
            err = caught.value
            assert type(err) is SessionConnectionError, "refused before anything was sent: a plain connection error"
            assert isinstance(err, redis.exceptions.ConnectionError) and isinstance(err, ConnectionError)
            assert (err.kind, err.operation, err.session_id) == ("connection", operation, s.session_id), err
            assert s.session_id in str(err)
        with pytest.raises(SessionConnectionError) as caught:
            await s.ping()
        assert (caught.value.operation, caught.value.session_id) == ("open", s.session_id)
        await s.close()
        with pytest.raises(SessionClosedError) as caught:
            await s.add_items([{"a": 1}])
        err = caught.value
        assert (err.operation, err.session_id) == ("add_items", s.session_id)

    run(body())


def test_real_legacy_data_in_a_cluster():
    """The seed's list at a session's key (the seed's default prefix), in a cluster (which
    cannot migrate it in place)."""
    from redis.cluster import ClusterNode, RedisCluster

    hosts = env("OAS_TEST_REDIS_CLUSTER_URL").split("://", 1)[1].strip("/").split(",")
    nodes = [ClusterNode(h.split(":")[0], int(h.split(":")[1])) for h in hosts]
    seed = RedisCluster(startup_nodes=nodes)
    prefix, sid = "openai_agents_session", f"legacy-{TAG}"
    seed.rpush(f"{prefix}:{sid}", '{"role": "user", "content": "from the seed"}')
    try:
        from redis.asyncio.cluster import ClusterNode as AioNode, RedisCluster as AioCluster

        client = AioCluster(startup_nodes=[AioNode(n.host, n.port) for n in nodes])
        with pytest.raises(LegacyDataError) as caught:
            run(RedisSession(sid, client, key_prefix=prefix).get_items())
        err = caught.value
        assert (err.kind, err.operation, err.session_id) == ("legacy_data", "get_items", sid), err
        assert "agent-session copy" in str(err)
    finally:
        seed.delete(f"{prefix}:{sid}")
        seed.close()


# --------------------------------------------------------------- item 5: session_settings ---


def _makers(tmp_path):
    import redis.asyncio as aioredis
    import boto3

    ddb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url="http://127.0.0.1:1", aws_access_key_id="d", aws_secret_access_key="d")
    return {
        "SQLiteSession": lambda **kw: SQLiteSession("settings", **kw),
        "SQLiteSession-file": lambda **kw: SQLiteSession("settings", str(tmp_path / "s.db"), **kw),
        "RedisSession": lambda **kw: RedisSession("settings", aioredis.from_url("redis://127.0.0.1:1/"), **kw),
        "RedisSession.from_url": lambda **kw: RedisSession.from_url("settings", url="redis://127.0.0.1:1/", **kw),
        "DynamoDBSession": lambda **kw: DynamoDBSession("settings", ddb, "t", **kw),
        "open_session": lambda **kw: open_session("memory://", "settings", **kw),
    }


def test_session_settings_default_to_the_sdks_session_settings(tmp_path):
    """Item 5: as the SDK's own sessions, a session made without settings has
    `SessionSettings()` (limit None), not None; given settings are kept or coerced."""
    from agents import SessionSettings

    for name, make in _makers(tmp_path).items():
        s = make()
        assert isinstance(s.session_settings, SessionSettings), name
        assert s.session_settings == SessionSettings() and s.session_settings.limit is None, name
        assert make(session_settings=None).session_settings == SessionSettings(), name
        assert make(session_settings={"limit": 3}).session_settings == SessionSettings(limit=3), name
        given = SessionSettings(limit=2)
        assert make(session_settings=given).session_settings is given, name
    assert SQLiteSession("a").session_settings is not SQLiteSession("b").session_settings, "one object per session"

    async def body():
        s = SQLiteSession("default-limit")
        await s.add_items([{"n": n} for n in range(3)])
        assert len(await s.get_items()) == 3, "limit None: every item"

    run(body())


def test_session_settings_without_openai_agents():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['agents'] = None\n"
        "import asyncio, openai_agents_session as m\n"
        "for s in (m.SQLiteSession('x'), m.open_session('memory://', 'x'), m.RedisSession.from_url('x', url='redis://127.0.0.1:1/')):\n"
        "    assert s.session_settings is not None and s.session_settings.limit is None, s.session_settings\n"
        "s = m.SQLiteSession('y', session_settings={'limit': 1})\n"
        "asyncio.run(s.add_items([{'a': 1}, {'a': 2}]))\n"
        "assert asyncio.run(s.get_items()) == [{'a': 2}]\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


# -------------------------------------------------------- item 6: create_table_if_not_exists ---


def test_create_table_if_not_exists_has_the_seeds_signature():
    from openai_agents_session.dynamodb import create_table_if_not_exists as from_seed_path

    assert from_seed_path is create_table_if_not_exists
    sig = inspect.signature(create_table_if_not_exists)
    params = list(sig.parameters.values())
    assert [(p.name, p.kind) for p in params[:3]] == [
        ("client", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("table_name", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("enable_ttl", inspect.Parameter.KEYWORD_ONLY),
    ]
    assert params[0].default is inspect.Parameter.empty and params[1].default is inspect.Parameter.empty
    assert params[2].default is True
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty for p in params[3:]), "extras keyword-only, optional"
    assert inspect.iscoroutinefunction(create_table_if_not_exists), "awaited, as the seed's"


def _ttl_status(client, table):
    return client.describe_time_to_live(TableName=table)["TimeToLiveDescription"].get("TimeToLiveStatus")


def test_create_table_if_not_exists_honours_enable_ttl():
    """Item 6: enable_ttl=False leaves TTL off, True (the default) turns it on the attribute
    `ttl`; the seed's keyword call works; the table is usable either way."""
    import boto3

    client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=env("OAS_TEST_DYNAMODB_ENDPOINT"), aws_access_key_id="dummy", aws_secret_access_key="dummy")
    off, on = f"py_ttl_off_{os.getpid()}", f"py_ttl_on_{os.getpid()}"
    try:
        run(create_table_if_not_exists(client=client, table_name=off, enable_ttl=False))
        assert _ttl_status(client, off) == "DISABLED"
        run(create_table_if_not_exists(client, off, enable_ttl=False))  # again: still off
        assert _ttl_status(client, off) == "DISABLED"
        run(create_table_if_not_exists(client=client, table_name=on))
        ttl = client.describe_time_to_live(TableName=on)["TimeToLiveDescription"]
        assert ttl["TimeToLiveStatus"] in ("ENABLED", "ENABLING") and ttl["AttributeName"] == "ttl", ttl
        # The existing table turned on, then off again, as asked.
        run(create_table_if_not_exists(client, off, enable_ttl=True))
        assert _ttl_status(client, off) in ("ENABLED", "ENABLING")
        run(create_table_if_not_exists(client, off, enable_ttl=False))
        assert _ttl_status(client, off) == "DISABLED"

        async def body():
            for table in (off, on):
                s = DynamoDBSession(f"ttl-table-{TAG}", client, table)
                await s.add_items([{"a": 1}])
                assert await s.get_items() == [{"a": 1}]

        run(body())
    finally:
        for table in (off, on):
            try:
                client.delete_table(TableName=table)
            except client.exceptions.ResourceNotFoundException:
                pass


def test_create_table_if_not_exists_with_an_aiobotocore_client():
    from aiobotocore.session import get_session

    table = f"py_ttl_aio_{os.getpid()}"

    async def body():
        async with get_session().create_client("dynamodb", region_name="us-east-1", endpoint_url=env("OAS_TEST_DYNAMODB_ENDPOINT"), aws_access_key_id="dummy", aws_secret_access_key="dummy") as client:
            try:
                await create_table_if_not_exists(client, table, enable_ttl=False)
                described = await client.describe_time_to_live(TableName=table)
                assert described["TimeToLiveDescription"]["TimeToLiveStatus"] == "DISABLED"
            finally:
                await client.delete_table(TableName=table)

    run(body())
