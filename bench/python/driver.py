#!/usr/bin/env python3
"""The turn workload of ``agent-session bench --workload turns``, in Python, against:

* ``py-ours``: our Python package (``openai_agents_session`` built from this repo), any store URL
  through ``open_session(url, id)`` (``?ttl=3600``, ``&synchronous=full``...);
* ``py-seed-redis``, ``py-seed-dynamodb``: the seed, ``openai-agents-session==0.1.0`` (same
  import name as ours: it runs from its own virtualenv);
* ``py-official-redis``, ``py-official-sqlite``: the official ``openai-agents`` 0.24.0
  ``RedisSession`` and ``SQLiteSession``;
* ``py-official-sqlalchemy``: its ``SQLAlchemySession`` on PostgreSQL through asyncpg
  (``postgresql+asyncpg://`` URLs; one engine shared by every session, its pool of
  ``pool_size`` connections, default 16 as ours, no overflow).

A turn is ``get_items(limit)`` then ``add_items(items)`` (a ~205 B user message and a ~986 B
assistant output message, the same bytes as the Rust engine's), from ``concurrency`` asyncio
tasks on one event loop over ``sessions`` sessions (client k owns sessions k, k+C, ...), after a
warm-up, for a duration or a number of turns. The report is the Rust engine's JSON schema.

    driver.py --target py-ours --url 'redis://127.0.0.1:6379/?ttl=3600' --concurrency 8 --json
    driver.py --worker    # one JSON request per stdin line, one JSON report per stdout line

The worker mode keeps the interpreter (and its ~2 s of imports) alive between runs of one target;
peak RSS is reset before each run (``/proc/self/clear_refs``) so that it stays per run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
import traceback
from typing import Any, Dict, List, Optional

FILLER = (
    "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod "
    "tempor incididunt ut labore et dolore magna aliqua. "
)


def compact(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def filler(tag: str, n: int) -> str:
    text = tag + " "
    while len(text) < n:
        text += FILLER
    return text[:n]


def turn_item(index: int, tag: str, size: int) -> Dict[str, Any]:
    def make(text: str) -> Dict[str, Any]:
        if index % 2 == 0:
            return {"role": "user", "content": text}
        return {
            "id": f"msg_{tag}_{index}",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }

    skeleton = len(compact(make("")))
    return make(filler(tag, max(0, size - skeleton)))


def item_size(sizes: List[int], i: int) -> int:
    return sizes[i] if i < len(sizes) else sizes[-1]


def turn_items(cfg: Dict[str, Any], tag: str) -> List[Dict[str, Any]]:
    return [turn_item(i, tag, item_size(cfg["turn_item_bytes"], i)) for i in range(cfg["items_per_turn"])]


# ---------------------------------------------------------------------------- Redis probe ---


class RedisProbe:
    """INFO commandstats / cpu over a plain socket (the clients' pools are left alone)."""

    def __init__(self, url: str) -> None:
        from urllib.parse import unquote, urlparse

        u = urlparse(url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 6379
        self.user = unquote(u.username) if u.username else None
        self.password = unquote(u.password) if u.password else None

    def _call(self, *commands: List[str]) -> List[str]:
        all_cmds = list(commands)
        if self.password:
            all_cmds.insert(0, ["AUTH", self.user, self.password] if self.user else ["AUTH", self.password])
        payload = b""
        for cmd in all_cmds:
            payload += b"*%d\r\n" % len(cmd)
            for a in cmd:
                b = a.encode()
                payload += b"$%d\r\n%s\r\n" % (len(b), b)
        with socket.create_connection((self.host, self.port), timeout=5) as s:
            s.sendall(payload)
            f = s.makefile("rb")
            replies = [self._reply(f) for _ in all_cmds]
        return replies[1:] if self.password else replies

    def _reply(self, f: Any) -> str:
        line = f.readline().rstrip(b"\r\n")
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b":"):
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return ""
            data = f.read(n + 2)
            return data[:n].decode("utf-8", "replace")
        if kind == b"*":
            return "\n".join(self._reply(f) for _ in range(max(0, int(rest))))
        raise RuntimeError(f"unexpected reply {line!r}")

    def snapshot(self) -> Dict[str, Any]:
        stats, cpu = self._call(["INFO", "commandstats"], ["INFO", "cpu"])
        commands: Dict[str, int] = {}
        usec: Dict[str, int] = {}
        for line in stats.splitlines():
            if not line.startswith("cmdstat_"):
                continue
            name, fields = line[len("cmdstat_"):].split(":", 1)
            if name.split("|")[0] in ("info", "auth", "config", "hello", "client", "ping"):
                continue
            for f in fields.split(","):
                if f.startswith("calls="):
                    commands[name] = int(f[6:])
                elif f.startswith("usec="):
                    usec[name] = int(f[5:])
        secs = 0.0
        for line in cpu.splitlines():
            for key in ("used_cpu_sys:", "used_cpu_user:"):
                if line.strip().startswith(key):
                    secs += float(line.strip()[len(key):])
        return {"commands": commands, "usec": usec, "cpu_secs": secs}

    def persistence(self) -> str:
        pers, server = self._call(["INFO", "persistence"], ["INFO", "server"])

        def field(text: str, key: str) -> str:
            for line in text.splitlines():
                if line.strip().startswith(key):
                    return line.strip()[len(key):]
            return ""

        aof = field(pers, "aof_enabled:")
        return f"Redis {field(server, 'redis_version:')}, appendonly={'yes' if aof == '1' else 'no'}"


# ------------------------------------------------------------------------------- targets ---


class Target:
    """Sessions of one store, by index."""

    name = ""
    backend = ""
    ttl: Optional[int] = None
    refresh_on_read = False
    durability = ""
    encryption = "off"

    async def setup(self, names: List[str]) -> None:
        raise NotImplementedError

    async def get_items(self, i: int, limit: int) -> int:
        return len(await self.sessions[i].get_items(limit))

    async def add_items(self, i: int, items: List[Dict[str, Any]]) -> None:
        await self.sessions[i].add_items(items)

    async def pop_item(self, i: int) -> bool:
        return (await self.sessions[i].pop_item()) is not None

    async def count_items(self, i: int) -> int:
        return len(await self.sessions[i].get_items())

    async def clear(self, i: int) -> None:
        await self.sessions[i].clear_session()

    async def close(self) -> None:
        pass


def url_option(url: str, name: str) -> Optional[str]:
    from urllib.parse import parse_qs, urlparse

    values = parse_qs(urlparse(url).query).get(name)
    return values[0] if values else None


class Ours(Target):
    name = "py-ours"

    def __init__(self, url: str, probe: Optional[RedisProbe]) -> None:
        import openai_agents_session as oas

        self.oas = oas
        self.url = url
        self.backend = url.split("://", 1)[0].replace("rediss", "redis").split("+")[0]
        ttl = url_option(url, "ttl")
        self.ttl = int(ttl) if ttl else None
        self.refresh_on_read = self.ttl is not None and (url_option(url, "refresh_on_read") or "true") == "true"
        if self.backend == "sqlite":
            self.durability = f"WAL, synchronous={(url_option(url, 'synchronous') or 'normal').lower()}"
        elif self.backend == "redis":
            self.durability = probe.persistence() if probe else "the server's (not read)"
        else:
            self.durability = "DynamoDB (acknowledged writes)"

    async def setup(self, names: List[str]) -> None:
        self.sessions = [self.oas.open_session(self.url, n) for n in names]


class SeedRedis(Target):
    name = "py-seed-redis"
    backend = "redis"

    def __init__(self, url: str, ttl: int, prefix: str, probe: Optional[RedisProbe]) -> None:
        import redis.asyncio as aioredis
        from openai_agents_session.redis import RedisSession

        self.cls = RedisSession
        self.client = aioredis.Redis.from_url(url.split("?")[0])
        self.ttl, self.prefix = ttl, prefix + "_seed"
        self.refresh_on_read = True
        self.durability = probe.persistence() if probe else ""

    async def setup(self, names: List[str]) -> None:
        self.sessions = [self.cls(n, self.client, key_prefix=self.prefix, ttl=self.ttl) for n in names]

    async def close(self) -> None:
        await self.client.aclose()


class OfficialRedis(Target):
    name = "py-official-redis"
    backend = "redis"

    def __init__(self, url: str, ttl: int, prefix: str, probe: Optional[RedisProbe]) -> None:
        import redis.asyncio as aioredis
        from agents.extensions.memory.redis_session import RedisSession

        self.cls = RedisSession
        self.client = aioredis.Redis.from_url(url.split("?")[0])
        self.ttl, self.prefix = ttl, prefix + "_official"
        self.refresh_on_read = False  # it refreshes on writes only
        self.durability = probe.persistence() if probe else ""

    async def setup(self, names: List[str]) -> None:
        self.sessions = [self.cls(n, redis_client=self.client, key_prefix=self.prefix, ttl=self.ttl) for n in names]

    async def close(self) -> None:
        await self.client.aclose()


class OfficialSqlite(Target):
    name = "py-official-sqlite"
    backend = "sqlite"
    durability = "WAL, synchronous=full (SQLite's default; the session sets none)"

    def __init__(self, url: str) -> None:
        from agents import SQLiteSession

        self.cls = SQLiteSession
        self.path = url[len("sqlite://"):].split("?")[0]

    async def setup(self, names: List[str]) -> None:
        self.sessions = [self.cls(n, self.path) for n in names]

    async def close(self) -> None:
        for s in self.sessions:
            try:
                s.close()
            except Exception:
                pass


class OfficialSqlalchemy(Target):
    name = "py-official-sqlalchemy"
    backend = "postgres"
    durability = "the server's (the session sets none)"

    def __init__(self, url: str, pool_size: int) -> None:
        from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession
        from sqlalchemy.ext.asyncio import create_async_engine

        self.cls = SQLAlchemySession
        self.engine = create_async_engine(url, pool_size=pool_size, max_overflow=0)

    async def setup(self, names: List[str]) -> None:
        # The tables once (create_tables on the first session), as an application at startup.
        tables = {"sessions_table": "oasbench_sqla_sessions", "messages_table": "oasbench_sqla_messages"}
        self.sessions = [self.cls(n, engine=self.engine, create_tables=(i == 0), **tables) for i, n in enumerate(names)]
        await self.sessions[0].get_items(1)

    async def close(self) -> None:
        await self.engine.dispose()


class SeedDynamo(Target):
    name = "py-seed-dynamodb"
    backend = "dynamodb"
    durability = "DynamoDB (acknowledged writes)"

    def __init__(self, url: str, ttl: int) -> None:
        # dynamodb://TABLE?endpoint=...&region=...
        self.table = url[len("dynamodb://"):].split("?")[0]
        self.endpoint = url_option(url, "endpoint")
        self.region = url_option(url, "region") or "us-east-1"
        self.ttl = ttl

    async def setup(self, names: List[str]) -> None:
        from aiobotocore.session import get_session
        from openai_agents_session.dynamodb import DynamoDBSession, create_table_if_not_exists

        self._ctx = get_session().create_client(
            "dynamodb",
            region_name=self.region,
            endpoint_url=self.endpoint,
            aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "dummy"),
            aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "dummy"),
        )
        self.client = await self._ctx.__aenter__()
        await create_table_if_not_exists(self.client, self.table)
        self.sessions = [DynamoDBSession(n, self.client, self.table, ttl_seconds=self.ttl) for n in names]

    async def close(self) -> None:
        await self._ctx.__aexit__(None, None, None)


def make_target(req: Dict[str, Any], probe: Optional[RedisProbe]) -> Target:
    t, url, ttl, prefix = req["target"], req["url"], int(req.get("ttl", 3600)), req.get("key_prefix", "oasbench")
    if t == "py-ours":
        return Ours(url, probe)
    if t == "py-seed-redis":
        return SeedRedis(url, ttl, prefix, probe)
    if t == "py-seed-dynamodb":
        return SeedDynamo(url, ttl)
    if t == "py-official-redis":
        return OfficialRedis(url, ttl, prefix, probe)
    if t == "py-official-sqlite":
        return OfficialSqlite(url)
    if t == "py-official-sqlalchemy":
        return OfficialSqlalchemy(url, int(req.get("pool_size", 16)))
    raise ValueError(f"unknown target {t!r}")


# -------------------------------------------------------------------------------- engine ---


class Lat:
    def __init__(self) -> None:
        self.ns: List[int] = []
        self.errors = 0

    def pct(self, p: float) -> float:
        if not self.ns:
            return 0.0
        import math

        rank = min(max(1, math.ceil(len(self.ns) * p)), len(self.ns))
        return self.ns[rank - 1] / 1000.0

    def json(self) -> Dict[str, Any]:
        mean = sum(self.ns) / len(self.ns) / 1000.0 if self.ns else 0.0
        return {
            "count": len(self.ns),
            "errors": self.errors,
            "p50_us": round(self.pct(0.5), 1),
            "p99_us": round(self.pct(0.99), 1),
            "p999_us": round(self.pct(0.999), 1),
            "mean_us": round(mean, 1),
            "requests_per_op": None,
        }


def client_sessions(k: int, c: int, s: int) -> List[int]:
    return list(range(k, s, c)) if s >= c else [k % s]


def vm_hwm_kib() -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_hwm() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


RUNS = 0
PREFILL_BATCH = 500  # as the Rust engine's


async def run(req: Dict[str, Any]) -> Dict[str, Any]:
    global RUNS
    RUNS += 1
    cfg = {
        "concurrency": max(1, int(req.get("concurrency", 1))),
        "duration": float(req.get("duration", 10.0)),
        "turns": req.get("turns"),
        "warmup": float(req.get("warmup", 1.0)),
        "prefill": int(req.get("prefill", 0)),
        "items_per_turn": int(req.get("items_per_turn", 2)),
        "turn_item_bytes": list(req.get("turn_item_bytes", [205, 986])),
        "pop_every": req.get("pop_every"),
        "limit": int(req.get("limit", 20)),
    }
    C = cfg["concurrency"]
    S = int(req.get("sessions") or max(C, 16))
    url = req["url"]
    probe = RedisProbe(url) if url.startswith("redis://") else None
    reset_hwm()
    target = make_target(req, probe)
    names = [f"bench:{os.getpid()}:{RUNS}:{i}" for i in range(S)]
    await target.setup(names)
    added = [0] * S
    popped = [0] * S

    t_prefill = time.perf_counter()
    if cfg["prefill"] > 0:

        async def prefill(k: int) -> None:
            for s in client_sessions(k, C, S):
                written = 0
                while written < cfg["prefill"]:
                    n = min(PREFILL_BATCH, cfg["prefill"] - written)
                    items = [
                        turn_item(i % cfg["items_per_turn"], f"p{s}i{i}", item_size(cfg["turn_item_bytes"], i % cfg["items_per_turn"]))
                        for i in range(written, written + n)
                    ]
                    await target.add_items(s, items)
                    added[s] += n
                    written += n

        await asyncio.gather(*(prefill(k) for k in range(min(C, S))))
    prefill_s = time.perf_counter() - t_prefill

    state = {"phase": 0, "claimed": 0, "finished": 0}
    done = asyncio.Event()
    get, add, pop, turn = Lat(), Lat(), Lat(), Lat()
    first_error: List[str] = []
    max_turns = cfg["turns"]
    pop_every = cfg["pop_every"]
    limit = cfg["limit"]
    clock = time.perf_counter_ns

    async def client(k: int) -> None:
        mine = client_sessions(k, C, S)
        n = 0
        while True:
            phase = state["phase"]
            if phase == 2:
                return
            measured = phase == 1
            if measured and max_turns is not None:
                if state["claimed"] >= max_turns:
                    return
                state["claimed"] += 1
            s = mine[n % len(mine)]
            n += 1
            items = turn_items(cfg, f"c{k}t{n}")
            t0 = clock()
            got_err = put_err = None
            try:
                await target.get_items(s, limit)
            except Exception as e:  # noqa: BLE001 - reported
                got_err = e
            t1 = clock()
            try:
                await target.add_items(s, items)
                added[s] += len(items)
            except Exception as e:  # noqa: BLE001
                put_err = e
            t2 = clock()
            pop_res = None
            if pop_every and n % pop_every == 0:
                try:
                    if await target.pop_item(s):
                        popped[s] += 1
                    pop_res = (None, clock() - t2)
                except Exception as e:  # noqa: BLE001
                    pop_res = (e, 0)
            if measured and state["phase"] == 1:
                for lat, err, d in ((get, got_err, t1 - t0), (add, put_err, t2 - t1)):
                    if err is None:
                        lat.ns.append(d)
                    else:
                        lat.errors += 1
                        if not first_error:
                            first_error.append(f"{type(err).__name__}: {err}")
                if got_err is None and put_err is None:
                    turn.ns.append(t2 - t0)
                if pop_res is not None:
                    if pop_res[0] is None:
                        pop.ns.append(pop_res[1])
                    else:
                        pop.errors += 1
                        if not first_error:
                            first_error.append(f"{type(pop_res[0]).__name__}: {pop_res[0]}")
            if measured and max_turns is not None:
                state["finished"] += 1
                if state["finished"] == max_turns:
                    done.set()

    tasks = [asyncio.ensure_future(client(k)) for k in range(C)]
    await asyncio.sleep(max(0.0, cfg["warmup"]))
    before = probe.snapshot() if probe else None
    cpu_before = time.process_time()
    start = time.perf_counter()
    state["phase"] = 1
    if max_turns is not None:
        await done.wait()
    else:
        await asyncio.sleep(cfg["duration"])
    secs = max(time.perf_counter() - start, 1e-9)
    client_cpu = time.process_time() - cpu_before
    after = probe.snapshot() if probe else None
    state["phase"] = 2
    await asyncio.gather(*tasks)
    for lat in (get, add, pop, turn):
        lat.ns.sort()

    lost = extra = 0
    check_error = None
    for s in range(S):
        try:
            diff = added[s] - popped[s] - await target.count_items(s)
            if diff > 0:
                lost += diff
            else:
                extra -= diff
        except Exception as e:  # noqa: BLE001
            check_error = check_error or f"counting: {type(e).__name__}: {e}"
    for s in range(S):
        try:
            await target.clear(s)
        except Exception as e:  # noqa: BLE001
            check_error = check_error or f"clearing: {type(e).__name__}: {e}"
    await target.close()

    turns = len(turn.ns)
    server = None
    if before and after:
        by = {}
        total = 0
        for name, calls in after["commands"].items():
            d = calls - before["commands"].get(name, 0)
            if d > 0:
                total += d
                by[name] = round(d / max(turns, 1), 2)
        cpu = after["cpu_secs"] - before["cpu_secs"]
        usec_by = {}
        for name, us in after["usec"].items():
            d = us - before["usec"].get(name, 0)
            if d > 0:
                usec_by[name] = round(d / max(turns, 1), 1)
        server = {
            "commands_per_turn": round(total / max(turns, 1), 2),
            "by_command_per_turn": by,
            "usec_per_turn_by_command": usec_by,
            "cpu_us_per_turn": round(cpu * 1e6 / max(turns, 1), 1),
            "cpu_percent": round(cpu / secs * 100, 1),
        }
    from urllib.parse import urlparse

    u = urlparse(url)
    shown = url.replace(f":{u.password}@", ":***@") if u.password else url
    return {
        "workload": "turns",
        "target": target.name,
        "backend": target.backend,
        "url": shown,
        "concurrency": C,
        "sessions": S,
        "prefill": cfg["prefill"],
        "limit": limit,
        "items_per_turn": cfg["items_per_turn"],
        "turn_item_bytes": cfg["turn_item_bytes"],
        "pop_every": pop_every,
        "warmup_s": cfg["warmup"],
        "measured_s": round(secs, 3),
        "prefill_s": round(prefill_s, 2),
        "turns": turns,
        "turns_per_sec": round(turns / secs, 1),
        "ops_per_sec": round((len(get.ns) + len(add.ns) + len(pop.ns)) / secs, 1),
        "ops": {"get_items": get.json(), "add_items": add.json(), "pop_item": pop.json(), "turn": turn.json()},
        "requests_per_turn": None,
        "redis_server": server,
        "peak_rss_kib": vm_hwm_kib(),
        "client_cpu_us_per_turn": round(client_cpu * 1e6 / max(len(turn.ns), 1), 1),
        "settings": {
            "ttl_s": target.ttl,
            "refresh_on_read": target.refresh_on_read,
            "durability": target.durability,
            "encryption": target.encryption,
        },
        "items_lost": lost,
        "items_extra": extra,
        "errors": get.errors + add.errors + pop.errors,
        "first_error": first_error[0] if first_error else check_error,
        "python": sys.version.split()[0],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", action="store_true", help="serve JSON requests from stdin, one per line")
    ap.add_argument("--target")
    ap.add_argument("--url")
    ap.add_argument("--ttl", type=int, default=3600)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--sessions", type=int)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--turns", type=int)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--prefill", type=int, default=0)
    ap.add_argument("--items-per-turn", type=int, default=2)
    ap.add_argument("--turn-item-bytes", default="205,986")
    ap.add_argument("--pop-every", type=int)
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.worker:
        print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                report = asyncio.run(run(json.loads(line)))
            except Exception as e:  # noqa: BLE001 - the harness records it
                report = {"fatal": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
            print(json.dumps(report), flush=True)
        return 0
    if not a.target or not a.url:
        ap.error("--target and --url are required (or --worker)")
    req = {
        "target": a.target,
        "url": a.url,
        "ttl": a.ttl,
        "concurrency": a.concurrency,
        "sessions": a.sessions,
        "duration": a.duration,
        "turns": a.turns,
        "warmup": a.warmup,
        "prefill": a.prefill,
        "items_per_turn": a.items_per_turn,
        "turn_item_bytes": [int(x) for x in a.turn_item_bytes.split(",")],
        "pop_every": a.pop_every,
        "limit": a.limit,
    }
    report = asyncio.run(run(req))
    if a.json:
        print(json.dumps(report))
    else:
        print(json.dumps(report, indent=2))
    return 0 if report["errors"] == 0 and report["items_lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
