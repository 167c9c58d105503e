"""The seed's module path: ``from openai_agents_session.dynamodb import DynamoDBSession,
create_table_if_not_exists`` works."""

from . import DynamoDBSession, create_table_if_not_exists

__all__ = ["DynamoDBSession", "create_table_if_not_exists"]
