"""Redis faults through the Python package (issue 10, items 1, 2 and 4), on a private
redis-server with `--appendonly yes --appendfsync always` (every acknowledged write is on disk
before its answer): one store kept alive across a SIGKILL and restart with an idle gap before
the next write (no error, nothing acknowledged lost), and across a SIGSTOP (the error is a
builtin and a redis-py TimeoutError, raised within the bound). Run by scripts/python-tests.sh."""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import redis
import redis.exceptions

from openai_agents_session import (
    OutcomeUnknownTimeoutError,
    RedisSession,
    SessionError,
    SessionTimeoutError,
    open_session,
)

TAG = f"{os.getpid()}-{time.time_ns()}"

# Scheduling slack over a bound: the machine may be busy (CI runs two jobs on two cores).
SLACK = 0.75


def run(coro):
    return asyncio.run(coro)


def _redis_server_bin():
    path = os.environ.get("OAS_TEST_REDIS_SERVER_BIN") or shutil.which("redis-server")
    if not path:
        pytest.fail("redis-server is not installed: run scripts/servers.sh start (it installs it)")
    return path


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A redis-server of this test alone, durable (AOF, fsync on every write), restartable on
    the same port and data directory."""

    def __init__(self, directory):
        self.bin = _redis_server_bin()
        self.dir = directory
        self.port = _free_port()
        self.proc = None

    def start(self):
        args = [self.bin, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", self.dir]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + 15
        try:
            while True:
                try:
                    if client.ping():  # also waits until the AOF is loaded (LOADING answers raise)
                        return
                except redis.exceptions.RedisError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server on port {self.port} did not start (exit {self.proc.poll()})")
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def private_redis():
    with tempfile.TemporaryDirectory() as directory:
        server = PrivateRedis(directory)
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.mark.parametrize("via", ["open_session", "RedisSession"])
def test_a_store_idle_across_a_redis_restart_writes_without_error(private_redis, via):
    """Item 1: the store outlives a SIGKILL and restart of its server; after an idle gap the
    first write of every session on it succeeds (the request never reached the new server on
    the dead connection: it is sent again on a fresh one), and every acknowledged item is there."""
    url = f"redis://127.0.0.1:{private_redis.port}/0?response_timeout=5&connect_timeout=2"

    def session(sid):
        if via == "open_session":
            return open_session(url, sid)
        return RedisSession.from_url(sid, url=url)

    first, second = session(f"restart-a-{TAG}"), session(f"restart-b-{TAG}")
    assert first._store is second._store, "one store for the URL, as in a long-lived process"

    async def body():
        await first.add_items([{"n": 0}])
        await second.add_items([{"m": 0}])
        await first.add_items([{"n": 1}, {"n": 2}])

        private_redis.kill()
        private_redis.start()
        await asyncio.sleep(1.5)  # idle: the store's connection is dead, and nothing used it

        started = time.monotonic()
        await first.add_items([{"n": 3}])
        elapsed = time.monotonic() - started
        await second.add_items([{"m": 1}])  # the first write of another session on the store
        assert await first.get_items() == [{"n": n} for n in range(4)], "nothing acknowledged lost"
        assert await second.get_items() == [{"m": 0}, {"m": 1}]
        assert await first.pop_item() == {"n": 3}
        await first.clear_session()
        assert await first.get_items() == []
        return elapsed

    elapsed = run(body())
    print(f"first write after the Redis restart ({via}): {elapsed * 1000:.1f} ms")
    assert elapsed < 5, f"{elapsed:.2f} s"


def test_a_read_idle_across_a_redis_restart(private_redis):
    """Item 1: a read on the store's dead connection is retried once on a fresh one."""
    s = open_session(f"redis://127.0.0.1:{private_redis.port}/0?response_timeout=5", f"restart-read-{TAG}")

    async def body():
        await s.add_items([{"a": 1}])
        private_redis.kill()
        private_redis.start()
        await asyncio.sleep(1.5)
        assert await s.get_items() == [{"a": 1}]

    run(body())


def test_a_write_to_a_hung_redis_is_a_timeout_error_within_the_bound(private_redis):
    """Items 2 and 4: with response_timeout=1 and connect_timeout=1, a write to a SIGSTOPped
    server fails within response_timeout on the live connection (its outcome is unknown: it was
    sent), and within response_timeout + connect_timeout when it had to connect first; the
    error is caught by the seed's `except redis.TimeoutError:` and by `except TimeoutError:`."""
    url = f"redis://127.0.0.1:{private_redis.port}/0?response_timeout=1&connect_timeout=1"
    s = open_session(url, f"hang-{TAG}")
    figures = {}

    async def timed(label, session, call, bound):
        started = time.monotonic()
        try:
            await call()
        except redis.exceptions.TimeoutError as err:  # the seed's documented handler
            elapsed = time.monotonic() - started
            assert isinstance(err, TimeoutError) and isinstance(err, SessionTimeoutError), type(err).__mro__
            assert isinstance(err, SessionError) and err.session_id == session.session_id
            figures[label] = elapsed
            assert elapsed <= bound + SLACK, f"{label}: {elapsed:.2f} s, bound {bound} s"
            return err
        pytest.fail(f"{label}: no error from a hung server")

    async def body():
        await s.add_items([{"a": 1}])  # the store is connected
        private_redis.signal(signal.SIGSTOP)
        try:
            err = await timed("write on the live connection", s, lambda: s.add_items([{"a": 2}]), 1)
            assert type(err) is OutcomeUnknownTimeoutError and err.kind == "outcome_unknown", repr(err)
            assert err.operation == "add_items"
            with pytest.raises(TimeoutError) as builtin:  # the builtin handler catches it too
                await s.add_items([{"a": 3}])
            assert isinstance(builtin.value, redis.exceptions.TimeoutError)
            await timed("read", s, lambda: s.get_items(), 2)
            await timed("write after the timeouts", s, lambda: s.add_items([{"a": 4}]), 2)
            # A store that has to connect to the hung server first: connect_timeout + response_timeout.
            fresh = open_session(url + "&prefix=fresh", f"hang-fresh-{TAG}")
            await timed("first write of a fresh store", fresh, lambda: fresh.add_items([{"b": 1}]), 2)
        finally:
            private_redis.signal(signal.SIGCONT)
        # Once the server answers again the store works; the writes whose outcome was unknown
        # may or may not be there, the acknowledged one is.
        items = await s.get_items()
        assert items[0] == {"a": 1} and all(i in ({"a": 2}, {"a": 3}, {"a": 4}) for i in items[1:]), items
        await s.add_items([{"a": 5}])
        assert (await s.get_items())[-1] == {"a": 5}

    run(body())
    print("hung Redis, time until the TimeoutError: " + ", ".join(f"{k} {v:.2f} s" for k, v in figures.items()))
