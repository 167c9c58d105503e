//! History transactions ([`crate::history`]) on DynamoDB. Operation ids are items of the
//! session's partition (`o#<life>#<id>`: the digest, a forget-at time, a `ttl`), written in
//! the same `TransactWriteItems` as the change, on the condition that no id of that name is
//! remembered; the change is conditional on the metadata item (generation, next sequence and,
//! when a suffix is replaced, the record count) and on the suffix records still existing.
//!
//! Three paths, by size (`docs/storage/dynamodb.md`, "History transactions"):
//! * what fits one transaction (100 actions, 3.5 MB): one `TransactWriteItems` (for
//!   `replace_suffix`, after one Query that reads the suffix and is compared in the client);
//! * larger replacements: the commit protocol (reserve, `BatchWriteItem` of the records with
//!   the batch pending, then one `TransactWriteItems` that commits the batch, remembers the id
//!   and deletes the suffix);
//! * suffixes too long to delete in one transaction: the session is rewritten into a new
//!   generation (the staged replace's machinery) that the final transaction makes current,
//!   keeping the life, and so the remembered ids.
//!
//! A failed condition reads again (bounded) and decides anew: the id applied before (the
//! failed action returns the stored operation item), the suffix gone, or a concurrent write.

use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, PutRequest, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update, WriteRequest,
};

use super::error::{build_error, is_condition_failure, map_sdk, Reason};
use super::layout::{
    expr_maps, item_key, meta_key, n, new_life, op_item, op_sk, part_sk, parts_of, pending_attr,
    prepare, record_items, remembered, replacing_attr, seq_of, Meta, MetaState, Prepared,
    Remembered, Row, OP_FREE,
};
use super::lease::{check_read, failed_at, fenced_by};
use super::staged::{Target, REPLACED_GENERATION_GRACE};
use super::write::{backoff, MAX_TX_ACTIONS, MAX_TX_BYTES};
use super::{millis, now_ms, DynamoDbBackend, Inner};
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::history::{self, Applied, PreparedTransaction};
use crate::time::{advance_updated, Timestamp};

/// How many times a transaction reads again after a concurrent change.
const APPLY_ATTEMPTS: usize = 100;

/// A stored record of the suffix: its sort key, how many part items it has, its bytes.
struct Stored {
    sk: String,
    parts: usize,
    bytes: Vec<u8>,
}

/// What a transaction is built on.
#[derive(Debug, Clone, Copy)]
enum Base {
    /// A live session at this generation and next sequence (and this record count, which
    /// must not change, when a suffix is replaced).
    Live {
        gen: i64,
        next: i64,
        count: Option<i64>,
        updated: i64,
        stamp: i64,
        life: i64,
    },
    /// No live session (missing or expired): the transaction starts a new life.
    New(MetaState),
}

impl Base {
    fn of_state(state: MetaState) -> Base {
        match state {
            MetaState::Live {
                gen,
                next,
                updated,
                stamp,
                life,
            } => Base::Live {
                gen,
                next,
                count: None,
                updated,
                stamp,
                life,
            },
            other => Base::New(other),
        }
    }

    fn of_meta(meta: &Meta) -> Base {
        Base::Live {
            gen: meta.gen,
            next: meta.next,
            count: Some(meta.count),
            updated: meta.updated_at,
            stamp: meta.stamp.unwrap_or(0),
            life: meta.life,
        }
    }
}

/// How one attempt ended.
enum Attempt {
    Done(Applied),
    /// A concurrent change: read again (with the metadata's new state, when the failed
    /// condition returned it).
    Again(Option<MetaState>),
}

impl DynamoDbBackend {
    /// Applies a transaction; with `fence`, only while that token is the session's live
    /// lease's: a read that sees the lease item refuses at once, and the transaction that
    /// makes the change visible carries the lease's ConditionCheck.
    pub(super) async fn apply_history(
        &self,
        session_id: &str,
        prepared: &PreparedTransaction,
        fence: Option<u64>,
    ) -> Result<Applied> {
        let op = Operation::ApplyTransaction;
        let inner = &self.inner;
        let _turn = inner.turn(session_id).await;
        let added: Vec<Prepared> = prepared
            .transaction
            .items_added()
            .iter()
            .map(|item| {
                prepare(
                    &inner.codec,
                    session_id,
                    inner.codec.encode(session_id, item)?,
                )
            })
            .collect::<Result<_>>()?;
        let add_actions: usize = added.iter().map(Prepared::actions).sum();
        let add_bytes: usize = added.iter().map(Prepared::bytes).sum();
        let m = prepared.transaction.expected_suffix().len();
        let mut state = inner.guess(session_id);
        for attempt in 0..APPLY_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt.min(4))).await;
            }
            let (base, suffix) = if m == 0 {
                (Base::of_state(state), Vec::new())
            } else {
                // Read the newest m records (one Query while they fit a page) and compare them
                // in the client; fenced, the same Query starts at the lease item, just above
                // the metadata, and a stale token is refused before anything is written.
                let mut suffix: Vec<Stored> = Vec::with_capacity(m);
                let mut lease: Option<Row> = None;
                let meta = inner
                    .walk_raw_leased(
                        op,
                        session_id,
                        Some(m),
                        fence.map(|_| &mut lease),
                        |sk, row, bytes| {
                            suffix.push(Stored {
                                sk: sk.to_owned(),
                                parts: parts_of(row),
                                bytes: bytes.to_vec(),
                            });
                            suffix.len() >= m
                        },
                    )
                    .await?;
                if let Some(token) = fence {
                    check_read(op, token, lease.as_ref())?;
                }
                // A missing or expired session has no records, and remembers no ids.
                let Some(meta) = meta else {
                    return Err(history::suffix_mismatch());
                };
                suffix.reverse();
                let records = suffix.iter().map(|r| r.bytes.as_slice());
                if !prepared.suffix_matches(&inner.codec, session_id, records) {
                    // A retry of a replace applied before no longer finds its suffix.
                    return match inner.lookup(op, session_id, meta.life, prepared).await? {
                        Remembered::Same => Ok(Applied::Before),
                        Remembered::Other => Err(history::operation_reused(&prepared.operation_id)),
                        Remembered::Absent => Err(history::suffix_mismatch()),
                    };
                }
                (Base::of_meta(&meta), suffix)
            };
            let delete_actions: usize = suffix.iter().map(|r| 1 + r.parts).sum();
            // The metadata, the id and (fenced) the lease's check, besides the records.
            let fixed = 2 + usize::from(fence.is_some());
            let outcome = if fixed + delete_actions + add_actions <= MAX_TX_ACTIONS
                && add_bytes <= MAX_TX_BYTES
            {
                inner
                    .apply_in_one(op, session_id, prepared, base, &suffix, &added, fence)
                    .await?
            } else if fixed + delete_actions <= MAX_TX_ACTIONS {
                inner
                    .apply_committed(op, session_id, prepared, base, &suffix, &added, fence)
                    .await?
            } else {
                inner
                    .apply_rewrite(op, session_id, prepared, m, &added, fence)
                    .await?
            };
            match outcome {
                Attempt::Done(applied) => return Ok(applied),
                Attempt::Again(Some(fresh)) => state = fresh,
                Attempt::Again(None) => {
                    if m == 0 {
                        state = inner.read_state(op, session_id).await?;
                    }
                }
            }
        }
        Err(Error::new(
            ErrorKind::Timeout,
            op,
            format!(
                "gave up after {APPLY_ATTEMPTS} attempts that concurrent writes changed; nothing was applied"
            ),
        ))
    }
}

impl Inner {
    /// What the session remembers of the operation id in `life` (one strongly consistent
    /// GetItem).
    async fn lookup(
        &self,
        op: Operation,
        session_id: &str,
        life: i64,
        prepared: &PreparedTransaction,
    ) -> Result<Remembered> {
        self.stats.record_requests(op, 1);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(item_key(
                session_id,
                op_sk(life, &prepared.operation_id),
            )))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| map_sdk(op, &self.table, e))?;
        Ok(remembered(out.item(), &prepared.digest, now_ms()))
    }

    /// After the operation item's condition failed (and only it): what the stored item says,
    /// as the failed action returned it (or read again when it did not).
    async fn decide_remembered(
        &self,
        op: Operation,
        session_id: &str,
        life: i64,
        prepared: &PreparedTransaction,
        reason: &Reason,
    ) -> Result<Attempt> {
        let found = match &reason.item {
            Some(item) => remembered(Some(item), &prepared.digest, now_ms()),
            None => self.lookup(op, session_id, life, prepared).await?,
        };
        match found {
            Remembered::Same => Ok(Attempt::Done(Applied::Before)),
            Remembered::Other => Err(history::operation_reused(&prepared.operation_id)),
            // Forgotten in between: try again.
            Remembered::Absent => Ok(Attempt::Again(None)),
        }
    }

    /// The metadata's state as a failed condition returned it; `None` when it did not
    /// (the caller reads it again).
    fn state_from(&self, op: Operation, reason: &Reason) -> Result<Option<MetaState>> {
        match &reason.item {
            Some(item) => Ok(Some(
                Meta::parse(item)
                    .map_err(|e| e.with_operation(op))?
                    .state(now_ms()),
            )),
            None => Ok(None),
        }
    }

    fn forget_at(&self, prepared: &PreparedTransaction, now: i64) -> i64 {
        now.saturating_add(millis(prepared.retention))
    }

    /// The operation item's conditional Put: written only if no id of that name is
    /// remembered; a failure returns the stored item.
    fn op_put(
        &self,
        op: Operation,
        session_id: &str,
        life: i64,
        prepared: &PreparedTransaction,
        now: i64,
    ) -> Result<TransactWriteItem> {
        let (names, values) = expr_maps(&[OP_FREE], vec![(":now", n(now))], &[]);
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(op_item(
                session_id,
                life,
                &prepared.operation_id,
                &prepared.digest,
                self.forget_at(prepared, now),
            )))
            .condition_expression(OP_FREE)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| build_error(op, e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A conditional update of the metadata as a transaction action; a failure returns the
    /// stored metadata.
    fn meta_action(
        &self,
        op: Operation,
        session_id: &str,
        condition: &str,
        update: &str,
        values: Vec<(&str, AttributeValue)>,
        extra_names: &[(&str, &str)],
    ) -> Result<TransactWriteItem> {
        let (names, values) = expr_maps(&[condition, update], values, extra_names);
        let u = Update::builder()
            .table_name(&self.table)
            .set_key(Some(meta_key(session_id)))
            .condition_expression(condition)
            .update_expression(update)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| build_error(op, e))?;
        Ok(TransactWriteItem::builder().update(u).build())
    }

    /// Deletes of the suffix records (each on the condition that it still exists: a pop or
    /// another rewind in between fails the transaction) and of their parts.
    fn suffix_deletes(
        &self,
        op: Operation,
        session_id: &str,
        gen: i64,
        suffix: &[Stored],
    ) -> Result<Vec<TransactWriteItem>> {
        let mut actions = Vec::new();
        for record in suffix {
            let d = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(item_key(session_id, record.sk.clone())))
                .condition_expression("attribute_exists(pk)")
                .build()
                .map_err(|e| build_error(op, e))?;
            actions.push(TransactWriteItem::builder().delete(d).build());
            let seq = seq_of(&record.sk).unwrap_or_default();
            for k in 0..record.parts {
                let d = Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(item_key(session_id, part_sk(gen, seq, k))))
                    .build()
                    .map_err(|e| build_error(op, e))?;
                actions.push(TransactWriteItem::builder().delete(d).build());
            }
        }
        Ok(actions)
    }

    /// The metadata condition of a change built on `base`: the same generation and next
    /// sequence (no append in between), the same count when a suffix is replaced (no pop and
    /// no batch committed in between), not expired.
    fn base_condition(count: Option<i64>) -> &'static str {
        match count {
            Some(_) => "#gen = :gen AND #next = :next AND #count = :count AND (attribute_not_exists(#exp) OR #exp > :now)",
            None => "#gen = :gen AND #next = :next AND (attribute_not_exists(#exp) OR #exp > :now)",
        }
    }

    /// Everything in one TransactWriteItems: the metadata update (or a new session's
    /// metadata), the operation item, the suffix's deletes, the new records and (fenced) the
    /// lease's ConditionCheck.
    #[allow(clippy::too_many_arguments)]
    async fn apply_in_one(
        &self,
        op: Operation,
        session_id: &str,
        prepared: &PreparedTransaction,
        base: Base,
        suffix: &[Stored],
        added: &[Prepared],
        fence: Option<u64>,
    ) -> Result<Attempt> {
        let now = now_ms();
        let expires_at = self.ttl_ms().map(|t| now + t);
        let ttl_attr = self.item_ttl(expires_at);
        let r = added.len() as i64;
        let delta = r - suffix.len() as i64;
        let (gen, start, life, meta_write, new_state) = match base {
            Base::Live {
                gen,
                next,
                count,
                updated,
                stamp,
                life,
            } => {
                let upd = advance_updated(
                    Some(Timestamp::from_millis(updated)),
                    Timestamp::from_millis(now),
                )
                .as_millis();
                let cond = Self::base_condition(count);
                let update = match expires_at {
                    Some(_) => "SET #next = :n2, #count = #count + :k, #upd = :upd, #exp = :exp, #ttl = :ttl, #stamp = if_not_exists(#stamp, :ttl)",
                    None => "SET #next = :n2, #count = #count + :k, #upd = :upd REMOVE #exp, #ttl, #stamp",
                };
                let action = self.meta_action(
                    op,
                    session_id,
                    cond,
                    update,
                    vec![
                        (":gen", n(gen)),
                        (":next", n(next)),
                        (":count", n(count.unwrap_or(0))),
                        (":now", n(now)),
                        (":n2", n(next + r)),
                        (":k", n(delta)),
                        (":upd", n(upd)),
                        (":exp", n(expires_at.unwrap_or(0))),
                        (":ttl", n(ttl_attr.unwrap_or(0))),
                    ],
                    &[],
                )?;
                let stamp = if stamp == 0 {
                    ttl_attr.unwrap_or(0)
                } else {
                    stamp
                };
                let state = MetaState::Live {
                    gen,
                    next: next + r,
                    updated: upd,
                    stamp,
                    life,
                };
                (gen, next, life, action, state)
            }
            Base::New(state) => {
                let (gen, cond, (names, values)) = new_life(state, now);
                let p = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(self.new_meta(session_id, gen, r, r, now, None)))
                    .condition_expression(cond)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    )
                    .build()
                    .map_err(|e| build_error(op, e))?;
                let state = MetaState::Live {
                    gen,
                    next: r,
                    updated: now,
                    stamp: ttl_attr.unwrap_or(0),
                    life: gen,
                };
                (
                    gen,
                    0,
                    gen,
                    TransactWriteItem::builder().put(p).build(),
                    state,
                )
            }
        };
        let mut actions = vec![
            meta_write,
            self.op_put(op, session_id, life, prepared, now)?,
        ];
        actions.extend(self.suffix_deletes(op, session_id, gen, suffix)?);
        for record in record_items(session_id, gen, start, added, ttl_attr, None) {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(record))
                .build()
                .map_err(|e| build_error(op, e))?;
            actions.push(TransactWriteItem::builder().put(put).build());
        }
        let fence_at = actions.len();
        if let Some(token) = fence {
            actions.push(self.fence_check(op, session_id, token, now)?);
        }
        match self.send_transaction(op, actions).await {
            Ok(Ok(())) => {
                self.remember(session_id, new_state);
                Ok(Attempt::Done(Applied::Now))
            }
            Ok(Err(reasons)) => {
                if let Some(token) = fence.filter(|_| failed_at(&reasons, fence_at)) {
                    return Err(fenced_by(op, token, &reasons[fence_at]));
                }
                let failed = |i: usize| reasons.get(i).is_some_and(Reason::failed_condition);
                if failed(0) {
                    // Stale: another writer changed the session (or it expired, or was
                    // cleared). The failed update returned what is stored now.
                    return Ok(Attempt::Again(self.state_from(op, &reasons[0])?));
                }
                if failed(1) {
                    return self
                        .decide_remembered(op, session_id, life, prepared, &reasons[1])
                        .await;
                }
                // A suffix record is gone (popped, rewound): read again.
                Ok(Attempt::Again(None))
            }
            Err(e) => {
                self.forget(session_id);
                Err(e)
            }
        }
    }

    /// Replacements too large for one transaction, with a suffix small enough to delete in
    /// one: the commit protocol. Reserve the sequences with the batch pending (one update),
    /// write the records tagged with the batch (BatchWriteItem), then one TransactWriteItems
    /// commits the batch, remembers the id and deletes the suffix, on the condition that
    /// nothing changed since the suffix was read. A failed commit deletes the batch.
    #[allow(clippy::too_many_arguments)]
    async fn apply_committed(
        &self,
        op: Operation,
        session_id: &str,
        prepared: &PreparedTransaction,
        base: Base,
        suffix: &[Stored],
        added: &[Prepared],
        fence: Option<u64>,
    ) -> Result<Attempt> {
        let r = added.len() as i64;
        let m = suffix.len() as i64;
        let batch = self.token();
        let pending = pending_attr(&batch);
        let extra = [("#b", pending.as_str())];
        // 1. A retry of a transaction applied before writes no batch; then reserve. (What
        // the reservation created, for a fenced write whose lease is lost meanwhile.)
        let mut created = None;
        let (gen, start, life, count) = match base {
            Base::Live {
                gen,
                next,
                count: Some(count),
                life,
                ..
            } => {
                if let Some(done) = self.known_outcome(op, session_id, life, prepared).await? {
                    return done;
                }
                let now = now_ms();
                let cond = Self::base_condition(Some(count));
                let result = self
                    .update_meta(
                        op,
                        session_id,
                        cond,
                        "SET #next = :n2, #b = :now",
                        vec![
                            (":gen", n(gen)),
                            (":next", n(next)),
                            (":count", n(count)),
                            (":now", n(now)),
                            (":n2", n(next + r)),
                        ],
                        &extra,
                    )
                    .send()
                    .await;
                match result {
                    Ok(_) => (gen, next, life, Some(count)),
                    Err(e) if is_condition_failure(&e) => return Ok(Attempt::Again(None)),
                    Err(e) => return Err(map_sdk(op, &self.table, e)),
                }
            }
            // An append (nothing expected): wherever the session's end is now.
            _ => {
                let state = match fence {
                    None => self.read_state(op, session_id).await?,
                    // Fenced: the metadata and the lease item in one Query, refused at once
                    // by what it saw.
                    Some(token) => {
                        let (meta, lease) = self.meta_and_lease(op, session_id).await?;
                        check_read(op, token, lease.as_ref())?;
                        let state = meta.map_or(MetaState::Missing, |m| m.state(now_ms()));
                        self.remember(session_id, state);
                        state
                    }
                };
                if let MetaState::Live { life, .. } = state {
                    if let Some(done) = self.known_outcome(op, session_id, life, prepared).await? {
                        return done;
                    }
                }
                let reserved = self
                    .reserve_fenced(op, session_id, &batch, r, fence)
                    .await?;
                created = Some(reserved);
                (reserved.gen, reserved.start, reserved.life, None)
            }
        };
        self.forget(session_id);
        let target = Target::Append {
            gen,
            start,
            capacity: r,
        };
        let split: Vec<(i64, usize)> = added
            .iter()
            .enumerate()
            .filter(|(_, p)| p.head.is_none())
            .map(|(i, p)| (start + i as i64, p.parts.len()))
            .collect();
        // 2. The records, invisible while the batch is pending.
        let ttl_attr = self.item_ttl(self.ttl_ms().map(|t| now_ms() + t));
        let mut requests = Vec::new();
        for item in record_items(session_id, gen, start, added, ttl_attr, Some(&batch)) {
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(|e| build_error(op, e))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        if let Err(e) = self.batch_write(op, requests).await {
            self.discard(session_id, &batch, target, r, &split).await;
            return Err(e);
        }
        // 3. Commit: the batch, the id and the suffix's deletes in one transaction.
        let now = now_ms();
        let expires_at = self.ttl_ms().map(|t| now + t);
        let cond = match count {
            Some(_) => "#gen = :gen AND attribute_exists(#b) AND #next = :n2 AND #count = :count AND (attribute_not_exists(#exp) OR #exp > :now)",
            None => "#gen = :gen AND attribute_exists(#b) AND (attribute_not_exists(#exp) OR #exp > :now)",
        };
        let update = match expires_at {
            Some(_) => "SET #count = #count + :k, #upd = :now, #exp = :exp, #ttl = :ttl, #stamp = if_not_exists(#stamp, :ttl) REMOVE #b",
            None => "SET #count = #count + :k, #upd = :now REMOVE #b, #exp, #ttl, #stamp",
        };
        let mut actions = vec![
            self.meta_action(
                op,
                session_id,
                cond,
                update,
                vec![
                    (":gen", n(gen)),
                    (":n2", n(start + r)),
                    (":count", n(count.unwrap_or(0))),
                    (":now", n(now)),
                    (":k", n(r - m)),
                    (":exp", n(expires_at.unwrap_or(0))),
                    (":ttl", n(self.item_ttl(expires_at).unwrap_or(0))),
                ],
                &extra,
            )?,
            self.op_put(op, session_id, life, prepared, now)?,
        ];
        actions.extend(self.suffix_deletes(op, session_id, gen, suffix)?);
        let fence_at = actions.len();
        if let Some(token) = fence {
            actions.push(self.fence_check(op, session_id, token, now)?);
        }
        // An error whose outcome is unknown leaves the batch as it is: committed, or
        // invisible until prune reclaims it.
        let reasons = match self.send_transaction(op, actions).await? {
            Ok(()) => return Ok(Attempt::Done(Applied::Now)),
            Err(reasons) => reasons,
        };
        if let Some(token) = fence.filter(|_| failed_at(&reasons, fence_at)) {
            // The lease was lost while the batch was written: delete it, and the metadata
            // the reservation created (if it did, and nothing came since).
            match created {
                Some(reserved) => {
                    self.withdraw(session_id, &batch, target, r, &split, reserved)
                        .await
                }
                None => self.discard(session_id, &batch, target, r, &split).await,
            }
            return Err(fenced_by(op, token, &reasons[fence_at]));
        }
        self.discard(session_id, &batch, target, r, &split).await;
        let failed = |i: usize| reasons.get(i).is_some_and(Reason::failed_condition);
        if !failed(0) && failed(1) {
            return self
                .decide_remembered(op, session_id, life, prepared, &reasons[1])
                .await;
        }
        Ok(Attempt::Again(None))
    }

    /// Suffixes too long to delete in one transaction: the session is rewritten into a new
    /// generation (reserved as a staged replace reserves one: `p_<batch>`, `q_<batch>`, `rg`),
    /// the records before the suffix copied and the replacement after them, all tagged with
    /// the batch; then one TransactWriteItems makes that generation current (the same life,
    /// so remembered ids stay) and remembers the id, on the condition that nothing changed
    /// since the session was read. Readers keep reading the current generation meanwhile. A
    /// failed commit deletes the new generation; a committed one's predecessor is deleted in
    /// the background.
    async fn apply_rewrite(
        self: &std::sync::Arc<Self>,
        op: Operation,
        session_id: &str,
        prepared: &PreparedTransaction,
        m: usize,
        added: &[Prepared],
        fence: Option<u64>,
    ) -> Result<Attempt> {
        // The whole current generation, oldest first.
        let mut all: Vec<Stored> = Vec::new();
        let meta = self
            .walk_raw(op, session_id, None, |sk, row, bytes| {
                all.push(Stored {
                    sk: sk.to_owned(),
                    parts: parts_of(row),
                    bytes: bytes.to_vec(),
                });
                false
            })
            .await?;
        let Some(meta) = meta else {
            return Ok(Attempt::Again(None));
        };
        all.reverse();
        let cut = all.len().saturating_sub(m);
        let records = all[cut..].iter().map(|r| r.bytes.as_slice());
        if all.len() < m || !prepared.suffix_matches(&self.codec, session_id, records) {
            return Ok(Attempt::Again(None)); // changed since the first read: decide anew
        }
        if let Some(done) = self
            .known_outcome(op, session_id, meta.life, prepared)
            .await?
        {
            return done;
        }
        let now = now_ms();
        // An append batch being written would be lost with the old generation: wait for it
        // (an abandoned one, older than `stale_stage_after`, is prune's anyway).
        if meta.appends_pending_since(now - millis(self.stale_stage_after)) {
            return Ok(Attempt::Again(None));
        }
        // 1. Reserve the new generation.
        let batch = self.token();
        let (pending, replacing) = (pending_attr(&batch), replacing_attr(&batch));
        let extra = [("#b", pending.as_str()), ("#q", replacing.as_str())];
        let new_gen = meta.next_generation(now);
        let result = self
            .update_meta(
                op,
                session_id,
                "#gen = :gen AND #next = :next AND #count = :count AND (attribute_not_exists(#exp) OR #exp > :now) AND (attribute_not_exists(#rg) OR #rg < :g2)",
                "SET #b = :now, #q = :g2, #rg = :g2",
                vec![
                    (":gen", n(meta.gen)),
                    (":next", n(meta.next)),
                    (":count", n(meta.count)),
                    (":now", n(now)),
                    (":g2", n(new_gen)),
                ],
                &extra,
            )
            .send()
            .await;
        match result {
            Ok(_) => {}
            Err(e) if is_condition_failure(&e) => return Ok(Attempt::Again(None)),
            Err(e) => return Err(map_sdk(op, &self.table, e)),
        }
        self.forget(session_id);
        let target = Target::Replace { gen: new_gen };
        // 2. The kept records (their stored bytes, split again where needed), then the
        // replacement, from sequence 0 of the new generation.
        let mut records: Vec<Prepared> = all[..cut]
            .iter()
            .map(|r| prepare(&self.codec, session_id, r.bytes.clone()))
            .collect::<Result<_>>()?;
        drop(all);
        records.extend(added.iter().map(|p| Prepared {
            head: p.head.clone(),
            parts: p.parts.clone(),
        }));
        let total = records.len() as i64;
        let ttl_attr = self.item_ttl(self.ttl_ms().map(|t| now_ms() + t));
        let mut requests = Vec::new();
        for item in record_items(session_id, new_gen, 0, &records, ttl_attr, Some(&batch)) {
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(|e| build_error(op, e))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        drop(records);
        if let Err(e) = self.batch_write(op, requests).await {
            self.discard(session_id, &batch, target, 0, &[]).await;
            return Err(e);
        }
        // 3. Commit: the new generation current and the id remembered, in one transaction.
        let now = now_ms();
        let expires_at = self.ttl_ms().map(|t| now + t);
        let update = match expires_at {
            Some(_) => "SET #gen = :g2, #next = :k, #count = :k, #upd = :upd, #exp = :exp, #ttl = :ttl, #stamp = :ttl, #life = :life REMOVE #b, #q",
            None => "SET #gen = :g2, #next = :k, #count = :k, #upd = :upd, #life = :life REMOVE #b, #q, #exp, #ttl, #stamp",
        };
        let upd = advance_updated(
            Some(Timestamp::from_millis(meta.updated_at)),
            Timestamp::from_millis(now),
        )
        .as_millis();
        let mut actions = vec![
            self.meta_action(
                op,
                session_id,
                "#gen = :gen AND #next = :next AND #count = :count AND attribute_exists(#b) AND #q = :g2 AND (attribute_not_exists(#exp) OR #exp > :now)",
                update,
                vec![
                    (":gen", n(meta.gen)),
                    (":next", n(meta.next)),
                    (":count", n(meta.count)),
                    (":now", n(now)),
                    (":g2", n(new_gen)),
                    (":k", n(total)),
                    (":upd", n(upd)),
                    (":exp", n(expires_at.unwrap_or(0))),
                    (":ttl", n(self.item_ttl(expires_at).unwrap_or(0))),
                    (":life", n(meta.life)),
                ],
                &extra,
            )?,
            self.op_put(op, session_id, meta.life, prepared, now)?,
        ];
        if let Some(token) = fence {
            actions.push(self.fence_check(op, session_id, token, now)?);
        }
        let reasons = match self.send_transaction(op, actions).await? {
            Ok(()) => {
                // Later, not now: a reader that saw the metadata just before this commit
                // reads the old generation's records with its next request. The life goes
                // on: its operation ids stay.
                self.delete_generation_later(session_id, meta.gen, None, REPLACED_GENERATION_GRACE);
                return Ok(Attempt::Done(Applied::Now));
            }
            Err(reasons) => reasons,
        };
        self.discard(session_id, &batch, target, 0, &[]).await;
        if let Some(token) = fence.filter(|_| failed_at(&reasons, 2)) {
            return Err(fenced_by(op, token, &reasons[2]));
        }
        let failed = |i: usize| reasons.get(i).is_some_and(Reason::failed_condition);
        if !failed(0) && failed(1) {
            return self
                .decide_remembered(op, session_id, meta.life, prepared, &reasons[1])
                .await;
        }
        Ok(Attempt::Again(None))
    }

    /// Before writing a batch: whether the id is already remembered (then the outcome is
    /// known without writing anything).
    async fn known_outcome(
        &self,
        op: Operation,
        session_id: &str,
        life: i64,
        prepared: &PreparedTransaction,
    ) -> Result<Option<Result<Attempt>>> {
        Ok(match self.lookup(op, session_id, life, prepared).await? {
            Remembered::Same => Some(Ok(Attempt::Done(Applied::Before))),
            Remembered::Other => Some(Err(history::operation_reused(&prepared.operation_id))),
            Remembered::Absent => None,
        })
    }

    /// Deletes a batch that will not be committed (its records, parts and pending marks);
    /// what a failure leaves stays invisible, for prune.
    async fn discard(
        &self,
        session_id: &str,
        batch: &str,
        target: Target,
        count: i64,
        split: &[(i64, usize)],
    ) {
        if let Err(e) = self.abandon(session_id, batch, target, count, split).await {
            tracing::debug!(error = %e, "deleting an uncommitted transaction batch failed; prune reclaims it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_conditions_also_hold_the_count() {
        let with = Inner::base_condition(Some(3));
        let without = Inner::base_condition(None);
        assert!(with.contains("#count = :count") && !without.contains("#count"));
        for cond in [with, without] {
            assert!(cond.contains("#gen = :gen") && cond.contains("#next = :next"));
            assert!(cond.ends_with("(attribute_not_exists(#exp) OR #exp > :now)"));
        }
    }

    #[test]
    fn bases_carry_the_life() {
        let live = MetaState::Live {
            gen: 5,
            next: 2,
            updated: 1,
            stamp: 0,
            life: 3,
        };
        assert!(matches!(
            Base::of_state(live),
            Base::Live {
                life: 3,
                count: None,
                ..
            }
        ));
        assert!(matches!(
            Base::of_state(MetaState::Missing),
            Base::New(MetaState::Missing)
        ));
        let meta = Meta {
            gen: 5,
            count: 2,
            life: 3,
            ..Meta::default()
        };
        assert!(matches!(
            Base::of_meta(&meta),
            Base::Live {
                gen: 5,
                count: Some(2),
                life: 3,
                ..
            }
        ));
    }
}
