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
//! `tls_insecure`, `layout` (`seed` and `openai-agents` open older programs' data read-only).

mod conn;
mod legacy;
mod scripts;
mod tls;

/// The redis-rs crate this backend is built on, for building a [`RedisConnection`] of your own
/// with the matching version.
pub use ::redis;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{RedisError, Value};

use crate::codec::{Decoded, RecordCodec, TailCollector};
use crate::error::{Error, ErrorKind, FailureCause, Operation, Result};
use crate::item::Item;
use crate::staged::{ItemPage, StageMode, StagedWrite};
use crate::stats::RequestStats;
use crate::store::{
    Backend, BoxFuture, ListOptions, PruneReport, RawRecords, SessionInfo, SessionPage, Store,
    StoreOptions,
};
use crate::time::Timestamp;
use crate::url::{parse_bool, parse_positive, parse_seconds, StoreUrl};

use scripts::{LuaScript, Scripts};

/// The default key prefix: the seed's (`openai-agents-session` 0.1.0 for Python).
pub const DEFAULT_PREFIX: &str = "openai_agents_session";
/// The layout version written into every session's metadata (`v`).
pub const LAYOUT_VERSION: u32 = 1;
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times one `pop_item` may start over (a concurrent writer changed the tail, or a
/// record the script found plausible decoded as corrupt).
const POP_ATTEMPTS: usize = 64;

/// Which layout a store reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Layout {
    /// This library's layout (read and write).
    Native,
    /// The seed's: one list per session at `{prefix}:{session_id}` (read-only).
    Seed,
    /// The official Agents SDK `RedisSession`'s: a hash at `{prefix}:{id}` and a list at
    /// `{prefix}:{id}:messages` (read-only).
    OpenAiAgents,
}

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
                            conn.send_within(cmd, left).await
                        }
                    }
                    Err(e) => Err(e),
                },
                Managed::Cluster(cluster) => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    let mut cluster = cluster.clone();
                    match tokio::time::timeout(left, cmd.query_async(&mut cluster)).await {
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

fn value_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

fn value_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        other => value_string(other).and_then(|s| s.parse().ok()),
    }
}

fn value_bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

/// Where one session's keys are. All of them share the hash tag `{<escaped id>}`.
///
/// The id is escaped (`%` → `%25`, `{` → `%7B`, `}` → `%7D`) so that it can never end the hash
/// tag early: two different ids never share or collide on a key, whatever they contain.
///
/// ```
/// use openai_agents_session::backend::redis::SessionKeys;
/// let keys = SessionKeys::new("openai_agents_session", "user:{42}");
/// assert_eq!(keys.meta, b"openai_agents_session:{user:%7B42%7D}:meta".to_vec());
/// assert_eq!(keys.items, b"openai_agents_session:{user:%7B42%7D}:items".to_vec());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionKeys {
    /// The metadata hash.
    pub meta: Vec<u8>,
    /// The item list.
    pub items: Vec<u8>,
    /// Where the seed layout kept this session (`{prefix}:{session_id}`).
    pub seed: Vec<u8>,
}

impl SessionKeys {
    /// The keys of `session_id` under `prefix`.
    pub fn new(prefix: &str, session_id: &str) -> Self {
        let tag = escape_id(session_id);
        SessionKeys {
            meta: format!("{prefix}:{{{tag}}}:meta").into_bytes(),
            items: format!("{prefix}:{{{tag}}}:items").into_bytes(),
            seed: format!("{prefix}:{session_id}").into_bytes(),
        }
    }
}

/// Escapes a session id for the hash tag.
pub fn escape_id(session_id: &str) -> String {
    let mut out = String::with_capacity(session_id.len());
    for ch in session_id.chars() {
        match ch {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out
}

/// Reverses [`escape_id`]; `None` for text it cannot have produced.
pub fn unescape_id(tag: &str) -> Option<String> {
    let mut out = String::with_capacity(tag.len());
    let mut rest = tag;
    while let Some(pos) = rest.find(['%', '{', '}']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        let (ch, len) = match tail.get(..3) {
            Some("%25") => ('%', 3),
            Some("%7B") => ('{', 3),
            Some("%7D") => ('}', 3),
            _ => return None,
        };
        out.push(ch);
        rest = &tail[len..];
    }
    out.push_str(rest);
    Some(out)
}

/// Escapes Redis glob metacharacters so that a pattern matches `text` literally.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// Options of a Redis store, beyond the shared ones.
#[derive(Debug, Clone)]
struct RedisOptions {
    prefix: String,
    layout: Layout,
    connect_timeout: Duration,
    response_timeout: Duration,
    tls_ca_file: Option<String>,
    tls_insecure: bool,
}

fn config_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Config, Operation::Open, message)
}

/// Maps a redis-rs error. A write whose answer was lost may have been applied: that is
/// `OutcomeUnknown`, never retried blindly. A refused connection means nothing was sent.
fn map_redis(op: Operation, err: RedisError) -> Error {
    use redis::{ErrorKind as K, ServerErrorKind as S};
    let lost = match err.code() {
        Some(conn::LOST_TIMEOUT) => Some(FailureCause::Timeout),
        Some(conn::LOST_CONNECTION) => Some(FailureCause::Connection),
        _ if err.is_connection_refusal() => None,
        _ if err.is_timeout() => Some(FailureCause::Timeout),
        _ if err.is_connection_dropped() || err.is_io_error() => Some(FailureCause::Connection),
        _ => None,
    };
    let (kind, message) = if err.is_connection_refusal() {
        (
            ErrorKind::Connection,
            "cannot connect to Redis (connection refused); nothing was sent".to_owned(),
        )
    } else if let Some(cause) = lost {
        match (cause, op.is_write()) {
            (FailureCause::Timeout, true) => (
                ErrorKind::OutcomeUnknown,
                "Redis did not answer in time; the write may or may not have been applied"
                    .to_owned(),
            ),
            (FailureCause::Timeout, false) => (
                ErrorKind::Timeout,
                "Redis did not answer within response_timeout".to_owned(),
            ),
            (_, true) => (
                ErrorKind::OutcomeUnknown,
                "the connection to Redis failed during the write; it may or may not have been applied".to_owned(),
            ),
            (_, false) => (
                ErrorKind::Connection,
                "the connection to Redis failed".to_owned(),
            ),
        }
    } else {
        match (err.kind(), err.code()) {
            (K::AuthenticationFailed, _) | (_, Some("WRONGPASS")) => (
                ErrorKind::Config,
                "Redis refused the credentials (check the user name and password in the URL)".to_owned(),
            ),
            (K::Server(S::NoPerm), _) | (_, Some("NOPERM")) | (_, Some("NOAUTH")) => (
                ErrorKind::Config,
                "Redis refused the command for this user (authentication or ACL permissions)".to_owned(),
            ),
            (_, Some("WRONGTYPE")) => (
                ErrorKind::Backend,
                "a key of this session holds another type of value; nothing was changed".to_owned(),
            ),
            (_, Some("OAS_VERSION")) => (
                ErrorKind::UnsupportedFormat,
                format!("this build reads layout version {LAYOUT_VERSION}; upgrade openai-agents-session"),
            ),
            (K::Server(S::ClusterDown | S::MasterDown | S::TryAgain | S::BusyLoading), _) => (
                ErrorKind::Connection,
                "the Redis node for this key is not available; nothing was applied".to_owned(),
            ),
            (K::InvalidClientConfig, _) => (ErrorKind::Config, "invalid Redis client configuration".to_owned()),
            _ => (ErrorKind::Backend, "Redis failed".to_owned()),
        }
    };
    let error = Error::new(kind, op, message).with_source(err);
    match lost {
        Some(cause) if kind == ErrorKind::OutcomeUnknown => error.with_cause(cause),
        _ => error,
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
    stale_batch_ms: i64,
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
        RedisBackend {
            conn,
            check_seed: prefix == DEFAULT_PREFIX,
            prefix,
            options,
            scripts: Scripts::new(),
            codec: RecordCodec::default(),
            stats: RequestStats::default(),
            stale_batch_ms: STALE_STAGE_MS,
        }
    }

    fn ttl_ms(&self) -> i64 {
        self.options
            .ttl
            .map_or(0, |t| (t as i64).saturating_mul(1000))
    }

    /// The keys passed to scripts: with the seed key where it can be migrated in place.
    fn script_keys(&self, keys: &SessionKeys) -> Vec<Vec<u8>> {
        let mut out = vec![keys.meta.clone(), keys.items.clone()];
        if self.check_seed && !self.conn.is_cluster() {
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
        if !(self.check_seed && self.conn.is_cluster()) {
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

    async fn append(&self, op: Operation, session_id: &str, records: Vec<Vec<u8>>) -> Result<()> {
        let keys = SessionKeys::new(&self.prefix, session_id);
        let script_keys = self.script_keys(&keys);
        let ttl = self.ttl_ms().to_string();
        let mut checked = !(self.check_seed && self.conn.is_cluster());
        loop {
            let mut args: Vec<&[u8]> = vec![ttl.as_bytes(), if checked { b"1" } else { b"0" }];
            args.extend(records.iter().map(Vec::as_slice));
            let reply = self
                .eval(op, &self.scripts.add, &script_keys, &args)
                .await?;
            match tag(&reply) {
                Some("OK") => return Ok(()),
                Some("NEW") if !checked => {
                    self.check_seed_key(op, &keys, session_id).await?;
                    checked = true;
                }
                _ => return Err(unexpected(op, "add", &reply)),
            }
        }
    }

    async fn get(&self, session_id: &str, limit: Option<usize>) -> Result<Vec<Item>> {
        let op = Operation::GetItems;
        let keys = SessionKeys::new(&self.prefix, session_id);
        let script_keys = self.script_keys(&keys);
        let refresh = if self.options.refreshes_on_read() {
            self.ttl_ms()
        } else {
            0
        }
        .to_string();
        let mut collector = TailCollector::new(limit);
        let mut offset = 0usize;
        loop {
            let want = collector.wanted().map_or(-1, |w| w as i64).to_string();
            let offset_arg = offset.to_string();
            let reply = self
                .eval(
                    op,
                    &self.scripts.get,
                    &script_keys,
                    &[want.as_bytes(), offset_arg.as_bytes(), refresh.as_bytes()],
                )
                .await?;
            match tag(&reply) {
                Some("MISSING") => {
                    self.check_seed_key(op, &keys, session_id).await?;
                    return Ok(Vec::new());
                }
                Some("OK") => {}
                _ => return Err(unexpected(op, "get", &reply)),
            }
            let len = reply.get(1).and_then(value_int).unwrap_or(0).max(0) as usize;
            let records: Vec<Value> = reply.into_iter().skip(2).collect();
            let fetched = records.len();
            // The script returns oldest first; the collector wants newest first.
            for record in records.into_iter().rev() {
                let bytes = value_bytes(record).unwrap_or_default();
                if collector.push(self.codec.decode(&bytes)) {
                    break;
                }
            }
            offset += fetched;
            // Another round trip only when the script's plausibility test let a corrupt record
            // through and older records remain.
            if collector.is_full() || limit.is_none() || fetched == 0 || offset >= len {
                return Ok(collector.finish());
            }
        }
    }

    async fn pop(&self, session_id: &str) -> Result<Option<Item>> {
        let op = Operation::PopItem;
        let keys = SessionKeys::new(&self.prefix, session_id);
        let script_keys = self.script_keys(&keys);
        let ttl = self.ttl_ms().to_string();
        for _ in 0..POP_ATTEMPTS {
            let reply = self
                .eval(op, &self.scripts.pop, &script_keys, &[ttl.as_bytes()])
                .await?;
            match tag(&reply) {
                Some("MISSING") => {
                    self.check_seed_key(op, &keys, session_id).await?;
                    return Ok(None);
                }
                Some("EMPTY") => return Ok(None),
                Some("OK") => {
                    let bytes = reply
                        .into_iter()
                        .nth(1)
                        .and_then(value_bytes)
                        .unwrap_or_default();
                    match self.codec.decode(&bytes) {
                        Decoded::Valid(item) => return Ok(Some(item)),
                        // It looked like an object but is not one: dropped, as corrupt records
                        // are; pop the next.
                        _ => continue,
                    }
                }
                Some("CHECK") => {
                    let mut parts = reply.into_iter().skip(1);
                    let record = parts.next().and_then(value_bytes).unwrap_or_default();
                    let above = parts.next().and_then(|v| value_int(&v)).unwrap_or(0);
                    let len = parts.next().and_then(|v| value_int(&v)).unwrap_or(0);
                    let decoded = self.codec.decode(&record);
                    if let Decoded::Unreadable(reason) = &decoded {
                        return Err(Error::new(
                            ErrorKind::Unreadable,
                            op,
                            format!(
                                "the newest record is unreadable: {reason}; nothing was removed"
                            ),
                        ));
                    }
                    let (above, len) = (above.to_string(), len.to_string());
                    let done = self
                        .eval(
                            op,
                            &self.scripts.pop_at,
                            &script_keys,
                            &[ttl.as_bytes(), above.as_bytes(), len.as_bytes(), &record],
                        )
                        .await?;
                    match (tag(&done), decoded) {
                        (Some("OK"), Decoded::Valid(item)) => return Ok(Some(item)),
                        (Some("OK" | "CHANGED"), _) => continue,
                        _ => return Err(unexpected(op, "pop_at", &done)),
                    }
                }
                _ => return Err(unexpected(op, "pop", &reply)),
            }
        }
        Err(Error::new(
            ErrorKind::Backend,
            op,
            format!("the session kept changing under pop_item ({POP_ATTEMPTS} attempts)"),
        ))
    }

    async fn info(&self, session_id: &str) -> Result<Option<SessionInfo>> {
        let op = Operation::SessionInfo;
        let keys = SessionKeys::new(&self.prefix, session_id);
        let reply = self
            .eval(op, &self.scripts.info, &self.script_keys(&keys), &[])
            .await?;
        match tag(&reply) {
            Some("MISSING") => {
                self.check_seed_key(op, &keys, session_id).await?;
                Ok(None)
            }
            Some("OK") => {
                let int = |i: usize| reply.get(i).and_then(value_int);
                let created = Timestamp::from_millis(int(1).unwrap_or(0));
                let updated = Timestamp::from_millis(int(2).unwrap_or(0));
                let expires = int(3).map(Timestamp::from_millis);
                let count = int(4).unwrap_or(0).max(0) as u64;
                Ok(Some(SessionInfo::new(
                    session_id, count, created, updated, expires,
                )))
            }
            _ => Err(unexpected(op, "info", &reply)),
        }
    }

    async fn list(&self, options: &ListOptions) -> Result<SessionPage> {
        let op = Operation::ListSessions;
        let prefix = options.prefix.as_deref().unwrap_or("");
        let pattern = format!(
            "{}:{{{}*}}:meta",
            glob_escape(&self.prefix),
            glob_escape(&escape_id(prefix))
        );
        let head = format!("{}:{{", self.prefix);
        let parse = |key: &[u8]| -> Option<String> {
            let key = std::str::from_utf8(key).ok()?;
            let tag = key.strip_prefix(head.as_str())?.strip_suffix("}:meta")?;
            unescape_id(tag).filter(|id| id.starts_with(prefix))
        };
        scan_pages(
            &self.conn,
            &self.stats,
            op,
            options,
            &pattern,
            Some("hash"),
            parse,
        )
        .await
    }
}

impl RedisBackend {
    /// One page of the live session's records from list position `start` on (LRANGE in
    /// slices; the positions of records below the tail never change, see the layout doc).
    async fn page(&self, session_id: &str, start: u64, max_bytes: usize) -> Result<ItemPage> {
        const SLICE: u64 = 256;
        let op = Operation::GetItems;
        let keys = SessionKeys::new(&self.prefix, session_id);
        let script_keys = self.script_keys(&keys);
        let (mut items, mut bytes, mut pos) = (Vec::new(), 0usize, start);
        loop {
            // One EVALSHA per slice: the checks and LRANGE together, so a session within one
            // slice is one round trip.
            let (from, count) = (pos.to_string(), SLICE.to_string());
            let reply = self
                .eval(
                    op,
                    &self.scripts.page,
                    &script_keys,
                    &[from.as_bytes(), count.as_bytes()],
                )
                .await?;
            match tag(&reply) {
                Some("MISSING") if items.is_empty() && pos == start => {
                    self.check_seed_key(op, &keys, session_id).await?;
                    return Ok(ItemPage::default());
                }
                Some("MISSING") => return Ok(ItemPage::new(items, None)), // cleared meanwhile
                Some("OK") => {}
                _ => return Err(unexpected(op, "page", &reply)),
            }
            let records: Vec<Value> = reply.into_iter().skip(2).collect();
            let fetched = records.len() as u64;
            for record in records {
                if bytes >= max_bytes {
                    return Ok(ItemPage::new(items, Some(pos)));
                }
                pos += 1;
                let raw = value_bytes(record).unwrap_or_default();
                if let Decoded::Valid(item) = self.codec.decode(&raw) {
                    bytes += item.len_bytes();
                    items.push(item);
                }
            }
            if fetched < SLICE {
                return Ok(ItemPage::new(items, None));
            }
        }
    }

    /// Deletes staging lists of writes never committed and older than `stale_batch_secs`
    /// (default an hour).
    async fn prune_stages(&self) -> Result<PruneReport> {
        let op = Operation::Prune;
        let pattern = format!("{}:{{*}}:stage:*", glob_escape(&self.prefix));
        let cutoff = Timestamp::now().as_millis() - self.stale_batch_ms;
        let mut options = ListOptions::default().page_size(1000);
        let mut removed = 0u64;
        loop {
            // Keys whose start time is past the cutoff, found with the same SCAN paging as
            // listing (the "ids" here are the keys themselves).
            let page = scan_pages(
                &self.conn,
                &self.stats,
                op,
                &options,
                &pattern,
                Some("list"),
                |key| {
                    let key = std::str::from_utf8(key).ok()?;
                    let suffix = &key[key.rfind("}:stage:")? + "}:stage:".len()..];
                    let started: i64 = suffix.split('-').next()?.parse().ok()?;
                    (started < cutoff).then(|| key.to_owned())
                },
            )
            .await?;
            for key in &page.session_ids {
                self.stats.record_requests(op, 1);
                let deleted = self
                    .conn
                    .query(op, redis::cmd("DEL").arg(key.as_str()))
                    .await
                    .map_err(|e| map_redis(op, e))?;
                removed += value_int(&deleted).unwrap_or(0).max(0) as u64;
            }
            match page.next_cursor {
                Some(cursor) => options.cursor = Some(cursor),
                None => break,
            }
        }
        Ok(PruneReport::new(0, removed).with_note("Redis deletes expired sessions by itself"))
    }
}

/// Pages through SCAN on every master. The cursor is `node:scan_cursor:skip`, where `skip`
/// counts the ids of the batch at `scan_cursor` already returned (SCAN batches cannot be split).
async fn scan_pages(
    conn: &RedisConnection,
    stats: &RequestStats,
    op: Operation,
    options: &ListOptions,
    pattern: &str,
    key_type: Option<&str>,
    parse: impl Fn(&[u8]) -> Option<String>,
) -> Result<SessionPage> {
    let page_size = options.effective_page_size();
    stats.record_requests(op, 1);
    let masters = conn.masters().await.map_err(|e| map_redis(op, e))?;
    let (mut node, mut cursor, mut skip) = match &options.cursor {
        Some(c) => parse_cursor(c).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                op,
                format!("invalid list cursor {c:?}"),
            )
        })?,
        None => (0, 0, 0),
    };
    let mut ids = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while node < masters.len() {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(page_size.clamp(100, 10_000));
        if let Some(t) = key_type {
            cmd.arg("TYPE").arg(t);
        }
        stats.record_requests(op, 1);
        let reply = conn
            .query_on(op, masters[node].as_ref(), &cmd)
            .await
            .map_err(|e| map_redis(op, e))?;
        let (next, keys) = match reply {
            Value::Array(mut parts) if parts.len() == 2 => {
                let keys = parts.pop().unwrap_or(Value::Nil);
                let next = parts.pop().as_ref().and_then(value_int).unwrap_or(0) as u64;
                (next, keys)
            }
            other => {
                return Err(Error::new(
                    ErrorKind::Backend,
                    op,
                    format!("unexpected SCAN reply {other:?}"),
                ))
            }
        };
        let batch: Vec<String> = match keys {
            Value::Array(keys) => keys
                .into_iter()
                .filter_map(value_bytes)
                .filter_map(|k| parse(&k))
                .collect(),
            _ => Vec::new(),
        };
        for (taken, id) in batch.iter().skip(skip).enumerate() {
            if ids.len() == page_size {
                // The page is full inside this batch: resume here next time.
                return Ok(SessionPage::new(
                    ids,
                    Some(format!("{node}:{cursor}:{}", skip + taken)),
                ));
            }
            if seen.insert(id.clone()) {
                ids.push(id.clone());
            }
        }
        skip = 0;
        if next == 0 {
            node += 1;
            cursor = 0;
        } else {
            cursor = next;
        }
        if ids.len() == page_size {
            let more = node < masters.len();
            return Ok(SessionPage::new(
                ids,
                more.then(|| format!("{node}:{cursor}:0")),
            ));
        }
    }
    Ok(SessionPage::new(ids, None))
}

fn parse_cursor(cursor: &str) -> Option<(usize, u64, usize)> {
    let mut parts = cursor.split(':');
    let node = parts.next()?.parse().ok()?;
    let scan = parts.next()?.parse().ok()?;
    let skip = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((node, scan, skip))
}

fn tag(reply: &[Value]) -> Option<&str> {
    match reply.first() {
        Some(Value::BulkString(b)) => std::str::from_utf8(b).ok(),
        Some(Value::SimpleString(s)) => Some(s.as_str()),
        _ => None,
    }
}

fn unexpected(op: Operation, script: &str, reply: &[Value]) -> Error {
    let shown: String = format!("{reply:?}").chars().take(200).collect();
    Error::new(
        ErrorKind::Backend,
        op,
        format!("unexpected reply from the {script} script: {shown}"),
    )
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
            let records = items.iter().map(|i| self.codec.encode(i)).collect();
            drop(items);
            self.append(Operation::AddItems, session_id, records).await
        })
    }

    fn pop_item<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<Option<Item>>> {
        Box::pin(self.pop(session_id))
    }

    fn clear_session<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let keys = SessionKeys::new(&self.prefix, session_id);
            let reply = self
                .eval(
                    Operation::ClearSession,
                    &self.scripts.clear,
                    &self.script_keys(&keys),
                    &[],
                )
                .await?;
            match tag(&reply) {
                Some("OK") => Ok(()),
                _ => Err(unexpected(Operation::ClearSession, "clear", &reply)),
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
        Box::pin(self.prune_stages())
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

    fn stage<'a>(
        &'a self,
        session_id: &str,
        mode: StageMode,
        _expected_items: Option<u64>,
    ) -> BoxFuture<'a, Result<Option<Box<dyn StagedWrite + 'a>>>> {
        static UNIQUE: AtomicU64 = AtomicU64::new(0);
        let keys = SessionKeys::new(&self.prefix, session_id);
        let mut stage_key = keys.meta.clone();
        stage_key.truncate(stage_key.len() - "meta".len());
        stage_key.extend_from_slice(
            format!(
                "stage:{}-{}-{}",
                Timestamp::now().as_millis(),
                std::process::id(),
                UNIQUE.fetch_add(1, Ordering::Relaxed)
            )
            .as_bytes(),
        );
        let staged: Box<dyn StagedWrite + 'a> = Box::new(RedisStaged {
            backend: self,
            session_id: session_id.to_owned(),
            keys,
            stage_key,
            replace: mode == StageMode::Replace,
            count: 0,
            committed: false,
        });
        Box::pin(async move { Ok(Some(staged)) })
    }
}

/// How long a staging list outlives its last part when never committed.
const STAGE_EXPIRY_MS: i64 = 24 * 3_600_000;
/// Default age after which `prune` deletes a staging list never committed (URL option
/// `stale_batch_secs`).
const STALE_STAGE_MS: i64 = 3_600_000;

/// A staged write of the Redis backend: parts go to a staging list in the session's slot (one
/// EVALSHA each), and the commit script renames it into place (or appends it, in the server)
/// in one atomic step.
struct RedisStaged<'a> {
    backend: &'a RedisBackend,
    session_id: String,
    keys: SessionKeys,
    stage_key: Vec<u8>,
    replace: bool,
    count: u64,
    committed: bool,
}

impl StagedWrite for RedisStaged<'_> {
    fn append(&mut self, items: Vec<Item>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let b = self.backend;
            let records: Vec<Vec<u8>> = items.iter().map(|i| b.codec.encode(i)).collect();
            drop(items);
            let expiry = STAGE_EXPIRY_MS.to_string();
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
            let mut keys = vec![
                self.keys.meta.clone(),
                self.keys.items.clone(),
                self.stage_key.clone(),
            ];
            if b.check_seed && !b.conn.is_cluster() {
                keys.push(self.keys.seed.clone());
            }
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
}

impl Drop for RedisStaged<'_> {
    fn drop(&mut self) {
        // Abandoned: delete the staging list now when a runtime is at hand; otherwise it
        // expires by itself (or `prune` deletes it).
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

impl RawRecords for RedisBackend {
    fn append_raw<'a>(&'a self, session_id: &'a str, record: Vec<u8>) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.append(Operation::RawWrite, session_id, vec![record]))
    }
}

/// Parses a Redis URL and connects.
pub(crate) async fn open(mut url: StoreUrl, options: StoreOptions) -> Result<Store> {
    let cluster = url.scheme.ends_with("+cluster");
    let tls = url.scheme.starts_with("rediss");
    let layout = match url.take_option("layout").as_deref() {
        None | Some("native") => Layout::Native,
        Some("seed") => Layout::Seed,
        Some("openai-agents") => Layout::OpenAiAgents,
        Some(other) => {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                Operation::Open,
                format!("layout must be native, seed or openai-agents, got {other:?}"),
            ))
        }
    };
    let default_prefix = match layout {
        Layout::OpenAiAgents => legacy::OPENAI_AGENTS_PREFIX,
        _ => DEFAULT_PREFIX,
    };
    let prefix = url
        .take_option("prefix")
        .unwrap_or_else(|| default_prefix.to_owned());
    if prefix.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            Operation::Open,
            "prefix must not be empty",
        ));
    }
    let stale_batch_ms = match url.take_option("stale_batch_secs") {
        Some(v) => (parse_positive("stale_batch_secs", &v)? as i64).saturating_mul(1000),
        None => STALE_STAGE_MS,
    };
    let opts = RedisOptions {
        prefix,
        layout,
        connect_timeout: match url.take_option("connect_timeout") {
            Some(v) => parse_seconds("connect_timeout", &v)?,
            None => DEFAULT_CONNECT_TIMEOUT,
        },
        response_timeout: match url.take_option("response_timeout") {
            Some(v) => parse_seconds("response_timeout", &v)?,
            None => DEFAULT_RESPONSE_TIMEOUT,
        },
        tls_ca_file: url.take_option("tls_ca_file"),
        tls_insecure: match url.take_option("tls_insecure") {
            Some(v) => parse_bool("tls_insecure", &v)?,
            None => false,
        },
    };
    url.reject_unknown_options()?;
    if !tls && (opts.tls_ca_file.is_some() || opts.tls_insecure) {
        return Err(config_error(format!(
            "tls_ca_file and tls_insecure need a rediss:// URL, not {:?}",
            url.redacted
        )));
    }
    if opts.tls_insecure {
        tracing::warn!("tls_insecure=true: the Redis server's TLS certificate is not verified");
    }
    let conn = connect(&url, cluster, tls, &opts).await?;
    Ok(match opts.layout {
        Layout::Native => {
            let mut backend = RedisBackend::new(conn, opts.prefix, options.clone());
            backend.stale_batch_ms = stale_batch_ms;
            Store::from_backend(Arc::new(backend), options)
        }
        legacy_layout => legacy::store(conn, legacy_layout, opts.prefix, options),
    })
}

async fn connect(
    url: &StoreUrl,
    cluster: bool,
    tls: bool,
    opts: &RedisOptions,
) -> Result<RedisConnection> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_injective_and_reversible() {
        let ids = [
            "a",
            "a:b",
            "{x}",
            "x}",
            "{",
            "%7B",
            "%",
            "%%",
            "a}:meta",
            "\u{1F600}",
            "*?[]\\",
        ];
        let escaped: std::collections::HashSet<String> = ids.iter().map(|i| escape_id(i)).collect();
        assert_eq!(escaped.len(), ids.len());
        for id in ids {
            let e = escape_id(id);
            assert!(!e.contains('{') && !e.contains('}'), "{e}");
            assert_eq!(unescape_id(&e).as_deref(), Some(id));
        }
        assert_eq!(unescape_id("%zz"), None);
        assert_eq!(unescape_id("a{b"), None);
    }

    #[test]
    fn keys_share_one_hash_tag() {
        let keys = SessionKeys::new("p", "a}b{c");
        let meta = String::from_utf8(keys.meta).unwrap();
        let items = String::from_utf8(keys.items).unwrap();
        let tag = |k: &str| {
            let open = k.find('{').unwrap();
            let close = open + k[open..].find('}').unwrap();
            k[open + 1..close].to_owned()
        };
        assert_eq!(tag(&meta), tag(&items));
        assert_eq!(tag(&meta), "a%7Db%7Bc");
    }

    #[test]
    fn cursors_round_trip() {
        assert_eq!(parse_cursor("2:12345:7"), Some((2, 12345, 7)));
        assert_eq!(parse_cursor("x"), None);
        assert_eq!(parse_cursor("1:2:3:4"), None);
    }

    #[test]
    fn seconds_accept_decimals() {
        assert_eq!(
            parse_seconds("t", "0.5").unwrap(),
            Duration::from_millis(500)
        );
        for bad in ["0", "-1", "abc", "inf", "NaN"] {
            assert_eq!(
                parse_seconds("t", bad).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
        }
    }
}
