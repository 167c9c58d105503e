"""A sample using the API, type-checked with mypy by test_types.py."""

import asyncio
from typing import Any, List, Optional

from openai_agents_session import (
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


if __name__ == "__main__":
    asyncio.run(main())
