//! The one error type of the crate: a matchable [`ErrorKind`], the [`Operation`] that failed, the
//! session id it failed on, a message and the chained source.

use std::fmt;

/// A `Result` whose error defaults to this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The boxed source error carried by [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What kind of failure an [`Error`] is; match on it to decide what to do.
///
/// ```
/// use openai_agents_session::{Error, ErrorKind, Operation};
/// let err = Error::new(ErrorKind::Timeout, Operation::GetItems, "no answer in 10 s");
/// assert!(matches!(err.kind(), ErrorKind::Timeout));
/// assert!(err.is_retryable());
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The caller passed something the contract rejects (not a JSON object, a bad option value
    /// such as `ttl=0`, a write to a read-only layout...). Nothing was written.
    InvalidInput,
    /// The session id is empty or longer than [`MAX_SESSION_ID_BYTES`](crate::MAX_SESSION_ID_BYTES).
    InvalidSessionId,
    /// An item is larger than the store's `max_item_bytes`. Nothing was written.
    TooLarge,
    /// The session does not exist (or has expired).
    NotFound,
    /// The backend could not be reached; the request was not sent, so a retry is safe.
    Connection,
    /// A request timed out without being applied (a read, or a write the storage rolled back,
    /// such as an SQLite transaction that stayed locked); a retry is safe.
    Timeout,
    /// A write was sent but its outcome is unknown (timeout or connection lost after sending).
    /// The write may or may not have been applied; it is never retried automatically.
    OutcomeUnknown,
    /// A stored record cannot be read with this configuration (for example an encrypted record
    /// without its key). It was left in place.
    Unreadable,
    /// Stored data is in a newer format version than this build understands.
    UnsupportedFormat,
    /// Data in an older program's layout was found where this layout was expected; the message
    /// names the migration to run.
    LegacyData,
    /// The store URL is unusable: unknown scheme, unknown option, missing path, a feature this
    /// build lacks, failed authentication.
    Config,
    /// The backend failed in a way not covered above (a server error, a wrong key type, I/O).
    Backend,
}

impl ErrorKind {
    /// A short, stable, lower-case name for messages and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::InvalidSessionId => "invalid session id",
            ErrorKind::TooLarge => "too large",
            ErrorKind::NotFound => "not found",
            ErrorKind::Connection => "connection error",
            ErrorKind::Timeout => "timeout",
            ErrorKind::OutcomeUnknown => "outcome unknown",
            ErrorKind::Unreadable => "unreadable record",
            ErrorKind::UnsupportedFormat => "unsupported format version",
            ErrorKind::LegacyData => "legacy data",
            ErrorKind::Config => "configuration error",
            ErrorKind::Backend => "backend error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operation during which an [`Error`] happened.
///
/// ```
/// use openai_agents_session::Operation;
/// assert_eq!(Operation::AddItems.to_string(), "add_items");
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// Opening a store (parsing its URL, connecting, checking the layout).
    Open,
    /// [`Session::get_items`](crate::Session::get_items).
    GetItems,
    /// [`Session::add_items`](crate::Session::add_items).
    AddItems,
    /// [`Session::pop_item`](crate::Session::pop_item).
    PopItem,
    /// [`Session::clear_session`](crate::Session::clear_session).
    ClearSession,
    /// [`Store::session_info`](crate::Store::session_info).
    SessionInfo,
    /// [`Store::list_sessions`](crate::Store::list_sessions).
    ListSessions,
    /// [`Store::prune`](crate::Store::prune).
    Prune,
    /// Writing a raw record through the test hook ([`RawRecords`](crate::RawRecords)).
    RawWrite,
    /// Building an [`Item`](crate::Item) from JSON.
    ParseItem,
}

impl Operation {
    /// Every operation, in declaration order (for metrics tables).
    pub const ALL: [Operation; 10] = [
        Operation::Open,
        Operation::GetItems,
        Operation::AddItems,
        Operation::PopItem,
        Operation::ClearSession,
        Operation::SessionInfo,
        Operation::ListSessions,
        Operation::Prune,
        Operation::RawWrite,
        Operation::ParseItem,
    ];

    /// The snake_case name used in messages and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Open => "open",
            Operation::GetItems => "get_items",
            Operation::AddItems => "add_items",
            Operation::PopItem => "pop_item",
            Operation::ClearSession => "clear_session",
            Operation::SessionInfo => "session_info",
            Operation::ListSessions => "list_sessions",
            Operation::Prune => "prune",
            Operation::RawWrite => "raw_write",
            Operation::ParseItem => "parse_item",
        }
    }

    /// Whether the operation changes stored data (so a lost answer means an unknown outcome).
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Operation::AddItems
                | Operation::PopItem
                | Operation::ClearSession
                | Operation::Prune
                | Operation::RawWrite
        )
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of every fallible call in this crate.
///
/// Its message names the operation, the session id (when there is one), the kind and the cause:
/// `add_items on session "chat-1": too large: item 3 is 40000000 bytes, over max_item_bytes 33554432`.
/// Secrets (URL passwords) are never put into it.
///
/// ```
/// use openai_agents_session::{Error, ErrorKind, Operation};
/// let err = Error::new(ErrorKind::NotFound, Operation::SessionInfo, "no such session")
///     .with_session("chat-1");
/// assert_eq!(err.session_id(), Some("chat-1"));
/// assert_eq!(
///     err.to_string(),
///     "session_info on session \"chat-1\": not found: no such session"
/// );
/// ```
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    operation: Operation,
    session_id: Option<String>,
    message: String,
    source: Option<BoxError>,
}

impl Error {
    /// A new error of `kind` during `operation`.
    pub fn new(kind: ErrorKind, operation: Operation, message: impl Into<String>) -> Self {
        Error {
            kind,
            operation,
            session_id: None,
            message: message.into(),
            source: None,
        }
    }

    /// Names the session the error is about.
    pub fn with_session(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }

    /// Chains the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Replaces the operation (used when a helper's error surfaces through another operation).
    pub fn with_operation(mut self, operation: Operation) -> Self {
        self.operation = operation;
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The operation that failed.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// The session the operation was about, if any.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The human-readable detail, without operation, session or kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether repeating the same call may succeed and cannot apply a write twice.
    ///
    /// `Connection` and `Timeout` are retryable (the store only reports them when a retry is
    /// safe); `OutcomeUnknown` is not: the caller must first find out whether the write landed.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::Connection | ErrorKind::Timeout)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.operation)?;
        if let Some(id) = &self.session_id {
            write!(f, " on session {id:?}")?;
        }
        write!(f, ": {}", self.kind)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_operation_session_kind_and_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = Error::new(
            ErrorKind::Connection,
            Operation::AddItems,
            "cannot reach server",
        )
        .with_session("a:b")
        .with_source(io);
        let text = err.to_string();
        assert_eq!(
            text,
            "add_items on session \"a:b\": connection error: cannot reach server: refused"
        );
        assert!(std::error::Error::source(&err).is_some());
        assert!(err.is_retryable());
    }

    #[test]
    fn outcome_unknown_is_not_retryable() {
        let err = Error::new(ErrorKind::OutcomeUnknown, Operation::AddItems, "lost");
        assert!(!err.is_retryable());
        assert!(Operation::AddItems.is_write());
        assert!(!Operation::GetItems.is_write());
    }
}
