//! Staged writes (`Backend::stage`): parts go to a staging list in the session's slot, the
//! commit script puts them in place in one atomic step (`docs/storage/redis.md`, "Staged
//! writes").

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{Error, ErrorKind, Operation, Result};
use crate::item::Item;
use crate::staged::{StageMode, StagedWrite};
use crate::store::BoxFuture;
use crate::time::Timestamp;

use super::error::{map_redis, unexpected};
use super::layout::{tag, value_int, SessionKeys};
use super::RedisBackend;

/// How long a staging list outlives its last part when never committed.
const STAGE_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// A staged write of the Redis backend: parts go to a staging list in the session's slot (one
/// EVALSHA each), and the commit script renames it into place (or appends it, in the server)
/// in one atomic step.
pub(super) struct RedisStaged<'a> {
    backend: &'a RedisBackend,
    session_id: String,
    keys: SessionKeys,
    stage_key: Vec<u8>,
    replace: bool,
    count: u64,
    committed: bool,
    /// Set by `abort`: a later commit must not run (with nothing staged, a replace would
    /// clear the session).
    aborted: bool,
}

impl<'a> RedisStaged<'a> {
    /// A staged write to `session_id`, with a staging list of its own: the start time, process
    /// and a counter make its name unique across writers and processes.
    pub(super) fn new(backend: &'a RedisBackend, session_id: &str, mode: StageMode) -> Self {
        static UNIQUE: AtomicU64 = AtomicU64::new(0);
        let keys = SessionKeys::new(&backend.prefix, session_id);
        let stage_key = keys.stage(
            Timestamp::now().as_millis(),
            std::process::id(),
            UNIQUE.fetch_add(1, Ordering::Relaxed),
        );
        RedisStaged {
            backend,
            session_id: session_id.to_owned(),
            keys,
            stage_key,
            replace: mode == StageMode::Replace,
            count: 0,
            committed: false,
            aborted: false,
        }
    }
}

impl StagedWrite for RedisStaged<'_> {
    fn append(&mut self, items: Vec<Item>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let b = self.backend;
            let id = &self.session_id;
            let records: Vec<Vec<u8>> = b.codec.encode_all(id, &items)?;
            drop(items);
            let expiry = STAGE_EXPIRY.as_millis().to_string();
            let mut args: Vec<&[u8]> = vec![expiry.as_bytes()];
            args.extend(records.iter().map(Vec::as_slice));
            let op = Operation::AddItems;
            let reply = b
                .eval(
                    op,
                    &b.scripts.stage,
                    std::slice::from_ref(&self.stage_key),
                    &args,
                )
                .await?;
            let length = match tag(&reply) {
                Some("OK") => reply.get(1).and_then(value_int).unwrap_or(-1),
                _ => return Err(unexpected(op, "stage", &reply)),
            };
            self.count += records.len() as u64;
            if length != self.count as i64 {
                return Err(Error::new(
                    ErrorKind::Backend,
                    op,
                    "the staging list does not hold what was staged (it expired, or another writer used it); nothing was committed",
                ));
            }
            Ok(())
        })
    }

    fn commit(&mut self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let b = self.backend;
            let op = Operation::AddItems;
            if self.aborted {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    op,
                    "the staged write was aborted; nothing was written",
                ));
            }
            // The session's keys, then the staging list last (COMMIT takes it off the end).
            let mut keys = b.script_keys(&self.keys);
            keys.push(self.stage_key.clone());
            let ttl = b.ttl_ms().to_string();
            let mode: &[u8] = if self.replace { b"replace" } else { b"append" };
            let count = self.count.to_string();
            let mut checked = !(b.check_seed && b.conn.is_cluster()) || self.replace;
            loop {
                let check: &[u8] = if checked { b"1" } else { b"0" };
                let reply = b
                    .eval(
                        op,
                        &b.scripts.commit,
                        &keys,
                        &[ttl.as_bytes(), mode, check, count.as_bytes()],
                    )
                    .await?;
                match tag(&reply) {
                    Some("OK") => {
                        self.committed = true;
                        return Ok(self.count);
                    }
                    Some("NEW") if !checked => {
                        b.check_seed_key(op, &self.keys, &self.session_id).await?;
                        checked = true;
                    }
                    Some("LOST") => {
                        return Err(Error::new(
                            ErrorKind::Backend,
                            op,
                            "the staged write was lost before its commit (its staging list expired or was pruned); nothing was written",
                        ))
                    }
                    _ => return Err(unexpected(op, "commit", &reply)),
                }
            }
        })
    }

    fn abort(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.aborted = true;
            if self.committed || self.count == 0 {
                return Ok(());
            }
            // Awaited, unlike `Drop`'s: a caller about to exit (the CLI on Ctrl-C) knows the
            // staging list is gone. On failure `Drop` tries once more, then expiry or `prune`.
            let op = Operation::AddItems;
            let b = self.backend;
            b.stats.record_requests(op, 1);
            b.conn
                .query(op, redis::cmd("DEL").arg(self.stage_key.as_slice()))
                .await
                .map_err(|e| map_redis(op, e))?;
            self.count = 0;
            Ok(())
        })
    }
}

impl Drop for RedisStaged<'_> {
    fn drop(&mut self) {
        // Abandoned without `abort`: delete the staging list now when a runtime is at hand;
        // otherwise it expires by itself (or `prune` deletes it).
        if self.committed || self.count == 0 {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let conn = self.backend.conn.clone();
        let key = self.stage_key.clone();
        handle.spawn(async move {
            let _ = conn
                .query(Operation::AddItems, redis::cmd("DEL").arg(key.as_slice()))
                .await;
        });
    }
}
