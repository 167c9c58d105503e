//! Staged writes (sessions of any size, `--on-existing replace`) and pages: the commit
//! protocol with the batch kept open across parts. Appends reserve sequences up front and
//! commit as a batch does; replaces write a new generation that the commit makes current.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::{DeleteRequest, PutRequest, ReturnValue, WriteRequest};

use super::error::{build_error, is_condition_failure, map_sdk};
use super::layout::{
    batch_of, gen_part_prefix, item_key, item_prefix, item_sk, n, part_sk, pending_attr, prepare,
    record_items, replacing_attr, s, seq_of, sk_of, Meta, Prepared, Row,
};
use super::{now_ms, Inner};
use crate::codec::Decoded;
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::item::Item;
use crate::staged::{ItemPage, StagedWrite};
use crate::store::BoxFuture;

/// How long a replaced generation stays readable for readers that saw the metadata before the
/// replace committed.
pub(super) const REPLACED_GENERATION_GRACE: Duration = Duration::from_secs(10);
/// How many times a rewrite's reservation reads the metadata again after losing a race.
const RESERVE_ATTEMPTS: usize = 50;

/// Where a staged write's records go, once reserved.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    /// After the session's records: `capacity` sequences reserved from `start` in `gen`.
    Append { gen: i64, start: i64, capacity: i64 },
    /// A new generation, named by the pending replace; becomes the session's at the commit.
    Replace { gen: i64 },
}

/// A staged write of the DynamoDB backend: the commit protocol with the batch kept open.
/// Appends reserve the expected number of sequences up front (more later, still contiguous,
/// unless another writer got in between: then the write fails and nothing is visible);
/// replaces write a new generation that the commit makes current in one conditional update.
/// Readers skip pending batches' records and never read another generation, so nothing is
/// visible before the commit. Dropped without a commit, it deletes what it wrote in the
/// background; what a crash leaves stays invisible, and `prune` reclaims it after
/// `stale_stage_after`.
pub(super) struct DynamoStaged<'a> {
    inner: &'a Arc<Inner>,
    session_id: String,
    replace: bool,
    expected: i64,
    batch: String,
    target: Option<Target>,
    count: i64,
    /// Records written split into parts, as (sequence, parts): what an abandon must delete
    /// besides the records themselves.
    split: Vec<(i64, usize)>,
    /// Sequences (from the start) that parts may have written, failed ones included.
    used: i64,
    committed: bool,
    /// Set by `abort`: later appends and commits are errors (with nothing staged, a replace's
    /// commit would make an empty generation current).
    aborted: bool,
}

impl<'a> DynamoStaged<'a> {
    /// A staged write of `session_id`; nothing is reserved before its first part.
    pub(super) fn new(
        inner: &'a Arc<Inner>,
        session_id: &str,
        replace: bool,
        expected_items: Option<u64>,
    ) -> Self {
        DynamoStaged {
            inner,
            session_id: session_id.to_owned(),
            replace,
            expected: expected_items.unwrap_or(0).min(i64::MAX as u64) as i64,
            batch: inner.token(),
            target: None,
            count: 0,
            split: Vec::new(),
            used: 0,
            committed: false,
            aborted: false,
        }
    }
}

impl DynamoStaged<'_> {
    fn check_not_aborted(&self, op: Operation) -> Result<()> {
        if self.aborted {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                op,
                "the staged write was aborted; nothing was written",
            ));
        }
        Ok(())
    }

    async fn open(&mut self, first: i64) -> Result<Target> {
        if let Some(t) = self.target {
            return Ok(t);
        }
        let op = Operation::AddItems;
        let inner = self.inner;
        let target = if self.replace {
            match inner
                .reserve_replace(op, &self.session_id, &self.batch)
                .await?
            {
                Some(gen) => Target::Replace { gen },
                None => self.reserve_append(first).await?,
            }
        } else {
            self.reserve_append(first).await?
        };
        self.target = Some(target);
        Ok(target)
    }

    async fn reserve_append(&mut self, first: i64) -> Result<Target> {
        let capacity = self.expected.max(first).max(1);
        let (gen, start, _) = self
            .inner
            .reserve(Operation::AddItems, &self.session_id, &self.batch, capacity)
            .await?;
        Ok(Target::Append {
            gen,
            start,
            capacity,
        })
    }
}

impl StagedWrite for DynamoStaged<'_> {
    fn append(&mut self, items: Vec<Item>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let op = Operation::AddItems;
            self.check_not_aborted(op)?;
            let k = items.len() as i64;
            let mut target = self.open(k).await?;
            if let Target::Append {
                gen,
                start,
                capacity,
            } = target
            {
                if self.count + k > capacity {
                    let more = (self.count + k - capacity).max(capacity);
                    self.inner
                        .extend_reservation(
                            op,
                            &self.session_id,
                            &self.batch,
                            gen,
                            start + capacity,
                            more,
                        )
                        .await?;
                    target = Target::Append {
                        gen,
                        start,
                        capacity: capacity + more,
                    };
                    self.target = Some(target);
                }
            }
            let (gen, first_seq) = match target {
                Target::Append { gen, start, .. } => (gen, start + self.count),
                Target::Replace { gen } => (gen, self.count),
            };
            let inner = self.inner;
            let prepared: Vec<Prepared> = items
                .iter()
                .map(|i| {
                    prepare(
                        &inner.codec,
                        &self.session_id,
                        inner.codec.encode(&self.session_id, i)?,
                    )
                })
                .collect::<Result<_>>()?;
            drop(items);
            let ttl_attr = inner.item_ttl(inner.ttl_ms().map(|t| now_ms() + t));
            let mut requests = Vec::new();
            for item in record_items(
                &self.session_id,
                gen,
                first_seq,
                &prepared,
                ttl_attr,
                Some(&self.batch),
            ) {
                let put = PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(|e| build_error(op, e))?;
                requests.push(WriteRequest::builder().put_request(put).build());
            }
            // Known before the write, so that an abandon after a failed part deletes it too.
            self.split.extend(
                prepared
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.head.is_none())
                    .map(|(i, p)| (first_seq + i as i64, p.parts.len())),
            );
            // Sequences possibly written, for an abandon; `count` only once the part is whole.
            self.used = self.used.max(self.count + k);
            inner.batch_write(op, requests).await?;
            self.count += k;
            Ok(())
        })
    }

    fn commit(&mut self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let op = Operation::AddItems;
            self.check_not_aborted(op)?;
            let target = self.open(0).await?;
            let inner = self.inner;
            match target {
                Target::Append { gen, .. } => {
                    inner
                        .commit_batch(op, &self.session_id, &self.batch, gen, self.count)
                        .await?
                }
                Target::Replace { gen } => {
                    inner
                        .commit_replace(op, &self.session_id, &self.batch, gen, self.count)
                        .await?
                }
            }
            self.committed = true;
            Ok(self.count as u64)
        })
    }

    fn abort(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.aborted = true;
            let (false, Some(target)) = (self.committed, self.target) else {
                return Ok(()); // committed, or nothing reserved: nothing to delete
            };
            // Awaited, unlike `Drop`'s: a caller about to exit (the CLI on Ctrl-C) knows that
            // the records, their parts and the pending marks are gone. On failure the write
            // stays unfinished, so `Drop` tries once more in the background, then `prune`.
            self.inner
                .abandon(
                    &self.session_id,
                    &self.batch,
                    target,
                    self.used,
                    &self.split,
                )
                .await?;
            self.target = None;
            self.split.clear();
            Ok(())
        })
    }
}

impl Drop for DynamoStaged<'_> {
    fn drop(&mut self) {
        // Abandoned without a (successful) `abort`: delete what was written (in the background, when a runtime is at hand),
        // then the pending marks. A crash leaves it all invisible, for prune.
        let (false, Some(target)) = (self.committed, self.target) else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = Arc::clone(self.inner);
        let (id, batch) = (self.session_id.clone(), self.batch.clone());
        let (count, split) = (self.used, std::mem::take(&mut self.split));
        handle.spawn(async move {
            if let Err(e) = inner.abandon(&id, &batch, target, count, &split).await {
                tracing::debug!(error = %e, "cleaning up an abandoned staged write failed; prune reclaims it");
            }
        });
    }
}

impl Inner {
    /// Deletes an abandoned staged write's records (a replace's whole generation; an append's
    /// `count` sequences from its start, and the parts of its split records), then its
    /// pending marks, which must outlive the records they hide.
    pub(super) async fn abandon(
        &self,
        session_id: &str,
        batch: &str,
        target: Target,
        count: i64,
        split: &[(i64, usize)],
    ) -> Result<()> {
        let op = Operation::Prune;
        let keys: Vec<Row> = match target {
            Target::Replace { gen } => {
                let mut keys = self
                    .keys_with_prefix(op, session_id, &item_prefix(gen), false)
                    .await?;
                keys.extend(
                    self.keys_with_prefix(op, session_id, &gen_part_prefix(gen), false)
                        .await?,
                );
                keys
            }
            Target::Append { gen, start, .. } => (start..start + count)
                .map(|seq| item_key(session_id, item_sk(gen, seq)))
                .chain(split.iter().flat_map(|&(seq, parts)| {
                    (0..parts).map(move |k| item_key(session_id, part_sk(gen, seq, k)))
                }))
                .collect(),
        };
        let mut requests = Vec::with_capacity(keys.len());
        for k in keys {
            let d = DeleteRequest::builder()
                .set_key(Some(k))
                .build()
                .map_err(|e| build_error(op, e))?;
            requests.push(WriteRequest::builder().delete_request(d).build());
        }
        self.batch_write(op, requests).await?;
        let pending = pending_attr(batch);
        let replacing = replacing_attr(batch);
        match self
            .update_meta(
                op,
                session_id,
                "attribute_exists(#b)",
                "REMOVE #b, #q",
                Vec::new(),
                &[("#b", pending.as_str()), ("#q", replacing.as_str())],
            )
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()), // cleared or pruned meanwhile
            Err(e) => Err(map_sdk(op, &self.table, e)),
        }
    }

    /// One page of the live session's records after sequence `after`, oldest first: one
    /// GetItem of the metadata, then ascending Queries of the current generation.
    pub(super) async fn page(
        &self,
        session_id: &str,
        after: Option<u64>,
        max_bytes: usize,
    ) -> Result<ItemPage> {
        let op = Operation::GetItems;
        let now = now_ms();
        if after.is_none() {
            // The common case, a session within the budget, is one Query: the newest-first
            // walk (metadata and records together), given up once past the budget.
            let (mut items, mut bytes, mut over) = (Vec::new(), 0usize, false);
            let meta = self
                .walk(op, session_id, None, |_, _, decoded| {
                    if let Decoded::Valid(item) = decoded {
                        bytes += item.len_bytes();
                        items.push(item);
                    }
                    over = bytes > max_bytes;
                    over
                })
                .await?;
            if meta.is_none() {
                return Ok(ItemPage::default());
            }
            if !over {
                items.reverse();
                return Ok(ItemPage::new(items, None));
            }
        }
        let Some(meta) = self.get_meta(op, session_id).await? else {
            return Ok(ItemPage::default());
        };
        if meta.expired(now) {
            return Ok(ItemPage::default());
        }
        let from = after.map_or(0, |a| (a as i64).saturating_add(1));
        let (mut items, mut bytes, mut last) = (Vec::new(), 0usize, from - 1);
        let mut start = None;
        loop {
            self.stats.record_requests(op, 1);
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :a AND :b")
                .expression_attribute_values(":pk", s(session_id))
                .expression_attribute_values(":a", s(item_sk(meta.gen, from)))
                .expression_attribute_values(":b", s(item_sk(meta.gen, i64::MAX)))
                .consistent_read(true)
                .limit(100)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| map_sdk(op, &self.table, e))?;
            for row in out.items() {
                if bytes >= max_bytes {
                    return Ok(ItemPage::new(items, Some(last as u64)));
                }
                let Some(seq) = sk_of(row).and_then(seq_of) else {
                    continue;
                };
                last = seq;
                if batch_of(row).is_some_and(|b| meta.pending.contains(b)) {
                    continue; // part of a batch not committed yet
                }
                let record = self.record_bytes(op, session_id, meta.gen, row).await?;
                let decoded = self.codec.decode(session_id, &record);
                if let Some(e) = decoded.read_error(op) {
                    return Err(e);
                }
                if let Decoded::Valid(item) = decoded {
                    bytes += item.len_bytes();
                    items.push(item);
                }
            }
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(ItemPage::new(items, None));
            }
        }
    }

    /// A replace's reservation: marks the batch pending and names its new generation in the
    /// metadata of an existing session (live or expired). `None` when the session does not
    /// exist: a replace is then an append to a new session.
    async fn reserve_replace(
        &self,
        op: Operation,
        session_id: &str,
        batch: &str,
    ) -> Result<Option<i64>> {
        let pending = pending_attr(batch);
        let replacing = replacing_attr(batch);
        // Above every generation reserved before (`rg`): two rewrites never share one.
        let cond = "attribute_exists(#pk) AND (attribute_not_exists(#rg) OR #rg < :gen)";
        let update = "SET #b = :now, #q = :gen, #rg = :gen";
        for _ in 0..RESERVE_ATTEMPTS {
            let now = now_ms();
            let Some(meta) = self.get_meta(op, session_id).await? else {
                return Ok(None);
            };
            let gen = meta.next_generation(now);
            let result = self
                .update_meta(
                    op,
                    session_id,
                    cond,
                    update,
                    vec![(":now", n(now)), (":gen", n(gen))],
                    &[("#b", pending.as_str()), ("#q", replacing.as_str())],
                )
                .send()
                .await;
            match result {
                Ok(_) => return Ok(Some(gen)),
                // Cleared meanwhile (the next read says so), or another rewrite reserved
                // that generation first: read again.
                Err(e) if is_condition_failure(&e) => {}
                Err(e) => return Err(map_sdk(op, &self.table, e)),
            }
        }
        Err(Error::new(
            ErrorKind::Timeout,
            op,
            "other rewrites of the session kept reserving generations; nothing was written",
        ))
    }

    /// Reserves `more` sequences right after an append's reservation, only if nobody else
    /// reserved any since (so the batch stays contiguous).
    async fn extend_reservation(
        &self,
        op: Operation,
        session_id: &str,
        batch: &str,
        gen: i64,
        next: i64,
        more: i64,
    ) -> Result<()> {
        let pending = pending_attr(batch);
        let cond = "#gen = :gen AND #next = :next AND attribute_exists(#b)";
        let update = "SET #next = :n2";
        self.update_meta(op, session_id, cond, update, vec![
                (":gen", n(gen)),
                (":next", n(next)),
                (":n2", n(next + more)),
            ], &[("#b", pending.as_str())])
            .send()
            .await
            .map_err(|e| {
                if is_condition_failure(&e) {
                    Error::new(
                        ErrorKind::Backend,
                        op,
                        "the session was written or cleared during a staged write that outgrew its reservation; nothing of it is visible",
                    )
                } else {
                    map_sdk(op, &self.table, e)
                }
            })?;
        self.forget(session_id);
        Ok(())
    }

    /// Commits a replace: one conditional update makes the staged generation current (with
    /// `k` records, a new `created_at` and expiry, a new life) while the batch is still pending, then the
    /// old generation's records are deleted in the background (or by prune and TTL).
    async fn commit_replace(
        self: &Arc<Self>,
        op: Operation,
        session_id: &str,
        batch: &str,
        gen: i64,
        k: i64,
    ) -> Result<()> {
        let pending = pending_attr(batch);
        let replacing = replacing_attr(batch);
        let (expires, values) = self.commit_values(gen, k);
        let cond = "attribute_exists(#b) AND #q = :gen";
        let update = if expires {
            "SET #gen = :gen, #next = :k, #count = :k, #cre = :now, #upd = :now, #exp = :exp, #ttl = :ttl, #stamp = :ttl REMOVE #b, #q, #life"
        } else {
            "SET #gen = :gen, #next = :k, #count = :k, #cre = :now, #upd = :now REMOVE #b, #q, #life, #exp, #ttl, #stamp"
        };
        let result = self
            .update_meta(
                op,
                session_id,
                cond,
                update,
                values,
                &[("#b", pending.as_str()), ("#q", replacing.as_str())],
            )
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        self.forget(session_id);
        let old = match result {
            Ok(out) => out.attributes().and_then(|a| Meta::parse(a).ok()),
            // Cleared meanwhile: the replace is discarded, as if it had come just before.
            Err(e) if is_condition_failure(&e) => None,
            Err(e) => return Err(map_sdk(op, &self.table, e)),
        };
        if let Some(old) = old {
            // Later, not now: a reader that saw the metadata just before this commit reads the
            // old generation's records with its next request.
            // A new life: the operation ids of the replaced one are forgotten at once (no
            // metadata names their life) and deleted with its records.
            self.delete_generation_later(
                session_id,
                old.gen,
                Some(old.life),
                REPLACED_GENERATION_GRACE,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::dynamodb::config::DynamoConfig;
    use crate::backend::dynamodb::DynamoDbBackend;
    use crate::store::StoreOptions;

    /// A backend whose client points nowhere: these tests send no request.
    fn offline() -> DynamoDbBackend {
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "x", "x", None, None, "test",
            ))
            .build();
        DynamoDbBackend::new(
            aws_sdk_dynamodb::Client::from_conf(conf),
            &DynamoConfig::for_table("t".to_owned()),
            StoreOptions::default(),
        )
    }

    #[tokio::test]
    async fn after_abort_appends_and_commits_are_errors() {
        let backend = offline();
        for replace in [false, true] {
            let mut w = DynamoStaged::new(&backend.inner, "s", replace, Some(3));
            // Nothing reserved yet: nothing to delete, no request.
            w.abort().await.unwrap();
            assert!(w.aborted && w.target.is_none());
            let e = w.commit().await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert_eq!(
                e.message(),
                "the staged write was aborted; nothing was written"
            );
            let item: Item = r#"{"a":1}"#.parse().unwrap();
            let e = w.append(vec![item]).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            // Aborting again is harmless.
            w.abort().await.unwrap();
            assert!(!w.committed);
        }
        assert_eq!(backend.inner.stats.requests(Operation::AddItems), 0);
        assert_eq!(backend.inner.stats.requests(Operation::Prune), 0);
    }
}
