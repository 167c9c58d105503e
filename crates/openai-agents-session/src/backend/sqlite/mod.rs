//! The embedded SQLite backend (feature `sqlite`, on by default): `sqlite://PATH`.
//!
//! WAL journal, a busy timeout plus a bounded retry of whole transactions, one transaction per
//! operation (`BEGIN IMMEDIATE` for every write, so concurrent writers in other processes queue
//! instead of deadlocking), and all blocking work on tokio's blocking pool. The schema is in
//! `docs/storage/sqlite.md`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::codec::{Decoded, RecordCodec, TailCollector};
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::history::{self, Applied, PreparedTransaction};
use crate::item::Item;
use crate::lease::{Lease, LeaseGrant};
use crate::pages::{BeforeCollector, PageBefore};
use crate::staged::{ItemPage, StageMode, StagedWrite};
use crate::stats::RequestStats;
use crate::store::{
    Backend, BoxFuture, FencedWrite, ListOptions, PruneReport, RawRecords, SessionInfo,
    SessionPage, Store, StoreOptions, WriteOutcome,
};
use crate::time::{advance_updated, expiry_after, is_expired, Timestamp};
use crate::url::StoreUrl;

pub(crate) mod config;
mod error;
mod group;
mod layout;
mod lease;
mod legacy;
mod prune;
mod read;
pub(crate) mod records;
mod staged;
mod write;

pub use config::Synchronous;
use error::{is_busy, map_sqlite};
use layout::{find_session, prefix_successor, record_bytes, SCHEMA};
use prune::{checkpoint, prune_expired};
use read::TailMode;
use staged::SqliteStaged;

use config::{SqliteConfig, SqliteLayout};

/// The layout version this build writes (kept in `oas_meta`).
pub const LAYOUT_VERSION: i64 = 1;

/// How often (at most) a write also deletes expired sessions' rows.
const OPPORTUNISTIC_PRUNE_EVERY_MS: i64 = 60_000;
/// How many expired sessions one opportunistic prune deletes at most.
const OPPORTUNISTIC_PRUNE_LIMIT: i64 = 100;
/// Whole-transaction attempts when SQLite stays busy beyond the busy timeout.
const BUSY_ATTEMPTS: u32 = 5;
/// At most this many connections (and blocking threads) per store, however many sessions and
/// concurrent calls there are; more calls wait for a free one.
const MAX_CONNECTIONS: usize = 8;
/// Rows a `get_items` may read on the caller's thread ([`Inner::try_inline`]) instead of on the
/// blocking pool: tens of microseconds of work for turn-sized records, within tokio's advice of
/// at most 10 to 100 us between awaits. Longer reads go to the pool.
const INLINE_ROW_BUDGET: usize = 64;
/// Sessions whose last seen record count [`Inner::lengths`] remembers (the least recently read
/// are forgotten first).
const SESSION_LENGTHS: usize = 4096;

#[derive(Debug)]
struct Config {
    path: PathBuf,
    synchronous: Synchronous,
    busy_timeout: Duration,
    /// Age after which `prune` removes a staged write never committed.
    stale_stage_after: Duration,
    options: StoreOptions,
}

/// The SQLite backend. Open it with [`Store::open`]`("sqlite://sessions.db")`.
#[derive(Debug)]
pub struct SqliteBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    /// Idle connections; an operation takes one (or opens one) and puts it back.
    idle: Mutex<Vec<Connection>>,
    /// Bounds the open connections to `MAX_CONNECTIONS`.
    permits: Arc<tokio::sync::Semaphore>,
    codec: RecordCodec,
    stats: RequestStats,
    last_prune_ms: AtomicI64,
    /// Unfenced appends waiting for the group committer (`group.rs`).
    group: Mutex<group::GroupQueue>,
    /// The group committer's connection, outside the pool (idle between groups).
    writer: Mutex<Option<Connection>>,
    /// Estimated WAL bytes the writer's connection wrote since its last checkpoint
    /// (`group.rs`, `synchronous=normal` only).
    wal_unchecked: AtomicU64,
    /// The record count each recently read session had, so that a whole-history `get_items`
    /// goes straight to the pool when the session is known to be longer than the inline
    /// budget (one transaction, not a lookup on the caller's thread and then the read).
    lengths: Mutex<hashlink::LruCache<Box<str>, i64>>,
}

pub(crate) async fn open(mut url: StoreUrl, options: StoreOptions) -> Result<Store> {
    let config = SqliteConfig::from_url(&mut url)?;
    if let SqliteLayout::OpenAiAgents {
        sessions_table,
        messages_table,
    } = config.layout
    {
        let path = config.path.to_string_lossy().into_owned();
        return legacy::open(path, sessions_table, messages_table, options);
    }
    let backend = SqliteBackend::open(Config {
        path: config.path,
        synchronous: config.synchronous,
        busy_timeout: config.busy_timeout,
        stale_stage_after: config.stale_stage_after,
        options: options.clone(),
    })
    .await?;
    Ok(Store::from_backend(Arc::new(backend), options))
}

/// A transaction's outcome: the outer error is SQLite's (retried when busy), the inner result
/// is the operation's own (returned as is; the transaction is rolled back unless committed).
type TxResult<T> = rusqlite::Result<Result<T>>;

impl SqliteBackend {
    async fn open(config: Config) -> Result<SqliteBackend> {
        let codec = config.options.codec();
        let inner = Arc::new(Inner {
            config,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
            codec,
            stats: RequestStats::default(),
            last_prune_ms: AtomicI64::new(0),
            group: Mutex::new(group::GroupQueue::default()),
            writer: Mutex::new(None),
            wal_unchecked: AtomicU64::new(0),
            lengths: Mutex::new(hashlink::LruCache::new(SESSION_LENGTHS)),
        });
        let backend = SqliteBackend { inner };
        backend
            .run(Operation::Open, |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.execute_batch(SCHEMA)?;
                let version: String = tx.query_row(
                    "SELECT value FROM oas_meta WHERE key = 'layout_version'",
                    [],
                    |row| row.get(0),
                )?;
                if version.parse::<i64>().map_or(true, |v| v > LAYOUT_VERSION) {
                    return Ok(Err(Error::new(
                        ErrorKind::UnsupportedFormat,
                        Operation::Open,
                        format!(
                            "the database's layout version is {version}; this build reads up to {LAYOUT_VERSION} (upgrade openai-agents-session)"
                        ),
                    )));
                }
                tx.commit()?;
                Ok(Ok(()))
            })
            .await?;
        Ok(backend)
    }

    /// Runs `work` on a pooled connection on the blocking pool, retrying the whole transaction
    /// while SQLite reports busy (a busy transaction was rolled back, so a retry is idempotent).
    async fn run<T, F>(&self, op: Operation, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&mut Connection) -> TxResult<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        // The permit moves into the blocking task: it is held while the connection is in use,
        // even if the caller's future is dropped meanwhile.
        let permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Backend, op, "the SQLite store is closed").with_source(e)
            })?;
        tokio::task::spawn_blocking(move || {
            let result = inner.run_blocking(op, work);
            drop(permit);
            result
        })
        .await
        .map_err(|e| {
            Error::new(ErrorKind::Backend, op, "the SQLite worker task failed").with_source(e)
        })?
    }
}

impl Inner {
    fn connect(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.config.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(self.config.busy_timeout)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(%mode, path = %self.config.path.display(), "SQLite did not switch to WAL");
        }
        conn.pragma_update(None, "synchronous", self.config.synchronous.pragma())?;
        // Deleted and overwritten records are zeroed in the file, not left in free pages
        // (docs/encryption.md: no old plaintext after clear_session or rekey).
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.set_prepared_statement_cache_capacity(32);
        Ok(conn)
    }

    fn run_blocking<T, F>(&self, op: Operation, mut work: F) -> Result<T>
    where
        F: FnMut(&mut Connection) -> TxResult<T>,
    {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => self.connect_retrying(op)?,
        };
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            self.stats.record_requests(op, 1);
            match work(&mut conn) {
                Err(e) if is_busy(&e) && attempt < BUSY_ATTEMPTS => {
                    tracing::debug!(%op, attempt, "SQLite busy, retrying the transaction");
                    std::thread::sleep(Duration::from_millis(10 << attempt));
                }
                Err(e) => break Err(map_sqlite(op, e)),
                Ok(result) => break result,
            }
        };
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(conn);
        outcome
    }

    /// [`Inner::read_tail`] within [`INLINE_ROW_BUDGET`] and writing nothing, for the caller's
    /// thread: `None` when it stopped for the pool.
    fn read_tail_inline(
        &self,
        conn: &mut Connection,
        session_id: &str,
        limit: Option<usize>,
    ) -> TxResult<Option<Vec<Item>>> {
        let mut mode = TailMode {
            row_budget: Some(INLINE_ROW_BUDGET),
            ..TailMode::default()
        };
        let items = self.read_tail(conn, session_id, limit, &mut mode)?;
        self.note_length(session_id, mode.item_count);
        Ok(items.map(|items| (!mode.deferred).then_some(items)))
    }

    /// The record count `session_id` had when it was last read, if remembered.
    fn known_length(&self, session_id: &str) -> Option<i64> {
        self.lengths
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(session_id)
            .copied()
    }

    /// Remembers `count` for `session_id` (updated in place when known: no key allocated).
    fn note_length(&self, session_id: &str, count: i64) {
        let mut lengths = self
            .lengths
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match lengths.get_mut(session_id) {
            Some(known) => *known = count,
            None => {
                lengths.insert(session_id.into(), count);
            }
        }
    }

    /// Runs `work` at once on the calling thread when a permit is free and a pooled connection
    /// is idle, with SQLite's busy wait off: `None` (nothing done) when it cannot, when SQLite
    /// is busy (the transaction was rolled back) or when `work` returns `Ok(Ok(None))`; the
    /// caller then takes the blocking pool. Only for reads that write nothing.
    fn try_inline<T>(
        &self,
        op: Operation,
        work: impl FnOnce(&mut Connection) -> TxResult<Option<T>>,
    ) -> Option<Result<T>> {
        let _permit = self.permits.try_acquire().ok()?;
        let mut conn = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()?;
        let (outcome, reusable) = self.without_busy_wait(&mut conn, op, work);
        let result = match outcome {
            Err(e) if is_busy(&e) => None,
            Err(e) => Some(Err(map_sqlite(op, e))),
            Ok(Ok(None)) => None,
            Ok(Ok(Some(value))) => Some(Ok(value)),
            Ok(Err(e)) => Some(Err(e)),
        };
        if reusable {
            self.idle
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(conn);
        }
        result
    }

    /// Runs one transaction attempt of `op` on `conn` with SQLite's busy wait off (a lock held
    /// elsewhere fails at once with SQLITE_BUSY instead of waiting), for work on a caller's
    /// thread. Also says whether the busy timeout was restored: a connection where it was not
    /// is closed, never pooled.
    fn without_busy_wait<T>(
        &self,
        conn: &mut Connection,
        op: Operation,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> (rusqlite::Result<T>, bool) {
        let outcome = conn.busy_timeout(Duration::ZERO).and_then(|()| {
            self.stats.record_requests(op, 1);
            work(conn)
        });
        (outcome, conn.busy_timeout(self.config.busy_timeout).is_ok())
    }

    /// The group writer's connection: with `synchronous=normal`, without SQLite's automatic
    /// checkpoint (the writer runs its own, `group.rs`), so that no commit on a caller's thread
    /// runs one.
    fn connect_writer(&self) -> Result<Connection> {
        let conn = self.connect_retrying(Operation::AddItems)?;
        if self.config.synchronous == Synchronous::Normal {
            conn.pragma_update(None, "wal_autocheckpoint", 0)
                .map_err(|e| map_sqlite(Operation::AddItems, e))?;
        }
        Ok(conn)
    }

    fn connect_retrying(&self, op: Operation) -> Result<Connection> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.connect() {
                Ok(conn) => return Ok(conn),
                Err(e) if is_busy(&e) && attempt < BUSY_ATTEMPTS => {
                    std::thread::sleep(Duration::from_millis(10 << attempt));
                }
                Err(e) => {
                    return Err(Error::new(
                        ErrorKind::Connection,
                        op,
                        format!("cannot open SQLite database {}", self.config.path.display()),
                    )
                    .with_source(e))
                }
            }
        }
    }
}

impl Backend for SqliteBackend {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn get_items<'a>(
        &'a self,
        session_id: &'a str,
        limit: Option<usize>,
    ) -> BoxFuture<'a, Result<Vec<Item>>> {
        let inner = Arc::clone(&self.inner);
        let id = session_id.to_owned();
        Box::pin(async move {
            let op = Operation::GetItems;
            // A short read that writes nothing is answered at once on this thread (no hop to
            // the blocking pool and back, which costs more than the read itself).
            // A limit over the budget goes straight to the pool; so does a whole history not
            // known to be within it (one that grew past it since it was last read is left
            // there after the session lookup).
            let short = match limit {
                Some(n) => n <= INLINE_ROW_BUDGET,
                None => inner
                    .known_length(&id)
                    .is_some_and(|n| n <= INLINE_ROW_BUDGET as i64),
            };
            let inline = short
                .then(|| inner.try_inline(op, |conn| inner.read_tail_inline(conn, &id, limit)));
            if let Some(Some(done)) = inline {
                return done;
            }
            let mut mode = TailMode::default();
            let reader = Arc::clone(&inner);
            self.run(op, move |conn| {
                let items = reader.read_tail(conn, &id, limit, &mut mode);
                reader.note_length(&id, mode.item_count);
                items
            })
            .await
        })
    }

    fn add_items<'a>(&'a self, session_id: &'a str, items: Vec<Item>) -> BoxFuture<'a, Result<()>> {
        let id = session_id.to_owned();
        Box::pin(async move {
            let records: Vec<Vec<u8>> = items
                .iter()
                .map(|i| self.inner.codec.encode(&id, i))
                .collect::<Result<_>>()?;
            drop(items);
            // Committed with the other appends queued meanwhile (`group.rs`).
            self.append_grouped(id, records).await
        })
    }

    fn pop_item<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<Option<Item>>> {
        let inner = Arc::clone(&self.inner);
        let id = session_id.to_owned();
        Box::pin(self.run(Operation::PopItem, move |conn| inner.pop(conn, &id, None)))
    }

    fn clear_session<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<()>> {
        let inner = Arc::clone(&self.inner);
        let id = session_id.to_owned();
        Box::pin(self.run(Operation::ClearSession, move |conn| {
            inner.clear(conn, &id, None)
        }))
    }

    fn session_info<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionInfo>>> {
        let inner = Arc::clone(&self.inner);
        let id = session_id.to_owned();
        Box::pin(self.run(Operation::SessionInfo, move |conn| inner.info(conn, &id)))
    }

    fn list_sessions<'a>(&'a self, options: &'a ListOptions) -> BoxFuture<'a, Result<SessionPage>> {
        let inner = Arc::clone(&self.inner);
        let options = options.clone();
        Box::pin(self.run(Operation::ListSessions, move |conn| {
            inner.list(conn, &options)
        }))
    }

    fn prune(&self) -> BoxFuture<'_, Result<PruneReport>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(self.run(Operation::Prune, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = Timestamp::now();
            let removed = prune_expired(&tx, now, -1)?;
            // Operation ids past their retention, of live sessions too.
            tx.prepare_cached("DELETE FROM oas_operations WHERE expires_at <= ?1")?
                .execute([now.as_millis()])?;
            let stale = "SELECT id FROM oas_stages WHERE created_at < ?1";
            let cutoff = now.as_millis()
                - i64::try_from(inner.config.stale_stage_after.as_millis()).unwrap_or(i64::MAX);
            tx.prepare_cached(&format!("DELETE FROM oas_staged WHERE stage IN ({stale})"))?
                .execute([cutoff])?;
            let abandoned = tx
                .prepare_cached(&format!("DELETE FROM oas_stages WHERE id IN ({stale})"))?
                .execute([cutoff])?;
            // Rows no session row accounts for (this library never leaves any: only hand edits
            // or foreign tools do), and staged rows whose stage row is gone.
            let orphans = tx
                .prepare_cached(
                    "DELETE FROM oas_items WHERE session NOT IN (SELECT id FROM oas_sessions)",
                )?
                .execute([])?
                + tx.prepare_cached(
                    "DELETE FROM oas_staged WHERE stage NOT IN (SELECT id FROM oas_stages)",
                )?
                .execute([])?;
            tx.commit()?;
            checkpoint(conn);
            inner
                .last_prune_ms
                .store(now.as_millis(), Ordering::Relaxed);
            Ok(Ok(PruneReport::new(removed, (abandoned + orphans) as u64)))
        }))
    }

    fn apply_transaction<'a>(
        &'a self,
        session_id: &'a str,
        prepared: &'a PreparedTransaction,
    ) -> BoxFuture<'a, Result<Applied>> {
        let inner = Arc::clone(&self.inner);
        let id = session_id.to_owned();
        let prepared = prepared.clone();
        Box::pin(async move {
            let records: Vec<Vec<u8>> = prepared
                .transaction
                .items_added()
                .iter()
                .map(|i| inner.codec.encode(&id, i))
                .collect::<Result<_>>()?;
            self.run(Operation::ApplyTransaction, move |conn| {
                inner.apply_transaction(conn, &id, &prepared, &records, None)
            })
            .await
        })
    }

    fn acquire_lease<'a>(
        &'a self,
        session_id: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<LeaseGrant>> {
        let inner = Arc::clone(&self.inner);
        let (id, owner) = (session_id.to_owned(), owner.to_owned());
        Box::pin(self.run(Operation::AcquireLease, move |conn| {
            inner.acquire_lease(conn, &id, &owner, ttl)
        }))
    }

    fn renew_lease<'a>(
        &'a self,
        session_id: &'a str,
        token: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Lease>> {
        let inner = Arc::clone(&self.inner);
        let id = session_id.to_owned();
        Box::pin(self.run(Operation::RenewLease, move |conn| {
            inner.renew_lease(conn, &id, token, ttl)
        }))
    }

    fn release_lease<'a>(&'a self, session_id: &'a str, token: u64) -> BoxFuture<'a, Result<()>> {
        let inner = Arc::clone(&self.inner);
        let id = session_id.to_owned();
        Box::pin(self.run(Operation::ReleaseLease, move |conn| {
            inner.release_lease(conn, &id, token)
        }))
    }

    fn lease_info<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<Option<Lease>>> {
        let inner = Arc::clone(&self.inner);
        let id = session_id.to_owned();
        Box::pin(self.run(Operation::LeaseInfo, move |conn| {
            inner.lease_info(conn, &id)
        }))
    }

    fn fenced_write<'a>(
        &'a self,
        session_id: &'a str,
        token: u64,
        write: FencedWrite<'a>,
    ) -> BoxFuture<'a, Result<WriteOutcome>> {
        let inner = Arc::clone(&self.inner);
        let id = session_id.to_owned();
        let op = write.operation();
        let fence = Some(token);
        Box::pin(async move {
            match write {
                FencedWrite::AddItems(items) => {
                    let records: Vec<Vec<u8>> = inner.codec.encode_all(&id, &items)?;
                    drop(items);
                    self.run(op, move |conn| inner.append(conn, &id, &records, fence))
                        .await
                        .map(|()| WriteOutcome::Done)
                }
                FencedWrite::PopItem => self
                    .run(op, move |conn| inner.pop(conn, &id, fence))
                    .await
                    .map(WriteOutcome::Popped),
                FencedWrite::ClearSession => self
                    .run(op, move |conn| inner.clear(conn, &id, fence))
                    .await
                    .map(|()| WriteOutcome::Done),
                FencedWrite::ApplyTransaction(prepared) => {
                    let prepared = prepared.clone();
                    let records: Vec<Vec<u8>> = prepared
                        .transaction
                        .items_added()
                        .iter()
                        .map(|i| inner.codec.encode(&id, i))
                        .collect::<Result<_>>()?;
                    self.run(op, move |conn| {
                        inner.apply_transaction(conn, &id, &prepared, &records, fence)
                    })
                    .await
                    .map(WriteOutcome::Applied)
                }
            }
        })
    }

    fn stats(&self) -> &RequestStats {
        &self.inner.stats
    }

    fn raw_records(&self) -> Option<&dyn RawRecords> {
        Some(self)
    }

    fn read_page<'a>(
        &'a self,
        session_id: &'a str,
        after: Option<u64>,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Option<ItemPage>>> {
        let inner = Arc::clone(&self.inner);
        let id = session_id.to_owned();
        let after = after.map_or(0, |a| a.min(i64::MAX as u64) as i64);
        Box::pin(async move {
            self.run(Operation::GetItems, move |conn| {
                inner.read_page(conn, &id, after, max_bytes)
            })
            .await
            .map(Some)
        })
    }

    fn read_before<'a>(
        &'a self,
        session_id: &'a str,
        before: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Option<PageBefore>>> {
        let inner = Arc::clone(&self.inner);
        let id = session_id.to_owned();
        let before = before.map_or(i64::MAX, |b| b.min(i64::MAX as u64) as i64);
        Box::pin(async move {
            self.run(Operation::GetItems, move |conn| {
                inner.read_before(conn, &id, before, limit)
            })
            .await
            .map(Some)
        })
    }

    fn stage<'a>(
        &'a self,
        session_id: &str,
        mode: StageMode,
        _expected_items: Option<u64>,
    ) -> BoxFuture<'a, Result<Option<Box<dyn StagedWrite + 'a>>>> {
        let staged: Box<dyn StagedWrite + 'a> = Box::new(SqliteStaged {
            backend: self,
            session_id: session_id.to_owned(),
            replace: mode == StageMode::Replace,
            stage: None,
            count: 0,
            committed: false,
        });
        Box::pin(async move { Ok(Some(staged)) })
    }
}

impl RawRecords for SqliteBackend {
    fn append_raw<'a>(&'a self, session_id: &'a str, record: Vec<u8>) -> BoxFuture<'a, Result<()>> {
        let inner = Arc::clone(&self.inner);
        let id = session_id.to_owned();
        let records = vec![record];
        Box::pin(self.run(Operation::RawWrite, move |conn| {
            inner.append(conn, &id, &records, None)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn backend(dir: &tempfile::TempDir, ttl: Option<u64>) -> SqliteBackend {
        SqliteBackend::open(Config {
            path: dir.path().join("s.db"),
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(5),
            stale_stage_after: Duration::from_secs(3600),
            options: StoreOptions::default().with_ttl(ttl).unwrap(),
        })
        .await
        .unwrap()
    }

    async fn fill(b: &SqliteBackend, id: &str, n: usize) {
        let items = (0..n)
            .map(|i| Item::from_json_str(&format!(r#"{{"n":{i}}}"#)).unwrap())
            .collect();
        b.add_items(id, items).await.unwrap();
    }

    /// What `get_items` tries first: the read on this thread, or `None` (nothing done).
    fn inline(b: &SqliteBackend, id: &str, limit: Option<usize>) -> Option<Result<Vec<Item>>> {
        let inner = &b.inner;
        inner.try_inline(Operation::GetItems, |conn| {
            inner.read_tail_inline(conn, id, limit)
        })
    }

    fn numbers(items: &[Item]) -> Vec<String> {
        items.iter().map(|i| i.as_str().to_owned()).collect()
    }

    #[tokio::test]
    async fn short_reads_run_inline_and_long_or_writing_ones_defer() {
        let dir = tempfile::tempdir().unwrap();
        let b = backend(&dir, None).await;
        fill(&b, "s", INLINE_ROW_BUDGET + 10).await;
        // Within the budget: answered here, the same items as the pooled read.
        let here = inline(&b, "s", Some(20)).unwrap().unwrap();
        assert_eq!(
            numbers(&here),
            numbers(&b.get_items("s", Some(20)).await.unwrap())
        );
        assert_eq!(here.len(), 20);
        let here = inline(&b, "s", Some(INLINE_ROW_BUDGET)).unwrap().unwrap();
        assert_eq!(here.len(), INLINE_ROW_BUDGET);
        assert_eq!(here[0].as_str(), r#"{"n":10}"#);
        // Over the budget (a whole history of 74 rows, or a limit of 65): left to the pool,
        // which reads them all.
        assert!(inline(&b, "s", None).is_none());
        assert!(inline(&b, "s", Some(INLINE_ROW_BUDGET + 1)).is_none());
        assert_eq!(
            b.get_items("s", None).await.unwrap().len(),
            INLINE_ROW_BUDGET + 10
        );
        // A short whole history, and a missing session, inline.
        fill(&b, "short", 3).await;
        assert_eq!(inline(&b, "short", None).unwrap().unwrap().len(), 3);
        assert!(inline(&b, "nobody", Some(5)).unwrap().unwrap().is_empty());
    }

    #[tokio::test]
    async fn whole_history_reads_go_where_the_last_seen_length_says() {
        let dir = tempfile::tempdir().unwrap();
        let b = backend(&dir, None).await;
        let requests = || b.inner.stats.requests(Operation::GetItems);
        fill(&b, "s", 3).await;
        // Never read: its length is unknown, so the pool (one transaction), which notes 3.
        assert_eq!(b.inner.known_length("s"), None);
        assert_eq!(b.get_items("s", None).await.unwrap().len(), 3);
        assert_eq!((requests(), b.inner.known_length("s")), (1, Some(3)));
        // Known to be short: read here, one transaction.
        assert!(inline(&b, "s", None).is_some());
        assert_eq!(requests(), 2);
        // It grew past the budget since: the read here stops after the session lookup and
        // the pool reads it (two transactions, once), after which the pool is taken at once.
        fill(&b, "s", INLINE_ROW_BUDGET).await;
        let all = INLINE_ROW_BUDGET + 3;
        assert_eq!(b.get_items("s", None).await.unwrap().len(), all);
        assert_eq!(requests(), 4);
        assert_eq!(b.inner.known_length("s"), Some(all as i64));
        assert_eq!(b.get_items("s", None).await.unwrap().len(), all);
        assert_eq!(requests(), 5);
    }

    #[tokio::test]
    async fn a_read_that_must_refresh_the_expiry_is_deferred_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let b = backend(&dir, Some(3600)).await;
        fill(&b, "s", 3).await;
        let expiry = |b: &SqliteBackend| -> i64 {
            let conn = b.inner.connect().unwrap();
            conn.query_row(
                "SELECT expires_at FROM oas_sessions WHERE session_id = 's'",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        // Just written: no refresh is due, so the read runs here.
        assert_eq!(inline(&b, "s", Some(20)).unwrap().unwrap().len(), 3);
        // Moved back by more than the granularity (36 s): due, so the inline read stops
        // before writing, and the pooled read refreshes.
        let old = expiry(&b) - 60_000;
        b.inner
            .connect()
            .unwrap()
            .execute("UPDATE oas_sessions SET expires_at = ?1", [old])
            .unwrap();
        assert!(inline(&b, "s", Some(20)).is_none());
        assert_eq!(expiry(&b), old);
        assert_eq!(b.get_items("s", Some(20)).await.unwrap().len(), 3);
        assert!(expiry(&b) > old + 50_000);
    }

    fn queued(id: &str, n: usize) -> (group::Queued, tokio::sync::oneshot::Receiver<Result<()>>) {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let records = (0..n)
            .map(|i| format!(r#"{{"n":{i}}}"#).into_bytes())
            .collect();
        (group::Queued::new(id.to_owned(), records, reply), answer)
    }

    #[tokio::test]
    async fn appends_commit_inline_when_the_writer_is_idle_and_queue_when_the_database_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let b = backend(&dir, None).await;
        // The store's first append runs the opportunistic prune: declined, for the writer.
        let (q, _answer) = queued("s", 2);
        assert!(matches!(b.try_append_inline(q), group::Inline::Declined(_)));
        fill(&b, "s", 2).await;
        b.writer_idle().await;
        // Now the writer is idle and nothing is due: committed here.
        let (q, _answer) = queued("s", 3);
        assert!(matches!(
            b.try_append_inline(q),
            group::Inline::Done(Ok(()))
        ));
        assert_eq!(b.get_items("s", None).await.unwrap().len(), 5);
        // Another connection holds the write lock: nothing is written here, and the append
        // waits for the writer, which commits it once the lock is released.
        let holder = b.inner.connect().unwrap();
        holder
            .execute_batch("BEGIN IMMEDIATE; UPDATE oas_sessions SET updated_at = updated_at;")
            .unwrap();
        let (q, answer) = queued("s", 4);
        assert!(matches!(b.try_append_inline(q), group::Inline::Queued));
        assert_eq!(b.get_items("s", None).await.unwrap().len(), 5);
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            holder.execute_batch("COMMIT").unwrap();
        });
        answer.await.unwrap().unwrap();
        release.join().unwrap();
        let items = b.get_items("s", None).await.unwrap();
        assert_eq!(items.len(), 9);
        assert_eq!(
            items[5].as_str(),
            r#"{"n":0}"#,
            "the batch is contiguous, in order"
        );
        b.writer_idle().await;
        // And the next append is back on this thread, with the busy timeout restored.
        let (q, _answer) = queued("s", 1);
        assert!(matches!(
            b.try_append_inline(q),
            group::Inline::Done(Ok(()))
        ));
    }

    #[tokio::test]
    async fn the_writer_checkpoints_the_wal_that_inline_commits_leave() {
        let dir = tempfile::tempdir().unwrap();
        let b = backend(&dir, None).await;
        let big = format!(r#"{{"t":"{}"}}"#, "x".repeat(1000));
        // 3,000 turn-sized appends: about 48 MB of WAL without checkpoints.
        for _ in 0..3000 {
            let items = vec![Item::from_json_str(&big).unwrap(); 2];
            b.add_items("s", items).await.unwrap();
        }
        let wal = std::fs::metadata(dir.path().join("s.db-wal"))
            .unwrap()
            .len();
        assert!(wal < 16 << 20, "the WAL grew to {wal} bytes");
        assert!(b.inner.wal_unchecked.load(Ordering::Relaxed) < group::CHECKPOINT_WAL_BYTES);
        assert_eq!(b.get_items("s", None).await.unwrap().len(), 6000);
    }
}
