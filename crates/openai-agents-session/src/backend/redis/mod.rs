//! The Redis backend (feature `redis`): standalone, TLS, ACL users and Redis Cluster.
//!
//! Every operation is one atomic round trip: a Lua script (EVALSHA, reloaded with EVAL after a
//! NOSCRIPT) that checks key types, applies expiry and writes in one step. All keys of a
//! session share one hash tag, so a session lives in one cluster slot. The layout and scripts
//! are in `docs/storage/redis.md`.
//!
//! URLs: `redis://[user:password@]host[:port][/db]`, `rediss://...` (TLS), and
//! `redis+cluster://host1:port1,host2:port2/` / `rediss+cluster://...` (Cluster), with the
//! shared options and `prefix`, `connect_timeout`, `response_timeout`, `tls_ca_file`,
//! `tls_insecure`, `stale_stage_after` (alias `stale_batch_secs`), `layout` (`seed` and
//! `openai-agents` open older programs' data read-only).
//!
//! Where things are: this file holds the backend type, its connections and its `Backend` impl,
//! and opens a store from a URL; `config.rs` reads the URL's options; `layout.rs` the keys and
//! reply shapes (pure); `scripts.rs` the Lua scripts; `read.rs`, `write.rs`, `staged.rs` and
//! `prune.rs` the operations; `error.rs` maps driver errors; `conn.rs` and `tls.rs` the sockets
//! under a URL-opened store; `legacy.rs` the read-only older layouts.

pub(crate) mod config;
mod conn;
mod error;
mod history;
pub(crate) mod layout;
mod lease;
mod legacy;
mod prune;
mod read;
mod scripts;
mod staged;
mod tls;
mod write;

/// The redis-rs crate this backend is built on, for building a [`RedisConnection`] of your own
/// with the matching version.
pub use ::redis;

pub use config::Layout;
pub use layout::{escape_id, unescape_id, SessionKeys, DEFAULT_PREFIX, LAYOUT_VERSION};

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{RedisError, Value};

use crate::codec::RecordCodec;
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
use crate::url::StoreUrl;

use config::{RedisConfig, DEFAULT_CONNECT_TIMEOUT, DEFAULT_STALE_STAGE_AFTER};
use error::{config_error, map_redis};
use layout::{value_int, value_string};
use scripts::{LuaScript, Scripts};
use staged::RedisStaged;

/// A connection to Redis: one server or a cluster, either opened by this crate from a URL or
/// handed over by the caller.
#[derive(Clone)]
#[non_exhaustive]
pub enum RedisConnection {
    /// One server, through a connection manager the caller owns (reconnects by itself; a
    /// request it sends on a connection that closed meanwhile fails once).
    Single(ConnectionManager),
    /// A cluster, through a redis-rs cluster connection the caller owns (follows MOVED and ASK).
    Cluster(ClusterConnection),
    /// A connection opened from a store URL, which follows the crate's retry rule (see
    /// `docs/storage/redis.md`, "Connections and retries").
    Managed(ManagedConnection),
}

/// A connection this crate opened from a store URL: one server or a cluster over sockets whose
/// writes it watches, so that a request is sent again only when it never reached the server.
#[derive(Clone)]
pub struct ManagedConnection {
    inner: Managed,
    response_timeout: Duration,
    connect_timeout: Duration,
}

#[derive(Clone)]
enum Managed {
    Server(Arc<conn::Standalone>),
    Cluster(ClusterConnection<conn::Watched>),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisConnection::Single(_) => f.write_str("RedisConnection::Single"),
            RedisConnection::Cluster(_) => f.write_str("RedisConnection::Cluster"),
            RedisConnection::Managed(ManagedConnection {
                inner: Managed::Server(_),
                ..
            }) => f.write_str("RedisConnection::Managed(server)"),
            RedisConnection::Managed(ManagedConnection {
                inner: Managed::Cluster(_),
                ..
            }) => f.write_str("RedisConnection::Managed(cluster)"),
        }
    }
}

impl std::fmt::Debug for ManagedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedConnection")
            .field("response_timeout", &self.response_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

/// What [`ManagedConnection::send`] sends.
#[derive(Clone, Copy)]
enum Request<'a> {
    Cmd(&'a redis::Cmd),
    Pipeline(&'a redis::Pipeline),
}

/// Whether a failed attempt may be sent again (once) under the retry rule.
fn may_retry(op: Operation, err: &RedisError) -> bool {
    match err.code() {
        // Written, answer lost: a read is repeated, a write's outcome stays unknown.
        Some(conn::LOST_CONNECTION) => !op.is_write(),
        Some(conn::LOST_TIMEOUT) => false,
        // Not written (the connection was known closed, writing failed, or connecting was
        // refused): safe for every operation. A timeout used up the time budget.
        _ => conn::is_transport_failure(err) && !err.is_timeout(),
    }
}

fn budget_exhausted() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "Redis did not answer within response_timeout",
    ))
}

impl ManagedConnection {
    /// Sends `cmd` under the retry rule, within `response_timeout`, plus `connect_timeout` when
    /// a connection had to be made first.
    async fn request(&self, op: Operation, cmd: &redis::Cmd) -> redis::RedisResult<Value> {
        self.send(op, Request::Cmd(cmd)).await
    }

    /// Sends a pipeline under the same rule; the replies come back as one array (a server
    /// error of one command stays a value in it).
    async fn request_pipeline(
        &self,
        op: Operation,
        pipe: &redis::Pipeline,
    ) -> redis::RedisResult<Value> {
        self.send(op, Request::Pipeline(pipe)).await
    }

    async fn send(&self, op: Operation, req: Request<'_>) -> redis::RedisResult<Value> {
        let start = tokio::time::Instant::now();
        let mut deadline = start + self.response_timeout;
        if matches!(self.inner, Managed::Cluster(_)) {
            // The cluster client connects nodes by itself: allow for one connect.
            deadline += self.connect_timeout;
        }
        let mut connected_once = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match &self.inner {
                Managed::Server(server) => match server.live().await {
                    Ok((mut conn, connected)) => {
                        if connected && !connected_once {
                            connected_once = true;
                            deadline += self.connect_timeout;
                        }
                        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                        if left.is_zero() {
                            Err(budget_exhausted())
                        } else {
                            match req {
                                Request::Cmd(cmd) => conn.send_within(cmd, left).await,
                                Request::Pipeline(pipe) => {
                                    conn.send_pipeline_within(pipe, left).await
                                }
                            }
                        }
                    }
                    Err(e) => Err(e),
                },
                Managed::Cluster(cluster) => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    let mut cluster = cluster.clone();
                    let sent = async {
                        match req {
                            Request::Cmd(cmd) => cmd.query_async(&mut cluster).await,
                            Request::Pipeline(pipe) => pipe
                                .query_async::<Vec<Value>>(&mut cluster)
                                .await
                                .map(Value::Array),
                        }
                    };
                    match tokio::time::timeout(left, sent).await {
                        Ok(result) => result,
                        Err(_) => Err(redis::make_extension_error(
                            conn::LOST_TIMEOUT.to_owned(),
                            Some("no answer within the time budget".to_owned()),
                        )),
                    }
                }
            };
            match result {
                Err(e) if attempt == 1 && may_retry(op, &e) => {
                    tracing::debug!(operation = %op, error = %e, "Redis request not answered; sending it again on a fresh connection");
                }
                other => return other,
            }
        }
    }

    /// The cluster connection, for routing to one node.
    fn cluster(&self) -> Option<&ClusterConnection<conn::Watched>> {
        match &self.inner {
            Managed::Cluster(c) => Some(c),
            Managed::Server(_) => None,
        }
    }
}

impl RedisConnection {
    /// Sends one command on behalf of `op` (which decides whether a lost answer may be retried).
    async fn query(&self, op: Operation, cmd: &redis::Cmd) -> redis::RedisResult<Value> {
        match self {
            RedisConnection::Single(c) => cmd.query_async(&mut c.clone()).await,
            RedisConnection::Cluster(c) => cmd.query_async(&mut c.clone()).await,
            RedisConnection::Managed(m) => m.request(op, cmd).await,
        }
    }

    /// Sends a pipeline (non-atomic; every key in one slot) in one round trip. The replies come
    /// back in order, a server error of one command as a [`Value::ServerError`] among them.
    async fn query_pipeline(
        &self,
        op: Operation,
        pipe: &redis::Pipeline,
    ) -> redis::RedisResult<Vec<Value>> {
        let reply = match self {
            RedisConnection::Single(c) => pipe.query_async(&mut c.clone()).await.map(Value::Array),
            RedisConnection::Cluster(c) => pipe.query_async(&mut c.clone()).await.map(Value::Array),
            RedisConnection::Managed(m) => m.request_pipeline(op, pipe).await,
        }?;
        match reply {
            Value::Array(values) => Ok(values),
            other => Ok(vec![other]),
        }
    }

    /// Runs `cmd` on one node (`None`: the single server).
    async fn query_on(
        &self,
        op: Operation,
        node: Option<&(String, u16)>,
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<Value> {
        let route = |(host, port): &(String, u16)| {
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                host: host.clone(),
                port: *port,
            })
        };
        match (self, node) {
            (RedisConnection::Cluster(c), Some(addr)) => {
                c.clone().route_command(cmd.clone(), route(addr)).await
            }
            (RedisConnection::Managed(m), Some(addr)) => match m.cluster() {
                Some(c) => c.clone().route_command(cmd.clone(), route(addr)).await,
                None => self.query(op, cmd).await,
            },
            _ => self.query(op, cmd).await,
        }
    }

    fn is_cluster(&self) -> bool {
        match self {
            RedisConnection::Cluster(_) => true,
            RedisConnection::Managed(m) => m.cluster().is_some(),
            RedisConnection::Single(_) => false,
        }
    }

    /// The masters to scan: `[None]` for one server, every master's address in a cluster.
    async fn masters(&self) -> redis::RedisResult<Vec<Option<(String, u16)>>> {
        if !self.is_cluster() {
            return Ok(vec![None]);
        }
        let slots = self
            .query(Operation::ListSessions, redis::cmd("CLUSTER").arg("SLOTS"))
            .await?;
        let mut masters = Vec::new();
        if let Value::Array(ranges) = slots {
            for range in ranges {
                if let Value::Array(parts) = range {
                    if let Some(Value::Array(node)) = parts.get(2) {
                        let host = node.first().and_then(value_string);
                        let port = node.get(1).and_then(value_int);
                        if let (Some(host), Some(port)) = (host, port) {
                            let addr = (host, port as u16);
                            if !masters.contains(&Some(addr.clone())) {
                                masters.push(Some(addr));
                            }
                        }
                    }
                }
            }
        }
        masters.sort();
        Ok(masters)
    }
}

/// The Redis backend. Open it from a URL with [`Store::open`], or from a connection you own
/// with [`RedisBackend::store_from_connection`].
#[derive(Debug)]
pub struct RedisBackend {
    conn: RedisConnection,
    prefix: String,
    /// The seed's key is checked for history to migrate (only with the seed's default prefix).
    check_seed: bool,
    options: StoreOptions,
    scripts: Scripts,
    codec: RecordCodec,
    stats: RequestStats,
    /// Age after which `prune` deletes a staging list never committed.
    stale_stage_after: Duration,
    /// Two-step pops (a record only the client can decode) of one session queue here, by a
    /// stripe of its id, instead of invalidating each other's second step (`write.rs`).
    pop_stripes: write::PopStripes,
}

/// Builds a store on a connection the caller owns (and keeps: we never close it), with the
/// default prefix unless `prefix` is given.
///
/// ```no_run
/// # async fn demo() -> openai_agents_session::Result<()> {
/// use openai_agents_session::backend::redis::{redis, RedisBackend, RedisConnection};
/// use openai_agents_session::StoreOptions;
/// let client = redis::Client::open("redis://127.0.0.1/").unwrap();
/// let manager = client.get_connection_manager().await.unwrap();
/// let store = RedisBackend::store_from_connection(
///     RedisConnection::Single(manager.clone()),
///     Some("my_app"),
///     StoreOptions::default(),
/// );
/// let session = store.session("chat-1")?;
/// # Ok(()) }
/// ```
impl RedisBackend {
    /// A store on a connection the caller already owns.
    pub fn store_from_connection(
        conn: RedisConnection,
        prefix: Option<&str>,
        options: StoreOptions,
    ) -> Store {
        let prefix = prefix.unwrap_or(DEFAULT_PREFIX).to_owned();
        let backend = RedisBackend::new(conn, prefix, options.clone());
        Store::from_backend(Arc::new(backend), options)
    }

    fn new(conn: RedisConnection, prefix: String, options: StoreOptions) -> Self {
        let codec = options.codec();
        RedisBackend {
            conn,
            check_seed: prefix == DEFAULT_PREFIX,
            prefix,
            options,
            scripts: Scripts::new(),
            codec,
            stats: RequestStats::default(),
            stale_stage_after: DEFAULT_STALE_STAGE_AFTER,
            pop_stripes: write::PopStripes::default(),
        }
    }

    /// The TTL in the scripts' unit (ms; 0 without a TTL).
    fn ttl_ms(&self) -> i64 {
        self.options
            .ttl
            .map_or(0, |t| (t as i64).saturating_mul(1000))
    }

    /// The TTL a read refreshes the expiry to (ms; 0 without refresh on read).
    fn refresh_ttl_ms(&self) -> i64 {
        if self.options.refreshes_on_read() {
            self.ttl_ms()
        } else {
            0
        }
    }

    /// The keys passed to scripts (all in the session's slot): metadata, items, lease, and the
    /// seed key where it can be migrated in place (never one of this layout's own keys).
    fn script_keys(&self, keys: &SessionKeys) -> Vec<Vec<u8>> {
        let mut out = vec![keys.meta.clone(), keys.items.clone(), keys.lease.clone()];
        if self.check_seed && !self.conn.is_cluster() && keys.seed_may_hold_history() {
            out.push(keys.seed.clone());
        }
        out
    }

    /// One round trip: EVALSHA, or EVAL when the server lost its script cache.
    async fn eval(
        &self,
        op: Operation,
        script: &LuaScript,
        keys: &[Vec<u8>],
        args: &[&[u8]],
    ) -> Result<Vec<Value>> {
        let build = |verb: &str, body: &str| {
            let mut cmd = redis::cmd(verb);
            cmd.arg(body).arg(keys.len());
            for k in keys {
                cmd.arg(k.as_slice());
            }
            for a in args {
                cmd.arg(*a);
            }
            cmd
        };
        self.stats.record_requests(op, 1);
        let reply = match self.conn.query(op, &build("EVALSHA", &script.sha)).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                tracing::debug!(
                    script = script.name,
                    "NOSCRIPT: sending the script with EVAL"
                );
                self.stats.record_requests(op, 1);
                self.conn.query(op, &build("EVAL", &script.source)).await
            }
            other => other,
        }
        .map_err(|e| map_redis(op, e))?;
        match reply {
            Value::Array(values) => Ok(values),
            other => Err(Error::new(
                ErrorKind::Backend,
                op,
                format!(
                    "unexpected reply from the {} script: {other:?}",
                    script.name
                ),
            )),
        }
    }

    /// In a cluster the seed's key is in another slot, so a missing session's seed history is
    /// looked for with one more request, and reported instead of silently shadowed.
    async fn check_seed_key(
        &self,
        op: Operation,
        keys: &SessionKeys,
        session_id: &str,
    ) -> Result<()> {
        if !(self.check_seed && self.conn.is_cluster() && keys.seed_may_hold_history()) {
            return Ok(());
        }
        self.stats.record_requests(op, 1);
        let kind = self
            .conn
            .query(op, redis::cmd("TYPE").arg(keys.seed.as_slice()))
            .await
            .map_err(|e| map_redis(Operation::GetItems, e).with_operation(op))?;
        if value_string(&kind).as_deref() == Some("list") {
            return Err(Error::new(
                ErrorKind::LegacyData,
                op,
                format!(
                    "the key {:?} holds this session's history in the seed's layout (openai-agents-session 0.1.0), which a cluster cannot migrate in place; copy it first with: agent-session copy --from 'redis+cluster://HOSTS/?layout=seed' --to 'redis+cluster://HOSTS/' --session {session_id:?}",
                    String::from_utf8_lossy(&keys.seed)
                ),
            )
            .with_session(session_id));
        }
        Ok(())
    }
}

impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        if self.conn.is_cluster() {
            "redis-cluster"
        } else {
            "redis"
        }
    }

    fn get_items<'a>(
        &'a self,
        session_id: &'a str,
        limit: Option<usize>,
    ) -> BoxFuture<'a, Result<Vec<Item>>> {
        Box::pin(self.get(session_id, limit))
    }

    fn add_items<'a>(&'a self, session_id: &'a str, items: Vec<Item>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let records = items
                .iter()
                .map(|i| self.codec.encode(session_id, i))
                .collect::<Result<_>>()?;
            drop(items);
            self.append(Operation::AddItems, session_id, records, None)
                .await
        })
    }

    fn pop_item<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<Option<Item>>> {
        Box::pin(self.pop(session_id, None))
    }

    fn apply_transaction<'a>(
        &'a self,
        session_id: &'a str,
        prepared: &'a PreparedTransaction,
    ) -> BoxFuture<'a, Result<Applied>> {
        Box::pin(self.apply_history(session_id, prepared, None))
    }

    fn clear_session<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.clear(session_id, None))
    }

    fn acquire_lease<'a>(
        &'a self,
        session_id: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<LeaseGrant>> {
        Box::pin(self.acquire(session_id, owner, ttl))
    }

    fn renew_lease<'a>(
        &'a self,
        session_id: &'a str,
        token: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(self.renew(session_id, token, ttl))
    }

    fn release_lease<'a>(&'a self, session_id: &'a str, token: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.release(session_id, token))
    }

    fn lease_info<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<Option<Lease>>> {
        Box::pin(self.lease_of(session_id))
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
                    let records = items
                        .iter()
                        .map(|i| self.codec.encode(session_id, i))
                        .collect::<Result<_>>()?;
                    drop(items);
                    self.append(Operation::AddItems, session_id, records, fence)
                        .await
                        .map(|()| WriteOutcome::Done)
                }
                FencedWrite::PopItem => self.pop(session_id, fence).await.map(WriteOutcome::Popped),
                FencedWrite::ClearSession => self
                    .clear(session_id, fence)
                    .await
                    .map(|()| WriteOutcome::Done),
                FencedWrite::ApplyTransaction(prepared) => self
                    .apply_history(session_id, prepared, fence)
                    .await
                    .map(WriteOutcome::Applied),
            }
        })
    }

    fn session_info<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionInfo>>> {
        Box::pin(self.info(session_id))
    }

    fn list_sessions<'a>(&'a self, options: &'a ListOptions) -> BoxFuture<'a, Result<SessionPage>> {
        Box::pin(self.list(options))
    }

    fn prune(&self) -> BoxFuture<'_, Result<PruneReport>> {
        // Redis deletes expired keys itself, and every script treats an expired session as
        // missing at once: what is left is staging lists of writes never committed (which
        // also expire by themselves, a day after their last part).
        Box::pin(self.prune_staged())
    }

    fn stats(&self) -> &RequestStats {
        &self.stats
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
        Box::pin(async move {
            self.page(session_id, after.unwrap_or(0), max_bytes)
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
        Box::pin(async move { self.before(session_id, before, limit).await.map(Some) })
    }

    fn stage<'a>(
        &'a self,
        session_id: &str,
        mode: StageMode,
        _expected_items: Option<u64>,
    ) -> BoxFuture<'a, Result<Option<Box<dyn StagedWrite + 'a>>>> {
        let staged: Box<dyn StagedWrite + 'a> = Box::new(RedisStaged::new(self, session_id, mode));
        Box::pin(async move { Ok(Some(staged)) })
    }
}

impl RawRecords for RedisBackend {
    fn append_raw<'a>(&'a self, session_id: &'a str, record: Vec<u8>) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.append(Operation::RawWrite, session_id, vec![record], None))
    }
}

/// Parses a Redis URL and connects.
pub(crate) async fn open(mut url: StoreUrl, options: StoreOptions) -> Result<Store> {
    let config = RedisConfig::from_url(&mut url)?;
    if config.tls_insecure {
        tracing::warn!("tls_insecure=true: the Redis server's TLS certificate is not verified");
    }
    let conn = connect(&url, &config).await?;
    Ok(match config.layout {
        Layout::Native => {
            let mut backend = RedisBackend::new(conn, config.prefix, options.clone());
            backend.stale_stage_after = config.stale_stage_after;
            Store::from_backend(Arc::new(backend), options)
        }
        legacy_layout => legacy::store(conn, legacy_layout, config.prefix, options),
    })
}

/// Connects as the URL and its options say: one server or a cluster, over sockets of
/// [`conn`] (which the retry rule needs), within `connect_timeout + response_timeout`.
async fn connect(url: &StoreUrl, opts: &RedisConfig) -> Result<RedisConnection> {
    let cluster = url.scheme.ends_with("+cluster");
    let tls = url.scheme.starts_with("rediss");
    install_crypto_provider();
    let root_cert = match &opts.tls_ca_file {
        Some(path) => Some(std::fs::read(path).map_err(|e| {
            config_error(format!("cannot read tls_ca_file {path:?}")).with_source(e)
        })?),
        None => None,
    };
    let profile = conn::Profile {
        tls: if tls {
            Some(Arc::new(
                tls::client_config(root_cert.as_deref(), opts.tls_insecure)
                    .map_err(config_error)?,
            ))
        } else {
            None
        },
        connect_timeout: opts.connect_timeout,
    };
    let scheme = if tls { "rediss" } else { "redis" };
    let fragment = if opts.tls_insecure { "#insecure" } else { "" };
    let (userinfo, hosts) = match url.authority.rfind('@') {
        Some(at) => (&url.authority[..=at], &url.authority[at + 1..]),
        None => ("", url.authority.as_str()),
    };
    if hosts.is_empty() {
        return Err(config_error(format!("{:?} names no host", url.redacted)));
    }
    let path = url.path.trim_end_matches('/');
    let connect_error = |e: RedisError| {
        let mapped = map_redis(Operation::Open, e);
        let kind = mapped.kind();
        let message = format!("cannot connect to {:?}: {}", url.redacted, mapped.message());
        let source = std::error::Error::source(&mapped)
            .map(|s| s.to_string())
            .unwrap_or_default();
        Error::new(
            if kind == ErrorKind::OutcomeUnknown {
                ErrorKind::Connection
            } else {
                kind
            },
            Operation::Open,
            message,
        )
        .with_source(redact_source(source, url))
    };
    if cluster {
        if !path.is_empty() {
            return Err(config_error(format!(
                "a cluster URL takes no database number: {:?}",
                url.redacted
            )));
        }
        let nodes: Vec<String> = hosts
            .split(',')
            .map(|h| format!("{scheme}://{userinfo}{h}/{fragment}"))
            .collect();
        let mut builder = redis::cluster::ClusterClientBuilder::new(nodes)
            .connection_timeout(opts.connect_timeout)
            .response_timeout(opts.response_timeout)
            // Fail fast when a master is down instead of retrying for many seconds.
            .retries(2)
            .max_retry_wait(500);
        if tls {
            builder = builder.tls(redis::cluster::TlsMode::Secure);
        }
        let client = builder.build().map_err(connect_error)?;
        let seeds: Vec<(String, u16)> = hosts
            .split(',')
            .map(|h| {
                match h
                    .rsplit_once(':')
                    .map(|(host, port)| (host, port.parse::<u16>()))
                {
                    Some((host, Ok(port))) => (
                        host.trim_start_matches('[')
                            .trim_end_matches(']')
                            .to_owned(),
                        port,
                    ),
                    _ => (h.to_owned(), 6379),
                }
            })
            .collect();
        conn::register(&seeds, &profile);
        let conn = tokio::time::timeout(
            opts.connect_timeout + opts.response_timeout,
            client.get_async_generic_connection::<conn::Watched>(),
        )
        .await
        .map_err(|_| config_timeout(url))?
        .map_err(connect_error)?;
        Ok(RedisConnection::Managed(ManagedConnection {
            inner: Managed::Cluster(conn),
            response_timeout: opts.response_timeout,
            connect_timeout: opts.connect_timeout,
        }))
    } else {
        if hosts.contains(',') {
            return Err(config_error(format!(
                "{:?} names several hosts; use redis+cluster:// for a cluster",
                url.redacted
            )));
        }
        let target = format!("{scheme}://{userinfo}{hosts}{path}{fragment}");
        let info =
            redis::IntoConnectionInfo::into_connection_info(target.as_str()).map_err(|e| {
                config_error(format!(
                    "invalid Redis URL {:?} ({:?})",
                    url.redacted,
                    e.kind()
                ))
            })?;
        let server = tokio::time::timeout(
            opts.connect_timeout + opts.response_timeout,
            conn::Standalone::open(info, opts.response_timeout, profile),
        )
        .await
        .map_err(|_| config_timeout(url))?
        .map_err(connect_error)?;
        Ok(RedisConnection::Managed(ManagedConnection {
            inner: Managed::Server(Arc::new(server)),
            response_timeout: opts.response_timeout,
            connect_timeout: opts.connect_timeout,
        }))
    }
}

fn config_timeout(url: &StoreUrl) -> Error {
    Error::new(
        ErrorKind::Timeout,
        Operation::Open,
        format!("connecting to {:?} timed out", url.redacted),
    )
}

/// A driver message with any password of the URL removed.
fn redact_source(message: String, url: &StoreUrl) -> String {
    match url
        .authority
        .rfind('@')
        .and_then(|at| url.authority[..at].split_once(':'))
    {
        Some((_, password)) if !password.is_empty() => {
            let decoded = crate::url::percent_decode(password).unwrap_or_default();
            let mut out = message.replace(password, "***");
            if !decoded.is_empty() {
                out = out.replace(&decoded, "***");
            }
            out
        }
        _ => message,
    }
}

fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Fails only when the application installed one already, which is then used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
