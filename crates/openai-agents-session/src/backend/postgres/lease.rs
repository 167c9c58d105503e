//! Session leases: one row per session that had one in `@leases` (the newest grant: owner,
//! token, expiry in ms), outside `@sessions`, so that it outlives the session's items, clears
//! and expiry and is never listed. Each lease operation is one function call on the server's
//! clock; a fenced write checks the row (`FOR SHARE`) inside its own call.

use super::error::unexpected;
use super::*;

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// (owner, token, expires_at) at columns 1..=3 of a lease function's row.
fn lease_of(op: Operation, row: &tokio_postgres::Row) -> Result<Option<Lease>> {
    let owner: Option<Vec<u8>> = row.try_get(1).map_err(|e| row_error(op, e))?;
    let owner = owner.map(|o| String::from_utf8_lossy(&o).into_owned());
    let token: Option<i64> = row.try_get(2).map_err(|e| row_error(op, e))?;
    let expires: Option<i64> = row.try_get(3).map_err(|e| row_error(op, e))?;
    Ok(match (owner, token, expires) {
        (Some(o), Some(t), Some(e)) => Some(Lease::new(
            o,
            u64::try_from(t).unwrap_or(0),
            Timestamp::from_millis(e),
        )),
        _ => None,
    })
}

fn status(op: Operation, row: &tokio_postgres::Row) -> Result<String> {
    row.try_get::<_, Option<String>>(0)
        .map_err(|e| row_error(op, e))?
        .ok_or_else(|| Error::new(ErrorKind::Backend, op, "a function returned no status"))
}

impl Inner {
    pub(super) async fn acquire_lease(
        &self,
        session_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<LeaseGrant> {
        let op = Operation::AcquireLease;
        let row = self
            .one(
                op,
                &self.sql.acquire,
                &[&sid(session_id), &owner.as_bytes(), &ttl_ms(ttl)],
            )
            .await?;
        let st = status(op, &row)?;
        let lease = lease_of(op, &row)?.ok_or_else(|| {
            Error::new(
                ErrorKind::Backend,
                op,
                "the acquire function returned no lease",
            )
        })?;
        match st.as_str() {
            "GRANTED" => Ok(LeaseGrant::Granted(lease)),
            "HELD" => Ok(LeaseGrant::Held(lease)),
            other => Err(unexpected(op, "acquire", other)),
        }
    }

    pub(super) async fn renew_lease(
        &self,
        session_id: &str,
        token: u64,
        ttl: Duration,
    ) -> Result<Lease> {
        let op = Operation::RenewLease;
        let t = fence_arg(Some(token));
        let row = self
            .one(op, &self.sql.renew, &[&sid(session_id), &t, &ttl_ms(ttl)])
            .await?;
        match status(op, &row)?.as_str() {
            "OK" => lease_of(op, &row)?.ok_or_else(|| {
                Error::new(
                    ErrorKind::Backend,
                    op,
                    "the renew function returned no lease",
                )
            }),
            "FENCED" => Err(Error::fenced(op, token, lease_of(op, &row)?)),
            other => Err(unexpected(op, "renew", other)),
        }
    }

    pub(super) async fn release_lease(&self, session_id: &str, token: u64) -> Result<()> {
        let op = Operation::ReleaseLease;
        let t = fence_arg(Some(token));
        let row = self
            .one(op, &self.sql.release, &[&sid(session_id), &t])
            .await?;
        match status(op, &row)?.as_str() {
            "OK" => Ok(()),
            "FENCED" => Err(Error::fenced(op, token, lease_of(op, &row)?)),
            other => Err(unexpected(op, "release", other)),
        }
    }

    pub(super) async fn lease_info(&self, session_id: &str) -> Result<Option<Lease>> {
        let op = Operation::LeaseInfo;
        self.stats.record_requests(op, 1);
        let rows = self
            .conn
            .query(op, &self.sql.lease, &[&sid(session_id)])
            .await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let owner: Vec<u8> = r.try_get(0).map_err(|e| row_error(op, e))?;
        let owner = String::from_utf8_lossy(&owner).into_owned();
        let token: i64 = r.try_get(1).map_err(|e| row_error(op, e))?;
        let expires: i64 = r.try_get(2).map_err(|e| row_error(op, e))?;
        Ok(Some(Lease::new(
            owner,
            u64::try_from(token).unwrap_or(0),
            Timestamp::from_millis(expires),
        )))
    }
}
