"""History transactions (issue 13) through the Python API: `apply_history_transaction` and
`HistoryConflictError`, on every session class. SQLite and memory need no server; the Redis
(standalone, Cluster) and DynamoDB variants use the servers of scripts/servers.sh, as the rest of
the suite does. Run by scripts/python-tests.sh."""

import asyncio
import json
import os
import tempfile
import time
from urllib.parse import quote

import pytest

from openai_agents_session import (
    DynamoDBSession,
    HistoryConflictError,
    InvalidInputError,
    RedisSession,
    SessionClosedError,
    SessionError,
    SQLiteSession,
    create_table_if_not_exists,
    open_session,
)
import openai_agents_session as oas


def env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run scripts/test.sh (or scripts/servers.sh start and source target/test-servers.env)")
    return value


TAG = f"{os.getpid()}-{time.time_ns()}"
TMP = tempfile.mkdtemp()
TABLE = f"py_tx_{os.getpid()}"


def run(coro):
    return asyncio.run(coro)


def _boto3():
    import boto3

    return boto3.client("dynamodb", region_name="us-east-1", endpoint_url=env("OAS_TEST_DYNAMODB_ENDPOINT"), aws_access_key_id="dummy", aws_secret_access_key="dummy")


_table_ready = []


async def _ensure_table():
    if not _table_ready:
        await create_table_if_not_exists(_boto3(), TABLE)
        _table_ready.append(True)


def _dynamodb_session(sid):
    return DynamoDBSession(sid, _boto3(), TABLE)


def _redis_session(sid):
    import redis.asyncio as aioredis

    return RedisSession(sid, aioredis.from_url(env("OAS_TEST_REDIS_URL")), key_prefix=f"pytx{TAG}")


def _cluster_session(sid):
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    hosts = env("OAS_TEST_REDIS_CLUSTER_URL").split("://", 1)[1].strip("/").split(",")
    client = RedisCluster(startup_nodes=[ClusterNode(h.split(":")[0], int(h.split(":")[1])) for h in hosts])
    return RedisSession(sid, client, key_prefix=f"pytx{TAG}")


# Every session class; each factory call is a new session object (so a retry comes from
# another object, over the store the URL or client shares).
FACTORIES = {
    "memory": lambda sid: open_session(f"memory://pytx{TAG}", sid),
    "sqlite": lambda sid: SQLiteSession(sid, os.path.join(TMP, "tx.db")),
    "redis": _redis_session,
    "redis-cluster": _cluster_session,
    "dynamodb": _dynamodb_session,
}
LOCAL = ["memory", "sqlite"]
BACKENDS = list(FACTORIES)


def _url(backend, **options):
    """A store URL of the backend with URL options (for open_session)."""
    query = "&".join(f"{k}={v}" for k, v in options.items())
    if backend == "memory":
        return f"memory://pytx-opts{TAG}?{query}"
    if backend == "sqlite":
        return "sqlite://" + quote(os.path.join(TMP, "tx-opts.db")) + "?" + query
    if backend == "redis":
        return env("OAS_TEST_REDIS_URL") + f"?prefix=pytxo{TAG}&" + query
    if backend == "redis-cluster":
        return env("OAS_TEST_REDIS_CLUSTER_URL") + f"?prefix=pytxo{TAG}&" + query
    return f"dynamodb://{TABLE}?region=us-east-1&endpoint={env('OAS_TEST_DYNAMODB_ENDPOINT')}&" + query


def append(*items):
    return {"type": "append_items", "items": list(items)}


def replace(expected, replacement):
    return {"type": "replace_suffix", "expected_suffix": list(expected), "replacement": list(replacement)}


def exact(items):
    """Items as exact JSON text: values, key order and number spelling."""
    return json.dumps(items)


async def fresh(backend, name):
    if backend == "dynamodb":
        await _ensure_table()
    s = FACTORIES[backend](f"{name}-{backend}-{TAG}")
    await s.clear_session()
    return s


@pytest.mark.parametrize("backend", BACKENDS)
def test_history_idempotent_retry(backend):
    from pydantic import BaseModel

    class Msg(BaseModel):
        role: str
        content: str

    async def body():
        s = await fresh(backend, "retry")
        turn = append({"role": "user", "content": "hi", "n": 1}, Msg(role="assistant", content="hello"))
        assert await s.apply_history_transaction("turn-1", turn) is True
        # The retry after a timeout, from another session object: applied before, nothing added.
        again = FACTORIES[backend](s.session_id)
        assert await again.apply_history_transaction("turn-1", turn) is False
        # Key order and 1 / 1.0 do not matter; a dict equals the model it was dumped from.
        same = append({"n": 1.0, "content": "hi", "role": "user"}, {"content": "hello", "role": "assistant"})
        assert await again.apply_history_transaction("turn-1", same) is False
        assert exact(await s.get_items()) == exact([{"role": "user", "content": "hi", "n": 1}, {"role": "assistant", "content": "hello"}])
        # Another id applies; a tuple of items is a list.
        assert await s.apply_history_transaction("turn-2", {"type": "append_items", "items": ({"k": 2},)}) is True
        assert len(await s.get_items()) == 3
        # append_items([]) records the id and adds nothing.
        assert await s.apply_history_transaction("nothing", append()) is True
        assert await s.apply_history_transaction("nothing", append()) is False
        assert len(await s.get_items()) == 3
        # Big integers are compared exactly.
        assert await s.apply_history_transaction("big", append({"big": 2**64 + 1})) is True
        with pytest.raises(HistoryConflictError):
            await s.apply_history_transaction("big", append({"big": 2**64}))
        assert (await s.get_items(1)) == [{"big": 2**64 + 1}]
        await s.clear_session()

    run(body())


@pytest.mark.parametrize("backend", BACKENDS)
def test_history_reused_id_is_a_conflict(backend):
    async def body():
        s = await fresh(backend, "reused")
        assert await s.apply_history_transaction("op", append({"a": 1})) is True
        before = exact(await s.get_items())
        for other in (append({"a": 2}), append({"a": 1}, {"a": 1}), replace([], [{"a": 1}]), append()):
            with pytest.raises(HistoryConflictError) as caught:
                await s.apply_history_transaction("op", other)
            err = caught.value
            assert type(err) is HistoryConflictError
            assert isinstance(err, SessionError) and isinstance(err, ValueError)
            assert (err.kind, err.reason, err.operation, err.session_id) == ("conflict", "operation_reused", "apply_history_transaction", s.session_id), err
            assert "'op'" in str(err) or '"op"' in str(err), str(err)
            assert exact(await s.get_items()) == before, "nothing changed"
        await s.clear_session()

    run(body())


@pytest.mark.parametrize("backend", BACKENDS)
def test_history_suffix_mismatch_changes_nothing_and_leaves_the_id_unused(backend):
    async def body():
        s = await fresh(backend, "mismatch")
        history = [{"role": "user", "content": "a", "f": 0.5}, {"role": "assistant", "content": "b", "n": 1}]
        await s.add_items(history)
        before = exact(await s.get_items())
        for expected in (
            [{"role": "assistant", "content": "other", "n": 1}],  # another value
            [history[1], history[0]],  # the right items, the wrong order
            [{"x": 0}] + history,  # longer than the history
            [{"role": "assistant", "content": "b", "n": "1"}],  # a string is not a number
            [{"role": "assistant", "content": "b"}],  # a missing key
        ):
            with pytest.raises(HistoryConflictError) as caught:
                await s.apply_history_transaction("rewind", replace(expected, []))
            err = caught.value
            assert (err.kind, err.reason) == ("conflict", "suffix_mismatch"), err
            assert err.session_id == s.session_id and err.operation == "apply_history_transaction"
            assert exact(await s.get_items()) == before, "nothing changed, byte for byte"
        # The failed transactions did not record the id: the corrected one applies under it.
        fixed = replace([{"n": 1.0, "content": "b", "role": "assistant"}], [])
        assert await s.apply_history_transaction("rewind", fixed) is True
        assert exact(await s.get_items()) == exact(history[:1])
        assert await s.apply_history_transaction("rewind", fixed) is False, "applied before, though its suffix is gone"
        # A rewind on a missing session is a mismatch and creates nothing.
        empty = await fresh(backend, "mismatch-missing")
        with pytest.raises(HistoryConflictError) as caught:
            await empty.apply_history_transaction("r", replace([{"a": 1}], []))
        assert caught.value.reason == "suffix_mismatch"
        assert await empty.get_items() == []
        await s.clear_session()

    run(body())


@pytest.mark.parametrize("backend", BACKENDS)
def test_history_rewind_and_compaction(backend):
    async def body():
        s = await fresh(backend, "compact")
        turns = [{"role": "user", "content": f"q{i}"} for i in range(4)]
        await s.add_items(turns)
        # A safe rewind: exactly these items, or nothing.
        assert await s.apply_history_transaction("rewind", replace(turns[2:], [])) is True
        assert await s.get_items() == turns[:2]
        # An empty expected suffix appends.
        assert await s.apply_history_transaction("add", replace([], [{"role": "assistant", "content": "a"}])) is True
        seen = await s.get_items()
        assert seen == turns[:2] + [{"role": "assistant", "content": "a"}]
        # A compaction that loses to a concurrent append: the append is kept.
        writer = FACTORIES[backend](s.session_id)
        await writer.add_items([{"role": "user", "content": "meanwhile"}])
        with pytest.raises(HistoryConflictError) as caught:
            await s.apply_history_transaction("compact", replace(seen, [{"summary": "three"}]))
        assert caught.value.reason == "suffix_mismatch"
        assert (await s.get_items())[-1] == {"role": "user", "content": "meanwhile"}
        # Re-read, compact again under the same id (the refused one did not use it up).
        seen = await s.get_items()
        assert await s.apply_history_transaction("compact", replace(seen, [{"summary": "four"}])) is True
        assert await s.get_items() == [{"summary": "four"}]
        # The JavaScript SDK's spelling is accepted.
        tx = {"type": "replace_suffix", "expectedSuffix": [{"summary": "four"}], "replacement": [{"summary": "all"}]}
        assert await s.apply_history_transaction("js", tx) is True
        assert await s.get_items() == [{"summary": "all"}]
        await s.clear_session()

    run(body())


@pytest.mark.parametrize("backend", BACKENDS)
def test_history_concurrent_applies_of_one_id(backend):
    async def body():
        s = await fresh(backend, "race")
        tx = append({"role": "user", "content": "once"})
        sessions = [FACTORIES[backend](s.session_id) for _ in range(4)]
        results = await asyncio.gather(*[sessions[i % 4].apply_history_transaction("once", tx) for i in range(40)])
        assert results.count(True) == 1 and results.count(False) == 39, results
        assert await s.get_items() == [{"role": "user", "content": "once"}]
        # Racing replace_suffix calls on the same suffix, each under its own id: one wins.
        await s.add_items([{"n": 0}])
        racers = [s.apply_history_transaction(f"r{i}", replace([{"n": 0}], [{"n": i + 1}])) for i in range(10)]
        outcomes = await asyncio.gather(*racers, return_exceptions=True)
        winners = [o for o in outcomes if o is True]
        losers = [o for o in outcomes if isinstance(o, HistoryConflictError)]
        assert len(winners) == 1 and len(losers) == 9, outcomes
        assert all(o.reason == "suffix_mismatch" for o in losers)
        items = await s.get_items()
        assert len(items) == 2 and items[0] == {"role": "user", "content": "once"} and items[1]["n"] != 0
        await s.clear_session()

    run(body())


@pytest.mark.parametrize("backend", BACKENDS)
def test_history_clear_and_retention_forget_ids(backend):
    async def body():
        s = await fresh(backend, "forget")
        assert await s.apply_history_transaction("op", append({"a": 1})) is True
        await s.clear_session()
        assert await s.apply_history_transaction("op", append({"b": 2})) is True, "clear forgot the id"
        assert await s.get_items() == [{"b": 2}]
        await s.clear_session()
        short = open_session(_url(backend, operation_retention=1), f"retention-{backend}-{TAG}")
        await short.clear_session()
        assert await short.apply_history_transaction("op", append({"a": 1})) is True
        with pytest.raises(HistoryConflictError):
            await short.apply_history_transaction("op", append({"a": 2}))
        await asyncio.sleep(1.3)
        assert await short.apply_history_transaction("op", append({"a": 2})) is True, "past the retention the id is forgotten"
        assert await short.get_items() == [{"a": 1}, {"a": 2}]
        await short.clear_session()

    run(body())


@pytest.mark.parametrize("backend", LOCAL)
def test_history_invalid_transactions_write_nothing(backend):
    class NotJson:
        pass

    async def body():
        s = await fresh(backend, "invalid")
        await s.add_items([{"keep": 1}])
        cases = [
            (["not", "a", "dict"], "dict"),
            ("append_items", "dict"),
            (None, "dict"),
            ({"items": []}, "type"),
            ({"type": "drop_table"}, "unknown transaction type"),
            ({"type": "append_items"}, "items"),
            ({"type": "append_items", "items": {"a": 1}}, "array"),
            ({"type": "append_items", "items": "text"}, "array"),
            (append({"ok": 1}, "text"), "items[1]"),
            (append({"ok": 1}, 42), "items[1]"),
            (append({"nan": float("nan")}), "JSON"),
            (append({"set": {1, 2}}), "JSON"),
            (append(NotJson()), "JSON"),
            ({"type": "append_items", "items": [], "extra": 1}, "extra"),
            ({"type": "replace_suffix", "replacement": []}, "expected_suffix"),
            ({"type": "replace_suffix", "expected_suffix": []}, "replacement"),
            (replace([], [7]), "replacement[0]"),
            (replace(["x"], []), "expected_suffix[0]"),
        ]
        for tx, needle in cases:
            with pytest.raises(InvalidInputError) as caught:
                await s.apply_history_transaction("op", tx)
            err = caught.value
            assert type(err) is InvalidInputError, (tx, type(err))
            assert (err.kind, err.operation, err.session_id) == ("invalid_input", "apply_history_transaction", s.session_id), (tx, err)
            assert needle in str(err) and "nothing was written" in str(err), (tx, str(err))
        for bad_id in ("", "x" * 257, "\u00e9" * 129, None, 7):
            with pytest.raises(InvalidInputError) as caught:
                await s.apply_history_transaction(bad_id, append({"a": 1}))
            assert "operation id" in str(caught.value), str(caught.value)
            assert caught.value.session_id == s.session_id
        big = open_session(f"memory://pytx-big{TAG}?max_item_bytes=10", s.session_id)
        from openai_agents_session import SessionTooLargeError

        with pytest.raises(SessionTooLargeError):
            await big.apply_history_transaction("op", append({"content": "far too long"}))
        assert await big.get_items() == []
        assert await s.get_items() == [{"keep": 1}], "nothing was written"
        # None of them used the id; 256 bytes of UTF-8 is a valid id.
        assert await s.apply_history_transaction("op", append({"a": 1})) is True
        assert await s.apply_history_transaction("\u00e9" * 128, append({"a": 1})) is True
        assert await s.get_items() == [{"keep": 1}, {"a": 1}, {"a": 1}]
        await s.close()
        with pytest.raises(SessionClosedError):
            await s.apply_history_transaction("op2", append())

    run(body())


def test_history_api_is_on_every_session_class():
    import inspect

    for cls in (SQLiteSession, RedisSession, DynamoDBSession, type(open_session("memory://", "x"))):
        method = getattr(cls, "apply_history_transaction")
        assert inspect.iscoroutinefunction(method), cls
        assert list(inspect.signature(method).parameters) == ["self", "operation_id", "transaction"], cls
    assert "HistoryConflictError" in oas.__all__ and oas.HistoryConflictError is HistoryConflictError
    assert issubclass(HistoryConflictError, SessionError) and issubclass(HistoryConflictError, ValueError)
    assert HistoryConflictError.kind == "conflict"
    built = HistoryConflictError("m", reason="suffix_mismatch", operation="apply_history_transaction", session_id="s")
    assert (built.kind, built.reason, built.operation, built.session_id, str(built)) == ("conflict", "suffix_mismatch", "apply_history_transaction", "s", "m")
    assert HistoryConflictError("m").reason is None


def test_history_readme_block_runs():
    """The README's history transaction example, run as written (SQLite in memory)."""
    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "..", "README.md"), encoding="utf-8").read()
    blocks = [part.split("```python\n", 1)[1].split("```", 1)[0] for part in readme.split("<!-- python-history-test -->")[1:]]
    assert len(blocks) == 1, "the README marks its history transaction example"
    source = "async def __readme():\n" + "".join(f"    {line}\n" for line in blocks[0].splitlines())
    namespace = {}
    exec(compile(source, "README.md", "exec"), namespace)
    run(namespace["__readme"]())
