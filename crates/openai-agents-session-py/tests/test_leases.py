"""Session leases (issue 14) through the Python API: `async with session.lease(owner, ttl, wait)
as fenced`, `lease_info()`, `LeaseHeldError` and `FencedError`, on every session class, and the
issue's scenario: two concurrent `Runner.run` calls on one conversation (the scripted offline
model of test_sessions.py). SQLite and memory need no server; the Redis (standalone, Cluster)
and DynamoDB variants use the servers of scripts/servers.sh, as the rest of the suite does.
Run by scripts/python-tests.sh."""

import asyncio
import datetime
import json
import os
import tempfile
import time

import pytest

import openai_agents_session as oas
from openai_agents_session import (
    DynamoDBSession,
    FencedError,
    InvalidInputError,
    LeaseHeldError,
    RedisSession,
    SessionError,
    SessionLease,
    SQLiteSession,
    create_table_if_not_exists,
    open_session,
)
from test_sessions import _scripted_model

UTC = datetime.timezone.utc


def env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run scripts/test.sh (or scripts/servers.sh start and source target/test-servers.env)")
    return value


TAG = f"{os.getpid()}-{time.time_ns()}"
TMP = tempfile.mkdtemp()
TABLE = f"py_lease_{os.getpid()}"


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


def _redis_session(sid):
    import redis.asyncio as aioredis

    return RedisSession(sid, aioredis.from_url(env("OAS_TEST_REDIS_URL")), key_prefix=f"pylease{TAG}")


def _cluster_session(sid):
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    hosts = env("OAS_TEST_REDIS_CLUSTER_URL").split("://", 1)[1].strip("/").split(",")
    client = RedisCluster(startup_nodes=[ClusterNode(h.split(":")[0], int(h.split(":")[1])) for h in hosts])
    return RedisSession(sid, client, key_prefix=f"pylease{TAG}")


# Every session class; each factory call is a new session object over the store its URL or
# client shares (as a second worker of the same conversation would make).
FACTORIES = {
    "memory": lambda sid: open_session(f"memory://pylease{TAG}", sid),
    "sqlite": lambda sid: SQLiteSession(sid, os.path.join(TMP, "leases.db")),
    "redis": _redis_session,
    "redis-cluster": _cluster_session,
    "dynamodb": lambda sid: DynamoDBSession(sid, _boto3(), TABLE),
}
BACKENDS = list(FACTORIES)


async def fresh(backend, name):
    if backend == "dynamodb":
        await _ensure_table()
    s = FACTORIES[backend](f"{name}-{backend}-{TAG}")
    await s.clear_session()
    return s


def msg(text):
    return {"role": "user", "content": text}


def append(*items):
    return {"type": "append_items", "items": list(items)}


async def native(make):
    """A native store call through the package's error conversion."""
    return await oas._call(make)


def fenced_writes(session):
    """Every write of a session, as (operation name, coroutine factory)."""
    return [
        ("add_items", lambda: session.add_items([msg("late")])),
        ("pop_item", lambda: session.pop_item()),
        ("clear_session", lambda: session.clear_session()),
        ("apply_history_transaction", lambda: session.apply_history_transaction(f"late-{time.time_ns()}", append(msg("late")))),
    ]


async def assert_all_writes_fenced(session, history_of):
    """Each write of `session` raises FencedError (kind, operation, session) and changes nothing."""
    before = await history_of.get_items()
    for name, write in fenced_writes(session):
        with pytest.raises(FencedError) as caught:
            await write()
        err = caught.value
        assert isinstance(err, SessionError) and isinstance(err, ValueError)
        assert (err.kind, err.operation, err.session_id) == ("fenced", name, session.session_id), err
        assert str(err).startswith(name), str(err)
        assert await history_of.get_items() == before, f"a refused {name} changed nothing"


# ------------------------------------------------------------------------ the lease rules ---


@pytest.mark.parametrize("backend", BACKENDS)
def test_acquire_renew_release_rules(backend):
    async def body():
        session = await fresh(backend, "rules")
        sid = session.session_id
        other = FACTORIES[backend](sid)  # another worker of the conversation
        assert await session.lease_info() is None
        async with session.lease("worker-a", ttl=30) as fenced:
            assert type(fenced) is type(session) and fenced is not session
            assert fenced.session_id == sid and fenced.session_settings == session.session_settings
            token = fenced.fencing_token
            assert type(token) is int and token > 0
            assert session.fencing_token is None, "the session itself stays unfenced"
            assert f"fencing_token={token}" in repr(fenced)
            info = await other.lease_info()
            assert (info["owner"], info["token"]) == ("worker-a", token)

            # Another owner: LeaseHeldError at once without wait, naming the holder.
            started = time.monotonic()
            with pytest.raises(LeaseHeldError) as caught:
                async with other.lease("worker-b", ttl=30):
                    pytest.fail("a held lease was granted")
            assert time.monotonic() - started < 2
            err = caught.value
            assert type(err) is LeaseHeldError and isinstance(err, SessionError) and isinstance(err, ValueError)
            assert (err.kind, err.operation, err.session_id) == ("lease_held", "acquire_lease", sid)
            assert err.owner == "worker-a" and err.expires_at == info["expires_at"] and err.lease == info
            assert "worker-a" in str(err)

            # A wait that runs out: still LeaseHeldError, after about the wait.
            started = time.monotonic()
            with pytest.raises(LeaseHeldError):
                async with other.lease("worker-b", ttl=30, wait=0.4):
                    pytest.fail("a held lease was granted")
            assert 0.35 <= time.monotonic() - started < 5

            # The same owner again (a retried acquire): the same token, the expiry extended.
            # The two blocks share that lease: leaving the inner one releases it.
            async with other.lease("worker-a", ttl=60) as again:
                assert again.fencing_token == token
                extended = await session.lease_info()
                assert extended["token"] == token and extended["expires_at"] > info["expires_at"]
            assert await session.lease_info() is None
            with pytest.raises(FencedError):
                await fenced.add_items([msg("after the shared lease was released")])
        # Leaving the outer block after its lease was released raises nothing new.
        assert await session.lease_info() is None

        # Releasing an already released lease is a no-op; renewing it is fenced.
        await native(lambda: session._store.release_lease(sid, token))
        with pytest.raises(FencedError) as caught:
            await native(lambda: session._store.renew_lease(sid, token, 30.0))
        assert (caught.value.kind, caught.value.operation, caught.value.lease) == ("fenced", "renew_lease", None)

        # Wait, then acquire: the holder leaves after 0.3 s, the waiter gets a newer token.
        entered = asyncio.Event()
        order = []

        async def holder():
            async with session.lease("worker-a", ttl=30) as held:
                entered.set()
                await asyncio.sleep(0.3)
                order.append(("a leaves", held.fencing_token))

        async def waiter():
            await entered.wait()
            started = time.monotonic()
            async with other.lease("worker-b", ttl=30, wait=10) as held:
                order.append(("b enters", held.fencing_token))
                assert time.monotonic() - started >= 0.2, "it waited for the holder"
                info = await other.lease_info()
                assert (info["owner"], info["token"]) == ("worker-b", held.fencing_token)
                return held.fencing_token

        _, newest = await asyncio.gather(holder(), waiter())
        assert [what for what, _ in order] == ["a leaves", "b enters"]
        tokens = [token, order[0][1], order[1][1]]
        assert tokens == sorted(set(tokens)), f"tokens grow with each grant: {tokens}"

        # A stale token is fenced for release too once a newer one was granted.
        with pytest.raises(FencedError) as caught:
            await native(lambda: session._store.release_lease(sid, order[0][1]))
        assert caught.value.operation == "release_lease"
        await native(lambda: session._store.release_lease(sid, newest))

        # Tokens keep growing across a clear (which does not create or need the session).
        await session.clear_session()
        async with session.lease("worker-c", ttl=30) as later:
            assert later.fencing_token > newest
        await session.clear_session()

    run(body())


@pytest.mark.parametrize("backend", BACKENDS)
def test_lease_info(backend):
    async def body():
        session = await fresh(backend, "info")
        assert await session.lease_info() is None
        lease = session.lease("worker-i", ttl=20.0)
        assert isinstance(lease, SessionLease) and lease.info is None
        async with lease as fenced:
            now = datetime.datetime.now(UTC)
            info = await session.lease_info()
            assert set(info) == {"owner", "token", "expires_at"}
            assert type(info["owner"]) is str and info["owner"] == "worker-i"
            assert type(info["token"]) is int and info["token"] == fenced.fencing_token
            expires = info["expires_at"]
            assert isinstance(expires, datetime.datetime) and expires.utcoffset() == datetime.timedelta(0)
            assert now + datetime.timedelta(seconds=15) < expires <= now + datetime.timedelta(seconds=21), (now, expires)
            assert lease.info == info
            assert await fenced.lease_info() == info, "reads are not fenced"
            # A lease does not create the session; clearing the session keeps the lease.
            assert await session.get_items() == []
            await session.add_items([msg("hi")])
            await session.clear_session()
            assert await session.get_items() == []
            assert await session.lease_info() == info
        assert await session.lease_info() is None

    run(body())


def test_lease_input_is_checked_before_any_io():
    async def body():
        session = FACTORIES["memory"](f"input-{TAG}")
        for bad in (0, -1, float("nan"), float("inf"), True, "30", None):
            with pytest.raises(InvalidInputError) as caught:
                session.lease("w", ttl=bad)
            assert (caught.value.operation, caught.value.session_id) == ("acquire_lease", session.session_id)
        for bad in (-0.5, float("nan"), "1"):
            with pytest.raises(InvalidInputError):
                session.lease("w", wait=bad)
        with pytest.raises(InvalidInputError):
            session.lease(7)
        for owner in ("", "x" * 257):  # the core's rule: 1 to 256 bytes
            with pytest.raises(InvalidInputError) as caught:
                async with session.lease(owner):
                    pytest.fail("granted")
            assert caught.value.kind == "invalid_input" and caught.value.operation == "acquire_lease"
        with pytest.raises(InvalidInputError):  # over the core's longest ttl
            async with session.lease("w", ttl=10.0**12):
                pytest.fail("granted")
        assert await session.lease_info() is None
        lease = session.lease("w", ttl=5)
        async with lease:
            with pytest.raises(RuntimeError):
                async with lease:
                    pass
        assert await session.lease_info() is None

    run(body())


# ------------------------------------------------------------------------ fenced handles ---


@pytest.mark.parametrize("backend", BACKENDS)
def test_fenced_writes_fail_after_the_block(backend):
    async def body():
        session = await fresh(backend, "after")
        sid = session.session_id
        async with session.lease("worker-f", ttl=30) as fenced:
            token = fenced.fencing_token
            await fenced.add_items([msg("1"), msg("2"), msg("3")])
            assert await fenced.pop_item() == msg("3")
            assert await fenced.apply_history_transaction("op-1", append(msg("4"))) is True
            assert await fenced.apply_history_transaction("op-1", append(msg("4"))) is False
            await fenced.add_items([])
            await session.add_items([msg("unfenced")])  # leases are cooperative
            assert await fenced.get_items() == [msg("1"), msg("2"), msg("4"), msg("unfenced")]
        history = await session.get_items()
        assert history == [msg("1"), msg("2"), msg("4"), msg("unfenced")]
        await assert_all_writes_fenced(fenced, session)
        assert "block was left" in str(await _fenced_error(fenced))
        assert await fenced.get_items() == history, "reads are not fenced"
        # The store refuses the token too (not only the handle): nothing is written.
        for write in (
            lambda: session._store.add_items(sid, [json.dumps(msg("late"))], token),
            lambda: session._store.pop_item(sid, token),
            lambda: session._store.clear_session(sid, token),
            lambda: session._store.apply_history_transaction(sid, "late", json.dumps(append(msg("late"))), token),
        ):
            with pytest.raises(FencedError) as caught:
                await native(write)
            assert caught.value.lease is None, "no live lease"
        assert await session.get_items() == history
        await session.add_items([msg("unfenced again")])  # the session itself still writes

        # A fenced clear clears the items and keeps the lease.
        async with session.lease("worker-f", ttl=30) as fenced:
            await fenced.clear_session()
            assert await session.get_items() == []
            assert (await session.lease_info())["token"] == fenced.fencing_token

    run(body())


async def _fenced_error(session):
    with pytest.raises(FencedError) as caught:
        await session.add_items([msg("late")])
    return caught.value


@pytest.mark.parametrize("backend", BACKENDS)
def test_takeover_after_the_ttl_fences_the_old_holder(backend):
    async def body():
        a = await fresh(backend, "takeover")
        sid = a.session_id
        b = FACTORIES[backend](sid)
        async with a.lease("worker-a", ttl=0.5) as fa:
            await fa.add_items([msg("a1")])
            # The holder stalls past its ttl (a long GC pause, a SIGSTOP): the event loop is
            # blocked, no renewal runs, the lease expires.
            time.sleep(1.2)
            async with b.lease("worker-b", ttl=30) as fb:
                assert fb.fencing_token > fa.fencing_token
                # The old holder's write is refused by the store in its own atomic step,
                # naming the new holder.
                with pytest.raises(FencedError) as caught:
                    await native(lambda: a._store.add_items(sid, [json.dumps(msg("stale"))], fa.fencing_token))
                live = caught.value.lease
                assert (live["owner"], live["token"]) == ("worker-b", fb.fencing_token)
                await assert_all_writes_fenced(fa, b)
                await fb.add_items([msg("b1")])
            # The newer holder left: the old token is never valid again.
            await assert_all_writes_fenced(fa, b)
            with pytest.raises(FencedError):
                await native(lambda: a._store.pop_item(sid, fa.fencing_token))
        # Leaving the old holder's block after its lease was lost raised nothing.
        assert await a.get_items() == [msg("a1"), msg("b1")], "only the new holder wrote after the takeover"
        assert await a.lease_info() is None

    run(body())


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_lost_lease_is_noticed_by_the_renewal(backend):
    async def body():
        a = await fresh(backend, "lost")
        b = FACTORIES[backend](a.session_id)
        async with a.lease("worker-a", ttl=0.3) as fa:
            time.sleep(0.8)  # stalled past the ttl
            async with b.lease("worker-b", ttl=30) as fb:
                await fb.add_items([msg("b1")])
                await asyncio.sleep(0.3)  # the renewal runs, is refused, marks the lease lost
                err = await _fenced_error(fa)
                assert "lease was lost" in str(err), str(err)
                assert (await b.lease_info())["owner"] == "worker-b", "nothing of a's touched b's lease"
        assert await a.get_items() == [msg("b1")]

    run(body())


@pytest.mark.parametrize("backend", BACKENDS)
def test_background_renewal_keeps_the_lease_past_its_ttl(backend):
    async def body():
        a = await fresh(backend, "renewal")
        b = FACTORIES[backend](a.session_id)
        lease = a.lease("worker-a", ttl=0.6)
        async with lease as fa:
            first = await a.lease_info()
            for _ in range(6):  # 1.8 s: three ttls
                await asyncio.sleep(0.3)
                with pytest.raises(LeaseHeldError) as caught:
                    async with b.lease("worker-b", ttl=30):
                        pytest.fail("the lease was not renewed")
                assert caught.value.owner == "worker-a"
            info = await a.lease_info()
            assert info["token"] == first["token"] == fa.fencing_token
            assert info["expires_at"] >= first["expires_at"] + datetime.timedelta(seconds=1), (first, info)
            assert lease.info["expires_at"] >= first["expires_at"] + datetime.timedelta(seconds=1), "info follows the renewals"
            await fa.add_items([msg("still mine")])
        assert await a.get_items() == [msg("still mine")]
        assert await a.lease_info() is None
        async with b.lease("worker-b", ttl=30):  # released on exit: free at once
            pass

    run(body())


# ----------------------------------------------------------- two Runner.run on one conversation ---


def _agent(inputs, delay):
    """The scripted offline model of test_sessions.py (a tool call, then an answer), each model
    call taking `delay` seconds, so that a second run arrives while the first is mid-turn."""
    from agents import Agent, function_tool

    model = _scripted_model(inputs)
    respond = model.get_response

    async def slow(*args, **kwargs):
        await asyncio.sleep(delay)
        return await respond(*args, **kwargs)

    model.get_response = slow

    @function_tool
    def lookup(q: str) -> str:
        return f"found {q}"

    return Agent(name="helper", instructions="Be brief.", model=model, tools=[lookup])


def _turn_shape(items, question):
    """One whole turn of the scripted model: the question, the tool call and its output, the answer."""
    assert [i.get("type", "message") for i in items] == ["message", "function_call", "function_call_output", "message"], items
    assert items[0] == {"content": question, "role": "user"}
    assert items[1]["call_id"] == items[2]["call_id"]
    assert json.loads(items[1]["arguments"]) == {"q": question}
    assert items[3]["content"][0]["text"] == f"answer: found {question}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_concurrent_runs_take_turns_with_wait(backend):
    from agents import Runner

    async def body():
        session = await fresh(backend, "runner-wait")
        inputs, events = [], []
        agent = _agent(inputs, 0.15)
        first_in = asyncio.Event()

        async def turn(worker, question):
            worker_session = FACTORIES[backend](session.session_id)  # each run its own object
            events.append(("asks", worker))
            async with worker_session.lease(f"run-{worker}", ttl=5.0, wait=30.0) as fenced:
                events.append(("holds", worker))
                first_in.set()
                result = await Runner.run(agent, question, session=fenced)
                events.append(("done", worker))
            return result.final_output

        async def second():
            await first_in.wait()  # the first run holds the lease and is mid-turn
            return await turn("b", "second question")

        outputs = await asyncio.gather(turn("a", "first question"), second())
        assert outputs == ["answer: found first question", "answer: found second question"]
        assert events == [("asks", "a"), ("holds", "a"), ("asks", "b"), ("done", "a"), ("holds", "b"), ("done", "b")], "the second waited"
        history = await session.get_items()
        assert len(history) == 8, history
        _turn_shape(history[:4], "first question")
        _turn_shape(history[4:], "second question")
        # The second run's model saw the whole first turn.
        assert [i for i in inputs[2] if isinstance(i, dict)][:4] == history[:4]
        assert await session.lease_info() is None

    run(body())


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_concurrent_runs_without_wait_lease_held(backend):
    from agents import Runner

    async def body():
        session = await fresh(backend, "runner-nowait")
        inputs = []
        agent = _agent(inputs, 0.2)
        first_in = asyncio.Event()

        async def first():
            async with session.lease("run-a", ttl=5.0) as fenced:
                first_in.set()
                return (await Runner.run(agent, "first question", session=fenced)).final_output

        async def second():
            await first_in.wait()
            other = FACTORIES[backend](session.session_id)
            with pytest.raises(LeaseHeldError) as caught:
                async with other.lease("run-b", ttl=5.0) as fenced:
                    await Runner.run(agent, "second question", session=fenced)
            return caught.value

        output, err = await asyncio.gather(first(), second())
        assert output == "answer: found first question"
        assert (err.kind, err.owner, err.session_id) == ("lease_held", "run-a", session.session_id)
        assert isinstance(err.expires_at, datetime.datetime) and err.expires_at > datetime.datetime.now(UTC)
        history = await session.get_items()
        assert len(history) == 4, "only the first run wrote"
        _turn_shape(history, "first question")

    run(body())


# ------------------------------------------------------------------------- API and README ---


def test_lease_api_is_on_every_session_class():
    import inspect

    for cls in (SQLiteSession, RedisSession, DynamoDBSession, type(open_session("memory://", "x"))):
        assert list(inspect.signature(cls.lease).parameters) == ["self", "owner", "ttl", "wait"], cls
        params = inspect.signature(cls.lease).parameters
        assert (params["ttl"].default, params["wait"].default) == (30.0, None)
        assert inspect.iscoroutinefunction(cls.lease_info)
        assert list(inspect.signature(cls.lease_info).parameters) == ["self"]
    for cls, kind in ((LeaseHeldError, "lease_held"), (FencedError, "fenced")):
        assert cls.kind == kind and issubclass(cls, SessionError) and issubclass(cls, ValueError)
        assert cls.__name__ in oas.__all__ and getattr(oas, cls.__name__) is cls
    built = LeaseHeldError("m", operation="acquire_lease", session_id="s")
    assert (built.owner, built.expires_at, built.lease) == (None, None, None)


def test_leases_readme_block_runs(monkeypatch, capsys):
    """The README's lease example, run as written (an SQLite file in a fresh directory)."""
    monkeypatch.chdir(tempfile.mkdtemp())
    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "..", "README.md"), encoding="utf-8").read()
    blocks = [part.split("```python\n", 1)[1].split("```", 1)[0] for part in readme.split("<!-- python-lease-test -->")[1:]]
    assert len(blocks) == 1, "the README marks its lease example"
    source = "async def __readme():\n" + "".join(f"    {line}\n" for line in blocks[0].splitlines())
    namespace = {}
    exec(compile(source, "README.md", "exec"), namespace)
    run(namespace["__readme"]())
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("held by worker-1 until 20"), out
    assert out[1:] == ["the lease ended: nothing written", "[{'role': 'user', 'content': 'Hello!'}]"], out
