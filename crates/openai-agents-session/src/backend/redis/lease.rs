//! Session leases on Redis: a hash `P:{T}:lease` in the session's slot (owner, token,
//! expires_at), outside the metadata hash so that it outlives the session's keys and is never
//! listed. Each lease operation is one script call (ACQUIRE, RENEW, RELEASE, LEASE); fenced
//! writes pass their token to the write's own script, which checks the hash first.

use std::time::Duration;

use redis::Value;

use crate::error::{Error, Operation, Result};
use crate::lease::{self, Lease, LeaseGrant, LEASE_RECORD_RETENTION};
use crate::time::Timestamp;

use super::error::unexpected;
use super::layout::{lease_from_fields, tag, value_int, value_string, SessionKeys};
use super::RedisBackend;

/// The `Fenced` error of a script's `{'FENCED', [owner, token, expires_at]}` reply.
pub(super) fn fenced_error(op: Operation, token: u64, reply: &[Value]) -> Error {
    Error::fenced(op, token, lease_from_fields(reply.get(1..4).unwrap_or(&[])))
}

/// The fence argument of a write: empty for an unfenced one.
pub(super) fn fence_arg(fence: Option<u64>) -> String {
    fence.map(|t| t.to_string()).unwrap_or_default()
}

fn retention_ms() -> String {
    LEASE_RECORD_RETENTION.as_millis().to_string()
}

impl RedisBackend {
    pub(super) async fn acquire(
        &self,
        session_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<LeaseGrant> {
        let op = Operation::AcquireLease;
        let keys = SessionKeys::new(&self.prefix, session_id);
        let ttl = lease::ttl_millis(ttl).to_string();
        let retention = retention_ms();
        let args: [&[u8]; 3] = [owner.as_bytes(), ttl.as_bytes(), retention.as_bytes()];
        let reply = self
            .eval(op, &self.scripts.acquire, &self.script_keys(&keys), &args)
            .await?;
        match tag(&reply) {
            Some("GRANTED") => {
                let token = reply.get(1).and_then(value_int);
                let at = reply.get(2).and_then(value_int);
                match (token.and_then(|t| u64::try_from(t).ok()), at) {
                    (Some(token), Some(at)) => Ok(LeaseGrant::Granted(Lease::new(
                        owner,
                        token,
                        Timestamp::from_millis(at),
                    ))),
                    _ => Err(unexpected(op, "acquire", &reply)),
                }
            }
            Some("HELD") => match lease_from_fields(reply.get(1..4).unwrap_or(&[])) {
                Some(holder) => Ok(LeaseGrant::Held(holder)),
                None => Err(unexpected(op, "acquire", &reply)),
            },
            _ => Err(unexpected(op, "acquire", &reply)),
        }
    }

    pub(super) async fn renew(&self, session_id: &str, token: u64, ttl: Duration) -> Result<Lease> {
        let op = Operation::RenewLease;
        let keys = SessionKeys::new(&self.prefix, session_id);
        let (token_arg, ttl) = (token.to_string(), lease::ttl_millis(ttl).to_string());
        let retention = retention_ms();
        let args: [&[u8]; 3] = [token_arg.as_bytes(), ttl.as_bytes(), retention.as_bytes()];
        let reply = self
            .eval(op, &self.scripts.renew, &self.script_keys(&keys), &args)
            .await?;
        match tag(&reply) {
            Some("OK") => {
                let owner = reply.get(1).and_then(value_string);
                let at = reply.get(2).and_then(value_int);
                match (owner, at) {
                    (Some(owner), Some(at)) => {
                        Ok(Lease::new(owner, token, Timestamp::from_millis(at)))
                    }
                    _ => Err(unexpected(op, "renew", &reply)),
                }
            }
            Some("FENCED") => Err(fenced_error(op, token, &reply)),
            _ => Err(unexpected(op, "renew", &reply)),
        }
    }

    pub(super) async fn release(&self, session_id: &str, token: u64) -> Result<()> {
        let op = Operation::ReleaseLease;
        let keys = SessionKeys::new(&self.prefix, session_id);
        let (token_arg, retention) = (token.to_string(), retention_ms());
        let args: [&[u8]; 2] = [token_arg.as_bytes(), retention.as_bytes()];
        let reply = self
            .eval(op, &self.scripts.release, &self.script_keys(&keys), &args)
            .await?;
        match tag(&reply) {
            Some("OK") => Ok(()),
            Some("FENCED") => Err(fenced_error(op, token, &reply)),
            _ => Err(unexpected(op, "release", &reply)),
        }
    }

    pub(super) async fn lease_of(&self, session_id: &str) -> Result<Option<Lease>> {
        let op = Operation::LeaseInfo;
        let keys = SessionKeys::new(&self.prefix, session_id);
        let reply = self
            .eval(op, &self.scripts.lease, &self.script_keys(&keys), &[])
            .await?;
        match tag(&reply) {
            Some("NONE") => Ok(None),
            Some("LIVE") => match lease_from_fields(reply.get(1..4).unwrap_or(&[])) {
                Some(lease) => Ok(Some(lease)),
                None => Err(unexpected(op, "lease", &reply)),
            },
            _ => Err(unexpected(op, "lease", &reply)),
        }
    }
}
