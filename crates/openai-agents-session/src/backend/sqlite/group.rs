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
//!
//! With `synchronous=normal` (a commit does not wait for the disk) an append that finds no
//! writer running and nothing queued is its own group, committed at once on the caller's
//! thread ([`SqliteBackend::try_append_inline`]): tens of microseconds, less than the hop to
//! the blocking pool and back. It takes the writer role and the writer's connection for that
//! commit, with SQLite's busy wait off: a locked database, a prune or a checkpoint that is due
//! sends the append to the blocking writer as before. The writer's connection checkpoints the
//! WAL itself (see [`CHECKPOINT_WAL_BYTES`], on the blocking writer), so that no
//! commit on the caller's thread runs one.

use tokio::sync::oneshot;

use super::*;

/// At most this many appends, or this many bytes of records, are committed in one transaction.
const MAX_GROUP_APPENDS: usize = 256;
const MAX_GROUP_BYTES: usize = 8 << 20;
/// With `synchronous=normal` the writer's connection has SQLite's automatic checkpoint (at 1,000
/// WAL pages) off and runs a passive checkpoint itself, on the blocking writer, once the WAL
/// written since the last one is estimated at this many bytes: each commit counts its records
/// plus [`PAGES_PER_COMMIT`] bytes of pages (a turn-sized commit rewrites three or four pages),
/// so a checkpoint comes about every 250 turns, as SQLite's would.
pub(super) const CHECKPOINT_WAL_BYTES: u64 = 4 << 20;
/// See [`CHECKPOINT_WAL_BYTES`].
const PAGES_PER_COMMIT: u64 = 16 << 10;

/// An append waiting for the writer.
#[derive(Debug)]
pub(super) struct Queued {
    session_id: String,
    records: Vec<Vec<u8>>,
    reply: oneshot::Sender<Result<()>>,
}

/// What [`SqliteBackend::try_append_inline`] did.
pub(super) enum Inline {
    /// Committed (or failed on its own) on the caller's thread.
    Done(Result<()>),
    /// Not tried: the append is handed back, nothing written.
    Declined(Queued),
    /// Tried, but SQLite was busy: nothing written, and the append is queued for the writer
    /// (which was started); its answer comes through its reply channel.
    Queued,
}

#[cfg(test)]
impl SqliteBackend {
    /// Waits (up to 10 s) until no writer holds the writer role: a caller's reply comes before
    /// the blocking writer finds its queue empty and gives the role back.
    pub(super) async fn writer_idle(&self) {
        for _ in 0..1000 {
            if !self.inner.lock_group().writing {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the SQLite writer stayed busy for 10 s");
    }
}

#[cfg(test)]
impl Queued {
    pub(super) fn new(
        session_id: String,
        records: Vec<Vec<u8>>,
        reply: oneshot::Sender<Result<()>>,
    ) -> Queued {
        Queued {
            session_id,
            records,
            reply,
        }
    }
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
        let queued = Queued {
            session_id,
            records,
            reply,
        };
        let queued = if self.inner.config.synchronous == Synchronous::Normal {
            match self.try_append_inline(queued) {
                Inline::Done(result) => return result,
                Inline::Declined(back) => Some(back),
                Inline::Queued => None,
            }
        } else {
            Some(queued)
        };
        let start_writer = match queued {
            Some(queued) => {
                let mut queue = self.inner.lock_group();
                queue.waiting.push_back(queued);
                !std::mem::replace(&mut queue.writing, true)
            }
            None => false,
        };
        if start_writer {
            self.start_writer();
        }
        answer.await.unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Backend,
                Operation::AddItems,
                "the SQLite writer stopped before committing the batch",
            ))
        })
    }

    /// Commits `queued` alone on this thread when no writer runs, nothing waits, and no prune
    /// or checkpoint is due (see [`Inline`]).
    pub(super) fn try_append_inline(&self, queued: Queued) -> Inline {
        let inner = &self.inner;
        if inner.prune_due(Timestamp::now())
            || inner.wal_unchecked.load(Ordering::Relaxed) >= CHECKPOINT_WAL_BYTES
        {
            return Inline::Declined(queued);
        }
        {
            let mut queue = inner.lock_group();
            if queue.writing || !queue.waiting.is_empty() {
                return Inline::Declined(queued);
            }
            queue.writing = true;
        }
        // If this commit panics, the guard gives the writer role back (and fails what queued
        // meanwhile), as it does for the blocking writer, so that later appends do not wait
        // for a writer that never comes.
        let mut guard = WriterGuard {
            inner: Arc::clone(inner),
            finished: false,
        };
        // The writer role is ours: its connection is free (or not opened yet).
        let taken = inner
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let outcome = taken.and_then(|mut conn| {
            let one = std::slice::from_ref(&queued);
            let (committed, reusable) =
                inner.without_busy_wait(&mut conn, Operation::AddItems, |conn| {
                    Ok(inner.try_group(conn, one, &[0]))
                });
            if reusable {
                *inner
                    .writer
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(conn);
            }
            match committed {
                Ok(Ok(())) => {
                    inner.note_commit(one);
                    Some(Ok(()))
                }
                Ok(Err(GroupError::Member(_, e) | GroupError::Whole(e))) if !is_busy(&e) => {
                    Some(Err(map_sqlite(Operation::AddItems, e)))
                }
                // Busy (nothing written), or the busy wait could not be turned off: queued.
                _ => None,
            }
        });
        // Give the writer role back, or hand it to a writer for what queued meanwhile (and for
        // this append, first in line, when it could not be committed here).
        guard.finished = true;
        let (inline, start_writer) = {
            let mut queue = inner.lock_group();
            match outcome {
                Some(result) => {
                    queue.writing = !queue.waiting.is_empty();
                    (Inline::Done(result), queue.writing)
                }
                None => {
                    queue.waiting.push_front(queued);
                    (Inline::Queued, true)
                }
            }
        };
        if start_writer {
            self.start_writer();
        }
        inline
    }

    /// Starts the blocking writer (the caller set `writing`).
    fn start_writer(&self) {
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
}

impl Inner {
    /// Counts a commit of `group` toward the next checkpoint of the writer's connection.
    fn note_commit(&self, group: &[Queued]) {
        if self.config.synchronous == Synchronous::Normal {
            let bytes: usize = group.iter().flat_map(|q| &q.records).map(Vec::len).sum();
            self.wal_unchecked
                .fetch_add(bytes as u64 + PAGES_PER_COMMIT, Ordering::Relaxed);
        }
    }

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
                None => match self.connect_writer() {
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
            self.note_commit(&group);
            if self.wal_unchecked.load(Ordering::Relaxed) >= CHECKPOINT_WAL_BYTES {
                self.wal_unchecked.store(0, Ordering::Relaxed);
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::debug!(error = %e, "WAL checkpoint failed");
                }
            }
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
