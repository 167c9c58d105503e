"""Two turns of a conversation through the real ``agents.Runner``, remembered by a session.

Runs offline: without ``OPENAI_API_KEY`` the agent uses a small scripted model that answers from
the conversation history it is given, so the second turn shows that the first was remembered.
With ``REDIS_URL`` set the session lives in Redis, otherwise in a SQLite file.

    python crates/openai-agents-session-py/examples/quickstart.py
    REDIS_URL=redis://localhost:6379 python crates/openai-agents-session-py/examples/quickstart.py
"""

import asyncio
import os
import tempfile

from agents import Agent, ModelResponse, Runner, Usage
from agents.models.interface import Model
from openai.types.responses import ResponseOutputMessage, ResponseOutputText

from openai_agents_session import RedisSession, SQLiteSession


class OfflineModel(Model):
    """Answers with what the user said first: enough to see the history arrive."""

    async def get_response(self, system_instructions, input, model_settings, tools, output_schema, handoffs, tracing, *, previous_response_id=None, conversation_id=None, prompt=None):
        said = [i["content"] for i in input if isinstance(i, dict) and i.get("role") == "user"]
        text = f"You said: {said[0]}" if len(said) > 1 else "Hello! How can I help?"
        message = ResponseOutputMessage(id="msg_offline", content=[ResponseOutputText(text=text, type="output_text", annotations=[])], role="assistant", status="completed", type="message")
        return ModelResponse(output=[message], usage=Usage(), response_id=None)

    async def stream_response(self, *args, **kwargs):  # pragma: no cover - not used here
        raise NotImplementedError
        yield


async def main() -> None:
    if os.environ.get("REDIS_URL"):
        import redis.asyncio as redis

        client = redis.from_url(os.environ["REDIS_URL"])
        session = RedisSession(session_id="user-123", redis_client=client, ttl=3600)
    else:
        session = SQLiteSession("user-123", os.path.join(tempfile.mkdtemp(), "sessions.db"))
    await session.clear_session()

    model = None if os.environ.get("OPENAI_API_KEY") else OfflineModel()
    agent = Agent(name="Assistant", instructions="You are a helpful assistant.", model=model)

    result = await Runner.run(agent, "Hello!", session=session)
    print(result.final_output)

    # Continue the conversation (history is preserved)
    result = await Runner.run(agent, "What did I just say?", session=session)
    print(result.final_output)
    print(f"{len(await session.get_items())} items in {session!r}")


if __name__ == "__main__":
    asyncio.run(main())
