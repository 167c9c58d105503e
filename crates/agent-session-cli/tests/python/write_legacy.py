"""Writes conversations with the real Python session stores whose data we migrate, then prints
what each of them reads back (the expected result of `agent-session copy`), as JSON.

Run with the virtualenv of scripts/servers.sh (OAS_TEST_LEGACY_PYTHON):
  python write_legacy.py --tag T --redis-url URL --dynamodb-endpoint URL --dynamodb-table T --sqlite-path P
"""

import argparse
import asyncio
import json

ITEMS = [
    {"content": "What's the weather in Paris? \u00e9\u4e16\U0001F600", "role": "user"},
    {"id": "rs_1", "summary": [{"text": "Call get_weather.", "type": "summary_text"}], "type": "reasoning"},
    {"arguments": "{\"city\":\"Paris\"}", "call_id": "call_1", "name": "get_weather", "type": "function_call", "id": "fc_1", "status": "completed"},
    {"call_id": "call_1", "output": "{\"temperature\": 18.5}", "type": "function_call_output"},
    {"id": "msg_1", "content": [{"annotations": [], "text": "18.5\u00b0C in Paris.", "type": "output_text", "logprobs": []}], "role": "assistant", "status": "completed", "type": "message"},
    {"n": 12345678901234567890, "f": 1.5, "nested": {"z": 1, "a": [True, None]}},
]


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tag", required=True)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--dynamodb-endpoint", required=True)
    p.add_argument("--dynamodb-table", required=True)
    p.add_argument("--sqlite-path", required=True)
    a = p.parse_args()
    out = {}

    import redis.asyncio as aioredis

    # The seed: one Redis list per session.
    from openai_agents_session import RedisSession as SeedRedis

    client = aioredis.from_url(a.redis_url)
    sid = f"seed-redis-{a.tag}"
    s = SeedRedis(session_id=sid, redis_client=client)
    await s.clear_session()
    await s.add_items(ITEMS[:2])
    await s.add_items(ITEMS[2:])
    out["seed_redis"] = {"session_id": sid, "items": await s.get_items()}

    # The official Agents SDK RedisSession: a hash and a :messages list.
    from agents.extensions.memory.redis_session import RedisSession as SdkRedis

    sid = f"sdk-redis-{a.tag}"
    s = SdkRedis(sid, redis_client=client)
    await s.clear_session()
    await s.add_items(ITEMS)
    out["sdk_redis"] = {"session_id": sid, "items": await s.get_items()}
    await client.aclose()

    # The official SQLiteSession.
    from agents import SQLiteSession

    sid = f"sdk-sqlite-{a.tag}"
    s = SQLiteSession(sid, a.sqlite_path)
    await s.clear_session()
    await s.add_items(ITEMS)
    out["sdk_sqlite"] = {"session_id": sid, "items": await s.get_items()}
    s.close()

    # The seed's DynamoDBSession: the whole history in one item.
    from aiobotocore.session import get_session
    from openai_agents_session import DynamoDBSession as SeedDynamo
    from openai_agents_session.dynamodb import create_table_if_not_exists

    session = get_session()
    async with session.create_client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url=a.dynamodb_endpoint,
        aws_access_key_id="dummy",
        aws_secret_access_key="dummy",
    ) as ddb:
        await create_table_if_not_exists(ddb, a.dynamodb_table)
        sid = f"seed-dynamodb-{a.tag}"
        s = SeedDynamo(session_id=sid, dynamodb_client=ddb, table_name=a.dynamodb_table)
        await s.clear_session()
        await s.add_items(ITEMS[:3])
        await s.add_items(ITEMS[3:])
        out["seed_dynamodb"] = {"session_id": sid, "items": await s.get_items()}

    print(json.dumps(out))


asyncio.run(main())
