//! The embedded SQLite backend (feature `sqlite`, on by default): `sqlite://PATH`.
//!
//! WAL journal, a busy timeout plus a bounded retry of whole transactions, one transaction per
//! operation (`BEGIN IMMEDIATE` for every write, so concurrent writers in other processes queue
//! instead of deadlocking), and all blocking work on tokio's blocking pool. The schema is in
//! `docs/storage/sqlite.md`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
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
        let mut immediate = false;
        Box::pin(self.run(Operation::GetItems, move |conn| {
            inner.read_tail(conn, &id, limit, &mut immediate)
        }))
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
