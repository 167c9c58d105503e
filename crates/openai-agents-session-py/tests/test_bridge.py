"""How results travel from the Rust runtime to asyncio (`awaitable_of` in src/lib.rs): an
operation that needs no waiting is answered on the loop's thread; the others are queued on the
loop's bridge (a socket pair the loop watches) and settled there, several per wake-up. These
tests pin what a caller sees: every result reaches its own awaitable, on every loop, errors
keep their classes, and cancelling an awaitable cancels only it. Run by
scripts/python-tests.sh."""

import asyncio
import os
import signal
import tempfile
import threading

import pytest

from openai_agents_session import (
    EncryptionKeyMissingError,
    InvalidInputError,
    RedisSession,
    SessionTimeoutError,
    generate_encryption_key,
    open_session,
)

from test_sessions import _start_redis


def _sqlite_url(tmp):
    return f"sqlite:///{os.path.join(tmp, 'bridge.db')}"


@pytest.mark.parametrize("scheme", ["memory", "sqlite"])
def test_many_concurrent_operations_each_get_their_own_result(scheme):
    with tempfile.TemporaryDirectory() as tmp:
        url = "memory://" if scheme == "memory" else _sqlite_url(tmp)

        async def body():
            sessions = [open_session(url, f"bridge-{scheme}-{i}") for i in range(50)]
            # 50 sessions x 4 batches in flight at once: results complete together on the
            # runtime and are delivered in shared wake-ups.
            await asyncio.gather(
                *(s.add_items([{"s": i, "n": n}]) for n in range(4) for i, s in enumerate(sessions))
            )
            got = await asyncio.gather(*(s.get_items() for s in sessions))
            for i, items in enumerate(got):
                assert sorted(x["n"] for x in items) == [0, 1, 2, 3]
                assert {x["s"] for x in items} == {i}
            popped = await asyncio.gather(*(s.pop_item() for s in sessions))
            assert [p["s"] for p in popped] == list(range(50))
            counts = await asyncio.gather(*(s.get_items(limit=10) for s in sessions))
            assert [len(c) for c in counts] == [3] * 50
            for s in sessions:
                await s.clear_session()

        asyncio.run(body())


def test_results_reach_a_new_loop_after_the_old_one_closed():
    # Each asyncio.run makes a new loop, whose bridge is made on first use; the old loop's
    # bridge goes with it.
    with tempfile.TemporaryDirectory() as tmp:
        url = _sqlite_url(tmp)
        for round_ in range(5):

            async def body():
                s = open_session(url, "bridge-loops")
                await s.add_items([{"round": round_}])
                return [x["round"] for x in await s.get_items()]

            assert asyncio.run(body()) == list(range(round_ + 1))


def test_loops_on_two_threads_at_once_each_get_their_own_results():
    with tempfile.TemporaryDirectory() as tmp:
        url = _sqlite_url(tmp)
        outcomes = {}

        def worker(name):
            async def body():
                s = open_session(url, f"bridge-thread-{name}")
                for n in range(30):
                    await s.add_items([{"t": name, "n": n}])
                items = await s.get_items()
                assert [x["n"] for x in items] == list(range(30))
                assert {x["t"] for x in items} == {name}
                return len(items)

            try:
                outcomes[name] = asyncio.run(body())
            except BaseException as e:  # reported by the assertion below
                outcomes[name] = e

        threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b", "c")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert outcomes == {"a": 30, "b": 30, "c": 30}


def test_errors_keep_their_class_on_both_paths():
    async def answered_on_the_loop():
        # memory:// needs no waiting: the error is raised from the first poll, on the loop.
        s = open_session("memory://?max_item_bytes=64", "bridge-errors")
        await s.add_items([{"keep": 1}])
        with pytest.raises(InvalidInputError):
            await s.add_items([{"keep": 2}, {"big": "x" * 100}])
        assert await s.get_items() == [{"keep": 1}]

    asyncio.run(answered_on_the_loop())

    with tempfile.TemporaryDirectory() as tmp:
        url = _sqlite_url(tmp)

        async def through_the_bridge():
            # SQLite answers from its blocking task: the error comes through the bridge.
            key = generate_encryption_key()
            await open_session(url, "bridge-errors", encryption_key=key).add_items([{"n": 1}])
            without = open_session(url, "bridge-errors")
            with pytest.raises(EncryptionKeyMissingError):
                await without.get_items()
            with pytest.raises(EncryptionKeyMissingError):
                await without.pop_item()
            assert await open_session(url, "bridge-errors", encryption_key=key).get_items() == [{"n": 1}]

        asyncio.run(through_the_bridge())


def test_cancelling_one_awaitable_leaves_the_others_and_the_loop_working():
    server, port = _start_redis()
    try:

        async def body():
            url = f"redis://127.0.0.1:{port}/?response_timeout=1"
            s = RedisSession.from_url("bridge-cancel", url=url)
            await s.add_items([{"a": 1}])
            os.kill(server.pid, signal.SIGSTOP)
            cancelled = asyncio.create_task(s.get_items())
            waiting = asyncio.create_task(s.get_items())
            await asyncio.sleep(0.1)
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            # The other one is still pending and ends with its own outcome (the timeout).
            with pytest.raises(SessionTimeoutError):
                await waiting
            os.kill(server.pid, signal.SIGCONT)
            assert await s.get_items() == [{"a": 1}]

        asyncio.run(body())
    finally:
        os.kill(server.pid, signal.SIGCONT)
        server.kill()
        server.wait()
