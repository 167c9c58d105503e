//! Staged writes: parts wait in `oas_staged`; the commit moves them into `oas_items` in one
//! transaction.

use super::*;

impl Inner {
    /// Stores staged records (invisible: they are not in `oas_items`), creating the stage row
    /// on the first call. Returns the stage id.
    pub(super) fn stage_records(
        &self,
        conn: &mut Connection,
        session_id: &str,
        stage: Option<i64>,
        first_seq: i64,
        records: &[Vec<u8>],
    ) -> TxResult<i64> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stage = match stage {
            Some(id) => id,
            None => {
                tx.prepare_cached(
                    "INSERT INTO oas_stages (session_id, created_at) VALUES (?1, ?2)",
                )?
                .execute(params![session_id, Timestamp::now().as_millis()])?;
                tx.last_insert_rowid()
            }
        };
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO oas_staged (stage, seq, record) VALUES (?1, ?2, ?3)",
            )?;
            for (offset, record) in records.iter().enumerate() {
                insert.execute(params![stage, first_seq + offset as i64, record])?;
            }
        }
        tx.commit()?;
        Ok(Ok(stage))
    }

    /// Makes a stage's `count` records the session's newest (or, with `replace`, its only)
    /// items in one transaction, and drops the stage.
    pub(super) fn commit_stage(
        &self,
        conn: &mut Connection,
        session_id: &str,
        stage: Option<i64>,
        count: i64,
        replace: bool,
    ) -> TxResult<()> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(id) = stage {
            let present: Option<i64> = tx
                .prepare_cached("SELECT id FROM oas_stages WHERE id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()?;
            if present.is_none() {
                return Ok(Err(Error::new(
                    ErrorKind::Backend,
                    Operation::AddItems,
                    "the staged write was removed (by prune, as abandoned) before its commit; nothing was written",
                )));
            }
        }
        if replace {
            if let Some(row) = find_session(&tx, session_id)? {
                tx.prepare_cached("DELETE FROM oas_items WHERE session = ?1")?
                    .execute([row.key])?;
                tx.prepare_cached("DELETE FROM oas_sessions WHERE id = ?1")?
                    .execute([row.key])?;
            }
        }
        let mut pruned = None;
        if let (Some(id), true) = (stage, count > 0) {
            pruned = self.append_in(&tx, session_id, count, |tx, key, next_seq| {
                tx.prepare_cached(
                    "INSERT INTO oas_items (session, seq, record)
                     SELECT ?1, ?2 + seq, record FROM oas_staged WHERE stage = ?3 ORDER BY seq",
                )?
                .execute(params![key, next_seq - 1, id])?;
                Ok(())
            })?;
        }
        if let Some(id) = stage {
            tx.prepare_cached("DELETE FROM oas_staged WHERE stage = ?1")?
                .execute([id])?;
            tx.prepare_cached("DELETE FROM oas_stages WHERE id = ?1")?
                .execute([id])?;
        }
        tx.commit()?;
        self.note_prune(pruned);
        Ok(Ok(()))
    }
}

/// A staged write of the SQLite backend: records wait in `oas_staged` (one short transaction
/// per part) and the commit moves them into `oas_items` with one `INSERT ... SELECT` inside
/// one transaction, so no part of it is ever visible alone and memory stays bounded.
pub(super) struct SqliteStaged<'a> {
    pub backend: &'a SqliteBackend,
    pub session_id: String,
    pub replace: bool,
    pub stage: Option<i64>,
    pub count: i64,
    pub committed: bool,
}

impl StagedWrite for SqliteStaged<'_> {
    fn append(&mut self, items: Vec<Item>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let inner = Arc::clone(&self.backend.inner);
            let records: Vec<Vec<u8>> = items
                .iter()
                .map(|i| inner.codec.encode(&self.session_id, i))
                .collect::<Result<_>>()?;
            drop(items);
            let n = records.len() as i64;
            let (id, stage, first) = (self.session_id.clone(), self.stage, self.count + 1);
            let stage = self
                .backend
                .run(Operation::AddItems, move |conn| {
                    inner.stage_records(conn, &id, stage, first, &records)
                })
                .await?;
            self.stage = Some(stage);
            self.count += n;
            Ok(())
        })
    }

    fn commit(&mut self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let inner = Arc::clone(&self.backend.inner);
            let (id, stage, count, replace) = (
                self.session_id.clone(),
                self.stage,
                self.count,
                self.replace,
            );
            self.backend
                .run(Operation::AddItems, move |conn| {
                    inner.commit_stage(conn, &id, stage, count, replace)
                })
                .await?;
            self.committed = true;
            Ok(count as u64)
        })
    }

    fn abort(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let Some(stage) = self.stage.take() else {
                return Ok(());
            };
            let inner = Arc::clone(&self.backend.inner);
            tokio::task::spawn_blocking(move || delete_stage(&inner, stage))
                .await
                .map_err(|e| Error::new(ErrorKind::Backend, Operation::AddItems, format!("{e}")))?
        })
    }
}

/// Deletes an abandoned stage's rows in one transaction.
fn delete_stage(inner: &Inner, stage: i64) -> Result<()> {
    inner.run_blocking(Operation::AddItems, |conn| {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached("DELETE FROM oas_staged WHERE stage = ?1")?
            .execute([stage])?;
        tx.prepare_cached("DELETE FROM oas_stages WHERE id = ?1")?
            .execute([stage])?;
        tx.commit()?;
        Ok(Ok(()))
    })
}

impl Drop for SqliteStaged<'_> {
    fn drop(&mut self) {
        // Abandoned without `abort`: remove the staged rows now when a runtime is at hand;
        // `prune` reclaims them otherwise.
        let (Some(stage), false) = (self.stage, self.committed) else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = Arc::clone(&self.backend.inner);
        handle.spawn_blocking(move || {
            let _ = delete_stage(&inner, stage);
        });
    }
}
