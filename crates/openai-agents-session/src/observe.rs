//! Observability: a `tracing` span, and (feature `metrics`) metrics through the `metrics`
//! facade, for every storage operation of every backend.
//!
//! [`Store::from_backend`](crate::Store::from_backend) (defined here) wraps each backend in
//! one `Observed` layer, so every call the store makes to its storage (`get_items`, `add_items`,
//! `pop_item`, `clear_session`, `session_info`, `list_sessions`, `prune`, `init`, `read_page`,
//! `read_before`, staged writes' `stage` / `append` / `commit` / `abort`, history
//! transactions, leases and fenced writes) passes through this file; no backend does any of it
//! itself. Calls the store answers without storage (an invalid id, an item over
//! `max_item_bytes`, `get_items(Some(0))`, an empty batch) reach no backend and have no span.
//!
//! ## The span
//!
//! One INFO span named `session_store` per operation, target `openai_agents_session::store`,
//! with OpenTelemetry's database semantic conventions where they fit:
//!
//! | field | value |
//! |---|---|
//! | `otel.name` | the operation (`get_items`, `staged_commit`, ...): the OpenTelemetry span name |
//! | `otel.kind` | `client` |
//! | `db.system.name` | `sqlite`, `redis`, `aws.dynamodb`, `postgresql`, else the backend's name (`memory`) |
//! | `db.operation.name` | the operation, as `otel.name` |
//! | `db.response.returned_rows` | items (or session ids) returned, on reads |
//! | `error.type` | the [`ErrorKind`](crate::ErrorKind) name (`connection`, `fenced`, ...), on failure |
//! | `otel.status_code` | `ERROR` on failure |
//! | `oas.backend` | the backend's own name (`redis-cluster`, `sqlite-openai-agents`, ...) |
//! | `oas.outcome` | `ok` or the error kind's name |
//! | `oas.items` | items read or written by the call |
//! | `oas.bytes` | bytes of item JSON read or written by the call |
//! | `oas.requests` | storage requests made meanwhile, from [`RequestStats`](crate::RequestStats) (operations of the same store running at the same time are counted in each other's spans) |
//! | `oas.latency_us` | the call's duration in microseconds |
//! | `oas.fenced` | `true` on a fenced write |
//! | `oas.session.hash` | the first 8 bytes of the SHA-256 of the session id, in hex |
//!
//! Never recorded: item contents, the session id itself, store URLs (passwords), encryption
//! keys, lease owners, error messages. Session ids often carry user identifiers and spans
//! leave the process (an OpenTelemetry collector, a vendor), so the span names the session by a
//! hash only: an operator who knows an id can find its spans (`printf %s ID | sha256sum`), but
//! the spans do not reveal ids. The hash is a pseudonym, not anonymity: an id that can be
//! guessed (`user-42`) can be confirmed by hashing the guess. Errors returned to the caller
//! still name the session, as before.
//!
//! ## Metrics (feature `metrics`)
//!
//! Through the `metrics` facade, so any recorder (Prometheus, OTLP, an in-process one) gets them;
//! with no recorder installed they cost a few no-op calls. Labels: `backend` (the backend's
//! name), `operation`, and `outcome` (`ok` or the error kind's name). The session id is never a
//! label.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | [`OPERATIONS`] `agent_session_operations_total` | counter | backend, operation, outcome |
//! | [`DURATION`] `agent_session_operation_duration_seconds` | histogram | backend, operation, outcome |
//! | [`BYTES_READ`] `agent_session_bytes_read_total` | counter | backend, operation |
//! | [`BYTES_WRITTEN`] `agent_session_bytes_written_total` | counter | backend, operation |
//! | [`ITEMS_READ`] `agent_session_items_read_total` | counter | backend, operation |
//! | [`ITEMS_WRITTEN`] `agent_session_items_written_total` | counter | backend, operation |
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> openai_agents_session::Result<()> {
//! use openai_agents_session::{observe, Session, Store};
//! // With a subscriber installed (tracing-subscriber, tracing-opentelemetry), each call below
//! // is one `session_store` span; with none, the spans cost a few atomic loads.
//! let store = Store::open("memory://").await?;
//! let session = store.session("chat")?;
//! session.add_items(vec![r#"{"a":1}"#.parse()?]).await?; // add_items, 1 item, 7 bytes
//! session.get_items(None).await?; // get_items
//! assert_eq!(observe::system_name(store.backend_name()), "memory");
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::field::Empty;
use tracing::Span;

use crate::error::Result;
use crate::history::{Applied, PreparedTransaction};
use crate::item::Item;
use crate::lease::{Lease, LeaseGrant};
use crate::stats::RequestStats;
use crate::store::{
    Backend, BoxFuture, FencedWrite, ItemPage, ListOptions, PageBefore, PruneReport, RawRecords,
    SessionInfo, SessionPage, StageMode, StagedWrite, Store, StoreOptions, WriteOutcome,
};

/// The counter of operations (labels `backend`, `operation`, `outcome`).
pub const OPERATIONS: &str = "agent_session_operations_total";
/// The histogram of operation durations in seconds (labels `backend`, `operation`, `outcome`).
pub const DURATION: &str = "agent_session_operation_duration_seconds";
/// The counter of bytes of item JSON read (labels `backend`, `operation`).
pub const BYTES_READ: &str = "agent_session_bytes_read_total";
/// The counter of bytes of item JSON written (labels `backend`, `operation`).
pub const BYTES_WRITTEN: &str = "agent_session_bytes_written_total";
/// The counter of items read (labels `backend`, `operation`).
pub const ITEMS_READ: &str = "agent_session_items_read_total";
/// The counter of items written (labels `backend`, `operation`).
pub const ITEMS_WRITTEN: &str = "agent_session_items_written_total";

/// The OpenTelemetry `db.system.name` of a backend name (`"redis-cluster"` -> `"redis"`,
/// `"dynamodb"` -> `"aws.dynamodb"`, `"postgres"` -> `"postgresql"`); other names as given.
///
/// ```
/// use openai_agents_session::observe::system_name;
/// assert_eq!(system_name("redis-cluster"), "redis");
/// assert_eq!(system_name("postgres-openai-agents"), "postgresql");
/// assert_eq!(system_name("memory"), "memory");
/// ```
pub fn system_name(backend: &'static str) -> &'static str {
    const SYSTEMS: [(&str, &str); 4] = [
        ("sqlite", "sqlite"),
        ("redis", "redis"),
        ("dynamodb", "aws.dynamodb"),
        ("postgres", "postgresql"),
    ];
    SYSTEMS
        .iter()
        .find(|(prefix, _)| backend.starts_with(prefix))
        .map_or(backend, |(_, system)| system)
}

/// The session id's pseudonym in spans: the first 8 bytes of its SHA-256, in hex.
///
/// ```
/// use openai_agents_session::observe::session_hash;
/// assert_eq!(session_hash("chat"), "31e06f7d89feb99a");
/// ```
pub fn session_hash(session_id: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(session_id.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether an operation moves items from storage to the caller (its bytes are "read") or the
/// other way ("written").
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Read,
    Write,
}

/// What a call moved: items and bytes of item JSON.
#[derive(Clone, Copy, Default)]
struct Moved {
    items: u64,
    bytes: u64,
}

impl Moved {
    fn of<'i>(items: impl IntoIterator<Item = &'i Item>) -> Moved {
        items.into_iter().fold(Moved::default(), |m, item| Moved {
            items: m.items + 1,
            bytes: m.bytes + item.len_bytes() as u64,
        })
    }
}

/// One operation under way: its span, its start, what it writes.
struct Call {
    span: Span,
    backend: &'static str,
    operation: &'static str,
    direction: Direction,
    start: Option<Instant>,
    requests_before: u64,
    written: Moved,
}

impl Call {
    fn start(
        observed: &Observed,
        operation: &'static str,
        session_id: Option<&str>,
        direction: Direction,
        written: Moved,
    ) -> Call {
        let backend = observed.name;
        let span = tracing::info_span!(
            target: "openai_agents_session::store",
            "session_store",
            "otel.name" = operation,
            "otel.kind" = "client",
            "db.system.name" = observed.system,
            "db.operation.name" = operation,
            "db.response.returned_rows" = Empty,
            "error.type" = Empty,
            "otel.status_code" = Empty,
            "oas.backend" = backend,
            "oas.outcome" = Empty,
            "oas.items" = Empty,
            "oas.bytes" = Empty,
            "oas.requests" = Empty,
            "oas.latency_us" = Empty,
            "oas.fenced" = Empty,
            "oas.session.hash" = session_id.map(session_hash),
        );
        let enabled = !span.is_disabled();
        let requests_before = if enabled {
            observed.inner.stats().total_requests()
        } else {
            0
        };
        let start = (enabled || cfg!(feature = "metrics")).then(Instant::now);
        Call {
            span,
            backend,
            operation,
            direction,
            start,
            requests_before,
            written,
        }
    }

    /// Runs the backend's future inside the span, then records how it went.
    async fn run<T>(
        self,
        observed: &Observed,
        future: BoxFuture<'_, Result<T>>,
        read: impl FnOnce(&T) -> Option<Moved>,
    ) -> Result<T> {
        use tracing::Instrument;
        let result = if self.span.is_disabled() {
            future.await
        } else {
            future.instrument(self.span.clone()).await
        };
        let elapsed = self.start.map(|s| s.elapsed()).unwrap_or_default();
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind().name(),
        };
        let returned = result.as_ref().ok().and_then(read);
        let moved = match self.direction {
            Direction::Read => returned.unwrap_or_default(),
            Direction::Write => self.written,
        };
        if !self.span.is_disabled() {
            let span = &self.span;
            span.record("oas.outcome", outcome);
            span.record("oas.items", moved.items);
            span.record("oas.bytes", moved.bytes);
            span.record("oas.latency_us", elapsed.as_micros() as u64);
            span.record(
                "oas.requests",
                observed
                    .inner
                    .stats()
                    .total_requests()
                    .saturating_sub(self.requests_before),
            );
            if let Some(rows) = returned {
                span.record("db.response.returned_rows", rows.items);
            }
            if result.is_err() {
                span.record("error.type", outcome);
                span.record("otel.status_code", "ERROR");
            }
        }
        self.metrics(outcome, elapsed, moved);
        result
    }

    #[cfg(feature = "metrics")]
    fn metrics(&self, outcome: &'static str, elapsed: Duration, moved: Moved) {
        let (backend, operation) = (self.backend, self.operation);
        metrics::counter!(OPERATIONS, "backend" => backend, "operation" => operation, "outcome" => outcome)
            .increment(1);
        metrics::histogram!(DURATION, "backend" => backend, "operation" => operation, "outcome" => outcome)
            .record(elapsed.as_secs_f64());
        if moved.items == 0 {
            return;
        }
        let (items, bytes) = match self.direction {
            Direction::Read => (ITEMS_READ, BYTES_READ),
            Direction::Write => (ITEMS_WRITTEN, BYTES_WRITTEN),
        };
        metrics::counter!(items, "backend" => backend, "operation" => operation)
            .increment(moved.items);
        metrics::counter!(bytes, "backend" => backend, "operation" => operation)
            .increment(moved.bytes);
    }

    #[cfg(not(feature = "metrics"))]
    fn metrics(&self, _outcome: &'static str, _elapsed: Duration, _moved: Moved) {
        let _ = (self.backend, self.operation);
    }
}

impl Store {
    /// Wraps a backend (yours or ours) with the shared rules, and with the spans and metrics of
    /// [`crate::observe`] (this constructor lives here so that `store.rs` need not know the
    /// layer).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use openai_agents_session::{backend::memory::MemoryBackend, Store, StoreOptions};
    /// let options = StoreOptions::default();
    /// let store = Store::from_backend(Arc::new(MemoryBackend::new(options.clone())), options);
    /// assert_eq!(store.backend_name(), "memory");
    /// ```
    pub fn from_backend(backend: Arc<dyn Backend>, options: StoreOptions) -> Store {
        Store {
            backend: Observed::wrap(backend),
            options: Arc::new(options),
        }
    }
}

/// The layer [`Store::from_backend`] puts around every backend: it
/// forwards each call and observes it (see the [module docs](self)).
pub(crate) struct Observed {
    inner: Arc<dyn Backend>,
    name: &'static str,
    system: &'static str,
}

impl fmt::Debug for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl Observed {
    /// Wraps `inner` (once).
    pub(crate) fn wrap(inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
        let name = inner.name();
        Arc::new(Observed {
            inner,
            name,
            system: system_name(name),
        })
    }

    fn call(&self, operation: &'static str, session_id: Option<&str>) -> Call {
        Call::start(
            self,
            operation,
            session_id,
            Direction::Read,
            Moved::default(),
        )
    }

    fn write_call(&self, operation: &'static str, session_id: &str, written: Moved) -> Call {
        Call::start(self, operation, Some(session_id), Direction::Write, written)
    }
}

fn nothing<T>(_: &T) -> Option<Moved> {
    None
}

impl Backend for Observed {
    fn name(&self) -> &'static str {
        self.name
    }

    fn get_items<'a>(
        &'a self,
        session_id: &'a str,
        limit: Option<usize>,
    ) -> BoxFuture<'a, Result<Vec<Item>>> {
        let call = self.call("get_items", Some(session_id));
        let future = self.inner.get_items(session_id, limit);
        Box::pin(call.run(self, future, |items| Some(Moved::of(items))))
    }

    fn add_items<'a>(&'a self, session_id: &'a str, items: Vec<Item>) -> BoxFuture<'a, Result<()>> {
        let call = self.write_call("add_items", session_id, Moved::of(&items));
        let future = self.inner.add_items(session_id, items);
        Box::pin(call.run(self, future, nothing))
    }

    fn pop_item<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<Option<Item>>> {
        let call = self.call("pop_item", Some(session_id));
        let future = self.inner.pop_item(session_id);
        Box::pin(call.run(self, future, |item| Some(Moved::of(item))))
    }

    fn clear_session<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<()>> {
        let call = self.call("clear_session", Some(session_id));
        let future = self.inner.clear_session(session_id);
        Box::pin(call.run(self, future, nothing))
    }

    fn session_info<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionInfo>>> {
        let call = self.call("session_info", Some(session_id));
        let future = self.inner.session_info(session_id);
        Box::pin(call.run(self, future, nothing))
    }

    fn list_sessions<'a>(&'a self, options: &'a ListOptions) -> BoxFuture<'a, Result<SessionPage>> {
        let call = self.call("list_sessions", None);
        let future = self.inner.list_sessions(options);
        Box::pin(call.run(self, future, |page: &SessionPage| {
            Some(Moved {
                items: page.session_ids.len() as u64,
                bytes: 0,
            })
        }))
    }

    fn prune(&self) -> BoxFuture<'_, Result<PruneReport>> {
        let call = self.call("prune", None);
        let future = self.inner.prune();
        Box::pin(call.run(self, future, nothing))
    }

    fn stats(&self) -> &RequestStats {
        self.inner.stats()
    }

    fn raw_records(&self) -> Option<&dyn RawRecords> {
        self.inner.raw_records()
    }

    fn init(&self) -> BoxFuture<'_, Result<()>> {
        let call = self.call("init", None);
        let future = self.inner.init();
        Box::pin(call.run(self, future, nothing))
    }

    fn read_page<'a>(
        &'a self,
        session_id: &'a str,
        after: Option<u64>,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Option<ItemPage>>> {
        let call = self.call("read_page", Some(session_id));
        let future = self.inner.read_page(session_id, after, max_bytes);
        Box::pin(call.run(self, future, |page: &Option<ItemPage>| {
            page.as_ref().map(|p| Moved::of(&p.items))
        }))
    }

    fn read_before<'a>(
        &'a self,
        session_id: &'a str,
        before: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Option<PageBefore>>> {
        let call = self.call("read_before", Some(session_id));
        let future = self.inner.read_before(session_id, before, limit);
        Box::pin(call.run(self, future, |page: &Option<PageBefore>| {
            page.as_ref()
                .map(|p| Moved::of(p.items.iter().map(|i| &i.item)))
        }))
    }

    fn stage<'a>(
        &'a self,
        session_id: &str,
        mode: StageMode,
        expected_items: Option<u64>,
    ) -> BoxFuture<'a, Result<Option<Box<dyn StagedWrite + 'a>>>> {
        let call = self.call("stage", Some(session_id));
        let future = self.inner.stage(session_id, mode, expected_items);
        let session_id: Arc<str> = Arc::from(session_id);
        Box::pin(async move {
            let native = call.run(self, future, nothing).await?;
            Ok(native.map(|inner| {
                Box::new(ObservedStaged {
                    observed: self,
                    session_id,
                    inner,
                }) as Box<dyn StagedWrite + 'a>
            }))
        })
    }

    fn apply_transaction<'a>(
        &'a self,
        session_id: &'a str,
        transaction: &'a PreparedTransaction,
    ) -> BoxFuture<'a, Result<Applied>> {
        let written = Moved::of(transaction.transaction.items_added());
        let call = self.write_call("apply_history_transaction", session_id, written);
        let future = self.inner.apply_transaction(session_id, transaction);
        Box::pin(call.run(self, future, nothing))
    }

    fn acquire_lease<'a>(
        &'a self,
        session_id: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<LeaseGrant>> {
        let call = self.call("acquire_lease", Some(session_id));
        let future = self.inner.acquire_lease(session_id, owner, ttl);
        Box::pin(call.run(self, future, nothing))
    }

    fn renew_lease<'a>(
        &'a self,
        session_id: &'a str,
        token: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Lease>> {
        let call = self.call("renew_lease", Some(session_id));
        let future = self.inner.renew_lease(session_id, token, ttl);
        Box::pin(call.run(self, future, nothing))
    }

    fn release_lease<'a>(&'a self, session_id: &'a str, token: u64) -> BoxFuture<'a, Result<()>> {
        let call = self.call("release_lease", Some(session_id));
        let future = self.inner.release_lease(session_id, token);
        Box::pin(call.run(self, future, nothing))
    }

    fn lease_info<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<Option<Lease>>> {
        let call = self.call("lease_info", Some(session_id));
        let future = self.inner.lease_info(session_id);
        Box::pin(call.run(self, future, nothing))
    }

    fn fenced_write<'a>(
        &'a self,
        session_id: &'a str,
        token: u64,
        write: FencedWrite<'a>,
    ) -> BoxFuture<'a, Result<WriteOutcome>> {
        let operation = write.operation().as_str();
        let call = match &write {
            FencedWrite::AddItems(items) => {
                self.write_call(operation, session_id, Moved::of(items))
            }
            FencedWrite::ApplyTransaction(tx) => self.write_call(
                operation,
                session_id,
                Moved::of(tx.transaction.items_added()),
            ),
            _ => self.call(operation, Some(session_id)),
        };
        call.span.record("oas.fenced", true);
        let future = self.inner.fenced_write(session_id, token, write);
        Box::pin(call.run(self, future, |outcome| match outcome {
            WriteOutcome::Popped(item) => Some(Moved::of(item)),
            _ => None,
        }))
    }
}

/// A backend's staged write, observed: `staged_append`, `staged_commit`, `staged_abort`.
struct ObservedStaged<'a> {
    observed: &'a Observed,
    session_id: Arc<str>,
    inner: Box<dyn StagedWrite + 'a>,
}

impl StagedWrite for ObservedStaged<'_> {
    fn append(&mut self, items: Vec<Item>) -> BoxFuture<'_, Result<()>> {
        let call = self
            .observed
            .write_call("staged_append", &self.session_id, Moved::of(&items));
        let future = self.inner.append(items);
        Box::pin(call.run(self.observed, future, nothing))
    }

    fn commit(&mut self) -> BoxFuture<'_, Result<u64>> {
        let call = self.observed.call("staged_commit", Some(&self.session_id));
        let future = self.inner.commit();
        Box::pin(call.run(self.observed, future, nothing))
    }

    fn abort(&mut self) -> BoxFuture<'_, Result<()>> {
        let call = self.observed.call("staged_abort", Some(&self.session_id));
        let future = self.inner.abort();
        Box::pin(call.run(self.observed, future, nothing))
    }
}
