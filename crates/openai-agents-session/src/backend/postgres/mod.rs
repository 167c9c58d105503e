//! The PostgreSQL backend (feature `postgres`): `postgres://` and `postgresql://` URLs in
//! libpq's form.
//!
//! tokio-postgres through a deadpool-postgres pool (no query per checkout), TLS through
//! rustls (ring, as the rest of the workspace), and every operation one call of a function
//! the schema installs, prepared once per connection: one round trip each after warm-up,
//! one transaction each, no lock held across round trips. The schema, each function and
//! each statement are in `docs/storage/postgres.md`.
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> openai_agents_session::Result<()> {
//! use openai_agents_session::{Session, Store};
//! let store = Store::open("postgres://app:secret@localhost:5432/app?sslmode=verify-full&ttl=86400").await?;
//! let session = store.session("user-1")?;
//! session.add_items(vec![r#"{"role":"user","content":"hi"}"#.parse()?]).await?;
//! assert_eq!(session.get_items(None).await?.len(), 1);
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::types::ToSql;

use crate::codec::{Decoded, RecordCodec, TailCollector};
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::history::{Applied, PreparedTransaction};
use crate::item::Item;
use crate::lease::{Lease, LeaseGrant};
use crate::staged::{ItemPage, StageMode, StagedWrite};
use crate::stats::RequestStats;
use crate::store::{
    Backend, BoxFuture, FencedWrite, ListOptions, PruneReport, RawRecords, SessionInfo,
    SessionPage, Store, StoreOptions, WriteOutcome,
};
use crate::time::Timestamp;
use crate::url::StoreUrl;

pub(crate) mod config;
mod conn;
mod error;
mod layout;
mod lease;
mod legacy;
mod prune;
mod read;
mod schema;
mod staged;
mod tls;
mod write;

use config::{PgConfig, PgLayout};
use conn::Conn;
pub use layout::SCHEMA_VERSION;

/// The statements of one store, qualified with its schema and prefix.
#[derive(Debug)]
struct Statements {
    add: String,
    get: String,
    page: String,
    before: String,
    pop: String,
    pop_at: String,
    clear: String,
    apply: String,
    info: String,
    list: String,
    list_newest: String,
    prune: String,
    stage: String,
    commit: String,
    unstage: String,
    acquire: String,
    renew: String,
    release: String,
    lease: String,
}

impl Statements {
    fn new(schema: &str, prefix: &str) -> Statements {
        use layout::sql;
        let q = |s: &str| layout::qualify(s, schema, prefix);
        Statements {
            add: q(sql::ADD),
            get: q(sql::GET),
            page: q(sql::PAGE),
            before: q(sql::BEFORE),
            pop: q(sql::POP),
            pop_at: q(sql::POP_AT),
            clear: q(sql::CLEAR),
            apply: q(sql::APPLY),
            info: q(sql::INFO),
            list: q(sql::LIST),
            list_newest: q(sql::LIST_NEWEST),
            prune: q(sql::PRUNE),
            stage: q(sql::STAGE),
            commit: q(sql::COMMIT),
            unstage: q(sql::UNSTAGE),
            acquire: q(sql::ACQUIRE),
            renew: q(sql::RENEW),
            release: q(sql::RELEASE),
            lease: q(sql::LEASE),
        }
    }
}

/// The PostgreSQL backend. Open it with [`Store::open`]`("postgres://...")`.
#[derive(Debug)]
pub struct PostgresBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    conn: Conn,
    sql: Statements,
    codec: RecordCodec,
    stats: RequestStats,
    options: StoreOptions,
    stale_stage_after: Duration,
    schema: String,
    prefix: String,
}

pub(crate) async fn open(mut url: StoreUrl, options: StoreOptions) -> Result<Store> {
    let config = PgConfig::from_url(&mut url, |name| std::env::var(name).ok())?;
    if let PgLayout::OpenAiAgents {
        sessions_table,
        messages_table,
    } = &config.layout
    {
        let conn = Conn::new(&config)?;
        return legacy::open(
            conn,
            &config.schema,
            sessions_table,
            messages_table,
            options,
        )
        .await;
    }
    let backend = PostgresBackend::connect(&config, options.clone()).await?;
    Ok(Store::from_backend(Arc::new(backend), options))
}

impl PostgresBackend {
    async fn connect(config: &PgConfig, options: StoreOptions) -> Result<PostgresBackend> {
        let conn = Conn::new(config)?;
        let inner = Inner {
            conn,
            sql: Statements::new(&config.schema, &config.table_prefix),
            codec: options.codec(),
            stats: RequestStats::default(),
            options,
            stale_stage_after: config.stale_stage_after,
            schema: config.schema.clone(),
            prefix: config.table_prefix.clone(),
        };
        inner.ensure_schema().await?;
        Ok(PostgresBackend {
            inner: Arc::new(inner),
        })
    }
}

impl Inner {
    /// One statement of `op`, counted as one request.
    async fn one(
        &self,
        op: Operation,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<tokio_postgres::Row> {
        self.stats.record_requests(op, 1);
        self.conn.query_one(op, sql, params).await
    }

    /// The store's TTL in milliseconds (NULL: none).
    fn ttl_ms(&self) -> Option<i64> {
        self.options
            .ttl
            .map(|s| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX))
    }

    fn encode_all(&self, session_id: &str, items: &[Item]) -> Result<Vec<Vec<u8>>> {
        self.codec.encode_all(session_id, items)
    }
}

/// A session id as stored: its UTF-8 bytes.
fn sid(session_id: &str) -> &[u8] {
    session_id.as_bytes()
}

/// A fenced write's refusal, from the function's (owner, token, expires_at) columns.
fn fenced_from(op: Operation, token: u64, row: &tokio_postgres::Row, first: usize) -> Error {
    let owner: Option<Vec<u8>> = row.try_get(first).ok().flatten();
    let current = owner.map(|owner| {
        let owner = String::from_utf8_lossy(&owner).into_owned();
        let t: i64 = row
            .try_get::<_, Option<i64>>(first + 1)
            .ok()
            .flatten()
            .unwrap_or(0);
        let e: i64 = row
            .try_get::<_, Option<i64>>(first + 2)
            .ok()
            .flatten()
            .unwrap_or(0);
        Lease::new(
            owner,
            u64::try_from(t).unwrap_or(0),
            Timestamp::from_millis(e),
        )
    });
    Error::fenced(op, token, current)
}

fn fence_arg(token: Option<u64>) -> Option<i64> {
    token.map(|t| i64::try_from(t).unwrap_or(i64::MAX))
}

fn row_error(op: Operation, e: tokio_postgres::Error) -> Error {
    Error::new(
        ErrorKind::Backend,
        op,
        format!("PostgreSQL returned a row of another shape: {e}"),
    )
}

impl Backend for PostgresBackend {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn get_items<'a>(
        &'a self,
        session_id: &'a str,
        limit: Option<usize>,
    ) -> BoxFuture<'a, Result<Vec<Item>>> {
        Box::pin(self.inner.read_tail(session_id, limit))
    }

    fn add_items<'a>(&'a self, session_id: &'a str, items: Vec<Item>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let records = self.inner.encode_all(session_id, &items)?;
            drop(items);
            self.inner
                .append(Operation::AddItems, session_id, &records, None)
                .await
        })
    }

    fn pop_item<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<Option<Item>>> {
        Box::pin(self.inner.pop(session_id, None))
    }

    fn clear_session<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.inner.clear(session_id, None))
    }

    fn session_info<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionInfo>>> {
        Box::pin(self.inner.info(session_id))
    }

    fn list_sessions<'a>(&'a self, options: &'a ListOptions) -> BoxFuture<'a, Result<SessionPage>> {
        Box::pin(self.inner.list(options))
    }

    fn prune(&self) -> BoxFuture<'_, Result<PruneReport>> {
        Box::pin(self.inner.prune())
    }

    fn stats(&self) -> &RequestStats {
        &self.inner.stats
    }

    fn raw_records(&self) -> Option<&dyn RawRecords> {
        Some(self)
    }

    fn init(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.inner.ensure_schema())
    }

    fn read_page<'a>(
        &'a self,
        session_id: &'a str,
        after: Option<u64>,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Option<ItemPage>>> {
        Box::pin(async move {
            self.inner
                .read_page(session_id, after, max_bytes)
                .await
                .map(Some)
        })
    }

    fn read_before<'a>(
        &'a self,
        session_id: &'a str,
        before: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Option<crate::pages::PageBefore>>> {
        Box::pin(async move {
            self.inner
                .read_before(session_id, before, limit)
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
        let staged: Box<dyn StagedWrite + 'a> = Box::new(staged::PgStaged::new(
            Arc::clone(&self.inner),
            session_id,
            mode == StageMode::Replace,
        ));
        Box::pin(async move { Ok(Some(staged)) })
    }

    fn apply_transaction<'a>(
        &'a self,
        session_id: &'a str,
        prepared: &'a PreparedTransaction,
    ) -> BoxFuture<'a, Result<Applied>> {
        Box::pin(self.inner.apply_history(session_id, prepared, None))
    }

    fn acquire_lease<'a>(
        &'a self,
        session_id: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<LeaseGrant>> {
        Box::pin(self.inner.acquire_lease(session_id, owner, ttl))
    }

    fn renew_lease<'a>(
        &'a self,
        session_id: &'a str,
        token: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(self.inner.renew_lease(session_id, token, ttl))
    }

    fn release_lease<'a>(&'a self, session_id: &'a str, token: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.inner.release_lease(session_id, token))
    }

    fn lease_info<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<Option<Lease>>> {
        Box::pin(self.inner.lease_info(session_id))
    }

    fn fenced_write<'a>(
        &'a self,
        session_id: &'a str,
        token: u64,
        write: FencedWrite<'a>,
    ) -> BoxFuture<'a, Result<WriteOutcome>> {
        let fence = Some(token);
        Box::pin(async move {
            match write {
                FencedWrite::AddItems(items) => {
                    let records = self.inner.encode_all(session_id, &items)?;
                    drop(items);
                    self.inner
                        .append(Operation::AddItems, session_id, &records, fence)
                        .await
                        .map(|()| WriteOutcome::Done)
                }
                FencedWrite::PopItem => self
                    .inner
                    .pop(session_id, fence)
                    .await
                    .map(WriteOutcome::Popped),
                FencedWrite::ClearSession => self
                    .inner
                    .clear(session_id, fence)
                    .await
                    .map(|()| WriteOutcome::Done),
                FencedWrite::ApplyTransaction(prepared) => self
                    .inner
                    .apply_history(session_id, prepared, fence)
                    .await
                    .map(WriteOutcome::Applied),
            }
        })
    }
}

impl RawRecords for PostgresBackend {
    fn append_raw<'a>(&'a self, session_id: &'a str, record: Vec<u8>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.inner
                .append(Operation::RawWrite, session_id, &[record], None)
                .await
        })
    }
}
