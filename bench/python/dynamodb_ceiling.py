"""DynamoDB Local's request ceilings for the shapes of a turn's requests, at C concurrent clients.

Run with the peers' virtualenv (aiobotocore) against a running DynamoDB Local:

    target/bench/venv-peers/bin/python bench/python/dynamodb_ceiling.py http://127.0.0.1:PORT [C] [SECONDS]

It measures, each for SECONDS on a table of its own, requests/s of:
  * transact - one TransactWriteItems of a conditional metadata Update and two record Puts
               (205 B and 986 B): the shape of our add_items;
  * put      - one PutItem of a 1.2 KB item: the seed's add (after its GetItem);
  * get      - one GetItem of that item: the seed's read, and the first half of its add;
  * query    - one Query of the newest 20 items of a partition: the shape of our get_items.
"""
import asyncio
import sys
import time

from aiobotocore.session import get_session

ENDPOINT = sys.argv[1]
C = int(sys.argv[2]) if len(sys.argv) > 2 else 64
SECONDS = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0
USER, ASSISTANT = "u" * 205, "a" * 986


async def main() -> None:
    session = get_session()
    async with session.create_client(
        "dynamodb", region_name="us-east-1", endpoint_url=ENDPOINT,
        aws_access_key_id="x", aws_secret_access_key="x",
    ) as ddb:
        table = f"ceiling{int(time.time())}"
        await ddb.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        )
        for c in range(C):
            await ddb.put_item(TableName=table, Item={"pk": {"S": f"s{c}"}, "sk": {"N": "0"}, "next": {"N": "1"}, "body": {"S": USER + ASSISTANT}})
            for i in range(1, 21):
                await ddb.put_item(TableName=table, Item={"pk": {"S": f"s{c}"}, "sk": {"N": str(i)}, "r": {"S": USER}})

        async def transact(c: int, n: int) -> None:
            base = 1000 + n * 2
            await ddb.transact_write_items(TransactItems=[
                {"Update": {"TableName": table, "Key": {"pk": {"S": f"s{c}"}, "sk": {"N": "0"}},
                            "UpdateExpression": "SET #n = #n + :k", "ConditionExpression": "attribute_exists(#n)",
                            "ExpressionAttributeNames": {"#n": "next"}, "ExpressionAttributeValues": {":k": {"N": "2"}}}},
                {"Put": {"TableName": table, "Item": {"pk": {"S": f"s{c}"}, "sk": {"N": str(base)}, "r": {"S": USER}}}},
                {"Put": {"TableName": table, "Item": {"pk": {"S": f"s{c}"}, "sk": {"N": str(base + 1)}, "r": {"S": ASSISTANT}}}},
            ])

        async def put(c: int, n: int) -> None:
            await ddb.put_item(TableName=table, Item={"pk": {"S": f"s{c}"}, "sk": {"N": "0"}, "next": {"N": "1"}, "body": {"S": USER + ASSISTANT}})

        async def get(c: int, n: int) -> None:
            await ddb.get_item(TableName=table, Key={"pk": {"S": f"s{c}"}, "sk": {"N": "0"}})

        async def query(c: int, n: int) -> None:
            await ddb.query(TableName=table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": f"s{c}"}},
                            ScanIndexForward=False, Limit=20)

        for name, op in [("transact", transact), ("put", put), ("get", get), ("query", query)]:
            done = 0
            stop = time.perf_counter() + SECONDS

            async def client(c: int) -> None:
                nonlocal done
                n = 0
                while time.perf_counter() < stop:
                    await op(c, n)
                    n += 1
                    done += 1

            t = time.perf_counter()
            await asyncio.gather(*(client(c) for c in range(C)))
            print(f"{name:9} C={C:<3} {done / (time.perf_counter() - t):8.1f} requests/s", flush=True)
        await ddb.delete_table(TableName=table)


asyncio.run(main())
