//! Group commit of unfenced `add_items`: appends that arrive while a commit is under way wait
//! in a queue, and the writer commits all of them in the next transaction (one `COMMIT`, so
//! one fsync with `synchronous=full`, instead of one per append).
//!
//! Each batch keeps its own guarantees: its records are inserted together, contiguous (the
//! writer is the only one in the transaction), and its caller gets its own result. When one
//! append of a group fails with an error of its own, the whole transaction is rolled back and
//! the group is committed again without it, so no batch is ever partly written and no caller
//! gets another's error. A busy database retries the whole group, as a single append would be
//! retried. The writer is a blocking task that runs while the queue is not empty, on a
//! connection of its own (outside the pool, so a queued append never waits for a permit).

use tokio::sync::oneshot;

use super::*;

/// At most this many appends, or this many bytes of records, are committed in one transaction.
const MAX_GROUP_APPENDS: usize = 256;
const MAX_GROUP_BYTES: usize = 8 << 20;

/// An append waiting for the writer.
#[derive(Debug)]
pub(super) struct Queued {
    session_id: String,
    records: Vec<Vec<u8>>,
    reply: oneshot::Sender<Result<()>>,
}

/// The appends waiting, and whether a writer task is running (it empties the queue).
#[derive(Debug, Default)]
pub(super) struct GroupQueue {
    waiting: std::collections::VecDeque<Queued>,
    writing: bool,
}

impl SqliteBackend {
    /// `add_items` through the group committer.
    pub(super) async fn append_grouped(
        &self,
        session_id: String,
        records: Vec<Vec<u8>>,
    ) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        let start_writer = {
            let mut queue = self.inner.lock_group();
            queue.waiting.push_back(Queued {
                session_id,
                records,
                reply,
            });
            !std::mem::replace(&mut queue.writing, true)
        };
        if start_writer {
            // Detached: the writer runs until the queue is empty, whether or not this caller
            // still waits (its own reply is then dropped unread).
            let guard = WriterGuard {
                inner: Arc::clone(&self.inner),
                finished: false,
            };
            drop(tokio::task::spawn_blocking(move || {
                let mut guard = guard;
                guard.inner.write_groups();
                guard.finished = true;
            }));
        }
        answer.await.unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Backend,
                Operation::AddItems,
                "the SQLite writer stopped before committing the batch",
            ))
        })
    }
}

impl Inner {
    fn lock_group(&self) -> std::sync::MutexGuard<'_, GroupQueue> {
        self.group
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The writer: commits groups until the queue is empty, then stops (the next append starts
    /// another).
    fn write_groups(&self) {
        let mut conn = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        loop {
            let group: Vec<Queued> = {
                let mut queue = self.lock_group();
                if queue.waiting.is_empty() {
                    queue.writing = false;
                    break;
                }
                let mut bytes = 0;
                let mut take = 0;
                for queued in &queue.waiting {
                    let size: usize = queued.records.iter().map(Vec::len).sum();
                    if take > 0 && (take == MAX_GROUP_APPENDS || bytes + size > MAX_GROUP_BYTES) {
                        break;
                    }
                    bytes += size;
                    take += 1;
                }
                queue.waiting.drain(..take).collect()
            };
            let conn = match &mut conn {
                Some(conn) => conn,
                None => match self.connect_retrying(Operation::AddItems) {
                    Ok(opened) => conn.insert(opened),
                    Err(e) => {
                        for queued in group {
                            let _ = queued.reply.send(Err(Error::new(
                                e.kind(),
                                Operation::AddItems,
                                e.message().to_owned(),
                            )));
                        }
                        continue;
                    }
                },
            };
            let results = self.commit_group(conn, &group);
            for (queued, result) in group.into_iter().zip(results) {
                let _ = queued.reply.send(result);
            }
        }
        if let Some(conn) = conn {
            *self
                .writer
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(conn);
        }
    }

    /// Commits `group` in one transaction; one result per append, in order.
    fn commit_group(&self, conn: &mut Connection, group: &[Queued]) -> Vec<Result<()>> {
        let mut results: Vec<Option<Result<()>>> = group.iter().map(|_| None).collect();
        let mut attempt = 0;
        loop {
            let pending: Vec<usize> = (0..group.len()).filter(|&i| results[i].is_none()).collect();
            if pending.is_empty() {
                break;
            }
            attempt += 1;
            for _ in &pending {
                self.stats.record_requests(Operation::AddItems, 1);
            }
            match self.try_group(conn, group, &pending) {
                Ok(()) => {
                    for i in pending {
                        results[i] = Some(Ok(()));
                    }
                }
                // One append failed on its own: it gets its error, the others are committed
                // again without it (the transaction was rolled back).
                Err(GroupError::Member(i, e)) if !is_busy(&e) => {
                    results[i] = Some(Err(map_sqlite(Operation::AddItems, e)));
                }
                Err(GroupError::Member(_, e) | GroupError::Whole(e))
                    if is_busy(&e) && attempt < BUSY_ATTEMPTS =>
                {
                    tracing::debug!(attempt, "SQLite busy, retrying the group commit");
                    std::thread::sleep(Duration::from_millis(10 << attempt));
                }
                Err(GroupError::Member(_, e) | GroupError::Whole(e)) => {
                    // The transaction (or its commit) failed as a whole: every append of the
                    // group gets the error; none of them was applied.
                    let busy = is_busy(&e);
                    let text = e.to_string();
                    let mut first = Some(e);
                    for i in pending {
                        let err = match first.take() {
                            Some(e) => map_sqlite(Operation::AddItems, e),
                            None if busy => Error::new(
                                ErrorKind::Timeout,
                                Operation::AddItems,
                                "the database stayed locked by other writers; nothing was applied",
                            ),
                            None => Error::new(
                                ErrorKind::Backend,
                                Operation::AddItems,
                                format!("SQLite failed: {text}"),
                            ),
                        };
                        results[i] = Some(Err(err));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(Error::new(
                        ErrorKind::Backend,
                        Operation::AddItems,
                        "the group commit left an append without a result",
                    ))
                })
            })
            .collect()
    }

    /// One transaction appending the `pending` members of `group`, committed, or rolled back
    /// entirely (on drop) when any statement fails.
    fn try_group(
        &self,
        conn: &mut Connection,
        group: &[Queued],
        pending: &[usize],
    ) -> std::result::Result<(), GroupError> {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(GroupError::Whole)?;
        let mut pruned = None;
        for &i in pending {
            let queued = &group[i];
            let records = &queued.records;
            let done = self
                .append_in(
                    &tx,
                    &queued.session_id,
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
                )
                .map_err(|e| GroupError::Member(i, e))?;
            if done.is_some() {
                // One opportunistic prune per group is enough.
                pruned = done;
                self.note_prune(done);
            }
        }
        tx.commit().map_err(GroupError::Whole)?;
        self.note_prune(pruned);
        Ok(())
    }
}

/// Owned by the writer task: if the task ends without emptying the queue (it panicked, or the
/// runtime shut down before running it), the waiting appends fail ("the SQLite writer
/// stopped") and the next append starts a new writer, instead of waiting forever.
struct WriterGuard {
    inner: Arc<Inner>,
    finished: bool,
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        if !self.finished {
            let mut queue = self.inner.lock_group();
            queue.writing = false;
            queue.waiting.clear();
        }
    }
}

/// Why a group transaction failed: one member's statement, or the transaction itself.
enum GroupError {
    Member(usize, rusqlite::Error),
    Whole(rusqlite::Error),
}
