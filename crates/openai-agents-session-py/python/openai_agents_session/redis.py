"""The seed's module path: ``from openai_agents_session.redis import RedisSession`` works."""

from . import RedisSession

__all__ = ["RedisSession"]
