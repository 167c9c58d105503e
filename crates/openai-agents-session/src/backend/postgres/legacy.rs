//! Read-only foreign layouts: the Agents SDK's `SQLAlchemySession` tables (not done yet).

use super::conn::Conn;
use super::*;

pub(super) async fn open(
    _conn: Conn,
    _schema: &str,
    _sessions_table: &str,
    _messages_table: &str,
    _options: StoreOptions,
) -> Result<Store> {
    Err(Error::new(
        ErrorKind::Config,
        Operation::Open,
        "layout=openai-agents is not available for PostgreSQL in this build yet",
    ))
}
