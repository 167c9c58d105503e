//! SQLite errors mapped to the crate's `ErrorKind`.

use super::*;

/// Maps an SQLite error: busy/locked beyond the retries is a retryable timeout (the transaction
/// was rolled back, so nothing was applied); anything else is a backend error.
pub(super) fn map_sqlite(op: Operation, err: rusqlite::Error) -> Error {
    if is_busy(&err) {
        Error::new(
            ErrorKind::Timeout,
            op,
            "the database stayed locked by other writers; nothing was applied",
        )
        .with_source(err)
    } else {
        Error::new(ErrorKind::Backend, op, "SQLite failed").with_source(err)
    }
}

pub(super) fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}
