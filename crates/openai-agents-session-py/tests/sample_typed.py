"""A sample using the API, type-checked with mypy by test_types.py."""

import asyncio
import datetime
from typing import Any, Dict, List, Optional

from openai_agents_session import (
    FencedError,
    HistoryConflictError,
    LeaseHeldError,
    OutcomeUnknownError,
    RedisSession,
    SessionError,
    SessionTimeoutError,
    SQLiteSession,
    open_session,
)


async def main() -> None:
    session = SQLiteSession("user-1", "sessions.db", ttl=3600)
    await session.add_items([{"role": "user", "content": "hi"}])
    items: List[Any] = await session.get_items(limit=10)
    last: Optional[Any] = await session.pop_item()
    other = open_session("memory://", "x")
    redis_session = RedisSession.from_url("user-2", url="redis://localhost:6379/0", ttl=60)
    try:
        await redis_session.ping()
        await redis_session.add_items([{"role": "user", "content": "hello"}])
    except OutcomeUnknownError as err:
        outcome: str = err.kind
        print(outcome, isinstance(err, SessionTimeoutError))
    except SessionError as err:
        operation: Optional[str] = err.operation
        session_id: Optional[str] = err.session_id
        print(err, err.kind, operation, session_id, items, last, other.session_id)
    limit: Optional[int] = session.session_settings.limit
    print(limit)
    turn: Dict[str, Any] = {"type": "append_items", "items": [{"role": "user", "content": "again"}]}
    applied_now: bool = await session.apply_history_transaction("turn-7", turn)
    try:
        await session.apply_history_transaction(
            "rewind-7",
            {"type": "replace_suffix", "expected_suffix": turn["items"], "replacement": []},
        )
    except HistoryConflictError as err:
        reason: Optional[str] = err.reason
        conflict_kind: str = err.kind
        print(applied_now, reason, conflict_kind, isinstance(err, ValueError))
    try:
        async with session.lease("worker-1", ttl=30.0, wait=5.0) as fenced:
            same_class: SQLiteSession = fenced
            token: Optional[int] = fenced.fencing_token
            await same_class.add_items([{"role": "user", "content": "fenced"}])
            print(token)
    except LeaseHeldError as err:
        holder: Optional[str] = err.owner
        until: Optional[datetime.datetime] = err.expires_at
        print(holder, until)
    except FencedError as err:
        print(err.lease)
    info = await session.lease_info()
    if info is not None:
        expires: datetime.datetime = info["expires_at"]
        print(info["owner"], info["token"], expires)


if __name__ == "__main__":
    asyncio.run(main())
