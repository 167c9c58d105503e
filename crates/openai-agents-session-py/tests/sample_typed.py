"""A sample using the API, type-checked with mypy by test_types.py."""

import asyncio
from typing import Any, List, Optional

from openai_agents_session import RedisSession, SQLiteSession, SessionError, open_session


async def main() -> None:
    session = SQLiteSession("user-1", "sessions.db", ttl=3600)
    await session.add_items([{"role": "user", "content": "hi"}])
    items: List[Any] = await session.get_items(limit=10)
    last: Optional[Any] = await session.pop_item()
    other = open_session("memory://", "x")
    redis_session = RedisSession.from_url("user-2", url="redis://localhost:6379/0", ttl=60)
    try:
        await redis_session.ping()
    except SessionError as err:
        print(err, items, last, other.session_id)


if __name__ == "__main__":
    asyncio.run(main())
