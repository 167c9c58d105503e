//! `prune`: Redis deletes expired sessions by itself (and every script treats an expired
//! session as missing at once), so what is left to delete is staging lists of writes never
//! committed.

use crate::error::{Operation, Result};
use crate::store::{ListOptions, PruneReport};
use crate::time::Timestamp;

use super::error::map_redis;
use super::layout::{stage_pattern, stage_started_ms, value_int};
use super::read::scan_pages;
use super::RedisBackend;

impl RedisBackend {
    /// Deletes staging lists of writes never committed and older than `stale_stage_after`
    /// (default an hour).
    pub(super) async fn prune_staged(&self) -> Result<PruneReport> {
        let op = Operation::Prune;
        let pattern = stage_pattern(&self.prefix);
        let stale_ms = i64::try_from(self.stale_stage_after.as_millis()).unwrap_or(i64::MAX);
        let cutoff = Timestamp::now().as_millis() - stale_ms;
        let mut options = ListOptions::default().page_size(1000);
        let mut removed = 0u64;
        loop {
            // Keys whose start time is past the cutoff, found with the same SCAN paging as
            // listing (the "ids" here are the keys themselves).
            let page = scan_pages(
                &self.conn,
                &self.stats,
                op,
                &options,
                &pattern,
                Some("list"),
                |key| {
                    let key = std::str::from_utf8(key).ok()?;
                    (stage_started_ms(key)? < cutoff).then(|| key.to_owned())
                },
            )
            .await?;
            for key in &page.session_ids {
                self.stats.record_requests(op, 1);
                let deleted = self
                    .conn
                    .query(op, redis::cmd("DEL").arg(key.as_str()))
                    .await
                    .map_err(|e| map_redis(op, e))?;
                removed += value_int(&deleted).unwrap_or(0).max(0) as u64;
            }
            match page.next_cursor {
                Some(cursor) => options.cursor = Some(cursor),
                None => break,
            }
        }
        Ok(PruneReport::new(0, removed).with_note("Redis deletes expired sessions by itself"))
    }
}
