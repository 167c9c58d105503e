//! Mapping redis-rs errors and unexpected script replies to this crate's [`Error`].

use redis::{RedisError, Value};

use crate::error::{Error, ErrorKind, FailureCause, Operation};

use super::conn;
use super::layout::LAYOUT_VERSION;

pub(super) fn config_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Config, Operation::Open, message)
}

/// Maps a redis-rs error. A write whose answer was lost may have been applied: that is
/// `OutcomeUnknown`, never retried blindly. A refused connection means nothing was sent.
pub(super) fn map_redis(op: Operation, err: RedisError) -> Error {
    use redis::{ErrorKind as K, ServerErrorKind as S};
    let lost = match err.code() {
        Some(conn::LOST_TIMEOUT) => Some(FailureCause::Timeout),
        Some(conn::LOST_CONNECTION) => Some(FailureCause::Connection),
        _ if err.is_connection_refusal() => None,
        _ if err.is_timeout() => Some(FailureCause::Timeout),
        _ if err.is_connection_dropped() || err.is_io_error() => Some(FailureCause::Connection),
        _ => None,
    };
    let (kind, message) = if err.is_connection_refusal() {
        (
            ErrorKind::Connection,
            "cannot connect to Redis (connection refused); nothing was sent".to_owned(),
        )
    } else if let Some(cause) = lost {
        match (cause, op.is_write()) {
            (FailureCause::Timeout, true) => (
                ErrorKind::OutcomeUnknown,
                "Redis did not answer in time; the write may or may not have been applied"
                    .to_owned(),
            ),
            (FailureCause::Timeout, false) => (
                ErrorKind::Timeout,
                "Redis did not answer within response_timeout".to_owned(),
            ),
            (_, true) => (
                ErrorKind::OutcomeUnknown,
                "the connection to Redis failed during the write; it may or may not have been applied".to_owned(),
            ),
            (_, false) => (
                ErrorKind::Connection,
                "the connection to Redis failed".to_owned(),
            ),
        }
    } else {
        match (err.kind(), err.code()) {
            (K::AuthenticationFailed, _) | (_, Some("WRONGPASS")) => (
                ErrorKind::Config,
                "Redis refused the credentials (check the user name and password in the URL)".to_owned(),
            ),
            (K::Server(S::NoPerm), _) | (_, Some("NOPERM")) | (_, Some("NOAUTH")) => (
                ErrorKind::Config,
                "Redis refused the command for this user (authentication or ACL permissions)".to_owned(),
            ),
            (_, Some("WRONGTYPE")) => (
                ErrorKind::Backend,
                "a key of this session holds another type of value; nothing was changed".to_owned(),
            ),
            (_, Some("OAS_VERSION")) => (
                ErrorKind::UnsupportedFormat,
                format!("this build reads layout version {LAYOUT_VERSION}; upgrade openai-agents-session"),
            ),
            (K::Server(S::ClusterDown | S::MasterDown | S::TryAgain | S::BusyLoading), _) => (
                ErrorKind::Connection,
                "the Redis node for this key is not available; nothing was applied".to_owned(),
            ),
            (K::InvalidClientConfig, _) => (ErrorKind::Config, "invalid Redis client configuration".to_owned()),
            _ => (ErrorKind::Backend, "Redis failed".to_owned()),
        }
    };
    let error = Error::new(kind, op, message).with_source(err);
    match lost {
        Some(cause) if kind == ErrorKind::OutcomeUnknown => error.with_cause(cause),
        _ => error,
    }
}

/// A script answered something no version of it sends: shown (shortened) in the message.
pub(super) fn unexpected(op: Operation, script: &str, reply: &[Value]) -> Error {
    let shown: String = format!("{reply:?}").chars().take(200).collect();
    Error::new(
        ErrorKind::Backend,
        op,
        format!("unexpected reply from the {script} script: {shown}"),
    )
}
