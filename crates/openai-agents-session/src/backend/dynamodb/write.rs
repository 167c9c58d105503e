//! Writes: appends (up to one transaction's worth in one TransactWriteItems, larger batches
//! through the commit protocol), pop, clear, and the conditional metadata updates they share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, PutRequest, ReturnValue, TransactWriteItem, Update, WriteRequest,
};

use super::error::{
    build_error, cancellation_reasons, is_condition_failure, is_throttling, map_sdk, Reason,
};
use super::layout::{
    expr_maps, meta_item, meta_key, n, new_life, part_prefix, parts_of, pending_attr, prepare,
    record_items, s, seq_of, Meta, MetaState, Prepared, Row,
};
use super::lease::{check_read, failed_at, fenced_by};
use super::staged::Target;
use super::{now_ms, DynamoDbBackend, Inner};
use crate::codec::Decoded;
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::item::Item;
use crate::time::{advance_updated, Timestamp};

/// A transaction carries at most 100 actions and 4 MB.
pub(super) const MAX_TX_ACTIONS: usize = 100;
pub(super) const MAX_TX_BYTES: usize = 3_500_000;
const WRITE_ATTEMPTS: usize = 200;

/// What a reservation reserved: where the batch goes, the session's life, and whether the
/// reservation created the session's metadata (a new session, or a new life after expiry).
#[derive(Debug, Clone, Copy)]
pub(super) struct Reserved {
    pub(super) gen: i64,
    pub(super) start: i64,
    pub(super) life: i64,
    pub(super) created: bool,
}

/// A reservation's write, before it is sent alone or in a transaction with a fence.
enum ReserveWrite {
    Update(aws_sdk_dynamodb::types::builders::UpdateBuilder),
    Put(aws_sdk_dynamodb::types::builders::PutBuilder),
}

pub(super) fn backoff(attempt: usize) -> Duration {
    let base = 5u64 << attempt.min(6);
    let jitter = (now_ms() as u64 ^ (attempt as u64).wrapping_mul(0x9E37_79B9)) % base.max(1);
    Duration::from_millis(base + jitter)
}

impl Inner {
    /// The metadata item of a new session (or of a new life after expiry).
    pub(super) fn new_meta(
        &self,
        session_id: &str,
        gen: i64,
        next: i64,
        count: i64,
        now: i64,
        pending: Option<&str>,
    ) -> Row {
        let expires_at = self.ttl_ms().map(|t| now + t);
        let expiry = expires_at.zip(self.item_ttl(expires_at));
        meta_item(session_id, gen, next, count, now, expiry, pending)
    }

    /// Appends records as one atomic batch; with `fence`, only while that token is the
    /// session's live lease's (checked in the transaction that makes the batch visible).
    pub(super) async fn append(
        &self,
        op: Operation,
        session_id: &str,
        records: Vec<Vec<u8>>,
        fence: Option<u64>,
    ) -> Result<()> {
        let _turn = self.turn(session_id).await;
        let prepared: Vec<Prepared> = records
            .into_iter()
            .map(|r| prepare(&self.codec, session_id, r))
            .collect::<Result<_>>()?;
        // The metadata write, every record and part, and the fence's ConditionCheck.
        let actions: usize = prepared.iter().map(Prepared::actions).sum::<usize>()
            + 1
            + usize::from(fence.is_some());
        let bytes: usize = prepared.iter().map(Prepared::bytes).sum();
        if actions <= MAX_TX_ACTIONS && bytes <= MAX_TX_BYTES {
            self.append_transaction(op, session_id, &prepared, fence)
                .await
        } else {
            self.append_committed(op, session_id, &prepared, fence)
                .await
        }
    }
    /// Up to one transaction's worth: one TransactWriteItems (the metadata write and every
    /// record), idempotent through its ClientRequestToken. The sequence numbers are guessed from
    /// the last metadata seen, and the guess is the transaction's condition: a stale guess fails,
    /// is corrected with one GetItem, and the transaction is retried.
    async fn append_transaction(
        &self,
        op: Operation,
        session_id: &str,
        prepared: &[Prepared],
        fence: Option<u64>,
    ) -> Result<()> {
        let k = prepared.len() as i64;
        let mut state = self.guess(session_id);
        for attempt in 0..WRITE_ATTEMPTS {
            let now = now_ms();
            let expires_at = self.ttl_ms().map(|t| now + t);
            let ttl_attr = self.item_ttl(expires_at);
            let (gen, start, meta_write, new_state) = match state {
                MetaState::Live {
                    gen,
                    next,
                    updated,
                    stamp,
                    life,
                } => {
                    let upd = advance_updated(
                        Some(Timestamp::from_millis(updated)),
                        Timestamp::from_millis(now),
                    )
                    .as_millis();
                    let cond = "#gen = :gen AND #next = :next AND (attribute_not_exists(#exp) OR #exp > :now)";
                    let update = match expires_at {
                        Some(_) => "SET #next = :n2, #count = #count + :k, #upd = :upd, #exp = :exp, #ttl = :ttl, #stamp = if_not_exists(#stamp, :ttl)",
                        None => "SET #next = :n2, #count = #count + :k, #upd = :upd REMOVE #exp, #ttl, #stamp",
                    };
                    let (names, values) = expr_maps(
                        &[cond, update],
                        vec![
                            (":gen", n(gen)),
                            (":next", n(next)),
                            (":now", n(now)),
                            (":n2", n(next + k)),
                            (":k", n(k)),
                            (":upd", n(upd)),
                            (":exp", n(expires_at.unwrap_or(0))),
                            (":ttl", n(ttl_attr.unwrap_or(0))),
                        ],
                        &[],
                    );
                    let u = Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(meta_key(session_id)))
                        .condition_expression(cond)
                        .update_expression(update)
                        .set_expression_attribute_names(names)
                        .set_expression_attribute_values(values)
                        .build()
                        .map_err(|e| build_error(op, e))?;
                    (
                        gen,
                        next,
                        TransactWriteItem::builder().update(u).build(),
                        MetaState::Live {
                            gen,
                            next: next + k,
                            updated: upd,
                            stamp: if stamp == 0 {
                                ttl_attr.unwrap_or(0)
                            } else {
                                stamp
                            },
                            life,
                        },
                    )
                }
                MetaState::Missing | MetaState::Expired { .. } => {
                    let (gen, cond, (names, values)) = new_life(state, now);
                    let p = Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(self.new_meta(session_id, gen, k, k, now, None)))
                        .condition_expression(cond)
                        .set_expression_attribute_names(names)
                        .set_expression_attribute_values(values)
                        .build()
                        .map_err(|e| build_error(op, e))?;
                    (
                        gen,
                        0,
                        TransactWriteItem::builder().put(p).build(),
                        MetaState::Live {
                            gen,
                            next: k,
                            updated: now,
                            stamp: ttl_attr.unwrap_or(0),
                            life: gen,
                        },
                    )
                }
            };
            let mut items = vec![meta_write];
            for record in record_items(session_id, gen, start, prepared, ttl_attr, None) {
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(record))
                    .build()
                    .map_err(|e| build_error(op, e))?;
                items.push(TransactWriteItem::builder().put(put).build());
            }
            let fence_at = items.len();
            if let Some(token) = fence {
                items.push(self.fence_check(op, session_id, token, now)?);
            }
            match self.send_transaction(op, items).await {
                Ok(Ok(())) => {
                    self.remember(session_id, new_state);
                    return Ok(());
                }
                Ok(Err(reasons)) if fence.is_some() && failed_at(&reasons, fence_at) => {
                    let token = fence.unwrap_or_default();
                    return Err(fenced_by(op, token, &reasons[fence_at]));
                }
                // Our picture of the metadata was stale: read it, rebuild, new token.
                Ok(Err(_)) => {
                    if attempt > 0 {
                        tokio::time::sleep(backoff(attempt.min(3))).await;
                    }
                    state = self.read_state(op, session_id).await?;
                }
                Err(e) => {
                    self.forget(session_id);
                    return Err(e);
                }
            }
        }
        Err(Error::new(
            ErrorKind::Timeout,
            op,
            format!("gave up after {WRITE_ATTEMPTS} conflicting attempts; nothing was written"),
        ))
    }

    /// Sends one TransactWriteItems. A conflict with a concurrent transaction (or throttling
    /// the SDK gave up on) resends the very same request with the same ClientRequestToken: if
    /// an earlier attempt was applied after all, DynamoDB answers it without applying it twice.
    /// `Ok(Err(reasons))`: cancelled because a condition failed (one reason per action).
    pub(super) async fn send_transaction(
        &self,
        op: Operation,
        items: Vec<TransactWriteItem>,
    ) -> Result<std::result::Result<(), Vec<Reason>>> {
        let token = self.token();
        let mut conflicts = 0;
        loop {
            self.stats.record_requests(op, 1);
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .client_request_token(&token)
                .send()
                .await;
            match result {
                Ok(_) => return Ok(Ok(())),
                Err(e) => match cancellation_reasons(&e) {
                    Some(reasons) if reasons.iter().any(Reason::failed_condition) => {
                        return Ok(Err(reasons))
                    }
                    Some(_) if conflicts < 30 => {
                        conflicts += 1;
                        tokio::time::sleep(backoff(conflicts)).await;
                    }
                    _ if is_throttling(&e) && conflicts < 30 => {
                        conflicts += 1;
                        tokio::time::sleep(backoff(conflicts)).await;
                    }
                    _ => return Err(map_sdk(op, &self.table, e)),
                },
            }
        }
    }

    /// A ClientRequestToken (and batch id) unique across stores, processes and hosts.
    pub(super) fn token(&self) -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let seed = SEED.get_or_init(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            nanos ^ (u64::from(std::process::id()) << 32)
        });
        format!("oas{seed:x}{:x}", COUNTER.fetch_add(1, Ordering::Relaxed))
    }

    /// The commit protocol's first step: reserves `k` sequence numbers after the session's
    /// newest and marks `batch` pending in the metadata (creating it for a new session, or a
    /// new life after expiry) with one conditional write. Returns (generation, first sequence,
    /// life).
    pub(super) async fn reserve(
        &self,
        op: Operation,
        session_id: &str,
        batch: &str,
        k: i64,
    ) -> Result<(i64, i64, i64)> {
        let r = self.reserve_fenced(op, session_id, batch, k, None).await?;
        Ok((r.gen, r.start, r.life))
    }

    /// As [`reserve`](Self::reserve); with `fence`, the write is a TransactWriteItems with the
    /// lease's ConditionCheck (still one request), so that a stale holder writes no batch.
    pub(super) async fn reserve_fenced(
        &self,
        op: Operation,
        session_id: &str,
        batch: &str,
        k: i64,
        fence: Option<u64>,
    ) -> Result<Reserved> {
        let pending = pending_attr(batch);
        let extra = [("#b", pending.as_str())];
        let mut attempt = 0;
        loop {
            attempt += 1;
            let now = now_ms();
            let state = self.read_state(op, session_id).await?;
            // The write: a conditional update of the live session's metadata, or a new
            // session's metadata put on the condition that it is still missing (or expired).
            let (write, reserved) = match state {
                MetaState::Live {
                    gen, next, life, ..
                } => {
                    let cond = "#gen = :gen AND #next = :next AND (attribute_not_exists(#exp) OR #exp > :now)";
                    let update = "SET #next = :n2, #b = :now";
                    let (names, values) = expr_maps(
                        &[cond, update],
                        vec![
                            (":gen", n(gen)),
                            (":next", n(next)),
                            (":now", n(now)),
                            (":n2", n(next + k)),
                        ],
                        &extra,
                    );
                    let update = Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(meta_key(session_id)))
                        .condition_expression(cond)
                        .update_expression(update)
                        .set_expression_attribute_names(names)
                        .set_expression_attribute_values(values);
                    let reserved = Reserved {
                        gen,
                        start: next,
                        life,
                        created: false,
                    };
                    (ReserveWrite::Update(update), reserved)
                }
                MetaState::Missing | MetaState::Expired { .. } => {
                    let (gen, cond, (names, values)) = new_life(state, now);
                    let mut item = self.new_meta(session_id, gen, k, 0, now, Some(batch));
                    // Not visible until committed: no expiry yet, so the reservation itself
                    // never expires the session early.
                    item.remove("expires_at");
                    let put = Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(item))
                        .condition_expression(cond)
                        .set_expression_attribute_names(names)
                        .set_expression_attribute_values(values);
                    let reserved = Reserved {
                        gen,
                        start: 0,
                        life: gen,
                        created: true,
                    };
                    (ReserveWrite::Put(put), reserved)
                }
            };
            let result = match fence {
                None => self.send_reserve(op, write).await,
                Some(token) => {
                    let meta = match write {
                        ReserveWrite::Update(u) => TransactWriteItem::builder()
                            .update(u.build().map_err(|e| build_error(op, e))?)
                            .build(),
                        ReserveWrite::Put(p) => TransactWriteItem::builder()
                            .put(p.build().map_err(|e| build_error(op, e))?)
                            .build(),
                    };
                    let check = self.fence_check(op, session_id, token, now)?;
                    match self.send_transaction(op, vec![meta, check]).await? {
                        Ok(()) => Ok(()),
                        Err(reasons) if failed_at(&reasons, 1) => {
                            return Err(fenced_by(op, token, &reasons[1]))
                        }
                        Err(_) => Err((
                            true,
                            Error::new(ErrorKind::Timeout, op, "the reservation kept failing"),
                        )),
                    }
                }
            };
            match result {
                Ok(()) => return Ok(reserved),
                Err((true, _)) if attempt < WRITE_ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt)).await
                }
                Err((_, e)) => return Err(e),
            }
        }
    }

    /// An unfenced reservation's one conditional write; `Err((true, _))` when its condition
    /// failed.
    async fn send_reserve(
        &self,
        op: Operation,
        write: ReserveWrite,
    ) -> std::result::Result<(), (bool, Error)> {
        self.stats.record_requests(op, 1);
        match write {
            ReserveWrite::Update(u) => {
                let u = u.build().map_err(|e| (false, build_error(op, e)))?;
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(u.key().clone()))
                    .set_condition_expression(u.condition_expression().map(str::to_owned))
                    .update_expression(u.update_expression())
                    .set_expression_attribute_names(u.expression_attribute_names().cloned())
                    .set_expression_attribute_values(u.expression_attribute_values().cloned())
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| (is_condition_failure(&e), map_sdk(op, &self.table, e)))
            }
            ReserveWrite::Put(p) => {
                let p = p.build().map_err(|e| (false, build_error(op, e)))?;
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(p.item().clone()))
                    .set_condition_expression(p.condition_expression().map(str::to_owned))
                    .set_expression_attribute_names(p.expression_attribute_names().cloned())
                    .set_expression_attribute_values(p.expression_attribute_values().cloned())
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| (is_condition_failure(&e), map_sdk(op, &self.table, e)))
            }
        }
    }

    /// Batches too large for one transaction (imports, 10,000 items, huge items): reserve the
    /// sequence range and mark the batch pending in the metadata (one write), write the records
    /// tagged with the batch id (BatchWriteItem, 25 at a time), then commit by removing the
    /// pending mark (one write). Readers skip records of pending batches, so nobody sees part of
    /// a batch; a crash leaves only invisible records, which `prune` reclaims.
    async fn append_committed(
        &self,
        op: Operation,
        session_id: &str,
        prepared: &[Prepared],
        fence: Option<u64>,
    ) -> Result<()> {
        let k = prepared.len() as i64;
        let batch = self.token();
        // 1. Reserve (fenced: in one transaction with the lease's ConditionCheck).
        let reserved = self
            .reserve_fenced(op, session_id, &batch, k, fence)
            .await?;
        let (gen, start) = (reserved.gen, reserved.start);
        self.forget(session_id);
        // 2. Write the records, invisible while the batch is pending.
        let ttl_attr = self.item_ttl(self.ttl_ms().map(|t| now_ms() + t));
        let mut requests = Vec::new();
        for item in record_items(session_id, gen, start, prepared, ttl_attr, Some(&batch)) {
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(|e| build_error(op, e))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        self.batch_write(op, requests).await?;
        // 3. Commit.
        let Some(token) = fence else {
            return self.commit_batch(op, session_id, &batch, gen, k).await;
        };
        // Fenced: the commit and the lease's ConditionCheck in one transaction.
        let (cond, update, values, pending) = self.commit_expressions(&batch, gen, k);
        let (names, values) = expr_maps(&[cond, update], values, &[("#b", pending.as_str())]);
        let commit = Update::builder()
            .table_name(&self.table)
            .set_key(Some(meta_key(session_id)))
            .condition_expression(cond)
            .update_expression(update)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .build()
            .map_err(|e| build_error(op, e))?;
        let actions = vec![
            TransactWriteItem::builder().update(commit).build(),
            self.fence_check(op, session_id, token, now_ms())?,
        ];
        let result = self.send_transaction(op, actions).await;
        self.forget(session_id);
        match result? {
            Ok(()) => Ok(()),
            Err(reasons) if failed_at(&reasons, 1) => {
                // The lease was lost while the batch was written: delete it (and the
                // metadata the reservation created, if nothing else came since).
                let split: Vec<(i64, usize)> = prepared
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.head.is_none())
                    .map(|(i, p)| (start + i as i64, p.parts.len()))
                    .collect();
                let target = Target::Append {
                    gen,
                    start,
                    capacity: k,
                };
                self.withdraw(session_id, &batch, target, k, &split, reserved)
                    .await;
                Err(fenced_by(op, token, &reasons[1]))
            }
            // Cleared meanwhile: the batch is discarded, as if written just before the clear.
            Err(_) => Ok(()),
        }
    }

    /// Deletes a batch that will not be committed because its fence failed: its records,
    /// parts and pending mark, then the metadata its reservation created, while nothing else
    /// reserved, counted or rewrote anything since (conditional). What a failure leaves is
    /// invisible, for prune (an empty metadata item aside: a session of no items).
    pub(super) async fn withdraw(
        &self,
        session_id: &str,
        batch: &str,
        target: Target,
        count: i64,
        split: &[(i64, usize)],
        reserved: Reserved,
    ) {
        if let Err(e) = self.abandon(session_id, batch, target, count, split).await {
            tracing::debug!(error = %e, "deleting a fenced batch failed; prune reclaims it");
            return;
        }
        if !reserved.created {
            return;
        }
        let op = Operation::Prune;
        let cond = "#gen = :gen AND #next = :next AND #count = :zero AND attribute_not_exists(#rg)";
        let (names, values) = expr_maps(
            &[cond],
            vec![
                (":gen", n(reserved.gen)),
                (":next", n(reserved.start + count)),
                (":zero", n(0)),
            ],
            &[],
        );
        self.stats.record_requests(op, 1);
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(meta_key(session_id)))
            .condition_expression(cond)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .send()
            .await;
        self.forget(session_id);
        if let Err(e) = deleted {
            if !is_condition_failure(&e) {
                tracing::debug!(error = %map_sdk(op, &self.table, e), "deleting the metadata of a fenced batch failed");
            }
        }
    }

    /// BatchWriteItem in groups of 25, retrying unprocessed items with backoff.
    pub(super) async fn batch_write(
        &self,
        op: Operation,
        requests: Vec<WriteRequest>,
    ) -> Result<()> {
        for chunk in requests.chunks(25) {
            let mut pending = chunk.to_vec();
            let mut attempt = 0;
            while !pending.is_empty() {
                self.stats.record_requests(op, 1);
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending.clone())
                    .send()
                    .await
                    .map_err(|e| map_sdk(op, &self.table, e))?;
                pending = out
                    .unprocessed_items()
                    .and_then(|m| m.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                if !pending.is_empty() {
                    attempt += 1;
                    if attempt > 20 {
                        return Err(Error::new(
                            ErrorKind::Timeout,
                            op,
                            "DynamoDB kept leaving items unprocessed",
                        ));
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
        Ok(())
    }

    /// A conditional `UpdateItem` of a session's metadata item, counted as one request, ready
    /// to send (or to be given more settings first); its names and values are those the two
    /// expressions use (`expr_maps`).
    pub(super) fn update_meta(
        &self,
        op: Operation,
        session_id: &str,
        condition: &str,
        update: &str,
        values: Vec<(&str, AttributeValue)>,
        extra_names: &[(&str, &str)],
    ) -> UpdateItemFluentBuilder {
        let (names, values) = expr_maps(&[condition, update], values, extra_names);
        self.stats.record_requests(op, 1);
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(meta_key(session_id)))
            .condition_expression(condition)
            .update_expression(update)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
    }

    /// The values every commit sets: the batch's generation and size, now, and the expiry
    /// with its `ttl` stamp (zero without a TTL, when the update removes them instead).
    pub(super) fn commit_values(
        &self,
        gen: i64,
        k: i64,
    ) -> (bool, Vec<(&'static str, AttributeValue)>) {
        let now = now_ms();
        let expires_at = self.ttl_ms().map(|t| now + t);
        let values = vec![
            (":gen", n(gen)),
            (":k", n(k)),
            (":now", n(now)),
            (":exp", n(expires_at.unwrap_or(0))),
            (":ttl", n(self.item_ttl(expires_at).unwrap_or(0))),
        ];
        (expires_at.is_some(), values)
    }

    /// A batch commit's condition, update, values and pending-mark attribute (`#b`).
    #[allow(clippy::type_complexity)]
    fn commit_expressions(
        &self,
        batch: &str,
        gen: i64,
        k: i64,
    ) -> (
        &'static str,
        &'static str,
        Vec<(&'static str, AttributeValue)>,
        String,
    ) {
        let (expires, values) = self.commit_values(gen, k);
        let cond = "#gen = :gen AND attribute_exists(#b)";
        let update = if expires {
            "SET #count = #count + :k, #upd = :now, #exp = :exp, #ttl = :ttl, #stamp = if_not_exists(#stamp, :ttl) REMOVE #b"
        } else {
            "SET #count = #count + :k, #upd = :now REMOVE #b, #exp, #ttl, #stamp"
        };
        (cond, update, values, pending_attr(batch))
    }

    /// The commit protocol's last step: removes the pending mark and counts the batch's `k`
    /// records, with the new `updated_at` and expiry, in one conditional update. A session
    /// cleared meanwhile discards the batch, as if it had been written just before the clear.
    pub(super) async fn commit_batch(
        &self,
        op: Operation,
        session_id: &str,
        batch: &str,
        gen: i64,
        k: i64,
    ) -> Result<()> {
        let (cond, update, values, pending) = self.commit_expressions(batch, gen, k);
        let result = self
            .update_meta(
                op,
                session_id,
                cond,
                update,
                values,
                &[("#b", pending.as_str())],
            )
            .send()
            .await;
        self.forget(session_id);
        match result {
            Ok(_) => Ok(()),
            // Cleared (or pruned) meanwhile: the batch is discarded, as if written just before.
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(map_sdk(op, &self.table, e)),
        }
    }
}

impl DynamoDbBackend {
    /// Removes the newest item: one Query (the metadata and the newest records; fenced, the
    /// lease item too, from just above) and one TransactWriteItems (fenced, with the lease's
    /// ConditionCheck).
    pub(super) async fn pop(&self, session_id: &str, fence: Option<u64>) -> Result<Option<Item>> {
        let op = Operation::PopItem;
        let inner = &self.inner;
        let _turn = inner.turn(session_id).await;
        for attempt in 0..WRITE_ATTEMPTS {
            let mut doomed: Vec<String> = Vec::new();
            let mut found: Option<(String, Item, usize)> = None;
            let mut unreadable: Option<String> = None;
            let mut key_missing: Option<String> = None;
            let mut lease: Option<Row> = None;
            let meta = inner
                .walk_leased(
                    op,
                    session_id,
                    Some(1),
                    fence.map(|_| &mut lease),
                    |sk, row, decoded| {
                        let parts = parts_of(row);
                        match decoded {
                            Decoded::Valid(item) => {
                                found = Some((sk.to_owned(), item, parts));
                                true
                            }
                            Decoded::Corrupt(_) => {
                                doomed.push(sk.to_owned());
                                doomed.len() >= 50
                            }
                            Decoded::Unreadable(reason) => {
                                unreadable = Some(reason);
                                true
                            }
                            Decoded::KeyMissing(reason) => {
                                key_missing = Some(reason);
                                true
                            }
                        }
                    },
                )
                .await?;
            if let Some(token) = fence {
                // Refused at once by what the read saw; the transaction checks again.
                check_read(op, token, lease.as_ref())?;
            }
            let Some(meta) = meta else { return Ok(None) };
            if let Some(reason) = key_missing {
                return Err(crate::codec::key_missing_error(op, &reason));
            }
            if let Some(reason) = unreadable {
                return Err(Error::new(
                    ErrorKind::Unreadable,
                    op,
                    format!("the newest record is unreadable: {reason}; nothing was removed"),
                ));
            }
            if found.is_none() && doomed.is_empty() {
                return Ok(None);
            }
            let now = now_ms();
            let mut deletes: Vec<String> = doomed.clone();
            let mut parts_of_found = 0;
            if let Some((sk, _, parts)) = &found {
                deletes.push(sk.clone());
                parts_of_found = *parts;
            }
            let removed = deletes.len() as i64;
            let expires_at = inner.ttl_ms().map(|t| now + t);
            let cond = "#gen = :gen";
            let update = match expires_at {
                Some(_) => "SET #count = #count - :k, #upd = :upd, #exp = :exp, #ttl = :ttl",
                None => "SET #count = #count - :k, #upd = :upd",
            };
            let upd = advance_updated(
                Some(Timestamp::from_millis(meta.updated_at)),
                Timestamp::from_millis(now),
            )
            .as_millis();
            let (names, values) = expr_maps(
                &[cond, update],
                vec![
                    (":gen", n(meta.gen)),
                    (":k", n(removed)),
                    (":upd", n(upd)),
                    (":exp", n(expires_at.unwrap_or(0))),
                    (":ttl", n(inner.item_ttl(expires_at).unwrap_or(0))),
                ],
                &[],
            );
            let mut actions = vec![TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(&inner.table)
                        .set_key(Some(meta_key(session_id)))
                        .condition_expression(cond)
                        .update_expression(update)
                        .set_expression_attribute_names(names)
                        .set_expression_attribute_values(values)
                        .build()
                        .map_err(|e| build_error(op, e))?,
                )
                .build()];
            for sk in &deletes {
                // The condition makes concurrent pops of the same record fail: each record is
                // returned at most once.
                let d = Delete::builder()
                    .table_name(&inner.table)
                    .key("pk", s(session_id))
                    .key("sk", s(sk.clone()))
                    .condition_expression("attribute_exists(pk)")
                    .build()
                    .map_err(|e| build_error(op, e))?;
                actions.push(TransactWriteItem::builder().delete(d).build());
            }
            let fence_at = actions.len();
            if let Some(token) = fence {
                actions.push(inner.fence_check(op, session_id, token, now)?);
            }
            inner.stats.record_requests(op, 1);
            let result = inner
                .client
                .transact_write_items()
                .set_transact_items(Some(actions))
                .client_request_token(inner.token())
                .send()
                .await;
            match result {
                Ok(_) => {
                    // The metadata as the walk read it, with the new `updated_at`: the next
                    // append's guess (a pop moves neither the generation nor `next`; if an
                    // append got in between, that guess fails its condition and is corrected).
                    inner.remember(
                        session_id,
                        MetaState::Live {
                            gen: meta.gen,
                            next: meta.next,
                            updated: upd,
                            stamp: meta.stamp.unwrap_or(0),
                            life: meta.life,
                        },
                    );
                    if let Some((sk, item, _)) = found {
                        if parts_of_found > 0 {
                            if let Some(seq) = seq_of(&sk) {
                                inner
                                    .delete_prefix(op, session_id, &part_prefix(meta.gen, seq))
                                    .await?;
                            }
                        }
                        return Ok(Some(item));
                    }
                    // Only corrupt records were on top: they are gone; look again.
                }
                Err(e) => match (cancellation_reasons(&e), fence) {
                    (Some(reasons), Some(token)) if failed_at(&reasons, fence_at) => {
                        return Err(fenced_by(op, token, &reasons[fence_at]))
                    }
                    (Some(_), _) => tokio::time::sleep(backoff(attempt.min(4))).await,
                    (None, _) => return Err(map_sdk(op, &inner.table, e)),
                },
            }
        }
        Err(Error::new(
            ErrorKind::Timeout,
            op,
            format!("gave up after {WRITE_ATTEMPTS} conflicting attempts"),
        ))
    }

    /// A fenced clear: one TransactWriteItems of the metadata's Delete and the lease's
    /// ConditionCheck (the lease item stays). A transaction does not return what it deleted,
    /// so the cleared life's records and ids are found by a background sweep of the session's
    /// partition (or left to prune and TTL).
    pub(super) async fn clear_fenced(&self, session_id: &str, token: u64) -> Result<()> {
        let op = Operation::ClearSession;
        let inner = &self.inner;
        let delete = Delete::builder()
            .table_name(&inner.table)
            .set_key(Some(meta_key(session_id)))
            .build()
            .map_err(|e| build_error(op, e))?;
        let actions = vec![
            TransactWriteItem::builder().delete(delete).build(),
            inner.fence_check(op, session_id, token, now_ms())?,
        ];
        match inner.send_transaction(op, actions).await? {
            Ok(()) => {
                inner.remember(session_id, MetaState::Missing);
                inner.sweep_later(session_id);
                Ok(())
            }
            Err(reasons) => Err(fenced_by(op, token, &reasons[1])),
        }
    }

    pub(super) async fn clear(&self, session_id: &str) -> Result<()> {
        let op = Operation::ClearSession;
        let inner = &self.inner;
        inner.stats.record_requests(op, 1);
        let out = inner
            .client
            .delete_item()
            .table_name(&inner.table)
            .set_key(Some(meta_key(session_id)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| map_sdk(op, &inner.table, e))?;
        inner.remember(session_id, MetaState::Missing);
        // The records and operation ids of the cleared life are invisible from now on (no
        // metadata names their generation or life); delete them in the background, or leave
        // them to prune and TTL.
        if let Some(old) = out.attributes().and_then(|a| Meta::parse(a).ok()) {
            inner.delete_generation_later(session_id, old.gen, Some(old.life), Duration::ZERO);
        }
        Ok(())
    }
}
