//! tokio-postgres and pool errors mapped to this crate's [`Error`].

use std::error::Error as _;

use tokio_postgres::error::SqlState;

use crate::error::{Error, ErrorKind, FailureCause, Operation};

/// What a failed call tells about its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// The server answered with an error: the statement (its whole transaction) did not apply.
    Refused,
    /// The connection failed before or while the request was on it: it may have been applied.
    Lost,
}

pub(super) fn classify(err: &tokio_postgres::Error) -> Failure {
    if err.as_db_error().is_some() {
        Failure::Refused
    } else {
        Failure::Lost
    }
}

/// The message of a server error, with libpq's wording of the common ones.
fn db_message(db: &tokio_postgres::error::DbError) -> (ErrorKind, String) {
    let code = db.code();
    let text = db.message().to_owned();
    if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    {
        (
            ErrorKind::Config,
            format!("PostgreSQL refused the credentials ({text}); check the user and password"),
        )
    } else if *code == SqlState::INVALID_CATALOG_NAME {
        (ErrorKind::Config, format!("PostgreSQL: {text}"))
    } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        (
            ErrorKind::Config,
            format!("PostgreSQL refused the statement for this role: {text}"),
        )
    } else if *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::TOO_MANY_CONNECTIONS
    {
        (
            ErrorKind::Connection,
            format!("PostgreSQL is not available ({text}); nothing was applied"),
        )
    } else if *code == SqlState::T_R_DEADLOCK_DETECTED
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::LOCK_NOT_AVAILABLE
        || *code == SqlState::QUERY_CANCELED
    {
        (
            ErrorKind::Timeout,
            format!("PostgreSQL rolled the statement back ({text}); nothing was applied"),
        )
    } else if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::UNDEFINED_FUNCTION {
        (
            ErrorKind::Config,
            format!(
                "the store's schema is missing or incomplete ({text}); run `agent-session init`"
            ),
        )
    } else {
        (ErrorKind::Backend, format!("PostgreSQL failed: {text}"))
    }
}

/// Maps an error of a call of `op`. A write lost on its connection may have been applied:
/// that is `OutcomeUnknown`, never retried.
pub(super) fn map_pg(op: Operation, err: tokio_postgres::Error) -> Error {
    if let Some(db) = err.as_db_error() {
        let (kind, message) = db_message(db);
        return Error::new(kind, op, message);
    }
    if op.is_write() {
        Error::new(
            ErrorKind::OutcomeUnknown,
            op,
            "the connection to PostgreSQL failed during the write; it may or may not have been applied",
        )
        .with_cause(FailureCause::Connection)
        .with_source(err)
    } else {
        Error::new(
            ErrorKind::Connection,
            op,
            "the connection to PostgreSQL failed",
        )
        .with_source(err)
    }
}

/// Maps an error of establishing a connection: nothing was sent.
pub(super) fn map_connect(op: Operation, err: &tokio_postgres::Error, target: &str) -> Error {
    if let Some(db) = err.as_db_error() {
        let (kind, message) = db_message(db);
        return Error::new(kind, op, message);
    }
    // The innermost cause says what happened (refused, TLS, DNS); tokio-postgres's own
    // Display is generic.
    let mut cause = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    let tls =
        cause.contains("certificate") || cause.contains("Certificate") || cause.contains("TLS");
    if tls {
        Error::new(
            ErrorKind::Config,
            op,
            format!(
                "TLS with PostgreSQL at {target} failed ({cause}); check sslmode and sslrootcert"
            ),
        )
    } else if cause.contains("server does not support TLS") {
        Error::new(
            ErrorKind::Config,
            op,
            format!("PostgreSQL at {target}: {cause}; use sslmode=disable or prefer"),
        )
    } else if cause.contains("timed out") || cause.contains("timeout") {
        Error::new(
            ErrorKind::Connection,
            op,
            format!("cannot connect to PostgreSQL at {target} within connect_timeout ({cause}); nothing was sent"),
        )
        .with_cause(FailureCause::Timeout)
    } else {
        Error::new(
            ErrorKind::Connection,
            op,
            format!("cannot connect to PostgreSQL at {target} ({cause}); nothing was sent"),
        )
    }
}

/// A function answered a status no version of it returns.
pub(super) fn unexpected(op: Operation, function: &str, status: &str) -> Error {
    let shown: String = status.chars().take(100).collect();
    Error::new(
        ErrorKind::Backend,
        op,
        format!("unexpected status {shown:?} from the {function} function"),
    )
}
