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
use crate::item::Item;
use crate::staged::{ItemPage, StageMode, StagedWrite};
use crate::stats::RequestStats;
use crate::store::{
    Backend, BoxFuture, ListOptions, PruneReport, RawRecords, SessionInfo, SessionPage, Store,
    StoreOptions,
};
use crate::time::{advance_updated, expiry_after, is_expired, Timestamp};
use crate::url::StoreUrl;

mod config;
mod legacy;

use config::{SqliteConfig, SqliteLayout};

/// The layout version this build writes (kept in `oas_meta`).
pub const LAYOUT_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS oas_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT OR IGNORE INTO oas_meta (key, value) VALUES ('layout_version', '1');
CREATE TABLE IF NOT EXISTS oas_sessions (
    id         INTEGER PRIMARY KEY,
    session_id TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER,
    item_count INTEGER NOT NULL,
    next_seq   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS oas_sessions_expires_at
    ON oas_sessions (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS oas_items (
    session INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    record  BLOB    NOT NULL,
    PRIMARY KEY (session, seq)
);
CREATE TABLE IF NOT EXISTS oas_stages (
    id         INTEGER PRIMARY KEY,
    session_id TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS oas_staged (
    stage  INTEGER NOT NULL,
    seq    INTEGER NOT NULL,
    record BLOB    NOT NULL,
    PRIMARY KEY (stage, seq)
);
";

/// How often (at most) a write also deletes expired sessions' rows.
const OPPORTUNISTIC_PRUNE_EVERY_MS: i64 = 60_000;
/// How many expired sessions one opportunistic prune deletes at most.
const OPPORTUNISTIC_PRUNE_LIMIT: i64 = 100;
/// Whole-transaction attempts when SQLite stays busy beyond the busy timeout.
const BUSY_ATTEMPTS: u32 = 5;
/// At most this many connections (and blocking threads) per store, however many sessions and
/// concurrent calls there are; more calls wait for a free one.
const MAX_CONNECTIONS: usize = 8;

/// The `synchronous` pragma: what a commit waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Synchronous {
    /// Commits survive a crash of the process; the last ones may be lost on power loss (WAL).
    Normal,
    /// Commits also survive power loss (an fsync per commit).
    Full,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

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

/// Maps an SQLite error: busy/locked beyond the retries is a retryable timeout (the transaction
/// was rolled back, so nothing was applied); anything else is a backend error.
fn map_sqlite(op: Operation, err: rusqlite::Error) -> Error {
    if is_busy(&err) {
        Error::new(
            ErrorKind::Timeout,
            op,
            "the database stayed locked by other writers; nothing was applied",
        )
        .with_source(err)
    } else {
        Error::new(ErrorKind::Backend, op, "SQLite failed").with_source(err)
    }
}

fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// A transaction's outcome: the outer error is SQLite's (retried when busy), the inner result
/// is the operation's own (returned as is; the transaction is rolled back unless committed).
type TxResult<T> = rusqlite::Result<Result<T>>;

fn record_bytes<'r>(value: ValueRef<'r>) -> &'r [u8] {
    match value {
        ValueRef::Blob(b) | ValueRef::Text(b) => b,
        _ => &[],
    }
}

struct SessionRow {
    key: i64,
    expires_at: Option<Timestamp>,
    updated_at: Timestamp,
    next_seq: i64,
}

fn find_session(conn: &Connection, session_id: &str) -> rusqlite::Result<Option<SessionRow>> {
    conn.prepare_cached(
        "SELECT id, expires_at, updated_at, next_seq FROM oas_sessions WHERE session_id = ?1",
    )?
    .query_row([session_id], |row| {
        Ok(SessionRow {
            key: row.get(0)?,
            expires_at: row.get::<_, Option<i64>>(1)?.map(Timestamp::from_millis),
            updated_at: Timestamp::from_millis(row.get(2)?),
            next_seq: row.get(3)?,
        })
    })
    .optional()
}

/// Deletes the rows of at most `limit` expired sessions (-1: all), oldest expiry first.
fn prune_expired(conn: &Connection, now: Timestamp, limit: i64) -> rusqlite::Result<u64> {
    const EXPIRED: &str =
        "SELECT id FROM oas_sessions WHERE expires_at IS NOT NULL AND expires_at <= ?1
                           ORDER BY expires_at, id LIMIT ?2";
    conn.prepare_cached(&format!(
        "DELETE FROM oas_items WHERE session IN ({EXPIRED})"
    ))?
    .execute(params![now.as_millis(), limit])?;
    let removed = conn
        .prepare_cached(&format!("DELETE FROM oas_sessions WHERE id IN ({EXPIRED})"))?
        .execute(params![now.as_millis(), limit])?;
    Ok(removed as u64)
}

impl SqliteBackend {
    async fn open(config: Config) -> Result<SqliteBackend> {
        let inner = Arc::new(Inner {
            config,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
            codec: RecordCodec::default(),
            stats: RequestStats::default(),
            last_prune_ms: AtomicI64::new(0),
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

    fn append(&self, conn: &mut Connection, session_id: &str, records: &[Vec<u8>]) -> TxResult<()> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
    fn append_in(
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
                // Expired: the write starts a new, empty session; the old items never reappear.
                tx.prepare_cached("DELETE FROM oas_items WHERE session = ?1")?
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
        let last_prune = self.last_prune_ms.load(Ordering::Relaxed);
        if now.as_millis() - last_prune > OPPORTUNISTIC_PRUNE_EVERY_MS {
            // Bounded, so that a large backlog never holds the write lock for long.
            prune_expired(tx, now, OPPORTUNISTIC_PRUNE_LIMIT)?;
            return Ok(Some(now));
        }
        Ok(None)
    }

    /// Remembers a committed opportunistic prune.
    fn note_prune(&self, pruned: Option<Timestamp>) {
        if let Some(at) = pruned {
            self.last_prune_ms.store(at.as_millis(), Ordering::Relaxed);
        }
    }

    /// Stores staged records (invisible: they are not in `oas_items`), creating the stage row
    /// on the first call. Returns the stage id.
    fn stage_records(
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
    fn commit_stage(
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

    /// One page of the live session's items after sequence `after`.
    fn read_page(
        &self,
        conn: &mut Connection,
        session_id: &str,
        after: i64,
        max_bytes: usize,
    ) -> TxResult<ItemPage> {
        let now = Timestamp::now();
        let tx = conn.transaction()?;
        let Some(row) = find_session(&tx, session_id)? else {
            return Ok(Ok(ItemPage::default()));
        };
        if is_expired(row.expires_at, now) {
            return Ok(Ok(ItemPage::default()));
        }
        let (mut items, mut bytes, mut last) = (Vec::new(), 0usize, after);
        let mut query = tx.prepare_cached(
            "SELECT seq, record FROM oas_items WHERE session = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        loop {
            let mut rows = query.query(params![row.key, last, 256])?;
            let mut fetched = 0;
            while let Some(r) = rows.next()? {
                if bytes >= max_bytes {
                    return Ok(Ok(ItemPage::new(items, Some(last as u64))));
                }
                fetched += 1;
                last = r.get(0)?;
                if let Decoded::Valid(item) = self.codec.decode(record_bytes(r.get_ref(1)?)) {
                    bytes += item.len_bytes();
                    items.push(item);
                }
            }
            if fetched < 256 {
                return Ok(Ok(ItemPage::new(items, None)));
            }
        }
    }

    fn read_tail(
        &self,
        conn: &mut Connection,
        session_id: &str,
        limit: Option<usize>,
    ) -> TxResult<Vec<Item>> {
        let now = Timestamp::now();
        let refresh = self.config.options.refreshes_on_read();
        let tx = if refresh {
            conn.transaction_with_behavior(TransactionBehavior::Immediate)?
        } else {
            conn.transaction()?
        };
        let Some(row) = find_session(&tx, session_id)? else {
            return Ok(Ok(Vec::new()));
        };
        if is_expired(row.expires_at, now) {
            return Ok(Ok(Vec::new()));
        }
        let mut collector = TailCollector::new(limit);
        let mut before = i64::MAX;
        {
            let mut page_query = tx.prepare_cached(
                "SELECT seq, record FROM oas_items WHERE session = ?1 AND seq < ?2
                 ORDER BY seq DESC LIMIT ?3",
            )?;
            'pages: loop {
                // LIMIT -1 is no limit: the whole history in one pass.
                let page = collector.wanted().map_or(-1, |w| w as i64);
                let mut rows = page_query.query(params![row.key, before, page])?;
                let mut fetched = 0i64;
                while let Some(r) = rows.next()? {
                    fetched += 1;
                    before = r.get(0)?;
                    if collector.push(self.codec.decode(record_bytes(r.get_ref(1)?))) {
                        break 'pages;
                    }
                }
                if page < 0 || fetched < page {
                    break;
                }
            }
        }
        if refresh {
            tx.prepare_cached("UPDATE oas_sessions SET expires_at = ?2 WHERE id = ?1")?
                .execute(params![
                    row.key,
                    expiry_after(now, self.config.options.ttl).map(Timestamp::as_millis)
                ])?;
        }
        tx.commit()?;
        Ok(Ok(collector.finish()))
    }

    fn pop(&self, conn: &mut Connection, session_id: &str) -> TxResult<Option<Item>> {
        let now = Timestamp::now();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
                match self.codec.decode(record_bytes(r.get_ref(1)?)) {
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

    fn clear(&self, conn: &mut Connection, session_id: &str) -> TxResult<()> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached(
            "DELETE FROM oas_items WHERE session = (SELECT id FROM oas_sessions WHERE session_id = ?1)",
        )?
        .execute([session_id])?;
        tx.prepare_cached("DELETE FROM oas_sessions WHERE session_id = ?1")?
            .execute([session_id])?;
        tx.commit()?;
        Ok(Ok(()))
    }

    fn info(&self, conn: &mut Connection, session_id: &str) -> TxResult<Option<SessionInfo>> {
        let now = Timestamp::now();
        let info = conn
            .prepare_cached(
                "SELECT item_count, created_at, updated_at, expires_at FROM oas_sessions
                 WHERE session_id = ?1",
            )?
            .query_row([session_id], |r| {
                Ok(SessionInfo::new(
                    session_id,
                    r.get::<_, i64>(0)?.max(0) as u64,
                    Timestamp::from_millis(r.get(1)?),
                    Timestamp::from_millis(r.get(2)?),
                    r.get::<_, Option<i64>>(3)?.map(Timestamp::from_millis),
                ))
            })
            .optional()?;
        Ok(Ok(info.filter(|i| !is_expired(i.expires_at, now))))
    }

    fn list(&self, conn: &mut Connection, options: &ListOptions) -> TxResult<SessionPage> {
        let now = Timestamp::now();
        let prefix = options.prefix.clone().unwrap_or_default();
        let page_size = options.effective_page_size();
        // One range on the primary-key index: from the cursor (or the prefix) up to the first
        // id past every id with this prefix; the byte-wise prefix test stays as the filter.
        let (lower_op, lower) = match &options.cursor {
            Some(cursor) if cursor.as_str() >= prefix.as_str() => (">", cursor.clone()),
            _ => (">=", prefix.clone()),
        };
        let upper = prefix_successor(&prefix);
        let sql = format!(
            "SELECT session_id FROM oas_sessions
             WHERE session_id {lower_op} ?1 {}
               AND substr(CAST(session_id AS BLOB), 1, ?3) = CAST(?2 AS BLOB)
               AND (expires_at IS NULL OR expires_at > ?4)
             ORDER BY session_id LIMIT ?5",
            if upper.is_some() {
                "AND session_id < ?6"
            } else {
                ""
            }
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut bound: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(6);
        let (len, now_ms, limit) = (prefix.len() as i64, now.as_millis(), page_size as i64 + 1);
        bound.extend([
            &lower as &dyn rusqlite::ToSql,
            &prefix,
            &len,
            &now_ms,
            &limit,
        ]);
        if let Some(upper) = &upper {
            bound.push(upper);
        }
        let mut ids = stmt
            .query_map(bound.as_slice(), |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let next_cursor = if ids.len() > page_size {
            ids.truncate(page_size);
            ids.last().cloned()
        } else {
            None
        };
        Ok(Ok(SessionPage::new(ids, next_cursor)))
    }
}

/// The smallest string greater than every string starting with `prefix` (UTF-8 byte order is
/// code point order, so it is the prefix with its last character replaced by the next one);
/// `None` for the empty prefix or one ending in U+10FFFF.
fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last as u32 {
            0xD7FF => Some('\u{E000}'),
            n => char::from_u32(n + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
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
        Box::pin(self.run(Operation::GetItems, move |conn| {
            inner.read_tail(conn, &id, limit)
        }))
    }

    fn add_items<'a>(&'a self, session_id: &'a str, items: Vec<Item>) -> BoxFuture<'a, Result<()>> {
        let inner = Arc::clone(&self.inner);
        let id = session_id.to_owned();
        Box::pin(async move {
            let records: Vec<Vec<u8>> = items.iter().map(|i| self.inner.codec.encode(i)).collect();
            drop(items);
            self.run(Operation::AddItems, move |conn| {
                inner.append(conn, &id, &records)
            })
            .await
        })
    }

    fn pop_item<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<Option<Item>>> {
        let inner = Arc::clone(&self.inner);
        let id = session_id.to_owned();
        Box::pin(self.run(Operation::PopItem, move |conn| inner.pop(conn, &id)))
    }

    fn clear_session<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<()>> {
        let inner = Arc::clone(&self.inner);
        let id = session_id.to_owned();
        Box::pin(self.run(Operation::ClearSession, move |conn| inner.clear(conn, &id)))
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
            inner
                .last_prune_ms
                .store(now.as_millis(), Ordering::Relaxed);
            Ok(Ok(PruneReport::new(removed, (abandoned + orphans) as u64)))
        }))
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

/// A staged write of the SQLite backend: records wait in `oas_staged` (one short transaction
/// per part) and the commit moves them into `oas_items` with one `INSERT ... SELECT` inside
/// one transaction, so no part of it is ever visible alone and memory stays bounded.
struct SqliteStaged<'a> {
    backend: &'a SqliteBackend,
    session_id: String,
    replace: bool,
    stage: Option<i64>,
    count: i64,
    committed: bool,
}

impl StagedWrite for SqliteStaged<'_> {
    fn append(&mut self, items: Vec<Item>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let inner = Arc::clone(&self.backend.inner);
            let records: Vec<Vec<u8>> = items.iter().map(|i| inner.codec.encode(i)).collect();
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
}

impl Drop for SqliteStaged<'_> {
    fn drop(&mut self) {
        // Abandoned: remove the staged rows now when a runtime is at hand; `prune` reclaims
        // them otherwise.
        let (Some(stage), false) = (self.stage, self.committed) else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = Arc::clone(&self.backend.inner);
        handle.spawn_blocking(move || {
            let _ = inner.run_blocking(Operation::AddItems, |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.prepare_cached("DELETE FROM oas_staged WHERE stage = ?1")?
                    .execute([stage])?;
                tx.prepare_cached("DELETE FROM oas_stages WHERE id = ?1")?
                    .execute([stage])?;
                tx.commit()?;
                Ok(Ok(()))
            });
        });
    }
}

impl RawRecords for SqliteBackend {
    fn append_raw<'a>(&'a self, session_id: &'a str, record: Vec<u8>) -> BoxFuture<'a, Result<()>> {
        let inner = Arc::clone(&self.inner);
        let id = session_id.to_owned();
        let records = vec![record];
        Box::pin(self.run(Operation::RawWrite, move |conn| {
            inner.append(conn, &id, &records)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_successor;

    #[test]
    fn prefix_successor_bounds_every_extension() {
        assert_eq!(prefix_successor(""), None);
        assert_eq!(prefix_successor("a:").as_deref(), Some("a;"));
        assert_eq!(prefix_successor("x\u{D7FF}").as_deref(), Some("x\u{E000}"));
        assert_eq!(prefix_successor("b\u{10FFFF}").as_deref(), Some("c"));
        assert_eq!(prefix_successor("\u{10FFFF}"), None);
        for p in ["a", "user-1:", "\u{e9}", "z\u{1F600}"] {
            let upper = prefix_successor(p).unwrap();
            for ext in ["", "\u{10FFFF}\u{10FFFF}", "zzz", "\u{0}"] {
                let s = format!("{p}{ext}");
                assert!(s.as_str() < upper.as_str(), "{s:?} < {upper:?}");
            }
        }
    }
}
