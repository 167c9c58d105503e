//! Deleting expired sessions, leftovers of interrupted staged writes, operation ids past
//! their retention and lease records a day past their lease: `prune` calls the `prune`
//! function in batches of [`PRUNE_BATCH`] sessions, each its own short transaction that skips
//! rows other calls hold, until a batch finds less than a full one.

use super::*;

/// Sessions (and stages, operation ids, lease records) one `prune` call deletes at most.
pub(super) const PRUNE_BATCH: i64 = 500;

impl Inner {
    pub(super) async fn prune(&self) -> Result<PruneReport> {
        let op = Operation::Prune;
        let retention =
            i64::try_from(crate::lease::LEASE_RECORD_RETENTION.as_millis()).unwrap_or(0);
        let (mut sessions, mut leftovers) = (0u64, 0u64);
        loop {
            let stale_after =
                i64::try_from(self.stale_stage_after.as_millis()).unwrap_or(i64::MAX / 2);
            let row = self
                .one(
                    op,
                    &self.sql.prune,
                    &[&PRUNE_BATCH, &stale_after, &retention],
                )
                .await?;
            let s: i64 = row
                .try_get::<_, Option<i64>>(0)
                .map_err(|e| row_error(op, e))?
                .unwrap_or(0);
            let l: i64 = row
                .try_get::<_, Option<i64>>(1)
                .map_err(|e| row_error(op, e))?
                .unwrap_or(0);
            sessions += s.max(0) as u64;
            leftovers += l.max(0) as u64;
            if s < PRUNE_BATCH && l < PRUNE_BATCH {
                return Ok(PruneReport::new(sessions, leftovers));
            }
        }
    }
}
