//! Reclaiming what no live session needs: `prune` (expired sessions, records of cleared or
//! earlier lives, batches left uncommitted), background deletes of old generations, and the
//! re-stamping that keeps records' `ttl` ahead of their session's expiry, so that DynamoDB's
//! TTL reclaims abandoned sessions but never a live one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};

use super::error::{build_error, map_sdk};
use super::layout::{
    batch_of, expr_maps, gen_of, gen_part_prefix, item_key, item_prefix, lease_key, meta_key, n,
    num_attr, op_prefix, parse_op_sk, pending_attr, replacing_attr, s, sk_of, str_attr, Meta,
    MetaState, Row, LEASE_SK, META_SK, OP_PREFIX, PENDING_PREFIX,
};
use super::{millis, now_ms, DynamoDbBackend, Inner};
use crate::error::{Operation, Result};
use crate::lease::LEASE_RECORD_RETENTION;
use crate::store::PruneReport;

impl Inner {
    pub(super) async fn delete_prefix(
        &self,
        op: Operation,
        session_id: &str,
        prefix: &str,
    ) -> Result<u64> {
        let keys = self.keys_with_prefix(op, session_id, prefix, false).await?;
        let n = keys.len() as u64;
        let mut requests = Vec::with_capacity(keys.len());
        for key in keys {
            let d = DeleteRequest::builder()
                .set_key(Some(key))
                .build()
                .map_err(|e| build_error(op, e))?;
            requests.push(WriteRequest::builder().delete_request(d).build());
        }
        self.batch_write(op, requests).await?;
        Ok(n)
    }

    async fn restamp(&self, session_id: &str, gen: i64, expires_at: i64) -> Result<i64> {
        let op = Operation::Prune;
        let stamp = self.item_ttl(Some(expires_at)).unwrap_or(0);
        let mut keys = self
            .keys_with_prefix(op, session_id, &item_prefix(gen), false)
            .await?;
        keys.extend(
            self.keys_with_prefix(op, session_id, &gen_part_prefix(gen), false)
                .await?,
        );
        for key in keys {
            self.stats.record_requests(op, 1);
            let _ = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key))
                .condition_expression("attribute_exists(pk)")
                .update_expression("SET #ttl = :ttl")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":ttl", n(stamp))
                .send()
                .await;
        }

        let _ = self
            .update_meta(
                op,
                session_id,
                "#gen = :gen",
                "SET #stamp = :ttl",
                vec![(":gen", n(gen)), (":ttl", n(stamp))],
                &[],
            )
            .send()
            .await;
        Ok(stamp)
    }

    /// Every item a strongly consistent Scan with this filter (on the sort key, `:m` = the
    /// metadata sort key) returns, following pages.
    async fn scan_all(
        &self,
        op: Operation,
        filter: &str,
        projection: Option<&str>,
    ) -> Result<Vec<Row>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            self.stats.record_requests(op, 1);
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression(filter)
                .expression_attribute_values(":m", s(META_SK))
                .set_projection_expression(projection.map(str::to_owned))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| map_sdk(op, &self.table, e))?;
            items.extend(out.items().iter().cloned());
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    /// Scans the table: deletes expired sessions, records no live generation names (cleared
    /// or earlier lives), records of batches left uncommitted for over `stale_stage_after`, and
    /// operation ids forgotten (retention passed) or of an ended life.
    pub(super) async fn prune(&self) -> Result<PruneReport> {
        let op = Operation::Prune;
        let now = now_ms();
        // The records are listed first, the metadata read after: a generation's records (and
        // a life's operation ids) are written only once the metadata, or a replace's mark,
        // names them, so every record listed here is accounted for by the metadata the later
        // scan reads. Read the other way round, a session created (or cleared into a new
        // generation) between the two scans would have its records taken for leftovers.
        let records = self
            .scan_all(op, "sk <> :m", Some("pk, sk, b, fa, le"))
            .await?;
        // Pass 1: the metadata items.
        let mut metas: HashMap<String, Meta> = HashMap::new();
        let mut removed_sessions = 0u64;
        for item in &self.scan_all(op, "sk = :m", None).await? {
            let Some(pk) = str_attr(item, "pk") else {
                continue;
            };
            let Ok(meta) = Meta::parse(item) else {
                continue;
            };
            if meta.expired(now) {
                self.stats.record_requests(op, 1);
                let cond = "#gen = :gen AND #exp <= :now";
                let (names, values) =
                    expr_maps(&[cond], vec![(":gen", n(meta.gen)), (":now", n(now))], &[]);
                let deleted = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(meta_key(pk)))
                    .condition_expression(cond)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .send()
                    .await;
                if deleted.is_ok() {
                    removed_sessions += 1;
                }
                continue;
            }
            // Uncommitted batches older than the threshold are abandoned.
            let mut meta = meta;
            for (attr, value) in item {
                if let Some(batch) = attr.strip_prefix(PENDING_PREFIX) {
                    let started = value
                        .as_n()
                        .ok()
                        .and_then(|v| v.parse::<i64>().ok())
                        .unwrap_or(now);
                    if now - started > millis(self.stale_stage_after) {
                        meta.abandoned.insert(batch.to_owned());
                    }
                }
            }
            metas.insert(pk.clone(), meta);
        }
        // Pass 2: the records listed above that no live metadata accounts for.
        let mut doomed = Vec::new();
        let mut ended_leases = Vec::new();
        for item in &records {
            let (Some(pk), Some(sk)) = (str_attr(item, "pk"), sk_of(item)) else {
                continue;
            };
            if sk == LEASE_SK {
                // A lease item is kept a day after its lease ended (it holds the newest
                // token); from then on the clock alone keeps tokens growing.
                let ends = num_attr(item, "le").unwrap_or(i64::MIN);
                if ends <= now - millis(LEASE_RECORD_RETENTION) {
                    ended_leases.push((pk.clone(), ends));
                }
                continue;
            }
            if let Some((life, _)) = parse_op_sk(sk) {
                // A remembered operation id: kept while its life is the session's and its
                // retention lasts; forgotten ones are deleted (they are gone for reads already).
                let live = metas.get(pk).is_some_and(|m| m.life == life)
                    && num_attr(item, "fa").is_none_or(|at| at > now);
                if !live {
                    doomed.push(item_key(pk, sk));
                }
                continue;
            }
            let gen = gen_of(sk);
            let keep = match (metas.get(pk), gen) {
                (Some(meta), Some(gen)) if gen == meta.gen => {
                    !batch_of(item).is_some_and(|b| meta.abandoned.contains(b))
                }
                // The new generation of a replace still being staged.
                (Some(meta), Some(gen)) => meta
                    .replacing
                    .iter()
                    .any(|(b, g)| *g == gen && !meta.abandoned.contains(b)),
                _ => false,
            };
            if !keep {
                doomed.push(item_key(pk, sk));
            }
        }
        let leftovers = doomed.len() as u64;
        let mut requests = Vec::with_capacity(doomed.len());
        for key in doomed {
            let d = DeleteRequest::builder()
                .set_key(Some(key))
                .build()
                .map_err(|e| build_error(op, e))?;
            requests.push(WriteRequest::builder().delete_request(d).build());
        }
        self.batch_write(op, requests).await?;
        // Lease items a day past their lease, each on the condition that it was not granted
        // again since the scan.
        for (pk, ends) in ended_leases {
            self.stats.record_requests(op, 1);
            let (names, values) = expr_maps(&["#le = :le"], vec![(":le", n(ends))], &[]);
            let _ = self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(lease_key(&pk)))
                .condition_expression("#le = :le")
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .send()
                .await;
        }
        // Pass 3: only now drop the marks of abandoned batches (dropping them first would make
        // their records look committed).
        for (pk, meta) in &metas {
            for batch in &meta.abandoned {
                self.stats.record_requests(op, 1);
                let _ = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(meta_key(pk)))
                    .update_expression("REMOVE #b, #q")
                    .expression_attribute_names("#b", pending_attr(batch))
                    .expression_attribute_names("#q", replacing_attr(batch))
                    .send()
                    .await;
            }
        }
        Ok(PruneReport::new(removed_sessions, leftovers))
    }

    /// After a clear that could not learn what it deleted (a fenced clear: a transaction
    /// returns nothing), deletes in the background what the session's metadata no longer
    /// names: records and parts (`sk < m`) of any generation but the current one and a
    /// staged replace's, and operation ids of any life but the current one. The keys are
    /// listed before the metadata is read: a generation's records are written only after the
    /// metadata (or a replace's mark) names it, so nothing listed is of a generation that
    /// becomes current later. What this misses, prune and TTL reclaim.
    pub(super) fn sweep_later(self: &Arc<Self>, session_id: &str) {
        let inner = Arc::clone(self);
        let id = session_id.to_owned();
        tokio::spawn(async move {
            if let Err(e) = inner.sweep(&id).await {
                tracing::debug!(error = %e, "background sweep of a cleared session failed; prune reclaims it");
            }
        });
    }

    async fn sweep(&self, session_id: &str) -> Result<()> {
        let op = Operation::Prune;
        let mut keys = self.keys_below_meta(op, session_id).await?;
        keys.extend(
            self.keys_with_prefix(op, session_id, OP_PREFIX, false)
                .await?,
        );
        let meta = self.get_meta(op, session_id).await?;
        let dead = |sk: &str| -> bool {
            let Some(meta) = &meta else {
                return true;
            };
            if let Some((life, _)) = parse_op_sk(sk) {
                return life != meta.life;
            }
            gen_of(sk).is_some_and(|g| g != meta.gen && !meta.replacing.values().any(|&r| r == g))
        };
        let mut requests = Vec::new();
        for key in keys {
            if !sk_of(&key).is_some_and(dead) {
                continue;
            }
            let d = DeleteRequest::builder()
                .set_key(Some(key))
                .build()
                .map_err(|e| build_error(op, e))?;
            requests.push(WriteRequest::builder().delete_request(d).build());
        }
        self.batch_write(op, requests).await
    }

    /// The keys of every record and part of a session (`sk < m`, any generation).
    async fn keys_below_meta(&self, op: Operation, session_id: &str) -> Result<Vec<Row>> {
        let mut keys = Vec::new();
        let mut start = None;
        loop {
            self.stats.record_requests(op, 1);
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk < :m")
                .expression_attribute_values(":pk", s(session_id))
                .expression_attribute_values(":m", s(META_SK))
                .projection_expression("pk, sk")
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| map_sdk(op, &self.table, e))?;
            keys.extend(out.items().iter().cloned());
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(keys);
            }
        }
    }

    /// Deletes a generation no metadata names any more (cleared, replaced) in the background,
    /// after `delay`, and the operation ids of the life `life` when it ended too (cleared, or
    /// replaced by a staged replace; not when a history transaction rewrote the session into a
    /// new generation of the same life); what this misses, prune and TTL reclaim.
    pub(super) fn delete_generation_later(
        self: &Arc<Self>,
        session_id: &str,
        gen: i64,
        life: Option<i64>,
        delay: Duration,
    ) {
        let inner = Arc::clone(self);
        let id = session_id.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let prefixes = [item_prefix(gen), gen_part_prefix(gen)];
            for prefix in prefixes.into_iter().chain(life.map(op_prefix)) {
                if let Err(e) = inner.delete_prefix(Operation::Prune, &id, &prefix).await {
                    tracing::debug!(error = %e, "background delete of an old generation failed; prune reclaims it");
                }
            }
        });
    }
}

impl DynamoDbBackend {
    /// Records carry the session's expiry plus a grace period in `ttl`, so that DynamoDB's TTL
    /// reclaims abandoned sessions but never a live one. When the session's expiry comes within
    /// half a grace period of the oldest stamp, every record is re-stamped in the background.
    pub(super) fn maybe_restamp(&self, session_id: &str, m: &Meta, expires_at: i64) {
        if let Some(stamp) = m.stamp {
            self.restamp_if_due(session_id, m.gen, stamp, expires_at);
        }
    }

    /// Starts a background re-stamp when the session's expiry came within half a grace period
    /// of its records' oldest stamp (at most one at a time per session).
    pub(super) fn restamp_if_due(&self, session_id: &str, gen: i64, stamp: i64, expires_at: i64) {
        let half_grace = (self.inner.grace.as_secs() as i64) / 2;
        if stamp == 0 || expires_at / 1000 + half_grace < stamp {
            return;
        }
        {
            let mut busy = self
                .inner
                .restamping
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if !busy.insert(session_id.to_owned()) {
                return;
            }
        }
        let inner = Arc::clone(&self.inner);
        let id = session_id.to_owned();
        tokio::spawn(async move {
            match inner.restamp(&id, gen, expires_at).await {
                Ok(new_stamp) => {
                    let mut known = inner.known.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(MetaState::Live { gen: g, stamp, .. }) = known.get_mut(&id) {
                        if *g == gen {
                            *stamp = new_stamp;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "re-stamping record expiry failed; the next write or refresh retries")
                }
            }
            inner
                .restamping
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
    }
}
