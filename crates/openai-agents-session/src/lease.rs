//! Session leases with fencing tokens: one writer at a time per conversation, across
//! processes, made safe against a holder that stalls and comes back.
//!
//! * [`Store::acquire_lease`](crate::Store::acquire_lease)`(session, owner, ttl, wait)` grants
//!   the session's lease to one holder at a time and returns a [`Lease`] `{owner, token,
//!   expires_at}`. While another owner holds a live lease, it fails with
//!   [`LeaseHeld`](crate::ErrorKind::LeaseHeld) (naming the holder, also as data:
//!   [`Error::lease_holder`](crate::Error::lease_holder)), or polls with backoff up to `wait`.
//!   The same owner acquiring again while it holds the lease gets the same token with the
//!   expiry moved to `now + ttl` (a retried acquire is harmless). An expired or released lease
//!   can be taken by anyone, with a new token.
//! * [`renew_lease`](crate::Store::renew_lease) and [`release_lease`](crate::Store::release_lease)
//!   go by token (the token is the proof, the owner a label). Renewing a token that is not the
//!   live lease's, or releasing one that is no longer the newest, fails with
//!   [`Fenced`](crate::ErrorKind::Fenced); releasing an already released (or expired) lease
//!   is a no-op.
//! * A fenced handle, [`StoreSession::fenced`](crate::StoreSession::fenced)`(token)`, checks in
//!   the same atomic step as each write (`add_items`, `pop_item`, `clear_session`,
//!   `apply_history_transaction`) that its token is the live lease's, else the write fails with
//!   `Fenced` and changes nothing. Reads are not fenced, unfenced handles work as before
//!   (leases are cooperative), and clearing a session does not release its lease.
//!
//! **Tokens** are positive, grow with each grant and never repeat for a session: a grant takes
//! `max(last + 1, now in microseconds)`, where `last` is the session's newest token, kept in a
//! lease record that outlives the lease, the session's items, a clear and the session's expiry
//! ([`next_token`]). The record is one small row or key per session: it is kept for
//! [`LEASE_RECORD_RETENTION`] after its lease ended, then removed (`prune` on SQLite and
//! memory, the key's own expiry on Redis). From then on the clock alone keeps tokens growing,
//! which holds as long as the storage's clock never steps back by more than that retention.
//!
//! Lease records are not sessions: they never appear in `list_sessions`, and acquiring a lease
//! does not create the session (`session_info` still reports it missing until it has items).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> openai_agents_session::Result<()> {
//! use std::time::Duration;
//! use openai_agents_session::{ErrorKind, Session, Store};
//! let store = Store::open("memory://").await?;
//! let lease = store.acquire_lease("chat", "worker-1", Duration::from_secs(30), None).await?;
//! let held = store.acquire_lease("chat", "worker-2", Duration::from_secs(30), None).await;
//! assert_eq!(held.unwrap_err().kind(), ErrorKind::LeaseHeld);
//!
//! let fenced = store.session("chat")?.fenced(lease.token);
//! fenced.add_items(vec![r#"{"role":"user","content":"hi"}"#.parse()?]).await?;
//! store.release_lease("chat", lease.token).await?;
//! // Once the lease is gone, the handle's writes fail and change nothing.
//! let err = fenced.add_items(vec![r#"{"late":true}"#.parse()?]).await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Fenced);
//! assert_eq!(store.session("chat")?.get_items(None).await?.len(), 1);
//! # Ok(()) }
//! ```

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::time::Timestamp;

/// How long a lease record is kept after its lease ended (expired or was released): the
/// session's newest token lives that long; afterwards the clock keeps tokens growing.
pub const LEASE_RECORD_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// The longest owner label accepted, in UTF-8 bytes.
pub const MAX_OWNER_BYTES: usize = 256;

/// A session's lease: who holds it, its fencing token and when it expires.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Lease {
    /// The holder's label (any text of 1 to [`MAX_OWNER_BYTES`] bytes).
    pub owner: String,
    /// The fencing token: positive, grows with every grant, never repeats for the session.
    pub token: u64,
    /// When the lease expires without a renewal (the storage's clock).
    pub expires_at: Timestamp,
}

impl Lease {
    /// A lease (for backend implementors).
    pub fn new(owner: impl Into<String>, token: u64, expires_at: Timestamp) -> Self {
        Lease {
            owner: owner.into(),
            token,
            expires_at,
        }
    }

    /// Whether the lease is still in force at `now`.
    pub fn is_live_at(&self, now: Timestamp) -> bool {
        self.expires_at > now
    }
}

impl fmt::Display for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "held by {:?} (token {}) until {}",
            self.owner, self.token, self.expires_at
        )
    }
}

/// What one acquisition attempt found: the lease granted to the caller, or held by another
/// owner ([`Backend::acquire_lease`](crate::Backend::acquire_lease)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseGrant {
    /// The caller holds the lease now (a new token, or its own, extended).
    Granted(Lease),
    /// Another owner holds a live lease; nothing was changed.
    Held(Lease),
}

/// The token of a new grant: `max(last + 1, now_micros)`, at least 1. `last` is the session's
/// newest token (0 when it has none), `now_micros` the storage's clock in microseconds.
///
/// ```
/// use openai_agents_session::lease::next_token;
/// assert_eq!(next_token(0, 1_700_000_000_000_000), 1_700_000_000_000_000);
/// // Two grants in one microsecond, or a clock that stepped back: still growing.
/// assert_eq!(next_token(1_700_000_000_000_000, 1_699_999_999_999_000), 1_700_000_000_000_001);
/// assert_eq!(next_token(0, 0), 1);
/// ```
pub fn next_token(last: u64, now_micros: u64) -> u64 {
    last.saturating_add(1).max(now_micros).max(1)
}

/// The local clock in microseconds since the Unix epoch (what the memory and SQLite backends
/// take tokens from).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `now + ttl`, in the millisecond timestamps leases expire at.
pub fn expiry(now: Timestamp, ttl: Duration) -> Timestamp {
    Timestamp::from_millis(
        now.as_millis()
            .saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
    )
}

/// Until when the record of a lease that ends at `expires_at` is kept
/// ([`LEASE_RECORD_RETENTION`] later).
pub fn record_kept_until(expires_at: Timestamp) -> Timestamp {
    expiry(expires_at, LEASE_RECORD_RETENTION)
}

/// A lease TTL in whole milliseconds, as the backends store it (at least 1).
pub fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_grow_and_follow_the_clock() {
        let mut last = 0;
        for now in [5, 5, 5, 3, 100, 100] {
            let next = next_token(last, now);
            assert!(next > last, "{next} > {last}");
            last = next;
        }
        assert_eq!(last, 101);
        assert_eq!(next_token(u64::MAX - 1, 0), u64::MAX);
    }

    #[test]
    fn expiry_arithmetic() {
        let now = Timestamp::from_millis(1_000);
        assert_eq!(
            expiry(now, Duration::from_millis(1500)),
            Timestamp::from_millis(2_500)
        );
        assert_eq!(
            record_kept_until(now),
            Timestamp::from_millis(1_000 + 86_400_000)
        );
        assert_eq!(ttl_millis(Duration::from_micros(10)), 1);
        let lease = Lease::new("w", 7, Timestamp::from_millis(2_000));
        assert!(lease.is_live_at(now));
        assert!(!lease.is_live_at(Timestamp::from_millis(2_000)));
        assert_eq!(
            lease.to_string(),
            "held by \"w\" (token 7) until 1970-01-01T00:00:02.000Z"
        );
    }
}
