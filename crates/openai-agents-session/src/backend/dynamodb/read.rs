//! Reads: the metadata item, the newest-first walk over a session's records (one Query for
//! the metadata and the newest records together), split records reassembled, session info and
//! listing through the `sessions` index.

use super::error::{is_condition_failure, map_sdk};
use super::layout::{
    batch_of, body_of, index_key, item_prefix, item_sk, lease_of, n, num_attr, part_prefix,
    reassemble, s, seq_of, sk_of, str_attr, Body, Meta, MetaState, Row, LEASE_SK, META_SK,
    SESSIONS_INDEX,
};
use super::{now_ms, DynamoDbBackend, Inner};
use crate::codec::{Decoded, TailCollector};
use crate::error::{Operation, Result};
use crate::item::Item;
use crate::pages::{BeforeCollector, PageBefore};
use crate::store::{ListOptions, SessionInfo, SessionPage};
use crate::time::Timestamp;

impl Inner {
    pub(super) async fn get_meta(&self, op: Operation, session_id: &str) -> Result<Option<Meta>> {
        self.stats.record_requests(op, 1);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(session_id))
            .key("sk", s(META_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| map_sdk(op, &self.table, e))?;
        match out.item() {
            Some(item) => Ok(Some(Meta::parse(item).map_err(|e| e.with_operation(op))?)),
            None => Ok(None),
        }
    }

    pub(super) async fn read_state(&self, op: Operation, session_id: &str) -> Result<MetaState> {
        let now = now_ms();
        let state = match self.get_meta(op, session_id).await? {
            None => MetaState::Missing,
            Some(meta) => meta.state(now),
        };
        self.remember(session_id, state);
        Ok(state)
    }

    /// One strongly consistent Query from the top of the session's key range: the metadata
    /// item first (its sort key `m` sorts above every record), then the newest records.
    async fn query_page(
        &self,
        op: Operation,
        session_id: &str,
        start: Option<Row>,
        limit: Option<i32>,
        below: Option<&str>,
        with_lease: bool,
    ) -> Result<(Vec<Row>, Option<Row>)> {
        self.stats.record_requests(op, 1);
        // From the metadata down (from the lease item, just above it, for a fenced write), or
        // (during a staged replace, whose newer generation sorts above the current one) from
        // just below a sort key.
        let (condition, bound) = match below {
            Some(b) => ("pk = :pk AND sk < :m", b),
            None if with_lease => ("pk = :pk AND sk <= :m", LEASE_SK),
            None => ("pk = :pk AND sk <= :m", META_SK),
        };
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(condition)
            .expression_attribute_values(":pk", s(session_id))
            .expression_attribute_values(":m", s(bound))
            .scan_index_forward(false)
            .consistent_read(true)
            .set_limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| map_sdk(op, &self.table, e))?;
        Ok((out.items().to_vec(), out.last_evaluated_key().cloned()))
    }

    /// Every key under a prefix of the session's range (for parts, clear and prune).
    pub(super) async fn keys_with_prefix(
        &self,
        op: Operation,
        session_id: &str,
        prefix: &str,
        with_values: bool,
    ) -> Result<Vec<Row>> {
        let mut out_items = Vec::new();
        let mut start = None;
        loop {
            self.stats.record_requests(op, 1);
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                .expression_attribute_values(":pk", s(session_id))
                .expression_attribute_values(":p", s(prefix))
                .consistent_read(true)
                .set_exclusive_start_key(start);
            if !with_values {
                q = q.projection_expression("pk, sk");
            }
            let out = q.send().await.map_err(|e| map_sdk(op, &self.table, e))?;
            out_items.extend(out.items().iter().cloned());
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(out_items);
            }
        }
    }

    /// The bytes of a record item: inline, or reassembled from its parts (one more Query).
    pub(super) async fn record_bytes(
        &self,
        op: Operation,
        session_id: &str,
        gen: i64,
        item: &Row,
    ) -> Result<Vec<u8>> {
        match body_of(item) {
            Body::Inline(bytes) => Ok(bytes.to_vec()),
            Body::Missing => Ok(Vec::new()),
            Body::Split { seq, parts } => {
                let found = self
                    .keys_with_prefix(op, session_id, &part_prefix(gen, seq), true)
                    .await?;
                Ok(reassemble(parts, &found))
            }
        }
    }

    /// Reads the metadata and walks the current generation's records newest first, calling
    /// `visit` with (sort key, record item, decoded) until it returns true.
    pub(super) async fn walk<F>(
        &self,
        op: Operation,
        session_id: &str,
        page_hint: Option<usize>,
        visit: F,
    ) -> Result<Option<Meta>>
    where
        F: FnMut(&str, &Row, Decoded) -> bool,
    {
        self.walk_leased(op, session_id, page_hint, None, visit)
            .await
    }

    /// As [`walk`](Self::walk), reading the lease item too when `lease` is given (see
    /// [`walk_raw_leased`](Self::walk_raw_leased)).
    pub(super) async fn walk_leased<F>(
        &self,
        op: Operation,
        session_id: &str,
        page_hint: Option<usize>,
        lease: Option<&mut Option<Row>>,
        mut visit: F,
    ) -> Result<Option<Meta>>
    where
        F: FnMut(&str, &Row, Decoded) -> bool,
    {
        self.walk_raw_leased(op, session_id, page_hint, lease, |sk, row, bytes| {
            visit(sk, row, self.codec.decode(session_id, bytes))
        })
        .await
    }

    /// As [`walk`](Self::walk), with each record's stored bytes (reassembled when split)
    /// instead of its decoding; `None` when the session does not exist or has expired.
    pub(super) async fn walk_raw<F>(
        &self,
        op: Operation,
        session_id: &str,
        page_hint: Option<usize>,
        visit: F,
    ) -> Result<Option<Meta>>
    where
        F: FnMut(&str, &Row, &[u8]) -> bool,
    {
        self.walk_raw_leased(op, session_id, page_hint, None, visit)
            .await
    }

    /// As [`walk_raw`](Self::walk_raw); with `lease`, the first Query starts one key higher,
    /// at the lease item (`m#lease`, just above the metadata), and the lease item (if any) is
    /// put there: a fenced write learns the lease with the read it makes anyway.
    pub(super) async fn walk_raw_leased<F>(
        &self,
        op: Operation,
        session_id: &str,
        page_hint: Option<usize>,
        mut lease: Option<&mut Option<Row>>,
        mut visit: F,
    ) -> Result<Option<Meta>>
    where
        F: FnMut(&str, &Row, &[u8]) -> bool,
    {
        let now = now_ms();
        let mut start = None;
        let mut meta: Option<Meta> = None;
        let mut below: Option<String> = None;
        loop {
            let with_lease = lease.is_some() && meta.is_none() && below.is_none();
            let limit = page_hint.map(|w| {
                w.saturating_add(1 + meta.as_ref().map_or(0, |m| m.pending.len()))
                    .saturating_add(usize::from(with_lease))
                    .min(1000) as i32
            });
            let (items, last) = self
                .query_page(
                    op,
                    session_id,
                    start.take(),
                    limit,
                    below.as_deref(),
                    with_lease,
                )
                .await?;
            let mut rows = items.iter().peekable();
            if with_lease {
                if let Some(row) = rows.next_if(|r| sk_of(r) == Some(LEASE_SK)) {
                    if let Some(out) = lease.as_deref_mut() {
                        *out = Some(row.clone());
                    }
                }
            }
            if meta.is_none() {
                let Some(first) = rows.next() else {
                    return Ok(None);
                };
                if sk_of(first) != Some(META_SK) {
                    return Ok(None); // no metadata: the session does not exist
                }
                let m = Meta::parse(first).map_err(|e| e.with_operation(op))?;
                self.remember(session_id, m.state(now));
                if m.expired(now) {
                    return Ok(None);
                }
                if !m.replacing.is_empty() {
                    // A staged replace writes a newer generation, which sorts above this one:
                    // read again from just below it.
                    below = Some(item_prefix(m.gen + 1));
                    meta = Some(m);
                    continue;
                }
                meta = Some(m);
            }
            let Some(m) = meta.as_ref() else {
                return Ok(None);
            };
            let prefix = item_prefix(m.gen);
            for row in rows {
                let sk = sk_of(row).unwrap_or_default().to_owned();
                if !sk.starts_with(&prefix) {
                    return Ok(meta); // an earlier life's records, or parts: the history ends
                }
                if batch_of(row).is_some_and(|b| m.pending.contains(b)) {
                    continue; // part of a batch not committed yet
                }
                let bytes = self.record_bytes(op, session_id, m.gen, row).await?;
                if visit(&sk, row, &bytes) {
                    return Ok(meta);
                }
            }
            match last {
                Some(key) => start = Some(key),
                None => return Ok(meta),
            }
        }
    }
}

impl DynamoDbBackend {
    pub(super) async fn get(&self, session_id: &str, limit: Option<usize>) -> Result<Vec<Item>> {
        let op = Operation::GetItems;
        let now = now_ms();
        let mut collector = TailCollector::new(limit);
        let meta = self
            .inner
            .walk(op, session_id, limit, |_, _, decoded| {
                collector.push(decoded)
            })
            .await?;
        if let Some(m) = &meta {
            self.maybe_refresh(op, session_id, m, now).await?;
        }
        collector.finish()
    }

    /// The newest `limit` items below sequence `before`, with their sequences. `None`: the
    /// newest-first walk (one Query: the metadata and `limit + 1` records); `Some`: the
    /// metadata (one GetItem) and one Query of the generation's range below `before`. More
    /// Queries only past undecodable records or uncommitted batches.
    pub(super) async fn before(
        &self,
        session_id: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<PageBefore> {
        let op = Operation::GetItems;
        let inner = &self.inner;
        let mut collector = BeforeCollector::new(limit);
        let Some(before) = before else {
            let hint = collector.wanted();
            let meta = inner
                .walk(op, session_id, Some(hint), |sk, _, decoded| {
                    let seq = seq_of(sk).unwrap_or(0).max(0) as u64;
                    collector.push(seq, decoded)
                })
                .await?;
            return Ok(if meta.is_some() {
                collector.finish()
            } else {
                PageBefore::default()
            });
        };
        let now = now_ms();
        let Some(meta) = inner.get_meta(op, session_id).await? else {
            return Ok(PageBefore::default());
        };
        if meta.expired(now) || before == 0 {
            return Ok(PageBefore::default());
        }
        let top = i64::try_from(before - 1).unwrap_or(i64::MAX);
        let mut start = None;
        loop {
            let limit = (collector.wanted() + meta.pending.len()).clamp(1, 1000) as i32;
            inner.stats.record_requests(op, 1);
            let out = inner
                .client
                .query()
                .table_name(&inner.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :a AND :b")
                .expression_attribute_values(":pk", s(session_id))
                .expression_attribute_values(":a", s(item_sk(meta.gen, 0)))
                .expression_attribute_values(":b", s(item_sk(meta.gen, top)))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit(limit)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| map_sdk(op, &inner.table, e))?;
            for row in out.items() {
                let Some(seq) = sk_of(row).and_then(seq_of) else {
                    continue;
                };
                if batch_of(row).is_some_and(|b| meta.pending.contains(b)) {
                    continue; // part of a batch not committed yet
                }
                let record = inner.record_bytes(op, session_id, meta.gen, row).await?;
                if collector.push(seq.max(0) as u64, inner.codec.decode(session_id, &record)) {
                    return Ok(collector.finish());
                }
            }
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(collector.finish());
            }
        }
    }

    /// With `refresh_on_read`, pushes the expiry forward: at most one UpdateItem, skipped when
    /// it was extended less than max(1 s, 1% of the TTL) ago.
    async fn maybe_refresh(
        &self,
        op: Operation,
        session_id: &str,
        m: &Meta,
        now: i64,
    ) -> Result<()> {
        let inner = &self.inner;
        let (Some(ttl), Some(expires)) = (inner.ttl_ms(), m.expires_at) else {
            return Ok(());
        };
        if !inner.options.refresh_on_read || now - (expires - ttl) < (ttl / 100).max(1000) {
            return Ok(());
        }
        let at = now + ttl;
        let cond = "#gen = :gen AND #exp > :now";
        let update = "SET #exp = :exp, #ttl = :ttl";
        let result = inner
            .update_meta(
                op,
                session_id,
                cond,
                update,
                vec![
                    (":gen", n(m.gen)),
                    (":now", n(now)),
                    (":exp", n(at)),
                    (":ttl", n(inner.item_ttl(Some(at)).unwrap_or(0))),
                ],
                &[],
            )
            .send()
            .await;
        match result {
            Ok(_) => {
                self.maybe_restamp(session_id, m, at);
                Ok(())
            }
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(map_sdk(op, &inner.table, e)),
        }
    }

    /// The metadata and the live lease: one Query of the two items (`m`, `m#lease`).
    pub(super) async fn info(&self, session_id: &str) -> Result<Option<SessionInfo>> {
        let op = Operation::SessionInfo;
        let (meta, lease) = self.inner.meta_and_lease(op, session_id).await?;
        let now = now_ms();
        let lease = lease
            .as_ref()
            .and_then(lease_of)
            .filter(|l| l.is_live_at(Timestamp::from_millis(now)));
        Ok(meta.filter(|m| !m.expired(now)).map(|m| {
            SessionInfo::new(
                session_id,
                m.count.max(0) as u64,
                Timestamp::from_millis(m.created_at),
                Timestamp::from_millis(m.updated_at),
                m.expires_at.map(Timestamp::from_millis),
            )
            .with_lease(lease)
        }))
    }

    pub(super) async fn list(&self, options: &ListOptions) -> Result<SessionPage> {
        let op = Operation::ListSessions;
        let inner = &self.inner;
        let page_size = options.effective_page_size();
        let prefix = options.prefix.clone().unwrap_or_default();
        let now = now_ms();
        let mut ids = Vec::new();
        let mut start = options.cursor.as_deref().map(index_key);
        loop {
            let mut q = inner
                .client
                .query()
                .table_name(&inner.table)
                .index_name(SESSIONS_INDEX)
                .expression_attribute_values(":lk", s("s"))
                .limit((page_size - ids.len()).clamp(1, 1000) as i32)
                .set_exclusive_start_key(start.take());
            q = if prefix.is_empty() {
                q.key_condition_expression("lk = :lk")
            } else {
                q.key_condition_expression("lk = :lk AND begins_with(sid, :p)")
                    .expression_attribute_values(":p", s(prefix.clone()))
            };
            inner.stats.record_requests(op, 1);
            let out = q.send().await.map_err(|e| map_sdk(op, &inner.table, e))?;
            for row in out.items() {
                let expired = num_attr(row, "expires_at").is_some_and(|at| at <= now);
                if let (false, Some(id)) = (expired, str_attr(row, "sid")) {
                    ids.push(id.clone());
                }
            }
            let last = out.last_evaluated_key().cloned();
            match last {
                Some(key) if ids.len() < page_size => start = Some(key),
                Some(key) => {
                    let cursor = str_attr(&key, "sid").cloned();
                    return Ok(SessionPage::new(ids, cursor));
                }
                None => return Ok(SessionPage::new(ids, None)),
            }
        }
    }
}
