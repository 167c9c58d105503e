"""The Python package against real stores (servers from scripts/servers.sh) and the real
agents.Runner with a scripted offline model. Run by scripts/python-tests.sh."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

from openai_agents_session import (
    DynamoDBSession,
    EncryptionKeyMissingError,
    InvalidInputError,
    PostgresSession,
    RedisSession,
    SessionClosedError,
    SessionConnectionError,
    SessionError,
    SessionTimeoutError,
    SQLiteSession,
    create_table_if_not_exists,
    open_session,
)


def env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run scripts/test.sh (or scripts/servers.sh start and source target/test-servers.env)")
    return value


TAG = f"{os.getpid()}-{time.time_ns()}"

SDK_ITEMS = [
    {"content": "What's the weather in Paris? \u00e9\u4e16\U0001F600", "role": "user"},
    {"id": "rs_1", "summary": [{"text": "Call get_weather.", "type": "summary_text"}], "type": "reasoning"},
    {"arguments": "{\"city\":\"Paris\"}", "call_id": "call_1", "name": "get_weather", "type": "function_call", "id": "fc_1", "status": "completed"},
    {"call_id": "call_1", "output": "{\"temperature\": 18.5}", "type": "function_call_output"},
    {"id": "msg_1", "content": [{"annotations": [], "text": "18.5\u00b0C.", "type": "output_text", "logprobs": []}], "role": "assistant", "status": "completed", "type": "message"},
    {"big": 123456789012345678901234567890, "f": 0.1, "neg": -0.0, "nested": {"z": [1, {"a": None}], "a": True}},
]


def _redis_client(url_var):
    import redis.asyncio as aioredis

    url = env(url_var)
    if url.startswith("rediss://"):
        base, _, query = url.partition("?")
        ca = dict(p.split("=", 1) for p in query.split("&") if p)["tls_ca_file"]
        return aioredis.from_url(base, ssl_ca_certs=ca)
    return aioredis.from_url(url)


def _cluster_client():
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    hosts = env("OAS_TEST_REDIS_CLUSTER_URL").split("://", 1)[1].strip("/").split(",")
    return RedisCluster(startup_nodes=[ClusterNode(h.split(":")[0], int(h.split(":")[1])) for h in hosts])


def _boto3():
    import boto3

    return boto3.client("dynamodb", region_name="us-east-1", endpoint_url=env("OAS_TEST_DYNAMODB_ENDPOINT"), aws_access_key_id="dummy", aws_secret_access_key="dummy")


def make_factories():
    tmp = tempfile.mkdtemp()
    return {
        "sqlite-memory": lambda sid, **kw: SQLiteSession(sid, **kw),
        "sqlite-file": lambda sid, **kw: SQLiteSession(sid, os.path.join(tmp, "s.db"), **kw),
        "redis": lambda sid, **kw: RedisSession(sid, _redis_client("OAS_TEST_REDIS_URL"), key_prefix=f"py{TAG}", **kw),
        "redis-acl-db2": lambda sid, **kw: RedisSession(sid, __import__("redis.asyncio").asyncio.from_url(env("OAS_TEST_REDIS_ACL_URL") + "2"), key_prefix=f"py{TAG}", **kw),
        "redis-tls": lambda sid, **kw: RedisSession(sid, _redis_client("OAS_TEST_REDISS_URL"), key_prefix=f"py{TAG}", **kw),
        "redis-cluster": lambda sid, **kw: RedisSession(sid, _cluster_client(), key_prefix=f"py{TAG}", **kw),
        "dynamodb": lambda sid, **kw: DynamoDBSession(sid, _boto3(), f"py_{os.getpid()}", ttl_seconds=kw.pop("ttl", None), **kw),
        "postgres": lambda sid, **kw: PostgresSession(sid, env("OAS_TEST_POSTGRES_URL") + f"&schema=py_{os.getpid()}", **kw),
        "postgres-tls": lambda sid, **kw: PostgresSession(sid, env("OAS_TEST_POSTGRES_TLS_URL") + f"&schema=py_{os.getpid()}", **kw),
        "postgres-open-session": lambda sid, **kw: open_session(env("OAS_TEST_POSTGRES_URL") + f"&schema=py_{os.getpid()}&ttl={kw.pop('ttl', None) or 86400}", sid, **kw),
    }


FACTORIES = make_factories()


@pytest.fixture(scope="module", autouse=True)
def dynamodb_table():
    asyncio.run(create_table_if_not_exists(_boto3(), f"py_{os.getpid()}"))


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("backend", list(FACTORIES))
def test_contract(backend):
    make = FACTORIES[backend]

    async def body():
        s = make(f"contract-{TAG}")
        await s.clear_session()
        assert await s.get_items() == []
        assert await s.pop_item() is None
        await s.add_items(SDK_ITEMS[:2])
        await s.add_items(SDK_ITEMS[2:])
        assert await s.get_items() == SDK_ITEMS
        assert await s.get_items(2) == SDK_ITEMS[-2:]
        assert await s.get_items(0) == [] and await s.get_items(-3) == []
        assert await s.get_items(100) == SDK_ITEMS
        assert json.dumps(await s.get_items(1)) == json.dumps(SDK_ITEMS[-1:]), "exact values, key order"
        assert await s.pop_item() == SDK_ITEMS[-1]
        assert await s.get_items() == SDK_ITEMS[:-1]
        other = make(f"contract-{TAG}:other")
        await other.clear_session()
        await other.add_items([{"other": True}])
        await s.clear_session()
        assert await s.get_items() == [] and await other.get_items() == [{"other": True}]
        # 32 concurrent writers: nothing lost, batches contiguous.
        w = make(f"writers-{TAG}")
        await w.clear_session()
        await asyncio.gather(*[w.add_items([{"w": k, "i": 0}, {"w": k, "i": 1}]) for k in range(32)])
        got = await w.get_items()
        assert len(got) == 64
        for j in range(0, 64, 2):
            assert got[j]["w"] == got[j + 1]["w"] and (got[j]["i"], got[j + 1]["i"]) == (0, 1)
        await w.clear_session()

    run(body())


@pytest.mark.parametrize("backend", ["sqlite-file", "redis", "dynamodb", "postgres"])
def test_ttl_expiry(backend):
    async def body():
        s = FACTORIES[backend](f"ttl-{TAG}", ttl=1)
        await s.add_items([{"a": 1}])
        assert await s.get_items() == [{"a": 1}]
        await asyncio.sleep(2.2)
        assert await s.get_items() == []

    run(body())


def test_bad_input_writes_nothing():
    async def body():
        s = SQLiteSession("bad")
        await s.add_items([{"ok": 1}])
        for bad in (["text"], [{"nan": float("nan")}], [{"set": {1, 2}}], [{"ok": 2}, 42]):
            with pytest.raises(InvalidInputError) as info:
                await s.add_items(bad)
            assert isinstance(info.value, ValueError) and isinstance(info.value, SessionError)
        assert await s.get_items() == [{"ok": 1}]
        with pytest.raises(InvalidInputError):
            SQLiteSession("")
        with pytest.raises(InvalidInputError):
            await open_session("ftp://nowhere", "x").get_items()
        await s.close()
        with pytest.raises(SessionClosedError):
            await s.get_items()

    run(body())


def test_pydantic_items_and_settings():
    from agents.memory import SessionSettings
    from openai.types.responses import EasyInputMessageParam  # noqa: F401  (a TypedDict)
    from pydantic import BaseModel

    class Msg(BaseModel):
        role: str
        content: str

    async def body():
        s = SQLiteSession("settings", session_settings={"limit": 2})
        assert isinstance(s.session_settings, SessionSettings)
        await s.add_items([Msg(role="user", content="a"), {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}])
        assert await s.get_items() == [{"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
        assert len(await s.get_items(3)) == 3

    run(body())


def test_shared_store_and_no_io_constructors():
    import redis.asyncio as aioredis

    client = aioredis.from_url("redis://127.0.0.1:1/")  # nothing listens: constructors do no I/O
    sessions = [RedisSession(f"s{i}", client) for i in range(1000)]
    assert len({id(s._store) for s in sessions}) == 1, "one store for one client's settings"

    async def body():
        with pytest.raises(SessionConnectionError) as info:
            await sessions[0].get_items()
        import redis.exceptions

        assert isinstance(info.value, ConnectionError) and isinstance(info.value, redis.exceptions.ConnectionError)

    run(body())


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_redis():
    """A redis-server of the test's own on a free port (no persistence), once it accepts
    connections: (process, port). The caller stops it."""
    port = _free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    return server, port


def test_event_loop_stays_responsive_while_redis_hangs():
    server, port = _start_redis()
    try:

        async def body():
            s = RedisSession.from_url("hang", url=f"redis://127.0.0.1:{port}/?response_timeout=1.5")
            await s.add_items([{"a": 1}])
            os.kill(server.pid, signal.SIGSTOP)
            lags = []

            async def ticker():
                while True:
                    t = time.perf_counter()
                    await asyncio.sleep(0.01)
                    lags.append(time.perf_counter() - t - 0.01)

            task = asyncio.create_task(ticker())
            with pytest.raises(SessionTimeoutError) as info:
                await s.get_items()
            task.cancel()
            import redis.exceptions

            assert isinstance(info.value, TimeoutError) and isinstance(info.value, redis.exceptions.TimeoutError)
            assert max(lags) < 0.05, f"event loop lag {max(lags):.3f}s"
            os.kill(server.pid, signal.SIGCONT)
            print(f"ticker max lag while Redis hung: {max(lags) * 1000:.1f} ms over {len(lags)} ticks")

        run(body())
    finally:
        os.kill(server.pid, signal.SIGCONT)
        server.kill()
        server.wait()


# ------------------------------------------------------------------ the real agents.Runner ---


def _scripted_model(inputs):
    from agents import ModelResponse, Usage
    from agents.models.interface import Model
    from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

    class ScriptedModel(Model):
        """Calls the tool once per turn, then answers with the tool's output."""

        async def get_response(self, system_instructions, input, model_settings, tools, output_schema, handoffs, tracing, *, previous_response_id=None, conversation_id=None, prompt=None):
            inputs.append(json.loads(json.dumps(input, default=str)))
            last = input[-1] if isinstance(input, list) else {"role": "user", "content": input}
            n = len(inputs)
            if tools and last.get("type") != "function_call_output":
                call = ResponseFunctionToolCall(id=f"fc_{n}", call_id=f"call_{n}", name="lookup", arguments=json.dumps({"q": str(last.get("content"))}), type="function_call", status="completed")
                return ModelResponse(output=[call], usage=Usage(), response_id=None)
            text = ResponseOutputText(text=f"answer: {last.get('output', last.get('content'))}", type="output_text", annotations=[])
            msg = ResponseOutputMessage(id=f"msg_{n}", content=[text], role="assistant", status="completed", type="message")
            return ModelResponse(output=[msg], usage=Usage(), response_id=None)

        async def stream_response(self, system_instructions, input, model_settings, tools, output_schema, handoffs, tracing, *, previous_response_id=None, conversation_id=None, prompt=None):
            from openai.types.responses import Response, ResponseCompletedEvent

            result = await self.get_response(system_instructions, input, model_settings, tools, output_schema, handoffs, tracing)
            response = Response(id="resp_scripted", created_at=0, model="scripted", object="response", output=result.output, parallel_tool_calls=False, tool_choice="auto", tools=[])
            yield ResponseCompletedEvent(type="response.completed", response=response, sequence_number=0)

    return ScriptedModel()


def _conversation(session, inputs, sync=False, streamed=False):
    from agents import Agent, Runner, function_tool

    @function_tool
    def lookup(q: str) -> str:
        return f"found {q}"

    agent = Agent(name="helper", instructions="Be brief.", model=_scripted_model(inputs), tools=[lookup])
    outputs = []
    for turn in ["first question", "second question"]:
        if sync:
            result = Runner.run_sync(agent, turn, session=session)
        elif streamed:

            async def stream(turn=turn):
                streaming = Runner.run_streamed(agent, turn, session=session)
                async for _ in streaming.stream_events():
                    pass
                return streaming

            result = asyncio.run(stream())
        else:
            result = asyncio.run(Runner.run(agent, turn, session=session))
        outputs.append(result.final_output)
    return outputs


@pytest.mark.parametrize("backend", ["sqlite-file", "redis", "redis-cluster", "dynamodb", "postgres", "postgres-tls"])
def test_runner_multi_turn_matches_the_sdk_sqlite_session(backend):
    from agents import SQLiteSession as SdkSQLiteSession

    ours_inputs, sdk_inputs = [], []
    ours = FACTORIES[backend](f"runner-{backend}-{TAG}")
    asyncio.run(ours.clear_session())
    outputs = _conversation(ours, ours_inputs)
    _conversation(SdkSQLiteSession(f"runner-{TAG}"), sdk_inputs)
    assert outputs == ["answer: found first question", "answer: found second question"]
    # The second turn's model input holds the whole first turn, exactly as the SDK's own store gives it.
    assert any(i.get("content") == "first question" for i in ours_inputs[2] if isinstance(i, dict))
    assert ours_inputs == sdk_inputs
    history = asyncio.run(ours.get_items())
    assert [i.get("type", "message") for i in history][:4] == ["message", "function_call", "function_call_output", "message"]


def test_runner_run_sync_and_session_limit():
    from agents import RunConfig, SessionSettings

    inputs = []
    session = SQLiteSession(f"sync-{TAG}")
    outputs = _conversation(session, inputs, sync=True)
    assert outputs[-1] == "answer: found second question"
    assert len(asyncio.run(session.get_items())) == 8
    from agents import Agent, Runner

    limited_inputs = []
    agent = Agent(name="helper", model=_scripted_model(limited_inputs))
    asyncio.run(Runner.run(agent, "third", session=session, run_config=RunConfig(session_settings=SessionSettings(limit=2))))
    sent = [i for i in limited_inputs[0] if isinstance(i, dict)]
    newest_two = asyncio.run(session.get_items())[-4:-2]  # the newest 2 before this run added its 2
    assert sent[-1].get("content") == "third", "the new turn is last"
    assert 1 <= len(sent) - 1 <= 2, "at most the 2 newest history items (the SDK drops an orphaned tool output)"
    assert all(item in newest_two for item in sent[:-1]), "history comes from the newest 2 items"


def test_runner_run_streamed():
    inputs = []
    session = SQLiteSession(f"streamed-{TAG}")
    outputs = _conversation(session, inputs, streamed=True)
    assert outputs == ["answer: found first question", "answer: found second question"]
    assert any(i.get("content") == "first question" for i in inputs[2] if isinstance(i, dict))
    assert len(asyncio.run(session.get_items())) == 8


def test_aiobotocore_and_sync_redis_clients_as_in_the_seed_docs():
    import redis
    from aiobotocore.session import get_session

    async def body():
        async with get_session().create_client("dynamodb", region_name="us-east-1", endpoint_url=env("OAS_TEST_DYNAMODB_ENDPOINT"), aws_access_key_id="dummy", aws_secret_access_key="dummy") as client:
            await create_table_if_not_exists(client, f"py_{os.getpid()}")
            s = DynamoDBSession(session_id=f"aio-{TAG}", dynamodb_client=client, table_name=f"py_{os.getpid()}", ttl_seconds=3600)
            await s.add_items([{"role": "user", "content": "hi"}])
            assert await s.get_items() == [{"role": "user", "content": "hi"}]
        sync_client = redis.Redis.from_url(env("OAS_TEST_REDIS_ACL_URL"), socket_timeout=5, socket_connect_timeout=2)
        r = RedisSession(session_id=f"sync-{TAG}", redis_client=sync_client, ttl=60)
        await r.add_items([{"a": 1}])
        assert await r.get_items() == [{"a": 1}]
        assert "oas-secret-pw" not in repr(r), repr(r)
        await r.clear_session()

    run(body())


class _SniffingProxy:
    """A TCP forwarder in front of DynamoDB Local that records the access key of every signed
    request (``Credential=AKID/...`` in the Authorization header): what was really on the wire."""

    def __init__(self, target):
        import re
        import threading

        host, port = target.split("://", 1)[1].rstrip("/").split(":")
        self.target = (host, int(port))
        self.keys = []
        self._pattern = re.compile(rb"Credential=([^/]+)/")
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import threading

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src, dst, sniff):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if sniff:
                    self.keys.extend(k.decode() for k in self._pattern.findall(data))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self._listener.close()


def _expiring_metadata(issued, seconds=3):
    import datetime

    key = f"AKIDROTATED{len(issued)}"
    issued.append(key)
    expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return {"access_key": key, "secret_key": "secret", "token": f"token-{len(issued)}", "expiry_time": expiry.isoformat()}


def test_dynamodb_credentials_are_asked_of_the_boto3_client_whenever_they_expire():
    """Assumed-role / SSO credentials expire: the core asks the client's own refreshable
    credentials again, and the rotated keys are the ones that sign the requests."""
    import boto3
    import botocore.session
    from botocore.credentials import RefreshableCredentials

    proxy = _SniffingProxy(env("OAS_TEST_DYNAMODB_ENDPOINT"))
    issued = []
    creds = RefreshableCredentials.create_from_metadata(_expiring_metadata(issued), lambda: _expiring_metadata(issued), "test-assume-role")
    core = botocore.session.get_session()
    core._credentials = creds
    client = boto3.Session(botocore_session=core, region_name="us-east-1").client("dynamodb", endpoint_url=proxy.endpoint)
    try:
        s = DynamoDBSession(f"rotating-{TAG}", client, f"py_{os.getpid()}")
        for n in range(4):
            run(s.add_items([{"n": n}]))
            time.sleep(0.2)
        assert run(s.get_items()) == [{"n": n} for n in range(4)]
    finally:
        proxy.close()
    assert proxy.keys, "the proxy saw signed requests"
    assert set(proxy.keys) <= set(issued), (proxy.keys, issued)
    assert len(set(proxy.keys)) >= 3, f"the rotated keys were used: {proxy.keys}"
    assert os.environ.get("AWS_ACCESS_KEY_ID", "dummy") not in proxy.keys


def test_dynamodb_credentials_of_an_aiobotocore_client_static_and_refreshing():
    from aiobotocore.credentials import AioRefreshableCredentials
    from aiobotocore.session import get_session

    proxy = _SniffingProxy(env("OAS_TEST_DYNAMODB_ENDPOINT"))
    issued = []

    async def refresh():
        await asyncio.sleep(0)  # a coroutine on the client's loop, as aiobotocore's providers are
        return _expiring_metadata(issued)

    async def body():
        # Static keys given to the client are the ones used, not the process's AWS chain.
        async with get_session().create_client("dynamodb", region_name="us-east-1", endpoint_url=proxy.endpoint, aws_access_key_id="AKIDSTATICCLIENT", aws_secret_access_key="s") as client:
            s = DynamoDBSession(session_id=f"aio-static-{TAG}", dynamodb_client=client, table_name=f"py_{os.getpid()}")
            await s.add_items([{"a": 1}])
            assert await s.get_items() == [{"a": 1}]
        assert set(proxy.keys) == {"AKIDSTATICCLIENT"}, proxy.keys
        proxy.keys.clear()
        session = get_session()
        session._credentials = AioRefreshableCredentials.create_from_metadata(_expiring_metadata(issued), refresh, "test-sso")
        async with session.create_client("dynamodb", region_name="us-east-1", endpoint_url=proxy.endpoint) as client:
            s = DynamoDBSession(session_id=f"aio-rotating-{TAG}", dynamodb_client=client, table_name=f"py_{os.getpid()}")
            twin = DynamoDBSession(session_id=f"aio-twin-{TAG}", dynamodb_client=client, table_name=f"py_{os.getpid()}")
            assert twin._store is s._store, "sessions of one client share one store"
            assert twin._credentials is s._credentials, "and one credentials source"
            for n in range(3):
                await s.add_items([{"n": n}])
                await twin.add_items([{"n": n}])
                await asyncio.sleep(0.2)
            assert await s.get_items() == [{"n": n} for n in range(3)]
            assert await twin.get_items() == [{"n": n} for n in range(3)]

    try:
        run(body())
    finally:
        proxy.close()
    assert set(proxy.keys) <= set(issued), (proxy.keys, issued)
    assert len(set(proxy.keys)) >= 2, f"the rotated keys were used: {proxy.keys}"


@pytest.mark.parametrize("backend", ["sqlite-file", "redis", "redis-cluster", "dynamodb"])
def test_the_sdk_rewind_path_pops_exactly_the_saved_tail(backend):
    """The Runner rewinds a retried turn with the SDK's own `rewind_session_items`: it reads the
    tail with get_items(limit=n), leaves a diverging tail alone, and pops a matching one item
    by item. (openai-agents 0.24.0 reaches it only for server-managed conversations, which
    its Runner refuses to combine with a session, so the helper is driven directly.)"""
    from agents import SQLiteSession as SdkSQLiteSession
    from agents.run_internal.session_persistence import rewind_session_items

    history = SDK_ITEMS[:5]
    outcomes = []
    for session in (FACTORIES[backend](f"rewind-{backend}-{TAG}"), SdkSQLiteSession(f"rewind-{TAG}")):
        pops = []
        original_pop = session.pop_item

        async def counting_pop(original_pop=original_pop, pops=pops):
            item = await original_pop()
            pops.append(item)
            return item

        session.pop_item = counting_pop

        async def body(session=session):
            await session.clear_session()
            await session.add_items(history)
            # A diverging tail, seen in get_items(limit=2): nothing is popped.
            await rewind_session_items(session, [history[3], {"role": "user", "content": "not the tail"}])
            after_mismatch = await session.get_items()
            await rewind_session_items(session, history[3:])
            return after_mismatch, await session.get_items()

        after_mismatch, after_rewind = run(body())
        assert after_mismatch == history, "a diverging tail is left alone"
        assert after_rewind == history[:3], "the saved tail is removed, nothing else"
        outcomes.append((after_mismatch, after_rewind, pops))
    assert outcomes[0] == outcomes[1], "the same as the SDK's own SQLiteSession"
    assert outcomes[0][2] == [history[4], history[3]], "pop_item did the work, newest first"


def _readme_blocks():
    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "..", "README.md"), encoding="utf-8").read()
    blocks = []
    for part in readme.split("<!-- python-readme-test -->")[1:]:
        code = part.split("```python\n", 1)[1].split("```", 1)[0]
        blocks.append(code)
    return blocks


def test_the_readme_python_blocks_run_verbatim(monkeypatch, capsys):
    """The README's seed-style examples, run as written: only the Redis address is pointed at
    the test server, and DynamoDB's endpoint comes from AWS_ENDPOINT_URL_DYNAMODB (botocore's
    own setting), since the text names AWS's."""
    blocks = _readme_blocks()
    assert len(blocks) == 2, "the README marks its Redis and DynamoDB examples"
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", env("OAS_TEST_DYNAMODB_ENDPOINT"))
    # The examples' session ids are fixed: start them empty (the offline example shares one).
    run(RedisSession("user-123", _redis_client("OAS_TEST_REDIS_URL")).clear_session())
    for code in blocks:
        code = code.replace("redis://localhost:6379", env("OAS_TEST_REDIS_URL"))
        source = "async def __readme():\n" + "".join(f"    {line}\n" for line in code.splitlines())
        namespace = {}
        exec(compile(source, "README.md", "exec"), namespace)
        run(namespace["__readme"]())
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == [
        "[{'role': 'user', 'content': 'Hello!'}, {'role': 'assistant', 'content': 'Hi!'}]",
        "[{'role': 'assistant', 'content': 'Hi!'}]",
        "{'role': 'assistant', 'content': 'Hi!'}",
    ], out
    assert out[3].startswith("[{'role': 'user', 'content': 'Hello!'}"), out


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_the_offline_runner_example(backend):
    example = os.path.join(os.path.dirname(__file__), "..", "examples", "quickstart.py")
    child_env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    if backend == "redis":
        child_env["REDIS_URL"] = env("OAS_TEST_REDIS_URL")
    out = subprocess.run([os.sys.executable, example], env=child_env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:2] == ["Hello! How can I help?", "You said: Hello!"], out.stdout
    assert lines[2].startswith("4 items in " + ("RedisSession" if backend == "redis" else "SQLiteSession")), lines


def test_dynamodb_client_timeouts_and_retries_are_honoured():
    """A boto3 client's botocore Config (read_timeout, connect_timeout, retries) carries over:
    against an endpoint that accepts connections and never answers, a read fails typed after
    about read_timeout x attempts, not the core's own defaults."""
    import boto3
    from botocore.config import Config

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
    try:
        client = boto3.client(
            "dynamodb",
            region_name="us-east-1",
            endpoint_url=endpoint,
            aws_access_key_id="AKIDTIMEOUT",
            aws_secret_access_key="s",
            config=Config(connect_timeout=1, read_timeout=1, retries={"total_max_attempts": 2}),
        )
        s = DynamoDBSession(f"timeouts-{TAG}", client, "never_answers")
        assert "response_timeout=1" in repr(s) and "max_attempts=2" in repr(s), repr(s)
        started = time.monotonic()
        with pytest.raises(SessionTimeoutError) as caught:
            run(s.get_items())
        elapsed = time.monotonic() - started
        assert 1.5 <= elapsed < 6, f"2 attempts of 1 s, got {elapsed:.2f} s"
        assert isinstance(caught.value, TimeoutError)
        assert "timeouts-" in str(caught.value) and "SessionTimeoutError(" in repr(caught.value)
    finally:
        silent.close()


def test_postgres_session_checks_its_arguments():
    with pytest.raises(InvalidInputError, match="postgres://"):
        PostgresSession("s", "redis://localhost")
    with pytest.raises(InvalidInputError, match="encryption_key"):
        PostgresSession("s", env("OAS_TEST_POSTGRES_URL"), encryption_key=b"too short")
    # A valid key: records are encrypted; without the key the session says so.
    sid = f"pg-enc-{uuid.uuid4().hex}"
    keyed = PostgresSession(sid, env("OAS_TEST_POSTGRES_URL"), encryption_key=b"k" * 32)
    run(keyed.add_items([{"role": "user", "content": "secret"}]))
    assert run(keyed.get_items()) == [{"role": "user", "content": "secret"}]
    with pytest.raises(EncryptionKeyMissingError):
        run(PostgresSession(sid, env("OAS_TEST_POSTGRES_URL")).get_items())
    run(keyed.clear_session())
    # A wrong password is a ConfigError naming it, without the password.
    bad = env("OAS_TEST_POSTGRES_URL").replace("oas-pg-secret", "not-the-pw")
    with pytest.raises(InvalidInputError) as info:
        run(PostgresSession("s", bad).get_items())
    assert "password" in str(info.value) and "not-the-pw" not in str(info.value)


def test_sqlalchemy_session_data_reads_through_layout_openai_agents():
    """Data written by the real SQLAlchemySession (openai-agents with asyncpg) reads through
    layout=openai-agents equal as JSON to what the SDK reads (it writes with ensure_ascii)."""
    from agents.extensions.memory import SQLAlchemySession

    url = env("OAS_TEST_POSTGRES_URL")
    base = url.split("?")[0].replace("postgres://", "postgresql+asyncpg://", 1)
    st, mt = f"sa_sessions_{os.getpid()}", f"sa_messages_{os.getpid()}"

    async def body():
        sdk = SQLAlchemySession.from_url(f"sa-{TAG}", url=base, create_tables=True, sessions_table=st, messages_table=mt)
        await sdk.add_items(SDK_ITEMS[:3])
        await sdk.add_items(SDK_ITEMS[3:])
        other = SQLAlchemySession(f"sa-{TAG}-other", engine=sdk._engine, create_tables=True, sessions_table=st, messages_table=mt)
        await other.add_items([{"other": "\u00e9"}])
        expected = await sdk.get_items()
        legacy = f"{url}&layout=openai-agents&sessions_table={st}&messages_table={mt}"
        ours = open_session(legacy, f"sa-{TAG}")
        assert await ours.get_items() == expected == SDK_ITEMS
        assert await ours.get_items(2) == expected[-2:]
        assert await open_session(legacy, f"sa-{TAG}-other").get_items() == [{"other": "\u00e9"}]
        with pytest.raises(InvalidInputError, match="read-only"):
            await ours.add_items([{"a": 1}])
        # Into the native layout, then read back equal.
        target = open_session(env("OAS_TEST_POSTGRES_URL") + f"&schema=py_{os.getpid()}", f"sa-copy-{TAG}")
        await target.clear_session()
        await target.add_items(await ours.get_items())
        assert await target.get_items() == expected
        await sdk._engine.dispose()

    run(body())
