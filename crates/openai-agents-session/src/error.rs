//! The one error type of the crate: a matchable [`ErrorKind`], the [`Operation`] that failed, the
//! session id it failed on, a message and the chained source.

use std::fmt;

use crate::lease::Lease;

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
    /// A history transaction was refused: its operation id was used for another transaction,
    /// or the history does not end with its expected suffix ([`Error::conflict_reason`]).
    /// Nothing was changed; not retryable as is.
    Conflict,
    /// Another owner holds the session's lease ([`Store::acquire_lease`](crate::Store::acquire_lease));
    /// the message names its owner and expiry, [`Error::lease_holder`] gives it as data.
    /// Nothing was changed; not retryable as is (wait, or acquire with `wait`).
    LeaseHeld,
    /// A fenced write, renewal or release whose fencing token is not the session's current
    /// lease's (it expired, was released or was taken over). Nothing was changed; not
    /// retryable: the holder lost the lease.
    Fenced,
    /// The session holds encrypted records and the store was opened without an encryption
    /// key: the store is misconfigured. Nothing was changed; not retryable as is (open the
    /// store with its key). Python `EncryptionKeyMissingError` (a `ConfigError`), CLI exit 2.
    EncryptionKeyMissing,
}

impl ErrorKind {
    /// Every kind, in declaration order (for tables and tests).
    pub const ALL: [ErrorKind; 16] = [
        ErrorKind::InvalidInput,
        ErrorKind::InvalidSessionId,
        ErrorKind::TooLarge,
        ErrorKind::NotFound,
        ErrorKind::Connection,
        ErrorKind::Timeout,
        ErrorKind::OutcomeUnknown,
        ErrorKind::Unreadable,
        ErrorKind::UnsupportedFormat,
        ErrorKind::LegacyData,
        ErrorKind::Config,
        ErrorKind::Backend,
        ErrorKind::Conflict,
        ErrorKind::LeaseHeld,
        ErrorKind::Fenced,
        ErrorKind::EncryptionKeyMissing,
    ];

    /// The stable snake_case name of the kind: the `kind` attribute of the Python (and Node)
    /// error classes, and the contract of the error table in the README. Never changes for a
    /// kind once released.
    ///
    /// ```
    /// use openai_agents_session::ErrorKind;
    /// assert_eq!(ErrorKind::OutcomeUnknown.name(), "outcome_unknown");
    /// assert_eq!(ErrorKind::InvalidSessionId.name(), "invalid_session_id");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::InvalidSessionId => "invalid_session_id",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Connection => "connection",
            ErrorKind::Timeout => "timeout",
            ErrorKind::OutcomeUnknown => "outcome_unknown",
            ErrorKind::Unreadable => "unreadable",
            ErrorKind::UnsupportedFormat => "unsupported_format",
            ErrorKind::LegacyData => "legacy_data",
            ErrorKind::Config => "config",
            ErrorKind::Backend => "backend",
            ErrorKind::Conflict => "conflict",
            ErrorKind::LeaseHeld => "lease_held",
            ErrorKind::Fenced => "fenced",
            ErrorKind::EncryptionKeyMissing => "encryption_key_missing",
        }
    }

    /// A short, lower-case phrase for messages (`"invalid input"`); see [`name`](Self::name)
    /// for the stable identifier.
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
            ErrorKind::Conflict => "conflict",
            ErrorKind::LeaseHeld => "lease held",
            ErrorKind::Fenced => "fenced",
            ErrorKind::EncryptionKeyMissing => "encryption key missing",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a network failure was: the storage did not answer in time, or the connection to it
/// failed. [`Error::cause`] gives it for `Timeout`, `Connection` and `OutcomeUnknown` errors, so
/// that callers (and the Python classes `OutcomeUnknownTimeoutError` /
/// `OutcomeUnknownConnectionError`) can treat a write whose answer was lost like the timeout or
/// connection error it also is.
///
/// ```
/// use openai_agents_session::{Error, ErrorKind, FailureCause, Operation};
/// let err = Error::new(ErrorKind::OutcomeUnknown, Operation::AddItems, "no answer")
///     .with_cause(FailureCause::Timeout);
/// assert_eq!(err.cause(), Some(FailureCause::Timeout));
/// assert_eq!(
///     Error::new(ErrorKind::Connection, Operation::GetItems, "refused").cause(),
///     Some(FailureCause::Connection)
/// );
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureCause {
    /// No answer within the configured timeout.
    Timeout,
    /// The connection could not be made, or failed while the request was in flight.
    Connection,
}

impl FailureCause {
    /// The stable snake_case name (`"timeout"`, `"connection"`).
    pub fn name(self) -> &'static str {
        match self {
            FailureCause::Timeout => "timeout",
            FailureCause::Connection => "connection",
        }
    }
}

/// Why a history transaction was refused: the reason of an [`ErrorKind::Conflict`] error.
///
/// ```
/// use openai_agents_session::ConflictReason;
/// assert_eq!(ConflictReason::SuffixMismatch.name(), "suffix_mismatch");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConflictReason {
    /// The operation id was used before for another transaction.
    OperationReused,
    /// The newest items are not the transaction's expected suffix.
    SuffixMismatch,
}

impl ConflictReason {
    /// The stable name: `"operation_reused"` or `"suffix_mismatch"`.
    pub fn name(self) -> &'static str {
        match self {
            ConflictReason::OperationReused => "operation_reused",
            ConflictReason::SuffixMismatch => "suffix_mismatch",
        }
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
    /// [`StoreSession::apply_history_transaction`](crate::StoreSession::apply_history_transaction).
    ApplyTransaction,
    /// [`Store::acquire_lease`](crate::Store::acquire_lease).
    AcquireLease,
    /// [`Store::renew_lease`](crate::Store::renew_lease).
    RenewLease,
    /// [`Store::release_lease`](crate::Store::release_lease).
    ReleaseLease,
    /// [`Store::lease_info`](crate::Store::lease_info).
    LeaseInfo,
}

impl Operation {
    /// Every operation, in declaration order (for metrics tables).
    pub const ALL: [Operation; 15] = [
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
        Operation::ApplyTransaction,
        Operation::AcquireLease,
        Operation::RenewLease,
        Operation::ReleaseLease,
        Operation::LeaseInfo,
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
            Operation::ApplyTransaction => "apply_history_transaction",
            Operation::AcquireLease => "acquire_lease",
            Operation::RenewLease => "renew_lease",
            Operation::ReleaseLease => "release_lease",
            Operation::LeaseInfo => "lease_info",
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
                | Operation::ApplyTransaction
                | Operation::AcquireLease
                | Operation::RenewLease
                | Operation::ReleaseLease
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
    cause: Option<FailureCause>,
    conflict: Option<ConflictReason>,
    lease: Option<Box<Lease>>,
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
            cause: None,
            conflict: None,
            lease: None,
            source: None,
        }
    }

    /// The typed "lease held" error: `holder` holds the session's live lease. The message
    /// names its owner and expiry; [`lease_holder`](Self::lease_holder) gives it as data.
    ///
    /// ```
    /// use openai_agents_session::{Error, ErrorKind, Lease, Timestamp};
    /// let err = Error::lease_held(Lease::new("worker-1", 7, Timestamp::from_millis(0)));
    /// assert_eq!(err.kind(), ErrorKind::LeaseHeld);
    /// assert_eq!(err.lease_holder().map(|l| l.owner.as_str()), Some("worker-1"));
    /// assert_eq!(
    ///     err.message(),
    ///     "the lease is held by \"worker-1\" until 1970-01-01T00:00:00.000Z (token 7)"
    /// );
    /// ```
    pub fn lease_held(holder: Lease) -> Self {
        let message = format!(
            "the lease is held by {:?} until {} (token {})",
            holder.owner, holder.expires_at, holder.token
        );
        let mut err = Error::new(ErrorKind::LeaseHeld, Operation::AcquireLease, message);
        err.lease = Some(Box::new(holder));
        err
    }

    /// The typed "fenced" error of `operation` with fencing token `token`: the session's live
    /// lease is `current` (another token), or there is none. Nothing was changed.
    ///
    /// ```
    /// use openai_agents_session::{Error, ErrorKind, Operation};
    /// let err = Error::fenced(Operation::AddItems, 41, None);
    /// assert_eq!(err.kind(), ErrorKind::Fenced);
    /// assert!(!err.is_retryable());
    /// assert_eq!(
    ///     err.message(),
    ///     "fencing token 41 is not the session's live lease (there is none); nothing was changed"
    /// );
    /// ```
    pub fn fenced(operation: Operation, token: u64, current: Option<Lease>) -> Self {
        let now = match &current {
            Some(lease) => format!(
                "it is held by {:?} until {} (token {})",
                lease.owner, lease.expires_at, lease.token
            ),
            None => "there is none".to_owned(),
        };
        let message = format!(
            "fencing token {token} is not the session's live lease ({now}); nothing was changed"
        );
        let mut err = Error::new(ErrorKind::Fenced, operation, message);
        err.lease = current.map(Box::new);
        err
    }

    /// The lease that made the call fail: the holder of a `LeaseHeld` error, and the session's
    /// live lease (if any) of a `Fenced` one; `None` otherwise.
    pub fn lease_holder(&self) -> Option<&Lease> {
        self.lease.as_deref()
    }

    /// Records why a history transaction was refused (for `Conflict` errors).
    pub fn with_conflict(mut self, reason: ConflictReason) -> Self {
        self.conflict = Some(reason);
        self
    }

    /// Why a history transaction was refused: `Some` for `Conflict` errors.
    pub fn conflict_reason(&self) -> Option<ConflictReason> {
        self.conflict
    }

    /// Records what kind of network failure caused the error (meaningful for
    /// `OutcomeUnknown`; `Timeout` and `Connection` imply their own).
    pub fn with_cause(mut self, cause: FailureCause) -> Self {
        self.cause = Some(cause);
        self
    }

    /// The network failure behind the error: the recorded cause, else `Timeout` for a
    /// `Timeout` error and `Connection` for a `Connection` error, else `None`.
    pub fn cause(&self) -> Option<FailureCause> {
        self.cause.or(match self.kind {
            ErrorKind::Timeout => Some(FailureCause::Timeout),
            ErrorKind::Connection => Some(FailureCause::Connection),
            _ => None,
        })
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
    fn kind_names_are_unique_snake_case() {
        let names: std::collections::HashSet<_> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), ErrorKind::ALL.len());
        for name in names {
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
        }
    }

    #[test]
    fn cause_defaults_from_the_kind() {
        let lost = Error::new(ErrorKind::OutcomeUnknown, Operation::AddItems, "lost");
        assert_eq!(lost.cause(), None);
        assert_eq!(
            lost.with_cause(FailureCause::Connection).cause(),
            Some(FailureCause::Connection)
        );
        let timeout = Error::new(ErrorKind::Timeout, Operation::GetItems, "slow");
        assert_eq!(timeout.cause(), Some(FailureCause::Timeout));
        assert_eq!(
            Error::new(ErrorKind::Backend, Operation::GetItems, "x").cause(),
            None
        );
    }

    #[test]
    fn lease_errors_carry_the_lease_and_are_not_retryable() {
        use crate::time::Timestamp;
        let holder = Lease::new("w-1", 9, Timestamp::from_millis(1_000));
        let held = Error::lease_held(holder.clone()).with_session("s");
        assert_eq!(held.kind().name(), "lease_held");
        assert!(!held.is_retryable());
        assert_eq!(held.lease_holder(), Some(&holder));
        assert_eq!(
            held.to_string(),
            "acquire_lease on session \"s\": lease held: the lease is held by \"w-1\" until 1970-01-01T00:00:01.000Z (token 9)"
        );
        let fenced = Error::fenced(Operation::PopItem, 8, Some(holder.clone()));
        assert_eq!(fenced.kind().name(), "fenced");
        assert!(!fenced.is_retryable());
        assert_eq!(fenced.lease_holder(), Some(&holder));
        assert!(fenced.message().contains("token 8"), "{fenced}");
        assert!(ErrorKind::ALL.contains(&ErrorKind::LeaseHeld));
        assert!(ErrorKind::ALL.contains(&ErrorKind::Fenced));
        for op in [
            Operation::AcquireLease,
            Operation::RenewLease,
            Operation::ReleaseLease,
        ] {
            assert!(op.is_write(), "{op}");
        }
        assert!(!Operation::LeaseInfo.is_write());
    }

    #[test]
    fn outcome_unknown_is_not_retryable() {
        let err = Error::new(ErrorKind::OutcomeUnknown, Operation::AddItems, "lost");
        assert!(!err.is_retryable());
        assert!(Operation::AddItems.is_write());
        assert!(!Operation::GetItems.is_write());
    }
}
