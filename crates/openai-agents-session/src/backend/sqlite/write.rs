//! Writes: appends (with the opportunistic prune), pops and clears, each one `BEGIN IMMEDIATE`
//! transaction. A fenced write (`fence` is a token) first checks the session's lease row in
//! the same transaction; an unfenced one runs no extra statement.

use super::lease::check_fence;
use super::*;

/// Inside a write transaction: fails the write unless `fence` (when given) is the live lease's.
fn fenced(
    tx: &Connection,
    session_id: &str,
    fence: Option<u64>,
    now: Timestamp,
    op: Operation,
) -> rusqlite::Result<Result<()>> {
    match fence {
        Some(token) => check_fence(tx, session_id, token, now, op),
        None => Ok(Ok(())),
    }
}

impl Inner {
    pub(super) fn append(
        &self,
        conn: &mut Connection,
        session_id: &str,
        records: &[Vec<u8>],
        fence: Option<u64>,
    ) -> TxResult<()> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Err(e) = fenced(
            &tx,
            session_id,
            fence,
            Timestamp::now(),
            Operation::AddItems,
        )? {
            return Ok(Err(e));
        }
        let pruned = self.append_in(
            &tx,
            session_id,
            records.len() as i64,
            |tx, key, next_seq| {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO oas_items (session, seq, record) VALUES (?1, ?2, ?3)",
                )?;
                for (offset, record) in records.iter().enumerate() {
                    insert.execute(params![key, next_seq + offset as i64, record])?;
                }
                Ok(())
            },
        )?;
        tx.commit()?;
        self.note_prune(pruned);
        Ok(Ok(()))
    }

    /// Inside a write transaction: finds (or starts) the live session, lets `insert` write
    /// `count` records from sequence `next_seq` on, and updates the session row. Returns the
    /// time of the opportunistic prune it ran, if any.
    pub(super) fn append_in(
        &self,
        tx: &Connection,
        session_id: &str,
        count: i64,
        insert: impl FnOnce(&Connection, i64, i64) -> rusqlite::Result<()>,
    ) -> rusqlite::Result<Option<Timestamp>> {
        let now = Timestamp::now();
        let ttl = self.config.options.ttl;
        let (key, next_seq, previous_update) = match find_session(tx, session_id)? {
            Some(row) if !is_expired(row.expires_at, now) => {
                (row.key, row.next_seq, Some(row.updated_at))
            }
            Some(row) => {
                // Expired: the write starts a new, empty session; the old items never reappear,
                // and its operation ids are forgotten.
                tx.prepare_cached("DELETE FROM oas_items WHERE session = ?1")?
                    .execute([row.key])?;
                tx.prepare_cached("DELETE FROM oas_operations WHERE session = ?1")?
                    .execute([row.key])?;
                tx.prepare_cached(
                    "UPDATE oas_sessions SET created_at = ?2, item_count = 0, next_seq = 1 WHERE id = ?1",
                )?
                .execute(params![row.key, now.as_millis()])?;
                (row.key, 1, None)
            }
            None => {
                tx.prepare_cached(
                    "INSERT INTO oas_sessions (session_id, created_at, updated_at, expires_at, item_count, next_seq)
                     VALUES (?1, ?2, ?2, NULL, 0, 1)",
                )?
                .execute(params![session_id, now.as_millis()])?;
                (tx.last_insert_rowid(), 1, None)
            }
        };
        insert(tx, key, next_seq)?;
        tx.prepare_cached(
            "UPDATE oas_sessions SET updated_at = ?2, expires_at = ?3,
                    item_count = item_count + ?4, next_seq = ?5 WHERE id = ?1",
        )?
        .execute(params![
            key,
            advance_updated(previous_update, now).as_millis(),
            expiry_after(now, ttl).map(Timestamp::as_millis),
            count,
            next_seq + count
        ])?;
        if self.prune_due(now) {
            // Bounded, so that a large backlog never holds the write lock for long.
            prune_expired(tx, now, OPPORTUNISTIC_PRUNE_LIMIT)?;
            return Ok(Some(now));
        }
        Ok(None)
    }

    /// Whether an append at `now` runs the opportunistic prune.
    pub(super) fn prune_due(&self, now: Timestamp) -> bool {
        now.as_millis() - self.last_prune_ms.load(Ordering::Relaxed) > OPPORTUNISTIC_PRUNE_EVERY_MS
    }

    /// Remembers a committed opportunistic prune.
    pub(super) fn note_prune(&self, pruned: Option<Timestamp>) {
        if let Some(at) = pruned {
            self.last_prune_ms.store(at.as_millis(), Ordering::Relaxed);
        }
    }

    pub(super) fn pop(
        &self,
        conn: &mut Connection,
        session_id: &str,
        fence: Option<u64>,
    ) -> TxResult<Option<Item>> {
        let now = Timestamp::now();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Err(e) = fenced(&tx, session_id, fence, now, Operation::PopItem)? {
            return Ok(Err(e));
        }
        let Some(row) = find_session(&tx, session_id)? else {
            return Ok(Ok(None));
        };
        if is_expired(row.expires_at, now) {
            return Ok(Ok(None));
        }
        let mut popped = None;
        let mut lowest_removed = None;
        let mut removed = 0i64;
        {
            let mut newest_first = tx.prepare_cached(
                "SELECT seq, record FROM oas_items WHERE session = ?1 ORDER BY seq DESC",
            )?;
            let mut rows = newest_first.query([row.key])?;
            while let Some(r) = rows.next()? {
                let seq: i64 = r.get(0)?;
                match self.codec.decode(session_id, record_bytes(r.get_ref(1)?)) {
                    Decoded::Valid(item) => {
                        popped = Some(item);
                        lowest_removed = Some(seq);
                        removed += 1;
                        break;
                    }
                    Decoded::Corrupt(reason) => {
                        tracing::debug!(seq, %reason, "pop_item drops a corrupt record");
                        lowest_removed = Some(seq);
                        removed += 1;
                    }
                    Decoded::KeyMissing(reason) => {
                        return Ok(Err(crate::codec::key_missing_error(
                            Operation::PopItem,
                            &reason,
                        )));
                    }
                    Decoded::Unreadable(reason) => {
                        // Dropping `tx` rolls back: nothing is removed.
                        return Ok(Err(Error::new(
                            ErrorKind::Unreadable,
                            Operation::PopItem,
                            format!("newest record (sequence {seq}) is unreadable: {reason}; nothing was removed"),
                        )));
                    }
                }
            }
        }
        if let Some(lowest) = lowest_removed {
            tx.prepare_cached("DELETE FROM oas_items WHERE session = ?1 AND seq >= ?2")?
                .execute(params![row.key, lowest])?;
            tx.prepare_cached(
                "UPDATE oas_sessions SET item_count = item_count - ?2, updated_at = ?3, expires_at = ?4
                 WHERE id = ?1",
            )?
            .execute(params![
                row.key,
                removed,
                advance_updated(Some(row.updated_at), now).as_millis(),
                expiry_after(now, self.config.options.ttl).map(Timestamp::as_millis)
            ])?;
            tx.commit()?;
        }
        Ok(Ok(popped))
    }

    /// Deletes the session's rows; its lease row stays (clearing does not release a lease).
    pub(super) fn clear(
        &self,
        conn: &mut Connection,
        session_id: &str,
        fence: Option<u64>,
    ) -> TxResult<()> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = Timestamp::now();
        if let Err(e) = fenced(&tx, session_id, fence, now, Operation::ClearSession)? {
            return Ok(Err(e));
        }
        tx.prepare_cached(
            "DELETE FROM oas_items WHERE session = (SELECT id FROM oas_sessions WHERE session_id = ?1)",
        )?
        .execute([session_id])?;
        tx.prepare_cached(
            "DELETE FROM oas_operations WHERE session = (SELECT id FROM oas_sessions WHERE session_id = ?1)",
        )?
        .execute([session_id])?;
        tx.prepare_cached("DELETE FROM oas_sessions WHERE session_id = ?1")?
            .execute([session_id])?;
        tx.commit()?;
        checkpoint(conn);
        Ok(Ok(()))
    }

    /// A history transaction in one `BEGIN IMMEDIATE` transaction: the operation id looked up,
    /// the newest records compared, the suffix replaced and the id remembered, or nothing.
    pub(super) fn apply_transaction(
        &self,
        conn: &mut Connection,
        session_id: &str,
        prepared: &PreparedTransaction,
        records: &[Vec<u8>],
        fence: Option<u64>,
    ) -> TxResult<Applied> {
        let now = Timestamp::now();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Err(e) = fenced(&tx, session_id, fence, now, Operation::ApplyTransaction)? {
            return Ok(Err(e));
        }
        let live = find_session(&tx, session_id)?.filter(|row| !is_expired(row.expires_at, now));
        if let Some(row) = &live {
            tx.prepare_cached(
                "DELETE FROM oas_operations WHERE session = ?1 AND expires_at <= ?2",
            )?
            .execute(params![row.key, now.as_millis()])?;
            let known: Option<Vec<u8>> = tx
                .prepare_cached(
                    "SELECT digest FROM oas_operations WHERE session = ?1 AND op_id = ?2",
                )?
                .query_row(params![row.key, prepared.operation_id], |r| r.get(0))
                .optional()?;
            if let Some(digest) = known {
                return Ok(if digest == prepared.digest {
                    Ok(Applied::Before)
                } else {
                    Err(history::operation_reused(&prepared.operation_id))
                });
            }
        }
        let expected = prepared.transaction.expected_suffix().len();
        let mut suffix: Vec<(i64, Vec<u8>)> = Vec::new();
        if let (Some(row), true) = (&live, expected > 0) {
            let mut newest = tx.prepare_cached(
                "SELECT seq, record FROM oas_items WHERE session = ?1 ORDER BY seq DESC LIMIT ?2",
            )?;
            let mut rows = newest.query(params![row.key, expected as i64])?;
            while let Some(r) = rows.next()? {
                suffix.push((r.get(0)?, record_bytes(r.get_ref(1)?).to_vec()));
            }
        }
        if !prepared.suffix_matches(
            &self.codec,
            session_id,
            suffix.iter().rev().map(|(_, r)| r.as_slice()),
        ) {
            // Dropping `tx` rolls back: nothing changes, and the id stays unused.
            return Ok(Err(history::suffix_mismatch()));
        }
        if let (Some(row), Some((lowest, _))) = (&live, suffix.last()) {
            tx.prepare_cached("DELETE FROM oas_items WHERE session = ?1 AND seq >= ?2")?
                .execute(params![row.key, lowest])?;
            tx.prepare_cached(
                "UPDATE oas_sessions SET item_count = item_count - ?2 WHERE id = ?1",
            )?
            .execute(params![row.key, suffix.len() as i64])?;
        }
        let forget_at = now
            .as_millis()
            .saturating_add(i64::try_from(prepared.retention.as_millis()).unwrap_or(i64::MAX));
        let pruned = self.append_in(
            &tx,
            session_id,
            records.len() as i64,
            |tx, key, next_seq| {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO oas_items (session, seq, record) VALUES (?1, ?2, ?3)",
                )?;
                for (offset, record) in records.iter().enumerate() {
                    insert.execute(params![key, next_seq + offset as i64, record])?;
                }
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO oas_operations (session, op_id, digest, expires_at)
                 VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    key,
                    prepared.operation_id,
                    &prepared.digest[..],
                    forget_at
                ])?;
                Ok(())
            },
        )?;
        tx.commit()?;
        self.note_prune(pruned);
        Ok(Ok(Applied::Now))
    }
}
