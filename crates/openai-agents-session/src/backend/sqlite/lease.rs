//! Session leases: one row per session that had one in `oas_leases` (the newest grant: owner,
//! token, expiry), outside `oas_sessions`, so that it outlives the session's items, clears and
//! expiry and is never a session. Each lease operation is one transaction (`BEGIN IMMEDIATE`
//! for the three that write), and a fenced write checks the row inside its own write
//! transaction.

use super::*;
use crate::lease::{self, Lease, LeaseGrant};

/// The newest lease record of a session: (lease, whether it is live at `now`).
pub(super) fn newest_lease(
    conn: &Connection,
    session_id: &str,
    now: Timestamp,
) -> rusqlite::Result<Option<(Lease, bool)>> {
    conn.prepare_cached("SELECT owner, token, expires_at FROM oas_leases WHERE session_id = ?1")?
        .query_row([session_id], |r| {
            let lease = Lease::new(
                r.get::<_, String>(0)?,
                u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                Timestamp::from_millis(r.get(2)?),
            );
            let live = lease.is_live_at(now);
            Ok((lease, live))
        })
        .optional()
}

/// A fenced write's check, inside its write transaction: `token` must be the live lease's.
pub(super) fn check_fence(
    conn: &Connection,
    session_id: &str,
    token: u64,
    now: Timestamp,
    op: Operation,
) -> rusqlite::Result<Result<()>> {
    Ok(match newest_lease(conn, session_id, now)? {
        Some((lease, true)) if lease.token == token => Ok(()),
        Some((lease, true)) => Err(Error::fenced(op, token, Some(lease))),
        _ => Err(Error::fenced(op, token, None)),
    })
}

fn stored(token: u64) -> i64 {
    i64::try_from(token).unwrap_or(i64::MAX)
}

impl Inner {
    pub(super) fn acquire_lease(
        &self,
        conn: &mut Connection,
        session_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> TxResult<LeaseGrant> {
        let now = Timestamp::now();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let expires_at = lease::expiry(now, ttl);
        let newest = newest_lease(&tx, session_id, now)?;
        let granted = match newest {
            // Held by another owner: nothing changes (dropping `tx` rolls back).
            Some((held, true)) if held.owner != owner => return Ok(Ok(LeaseGrant::Held(held))),
            Some((mine, true)) => Lease::new(owner, mine.token, expires_at),
            ended => {
                let last = ended.map_or(0, |(l, _)| l.token);
                Lease::new(
                    owner,
                    lease::next_token(last, lease::now_micros()),
                    expires_at,
                )
            }
        };
        tx.prepare_cached(
            "INSERT OR REPLACE INTO oas_leases (session_id, owner, token, expires_at)
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            session_id,
            owner,
            stored(granted.token),
            granted.expires_at.as_millis()
        ])?;
        tx.commit()?;
        Ok(Ok(LeaseGrant::Granted(granted)))
    }

    pub(super) fn renew_lease(
        &self,
        conn: &mut Connection,
        session_id: &str,
        token: u64,
        ttl: Duration,
    ) -> TxResult<Lease> {
        let now = Timestamp::now();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Err(e) = check_fence(&tx, session_id, token, now, Operation::RenewLease)? {
            return Ok(Err(e));
        }
        let expires_at = lease::expiry(now, ttl);
        let owner: String = tx
            .prepare_cached(
                "UPDATE oas_leases SET expires_at = ?2 WHERE session_id = ?1 RETURNING owner",
            )?
            .query_row(params![session_id, expires_at.as_millis()], |r| r.get(0))?;
        tx.commit()?;
        Ok(Ok(Lease::new(owner, token, expires_at)))
    }

    pub(super) fn release_lease(
        &self,
        conn: &mut Connection,
        session_id: &str,
        token: u64,
    ) -> TxResult<()> {
        let now = Timestamp::now();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        match newest_lease(&tx, session_id, now)? {
            Some((newest, live)) if newest.token == token => {
                if live {
                    // Ended now; the row stays: it holds the newest token.
                    tx.prepare_cached(
                        "UPDATE oas_leases SET expires_at = ?2 WHERE session_id = ?1",
                    )?
                    .execute(params![session_id, now.as_millis()])?;
                    tx.commit()?;
                }
                Ok(Ok(()))
            }
            Some((other, true)) => Ok(Err(Error::fenced(
                Operation::ReleaseLease,
                token,
                Some(other),
            ))),
            _ => Ok(Err(Error::fenced(Operation::ReleaseLease, token, None))),
        }
    }

    pub(super) fn lease_info(
        &self,
        conn: &mut Connection,
        session_id: &str,
    ) -> TxResult<Option<Lease>> {
        let now = Timestamp::now();
        Ok(Ok(newest_lease(conn, session_id, now)?
            .filter(|(_, live)| *live)
            .map(|(lease, _)| lease)))
    }
}
