//! The conformance kit (feature `conformance`): the backend-agnostic definition of the contract,
//! runnable with one call against any backend, ours or yours.
//!
//! Give [`run`] a [`StoreFactory`] (or use [`UrlFactory`] for a URL-opened store). Each case runs
//! in its own namespace of session ids, so one database can serve many runs. A case that needs a
//! capability the backend lacks is reported by name as unsupported, never passed silently.
//!
//! ```
//! # #[tokio::main]
//! # async fn main() {
//! use openai_agents_session::conformance::{run_matching, Capabilities, UrlFactory};
//! let factory = UrlFactory::new("memory://doc-kit", Capabilities::all());
//! // The whole kit is `run(&factory)`; here only the limit cases, to keep the doc test quick.
//! let report = run_matching(&factory, |name| name.starts_with("limit_")).await;
//! assert_eq!(report.failed().count(), 0, "{report}");
//! assert!(report.passed().count() >= 6);
//! # }
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::codec::{ENVELOPE_MAGIC, FLAG_ENCRYPTED, RECORD_FORMAT_VERSION};
use crate::error::{Error, ErrorKind};
use crate::item::Item;
use crate::staged::StageMode;
use crate::store::{BoxFuture, ListOptions, Session, Store, StoreSession, MAX_SESSION_ID_BYTES};

/// What a backend under test can do; cases needing more are reported unsupported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Data survives dropping the store and opening it again through the factory.
    pub persistent: bool,
    /// The store offers [`Store::raw_records`], for the corrupt and unreadable record cases.
    pub raw_records: bool,
    /// The store honours `ttl` and `refresh_on_read`.
    pub ttl: bool,
    /// The store applies history transactions ([`crate::history`]).
    pub transactions: bool,
    /// The store grants session leases and fences writes ([`crate::lease`]).
    pub leases: bool,
}

impl Capabilities {
    /// Everything.
    pub fn all() -> Self {
        Capabilities {
            persistent: true,
            raw_records: true,
            ttl: true,
            transactions: true,
            leases: true,
        }
    }

    /// Nothing optional.
    pub fn none() -> Self {
        Capabilities {
            persistent: false,
            raw_records: false,
            ttl: false,
            transactions: false,
            leases: false,
        }
    }

    /// Sets `transactions`.
    pub fn transactions(mut self, yes: bool) -> Self {
        self.transactions = yes;
        self
    }

    /// Sets `leases`.
    pub fn leases(mut self, yes: bool) -> Self {
        self.leases = yes;
        self
    }

    /// Sets `persistent`.
    pub fn persistent(mut self, yes: bool) -> Self {
        self.persistent = yes;
        self
    }

    /// Sets `raw_records`.
    pub fn raw_records(mut self, yes: bool) -> Self {
        self.raw_records = yes;
        self
    }

    /// Sets `ttl`.
    pub fn ttl(mut self, yes: bool) -> Self {
        self.ttl = yes;
        self
    }
}

/// The store options a case asks the factory for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FactoryOptions {
    /// TTL in seconds.
    pub ttl: Option<u64>,
    /// `refresh_on_read` (only meaningful with a TTL).
    pub refresh_on_read: Option<bool>,
    /// `max_item_bytes`.
    pub max_item_bytes: Option<usize>,
    /// `operation_retention` in seconds.
    pub operation_retention: Option<u64>,
    /// `require_encryption=true` (the base URL's key options stay; without a key the open
    /// fails, which the case that asks for it checks).
    pub require_encryption: bool,
}

/// Opens stores of the backend under test. When the backend is `persistent`, every call must
/// open the same underlying data.
pub trait StoreFactory: Send + Sync {
    /// What the backend can do.
    fn capabilities(&self) -> Capabilities;
    /// Opens a store with these options.
    fn open(&self, options: FactoryOptions) -> BoxFuture<'_, crate::Result<Store>>;
}

/// A factory opening `base_url` with the case's options appended as query options.
#[derive(Debug, Clone)]
pub struct UrlFactory {
    base_url: String,
    capabilities: Capabilities,
}

impl UrlFactory {
    /// A factory for `base_url` (which may already carry options of its own).
    pub fn new(base_url: impl Into<String>, capabilities: Capabilities) -> Self {
        UrlFactory {
            base_url: base_url.into(),
            capabilities,
        }
    }

    /// The URL opened for these options.
    pub fn url_for(&self, options: &FactoryOptions) -> String {
        let mut query = Vec::new();
        if let Some(ttl) = options.ttl {
            query.push(format!("ttl={ttl}"));
        }
        if let Some(refresh) = options.refresh_on_read {
            query.push(format!("refresh_on_read={refresh}"));
        }
        if let Some(max) = options.max_item_bytes {
            query.push(format!("max_item_bytes={max}"));
        }
        if let Some(secs) = options.operation_retention {
            query.push(format!("operation_retention={secs}"));
        }
        if options.require_encryption {
            query.push("require_encryption=true".into());
        }
        if query.is_empty() {
            return self.base_url.clone();
        }
        let sep = if self.base_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{sep}{}", self.base_url, query.join("&"))
    }
}

impl StoreFactory for UrlFactory {
    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    fn open(&self, options: FactoryOptions) -> BoxFuture<'_, crate::Result<Store>> {
        let url = self.url_for(&options);
        Box::pin(async move { Store::open(&url).await })
    }
}

/// How one case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Every check held.
    Passed,
    /// A check failed; the message says which and why.
    Failed(String),
    /// The backend lacks a capability the case needs.
    Unsupported(String),
}

/// The result of one case.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CaseReport {
    /// The case's name.
    pub name: &'static str,
    /// How it ended.
    pub outcome: Outcome,
    /// How long it ran.
    pub elapsed: Duration,
}

/// The results of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One entry per case run, in order.
    pub cases: Vec<CaseReport>,
}

impl Report {
    /// Cases that passed.
    pub fn passed(&self) -> impl Iterator<Item = &CaseReport> {
        self.cases.iter().filter(|c| c.outcome == Outcome::Passed)
    }

    /// Cases that failed.
    pub fn failed(&self) -> impl Iterator<Item = &CaseReport> {
        self.cases
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
    }

    /// Cases the backend could not run.
    pub fn unsupported(&self) -> impl Iterator<Item = &CaseReport> {
        self.cases
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Unsupported(_)))
    }

    /// Panics with the whole report if any case failed; prints it otherwise.
    pub fn assert_passed(&self) {
        if self.failed().count() > 0 {
            panic!("conformance failures:\n{self}");
        }
        println!("{self}");
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for case in &self.cases {
            let (status, detail) = match &case.outcome {
                Outcome::Passed => ("ok", String::new()),
                Outcome::Failed(why) => ("FAILED", format!(": {why}")),
                Outcome::Unsupported(why) => ("unsupported", format!(": {why}")),
            };
            writeln!(
                f,
                "{status:>11} {} ({:.2?}){detail}",
                case.name, case.elapsed
            )?;
        }
        write!(
            f,
            "conformance: {} passed, {} failed, {} unsupported",
            self.passed().count(),
            self.failed().count(),
            self.unsupported().count()
        )
    }
}

/// Runs every case against the factory's backend.
pub async fn run(factory: &dyn StoreFactory) -> Report {
    run_matching(factory, |_| true).await
}

/// The names of every case, in run order.
pub fn case_names() -> Vec<&'static str> {
    CASES.iter().map(|c| c.name).collect()
}

/// Runs the cases whose name `filter` accepts. Cases that sleep (TTL) run concurrently with each
/// other, after the rest.
pub async fn run_matching(factory: &dyn StoreFactory, filter: impl Fn(&str) -> bool) -> Report {
    let caps = factory.capabilities();
    let mut report = Report::default();
    let mut slow = Vec::new();
    for case in CASES.iter().filter(|c| filter(c.name)) {
        if let Some(missing) = case.needs.missing(caps) {
            report.cases.push(CaseReport {
                name: case.name,
                outcome: Outcome::Unsupported(format!("needs the {missing} capability")),
                elapsed: Duration::ZERO,
            });
        } else if case.needs.sleeps() {
            slow.push(case);
        } else {
            report.cases.push(run_case(factory, case).await);
        }
    }
    // TTL and lease expiry cases mostly sleep: run them together.
    let mut handles = Vec::new();
    for case in slow {
        handles.push(run_case(factory, case));
    }
    report.cases.extend(join_all(handles).await);
    report
}

async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    struct JoinAll<F: std::future::Future> {
        futures: Vec<Pin<Box<F>>>,
        outputs: Vec<Option<F::Output>>,
    }
    impl<F: std::future::Future> std::future::Future for JoinAll<F> {
        type Output = Vec<F::Output>;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            // SAFETY-free: JoinAll is Unpin because its fields are boxes and options.
            let this = self.get_mut();
            let mut pending = false;
            for (fut, out) in this.futures.iter_mut().zip(this.outputs.iter_mut()) {
                if out.is_none() {
                    match fut.as_mut().poll(cx) {
                        Poll::Ready(v) => *out = Some(v),
                        Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                Poll::Pending
            } else {
                Poll::Ready(this.outputs.iter_mut().filter_map(Option::take).collect())
            }
        }
    }
    impl<F: std::future::Future> Unpin for JoinAll<F> {}
    let n = futures.len();
    JoinAll {
        futures: futures.into_iter().map(Box::pin).collect(),
        outputs: (0..n).map(|_| None).collect(),
    }
    .await
}

async fn run_case(factory: &dyn StoreFactory, case: &Case) -> CaseReport {
    let ctx = Ctx {
        factory,
        ns: namespace(case.name),
    };
    let start = Instant::now();
    let outcome = match (case.run)(&ctx).await {
        Ok(()) => Outcome::Passed,
        Err(Fail(why)) => Outcome::Failed(why),
    };
    CaseReport {
        name: case.name,
        outcome,
        elapsed: start.elapsed(),
    }
}

fn namespace(case: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "conf-{}-{nanos:x}-{}-{case}/",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    Nothing,
    Persistent,
    RawRecords,
    Ttl,
    Transactions,
    TransactionsRawRecords,
    Leases,
    /// Lease cases that mostly sleep (expiry, waiting): run with the TTL cases.
    LeasesSleeping,
    LeasesTransactions,
}

impl Needs {
    fn missing(self, caps: Capabilities) -> Option<&'static str> {
        match self {
            Needs::Persistent if !caps.persistent => Some("persistent"),
            Needs::RawRecords if !caps.raw_records => Some("raw_records"),
            Needs::Ttl if !caps.ttl => Some("ttl"),
            Needs::Transactions | Needs::TransactionsRawRecords if !caps.transactions => {
                Some("transactions")
            }
            Needs::TransactionsRawRecords if !caps.raw_records => Some("raw_records"),
            Needs::Leases | Needs::LeasesSleeping | Needs::LeasesTransactions if !caps.leases => {
                Some("leases")
            }
            Needs::LeasesTransactions if !caps.transactions => Some("transactions"),
            _ => None,
        }
    }

    fn sleeps(self) -> bool {
        matches!(
            self,
            Needs::Ttl | Needs::LeasesSleeping | Needs::LeasesTransactions
        )
    }
}

/// A failed check.
#[derive(Debug)]
struct Fail(String);

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail(format!("unexpected error: {e}"))
    }
}

type CaseResult = std::result::Result<(), Fail>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(Fail(format!($($msg)+)));
        }
    };
}

macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($msg:tt)+) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            let shown = |s: String| if s.len() > 300 { format!("{}... ({} chars)", &s[..s.char_indices().nth(300).map_or(s.len(), |c| c.0)], s.len()) } else { s };
            return Err(Fail(format!(
                "{}: left {} != right {}",
                format!($($msg)+),
                shown(format!("{l:?}")),
                shown(format!("{r:?}"))
            )));
        }
    }};
}

struct Ctx<'f> {
    factory: &'f dyn StoreFactory,
    ns: String,
}

impl Ctx<'_> {
    async fn store(&self) -> crate::Result<Store> {
        self.factory.open(FactoryOptions::default()).await
    }

    async fn store_with(&self, options: FactoryOptions) -> crate::Result<Store> {
        self.factory.open(options).await
    }

    fn id(&self, name: &str) -> String {
        format!("{}{name}", self.ns)
    }

    fn session(&self, store: &Store, name: &str) -> crate::Result<StoreSession> {
        store.session(&self.id(name))
    }
}

fn item(value: Value) -> Item {
    Item::from_value(value).unwrap_or_else(|_| Item::from_map(Default::default()))
}

fn numbered(range: std::ops::Range<u64>) -> Vec<Item> {
    range.map(|n| item(json!({ "n": n }))).collect()
}

async fn seeded(ctx: &Ctx<'_>, store: &Store, name: &str, n: u64) -> crate::Result<StoreSession> {
    let session = ctx.session(store, name)?;
    // Two batches, so limits cross a batch boundary.
    let split = n / 2;
    session.add_items(numbered(0..split)).await?;
    session.add_items(numbered(split..n)).await?;
    Ok(session)
}

struct Case {
    name: &'static str,
    needs: Needs,
    run: for<'a> fn(&'a Ctx<'a>) -> BoxFuture<'a, CaseResult>,
}

macro_rules! cases {
    ($($name:ident: $needs:ident,)*) => {
        const CASES: &[Case] = &[
            $(Case { name: stringify!($name), needs: Needs::$needs, run: |ctx| Box::pin($name(ctx)) },)*
        ];
    };
}

cases! {
    limit_none_returns_whole_history: Nothing,
    limit_zero_returns_empty: Nothing,
    limit_one_returns_newest: Nothing,
    limit_n_minus_one: Nothing,
    limit_exactly_n: Nothing,
    limit_beyond_n: Nothing,
    missing_session_reads_empty: Nothing,
    empty_batch_is_a_noop: Nothing,
    pop_returns_newest_first: Nothing,
    pop_on_empty_returns_none_repeatedly: Nothing,
    pop_then_add_keeps_order: Nothing,
    clear_then_reuse: Nothing,
    clear_missing_session_succeeds: Nothing,
    adversarial_ids_are_isolated: Nothing,
    list_prefix_is_literal: Nothing,
    list_paginates_without_duplicates: Nothing,
    invalid_session_ids_rejected: Nothing,
    max_length_session_id_works: Nothing,
    non_object_items_rejected: Nothing,
    too_large_item_rejects_whole_batch: Nothing,
    round_trip_unicode_and_escapes: Nothing,
    round_trip_numbers_exactly: Nothing,
    round_trip_nested_values_and_key_order: Nothing,
    round_trip_tricky_strings: Nothing,
    agents_sdk_item_shapes: Nothing,
    large_item_10_mb: Nothing,
    batch_of_10000_items: Nothing,
    session_info_tracks_writes: Nothing,
    session_handles_do_no_io: Nothing,
    errors_name_operation_and_session: Nothing,
    concurrent_writers_lose_nothing: Nothing,
    concurrent_pops_return_each_item_once: Nothing,
    persistence_across_reopen: Persistent,
    corrupt_records_skipped_and_not_counted: RawRecords,
    corrupt_records_dropped_by_pop: RawRecords,
    unreadable_records_skipped_and_never_deleted: RawRecords,
    ttl_expired_session_is_invisible: Ttl,
    ttl_read_refreshes_expiry: Ttl,
    ttl_no_refresh_on_read: Ttl,
    ttl_write_after_expiry_starts_fresh: Ttl,
    staged_append_is_invisible_until_commit: Nothing,
    staged_replace_swaps_the_history_at_once: Nothing,
    staged_write_abandoned_leaves_nothing: Nothing,
    staged_write_checks_item_sizes: Nothing,
    read_pages_walk_the_history_in_order: Nothing,
    read_pages_skip_corrupt_records: RawRecords,
    read_before_pages_back_through_the_history: Nothing,
    read_before_positions_stay_across_pops_and_appends: Nothing,
    read_before_skips_undecodable_records_uncounted: RawRecords,
    read_before_cost_does_not_grow_with_history: Nothing,
    list_newest_first_where_supported: Nothing,
    encrypted_records_need_their_key: RawRecords,
    encrypted_records_are_bound_and_sealed: RawRecords,
    plain_records_unreadable_under_require_encryption: RawRecords,
    tx_append_applies_once_and_says_so: Transactions,
    tx_retry_from_another_store_is_applied_before: Transactions,
    tx_reused_id_with_another_transaction_conflicts: Transactions,
    tx_suffix_mismatch_changes_nothing: Transactions,
    tx_failed_transaction_leaves_its_id_unused: Transactions,
    tx_equality_ignores_key_order_and_number_spelling: Transactions,
    tx_rewind_and_compaction: Transactions,
    tx_compaction_loses_to_a_concurrent_append: Transactions,
    tx_concurrent_applies_of_one_id_apply_once: Transactions,
    tx_racing_replace_suffix_one_wins: Transactions,
    tx_clear_forgets_operation_ids: Transactions,
    tx_retention_expiry_forgets_operation_ids: Transactions,
    tx_invalid_input_writes_nothing: Transactions,
    tx_undecodable_record_never_matches: TransactionsRawRecords,
    lease_two_owners_race_one_wins: Leases,
    lease_same_owner_reacquires_same_token: Leases,
    lease_wait_then_acquire: LeasesSleeping,
    lease_expiry_and_takeover_fence_the_old_holder: LeasesSleeping,
    lease_tokens_grow_across_release_expiry_and_clear: LeasesSleeping,
    lease_renew_and_release_by_token: LeasesSleeping,
    lease_fenced_writes_check_the_token: Leases,
    lease_fenced_transactions: LeasesTransactions,
    lease_records_are_not_sessions: Leases,
    lease_input_is_checked: Leases,
    lease_operations_are_one_request_each: Leases,
}

mod encryption;
pub use encryption::foreign_encrypted_record;
use encryption::*;
mod history;
use history::*;
mod lease;
use lease::*;
mod pages;
use pages::*;

// ---- limits ----

async fn limit_none_returns_whole_history(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = seeded(ctx, &store, "s", 7).await?;
    ensure_eq!(s.get_items(None).await?, numbered(0..7), "get_items(None)");
    Ok(())
}

async fn limit_zero_returns_empty(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = seeded(ctx, &store, "s", 5).await?;
    ensure_eq!(
        s.get_items(Some(0)).await?,
        Vec::<Item>::new(),
        "get_items(Some(0))"
    );
    Ok(())
}

async fn limit_one_returns_newest(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = seeded(ctx, &store, "s", 5).await?;
    ensure_eq!(
        s.get_items(Some(1)).await?,
        numbered(4..5),
        "get_items(Some(1))"
    );
    Ok(())
}

async fn limit_n_minus_one(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = seeded(ctx, &store, "s", 6).await?;
    ensure_eq!(
        s.get_items(Some(5)).await?,
        numbered(1..6),
        "get_items(Some(n-1))"
    );
    Ok(())
}

async fn limit_exactly_n(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = seeded(ctx, &store, "s", 6).await?;
    ensure_eq!(
        s.get_items(Some(6)).await?,
        numbered(0..6),
        "get_items(Some(n))"
    );
    Ok(())
}

async fn limit_beyond_n(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = seeded(ctx, &store, "s", 6).await?;
    for limit in [7, 100, usize::MAX] {
        ensure_eq!(
            s.get_items(Some(limit)).await?,
            numbered(0..6),
            "get_items(Some({limit}))"
        );
    }
    Ok(())
}

// ---- empty, pop, clear ----

async fn missing_session_reads_empty(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = ctx.session(&store, "never-written")?;
    ensure!(
        s.get_items(None).await?.is_empty(),
        "get_items(None) on a missing session"
    );
    ensure!(
        s.get_items(Some(3)).await?.is_empty(),
        "get_items(Some(3)) on a missing session"
    );
    ensure!(
        s.pop_item().await?.is_none(),
        "pop_item on a missing session"
    );
    ensure!(
        store.session_info(s.session_id()).await?.is_none(),
        "session_info of a missing session"
    );
    Ok(())
}

async fn empty_batch_is_a_noop(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = ctx.session(&store, "empty-batch")?;
    s.add_items(Vec::new()).await?;
    ensure!(
        store.session_info(s.session_id()).await?.is_none(),
        "an empty batch must not create the session"
    );
    let listed = store.list_all_sessions(Some(&ctx.ns)).await?;
    ensure!(
        listed.is_empty(),
        "an empty batch must not list the session: {listed:?}"
    );
    Ok(())
}

async fn pop_returns_newest_first(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = seeded(ctx, &store, "s", 5).await?;
    for n in (0..5).rev() {
        ensure_eq!(
            s.pop_item().await?,
            Some(item(json!({ "n": n }))),
            "pop #{}",
            5 - n
        );
        ensure_eq!(
            s.get_items(None).await?,
            numbered(0..n),
            "history after popping {n}"
        );
    }
    ensure_eq!(s.pop_item().await?, None, "pop on the emptied session");
    Ok(())
}

async fn pop_on_empty_returns_none_repeatedly(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = seeded(ctx, &store, "s", 1).await?;
    ensure!(s.pop_item().await?.is_some(), "the one item pops");
    for attempt in 0..3 {
        ensure_eq!(s.pop_item().await?, None, "pop on empty, attempt {attempt}");
    }
    ensure!(s.get_items(None).await?.is_empty(), "empty after pops");
    Ok(())
}

async fn pop_then_add_keeps_order(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = seeded(ctx, &store, "s", 4).await?;
    s.pop_item().await?;
    s.pop_item().await?;
    s.add_items(numbered(10..12)).await?;
    let want: Vec<Item> = numbered(0..2).into_iter().chain(numbered(10..12)).collect();
    ensure_eq!(
        s.get_items(None).await?,
        want,
        "history after pop, pop, add"
    );
    ensure_eq!(s.get_items(Some(3)).await?, want[1..].to_vec(), "newest 3");
    Ok(())
}

async fn clear_then_reuse(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = seeded(ctx, &store, "s", 5).await?;
    let other = seeded(ctx, &store, "other", 2).await?;
    s.clear_session().await?;
    ensure!(
        s.get_items(None).await?.is_empty(),
        "cleared session reads empty"
    );
    ensure!(
        s.pop_item().await?.is_none(),
        "cleared session pops nothing"
    );
    ensure!(
        store.session_info(s.session_id()).await?.is_none(),
        "cleared session has no info"
    );
    ensure_eq!(
        other.get_items(None).await?,
        numbered(0..2),
        "clearing one session touches no other"
    );
    s.add_items(numbered(20..22)).await?;
    ensure_eq!(
        s.get_items(None).await?,
        numbered(20..22),
        "a cleared session is reusable"
    );
    let info = store.session_info(s.session_id()).await?;
    ensure_eq!(
        info.map(|i| i.item_count),
        Some(2),
        "item_count after reuse"
    );
    Ok(())
}

async fn clear_missing_session_succeeds(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = ctx.session(&store, "never")?;
    s.clear_session().await?;
    s.clear_session().await?;
    ensure!(
        store.session_info(s.session_id()).await?.is_none(),
        "clear creates nothing"
    );
    Ok(())
}

// ---- ids and listing ----

/// Ids that collide in naive key schemes: separators, hash tags, glob and LIKE wildcards,
/// escapes, whitespace, emoji.
pub const ADVERSARIAL_IDS: &[&str] = &[
    "a",
    "a:b",
    "a:b:c",
    "a:",
    ":a",
    "{x}",
    "x}",
    "{",
    "}",
    "{a}:b",
    "*",
    "?",
    "[a]",
    "%",
    "_",
    "\\",
    "\n",
    "\t",
    " ",
    " a ",
    "a b",
    "\u{1F600}",
    "\u{e9}",
    "e\u{301}",
    "\"",
    "'",
    "a/b",
    "..",
    "\0",
];

async fn adversarial_ids_are_isolated(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let mut ids: Vec<String> = ADVERSARIAL_IDS.iter().map(|s| ctx.id(s)).collect();
    // Without the namespace too, and a 1024-byte id, and ids that prefix each other.
    ids.push(format!("{}a:b:c:d", ctx.ns));
    for id in &ids {
        store
            .session(id)?
            .add_items(vec![item(json!({ "owner": id }))])
            .await?;
    }
    for id in &ids {
        let got = store.session(id)?.get_items(None).await?;
        ensure_eq!(got, vec![item(json!({ "owner": id }))], "history of {id:?}");
        let info = store.session_info(id).await?;
        ensure_eq!(info.map(|i| i.item_count), Some(1), "item_count of {id:?}");
    }
    let mut listed = store.list_all_sessions(Some(&ctx.ns)).await?;
    listed.sort();
    let mut want = ids.clone();
    want.sort();
    ensure_eq!(listed, want, "every adversarial id is listed exactly once");
    store.session(&ctx.id("a"))?.clear_session().await?;
    ensure_eq!(
        store.session(&ctx.id("a:b"))?.get_items(None).await?.len(),
        1,
        "clearing \"a\" leaves \"a:b\""
    );
    ensure!(
        store
            .session(&ctx.id("a"))?
            .get_items(None)
            .await?
            .is_empty(),
        "\"a\" is cleared"
    );
    ensure_eq!(
        store.session(&ctx.id("*"))?.pop_item().await?,
        Some(item(json!({ "owner": ctx.id("*") }))),
        "pop on \"*\" pops its own item"
    );
    ensure_eq!(
        store.session(&ctx.id("{x}"))?.get_items(None).await?.len(),
        1,
        "\"{{x}}\" untouched by the others"
    );
    Ok(())
}

async fn list_prefix_is_literal(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let names = [
        "a", "a:b", "a:b:c", "ab", "%", "%x", "_x", "yx", "*", "*y", "zz", "[a]", "b",
    ];
    for name in names {
        ctx.session(&store, name)?.add_items(numbered(0..1)).await?;
    }
    let list = |prefix: String| {
        let store = store.clone();
        async move {
            let mut ids = store.list_all_sessions(Some(&prefix)).await?;
            ids.sort();
            Ok::<_, Error>(ids)
        }
    };
    let ids = |names: &[&str]| {
        let mut v: Vec<String> = names.iter().map(|n| ctx.id(n)).collect();
        v.sort();
        v
    };
    ensure_eq!(
        list(ctx.id("a:")).await?,
        ids(&["a:b", "a:b:c"]),
        "prefix \"a:\""
    );
    ensure_eq!(
        list(ctx.id("a")).await?,
        ids(&["a", "a:b", "a:b:c", "ab"]),
        "prefix \"a\""
    );
    ensure_eq!(
        list(ctx.id("%")).await?,
        ids(&["%", "%x"]),
        "prefix \"%\" is literal"
    );
    ensure_eq!(
        list(ctx.id("_")).await?,
        ids(&["_x"]),
        "prefix \"_\" is literal"
    );
    ensure_eq!(
        list(ctx.id("*")).await?,
        ids(&["*", "*y"]),
        "prefix \"*\" is literal"
    );
    ensure_eq!(
        list(ctx.id("[")).await?,
        ids(&["[a]"]),
        "prefix \"[\" is literal"
    );
    ensure_eq!(
        list(ctx.id("q")).await?,
        ids(&[]),
        "a prefix matching nothing"
    );
    ensure_eq!(
        list(ctx.ns.clone()).await?,
        ids(&names),
        "the namespace lists all"
    );
    Ok(())
}

async fn list_paginates_without_duplicates(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let mut want = Vec::new();
    for n in 0..25 {
        let s = ctx.session(&store, &format!("s{n:02}"))?;
        s.add_items(numbered(0..1)).await?;
        want.push(s.session_id().to_owned());
    }
    let mut got = Vec::new();
    let mut options = ListOptions::default().prefix(ctx.ns.clone()).page_size(7);
    let mut pages = 0;
    loop {
        let page = store.list_sessions(&options).await?;
        pages += 1;
        ensure!(pages <= 30, "pagination does not end");
        ensure!(
            page.session_ids.len() <= 7,
            "a page holds at most page_size ids"
        );
        got.extend(page.session_ids);
        match page.next_cursor {
            Some(cursor) => options.cursor = Some(cursor),
            None => break,
        }
    }
    let unique: HashSet<&String> = got.iter().collect();
    ensure_eq!(unique.len(), got.len(), "no id is listed twice");
    got.sort();
    ensure_eq!(got, want, "every id is listed");
    Ok(())
}

async fn invalid_session_ids_rejected(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let too_long = "x".repeat(MAX_SESSION_ID_BYTES + 1);
    for bad in ["", too_long.as_str()] {
        let err = store.session(bad).err();
        ensure_eq!(
            err.map(|e| e.kind()),
            Some(ErrorKind::InvalidSessionId),
            "store.session({} bytes)",
            bad.len()
        );
        let err = store.session_info(bad).await.err();
        ensure_eq!(
            err.map(|e| e.kind()),
            Some(ErrorKind::InvalidSessionId),
            "session_info({} bytes)",
            bad.len()
        );
    }
    Ok(())
}

async fn max_length_session_id_works(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    // Multi-byte characters up to exactly 1024 bytes.
    let mut id = ctx.ns.clone();
    while id.len() + '\u{e9}'.len_utf8() <= MAX_SESSION_ID_BYTES {
        id.push('\u{e9}');
    }
    while id.len() < MAX_SESSION_ID_BYTES {
        id.push('x');
    }
    ensure_eq!(id.len(), MAX_SESSION_ID_BYTES, "test id length");
    let s = store.session(&id)?;
    s.add_items(numbered(0..2)).await?;
    ensure_eq!(
        s.get_items(None).await?,
        numbered(0..2),
        "a 1024-byte id round-trips"
    );
    let listed = store.list_all_sessions(Some(&ctx.ns)).await?;
    ensure_eq!(listed, vec![id.clone()], "a 1024-byte id is listed");
    Ok(())
}

// ---- input validation ----

async fn non_object_items_rejected(ctx: &Ctx<'_>) -> CaseResult {
    for bad in [
        "[1,2]", "\"text\"", "42", "null", "true", "{\"a\":", "", "{} {}",
    ] {
        let err = Item::from_json_str(bad).err();
        ensure_eq!(
            err.map(|e| e.kind()),
            Some(ErrorKind::InvalidInput),
            "item {bad:?}"
        );
    }
    let err = Item::from_value(json!([{"role": "user"}])).err();
    ensure_eq!(
        err.map(|e| e.kind()),
        Some(ErrorKind::InvalidInput),
        "an array value"
    );
    // The store never sees a non-object: nothing reached it.
    let store = ctx.store().await?;
    ensure!(
        store.list_all_sessions(Some(&ctx.ns)).await?.is_empty(),
        "nothing written"
    );
    Ok(())
}

async fn too_large_item_rejects_whole_batch(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx
        .store_with(FactoryOptions {
            max_item_bytes: Some(1000),
            ..FactoryOptions::default()
        })
        .await?;
    let s = seeded(ctx, &store, "s", 2).await?;
    let big = item(json!({ "content": "x".repeat(1000) }));
    let batch = vec![item(json!({ "n": 100 })), big, item(json!({ "n": 101 }))];
    let err = s.add_items(batch).await.err();
    ensure_eq!(
        err.as_ref().map(|e| e.kind()),
        Some(ErrorKind::TooLarge),
        "an oversized item"
    );
    ensure_eq!(
        s.get_items(None).await?,
        numbered(0..2),
        "nothing of the batch was written"
    );
    let exactly = item(json!({ "c": "y".repeat(1000 - 8) }));
    ensure_eq!(exactly.len_bytes(), 1000, "test item size");
    s.add_items(vec![exactly.clone()]).await?;
    ensure_eq!(
        s.get_items(Some(1)).await?,
        vec![exactly],
        "an item of exactly max_item_bytes"
    );
    Ok(())
}

// ---- round trips ----

async fn round_trip(ctx: &Ctx<'_>, name: &str, texts: &[&str]) -> CaseResult {
    let store = ctx.store().await?;
    let s = ctx.session(&store, name)?;
    let items: Vec<Item> = texts
        .iter()
        .map(|t| Item::from_json_str(t))
        .collect::<crate::Result<_>>()?;
    s.add_items(items.clone()).await?;
    let got = s.get_items(None).await?;
    ensure_eq!(got.len(), items.len(), "item count");
    for (text, (got, want)) in texts.iter().zip(got.iter().zip(&items)) {
        ensure_eq!(got.as_str(), want.as_str(), "round trip of {text}");
    }
    let reopened = ctx.store().await?;
    let again = ctx.session(&reopened, name)?.get_items(None).await?;
    if ctx.factory.capabilities().persistent {
        ensure_eq!(again, items, "round trip through a re-opened store");
    }
    Ok(())
}

async fn round_trip_unicode_and_escapes(ctx: &Ctx<'_>) -> CaseResult {
    round_trip(
        ctx,
        "unicode",
        &[
            "{\"text\":\"h\u{e9}llo w\u{f6}rld \u{4e16}\u{754c} \u{1F600}\u{1F469}\u{200D}\u{1F4BB} \u{202E}rtl\"}",
            r#"{"esc":"quote \" backslash \\ slash / nl \n tab \t cr \r bs \b ff \f nul \u0000 bell \u0007"}"#,
            r#"{"surrogates":"\ud83d\ude00","bmp":"\u00e9\u4e16"}"#,
            "{\"\u{1F511}\":\"unicode key\",\"\":\"empty key\"}",
        ],
    )
    .await
}

async fn round_trip_numbers_exactly(ctx: &Ctx<'_>) -> CaseResult {
    round_trip(
        ctx,
        "numbers",
        &[
            r#"{"big":123456789012345678901234567890,"neg":-98765432109876543210,"u64max":18446744073709551615,"beyond":18446744073709551616}"#,
            r#"{"f":1.0,"g":0.1,"h":3.141592653589793238462643383279,"e":1e400,"small":5e-324,"tiny":1e-400,"negzero":-0.0,"exp":2.5E+10}"#,
            r#"{"zero":0,"one":1,"minus":-1,"i64min":-9223372036854775808}"#,
        ],
    )
    .await
}

async fn round_trip_nested_values_and_key_order(ctx: &Ctx<'_>) -> CaseResult {
    round_trip(
        ctx,
        "nested",
        &[
            r#"{"z":1,"a":2,"m":3,"b":{"y":[1,{"d":4,"c":3}],"x":null},"arr":[[],{},[[[]]],true,false,null]}"#,
            r#"{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"},{"type":"input_image","image_url":"data:image/png;base64,iVBORw0KGgo="}]}"#,
            r#"{"deep":{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":{"j":"deep"}}}}}}}}}}}"#,
        ],
    )
    .await
}

async fn round_trip_tricky_strings(ctx: &Ctx<'_>) -> CaseResult {
    round_trip(
        ctx,
        "tricky",
        &[
            r#"{"json_in_string":"{\"role\":\"user\",\"content\":[1,2,{\"a\":null}]}"}"#,
            r#"{"sql":"'; DROP TABLE oas_items; --","like":"%_%","quote":"O'Brien"}"#,
            r#"{"lua":"redis.call('FLUSHALL')","resp":"*3\r\n$3\r\nSET\r\n","glob":"*?[a-z]{x}"}"#,
            r#"{"html":"<script>alert(1)</script>","path":"../../etc/passwd","ws":"   "}"#,
        ],
    )
    .await
}

/// The five item shapes the Python Agents SDK writes, as it writes them.
pub fn agents_sdk_items() -> Vec<Item> {
    vec![
        item(json!({"content": "What's the weather in Paris?", "role": "user"})),
        item(json!({
            "id": "rs_68a1b2c3d4e5f6",
            "summary": [{"text": "The user wants the weather; call get_weather.", "type": "summary_text"}],
            "type": "reasoning",
            "encrypted_content": null,
            "status": null
        })),
        item(json!({
            "arguments": "{\"city\":\"Paris\",\"unit\":\"celsius\"}",
            "call_id": "call_9XkQ2",
            "name": "get_weather",
            "type": "function_call",
            "id": "fc_68a1b2c3",
            "status": "completed"
        })),
        item(json!({
            "call_id": "call_9XkQ2",
            "output": "{\"temperature\": 18.5, \"conditions\": \"light rain\"}",
            "type": "function_call_output"
        })),
        item(json!({
            "id": "msg_68a1b2c4",
            "content": [{
                "annotations": [{"type": "url_citation", "start_index": 0, "end_index": 5, "url": "https://example.com/w", "title": "Weather"}],
                "text": "It's 18.5\u{b0}C with light rain in Paris.",
                "type": "output_text",
                "logprobs": [{"token": "It", "logprob": -0.0001, "bytes": [73, 116], "top_logprobs": []}]
            }],
            "role": "assistant",
            "status": "completed",
            "type": "message"
        })),
    ]
}

async fn agents_sdk_item_shapes(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = ctx.session(&store, "sdk")?;
    let items = agents_sdk_items();
    s.add_items(items[..1].to_vec()).await?;
    s.add_items(items[1..].to_vec()).await?;
    ensure_eq!(s.get_items(None).await?, items, "the SDK's items");
    ensure_eq!(
        s.get_items(Some(2)).await?,
        items[3..].to_vec(),
        "the newest two"
    );
    ensure_eq!(
        s.pop_item().await?,
        Some(items[4].clone()),
        "pop the assistant message"
    );
    Ok(())
}

/// A string of `len` random base64 characters (incompressible beyond its alphabet).
pub fn random_text(len: usize, seed: u64) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state = seed | 1;
    let mut out = String::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        for shift in (0..60).step_by(6) {
            if out.len() < len {
                out.push(ALPHABET[((state >> shift) & 63) as usize] as char);
            }
        }
    }
    out
}

async fn large_item_10_mb(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = ctx.session(&store, "large")?;
    let big = item(json!({
        "type": "function_call_output",
        "call_id": "call_big",
        "output": random_text(10 * 1024 * 1024, 0x5eed),
    }));
    ensure!(
        big.len_bytes() > 10 * 1024 * 1024,
        "test item is over 10 MiB"
    );
    let small = item(json!({"role": "user", "content": "after"}));
    s.add_items(vec![big.clone()]).await?;
    s.add_items(vec![small.clone()]).await?;
    ensure!(
        s.get_items(Some(2)).await? == vec![big.clone(), small.clone()],
        "10 MB item round-trips (get)"
    );
    ensure!(
        s.get_items(Some(1)).await? == vec![small.clone()],
        "newest after the large item"
    );
    s.pop_item().await?;
    ensure!(
        s.pop_item().await? == Some(big),
        "10 MB item round-trips (pop)"
    );
    Ok(())
}

async fn batch_of_10000_items(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = ctx.session(&store, "batch")?;
    let items: Vec<Item> = (0..10_000u64)
        .map(|n| {
            item(json!({"type": "message", "role": "user", "n": n, "content": format!("turn {n}")}))
        })
        .collect();
    s.add_items(items.clone()).await?;
    let all = s.get_items(None).await?;
    ensure_eq!(all.len(), 10_000, "all items stored");
    ensure!(all == items, "10,000 items in order");
    ensure!(
        s.get_items(Some(3)).await? == items[9_997..].to_vec(),
        "newest 3 of 10,000"
    );
    let info = store.session_info(s.session_id()).await?;
    ensure_eq!(info.map(|i| i.item_count), Some(10_000), "item_count");
    Ok(())
}

// ---- store level ----

async fn session_info_tracks_writes(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = ctx.session(&store, "info")?;
    s.add_items(numbered(0..2)).await?;
    let first = store.session_info(s.session_id()).await?;
    let Some(first) = first else {
        return Err(Fail("session_info after a write is None".into()));
    };
    ensure_eq!(first.session_id.as_str(), s.session_id(), "session_id");
    ensure_eq!(first.item_count, 2, "item_count");
    ensure_eq!(first.expires_at, None, "no TTL, no expiry");
    ensure!(
        first.updated_at >= first.created_at,
        "updated_at >= created_at"
    );
    let mut previous = first.updated_at;
    for step in 0..3 {
        if step == 2 {
            s.pop_item().await?;
        } else {
            s.add_items(numbered(0..1)).await?;
        }
        let info = store.session_info(s.session_id()).await?;
        let Some(info) = info else {
            return Err(Fail("session_info went missing".into()));
        };
        ensure_eq!(
            info.created_at,
            first.created_at,
            "created_at is set once (write {step})"
        );
        ensure!(
            info.updated_at > previous,
            "updated_at advances on write {step}"
        );
        previous = info.updated_at;
    }
    let info = store.session_info(s.session_id()).await?;
    ensure_eq!(
        info.map(|i| i.item_count),
        Some(3),
        "item_count after adds and a pop"
    );
    Ok(())
}

async fn session_handles_do_no_io(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let before = store.stats().total_requests();
    let handles: Vec<StoreSession> = (0..10_000)
        .map(|n| ctx.session(&store, &format!("h{n}")))
        .collect::<crate::Result<_>>()?;
    ensure_eq!(
        store.stats().total_requests(),
        before,
        "making 10,000 session handles"
    );
    handles[9_999].add_items(numbered(0..1)).await?;
    ensure!(
        store.stats().total_requests() > before,
        "a write is counted as a request"
    );
    Ok(())
}

async fn errors_name_operation_and_session(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx
        .store_with(FactoryOptions {
            max_item_bytes: Some(100),
            ..FactoryOptions::default()
        })
        .await?;
    let s = ctx.session(&store, "errs")?;
    let err = s
        .add_items(vec![item(json!({ "c": "z".repeat(200) }))])
        .await
        .err();
    let Some(err) = err else {
        return Err(Fail("an oversized item was accepted".into()));
    };
    ensure_eq!(err.kind(), ErrorKind::TooLarge, "kind");
    ensure_eq!(
        err.session_id(),
        Some(s.session_id()),
        "session id in the error"
    );
    let text = err.to_string();
    ensure!(
        text.contains("add_items") && text.contains(s.session_id()),
        "message names operation and session: {text}"
    );
    ensure!(!err.is_retryable(), "TooLarge is not retryable");
    Ok(())
}

// ---- concurrency ----

async fn concurrent_writers_lose_nothing(ctx: &Ctx<'_>) -> CaseResult {
    const WRITERS: u64 = 32;
    const BATCHES: u64 = 50;
    let store = ctx.store().await?;
    let session = ctx.session(&store, "concurrent")?;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let session = session.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..BATCHES {
                let len = 1 + (w * 7 + b * 13) % 5;
                let batch = (0..len)
                    .map(|i| item(json!({ "w": w, "b": b, "i": i, "len": len })))
                    .collect();
                session.add_items(batch).await?;
            }
            Ok::<_, Error>(())
        }));
    }
    let mut expected_total = 0u64;
    for w in 0..WRITERS {
        for b in 0..BATCHES {
            expected_total += 1 + (w * 7 + b * 13) % 5;
        }
    }
    for task in tasks {
        task.await
            .map_err(|e| Fail(format!("writer task panicked: {e}")))??;
    }
    let all = session.get_items(None).await?;
    ensure_eq!(all.len() as u64, expected_total, "items stored");
    let fields = |it: &Item| {
        let v = it.to_value();
        let get = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(u64::MAX);
        (get("w"), get("b"), get("i"), get("len"))
    };
    let mut seen = HashSet::new();
    let mut next_batch: HashMap<u64, u64> = HashMap::new();
    let mut pos = 0;
    while pos < all.len() {
        let (w, b, i, len) = fields(&all[pos]);
        ensure_eq!(i, 0, "a batch starts at its first item (position {pos})");
        ensure_eq!(
            next_batch.get(&w).copied().unwrap_or(0),
            b,
            "writer {w}'s batches in order"
        );
        next_batch.insert(w, b + 1);
        for k in 0..len {
            let at = pos + k as usize;
            ensure!(at < all.len(), "batch ({w},{b}) cut off at the end");
            ensure_eq!(
                fields(&all[at]),
                (w, b, k, len),
                "batch ({w},{b}) contiguous"
            );
            ensure!(seen.insert((w, b, k)), "item ({w},{b},{k}) duplicated");
        }
        pos += len as usize;
    }
    ensure_eq!(
        next_batch.len() as u64,
        WRITERS,
        "every writer's batches present"
    );
    Ok(())
}

async fn concurrent_pops_return_each_item_once(ctx: &Ctx<'_>) -> CaseResult {
    const ITEMS: u64 = 200;
    let store = ctx.store().await?;
    let session = ctx.session(&store, "pops")?;
    session.add_items(numbered(0..ITEMS)).await?;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let session = session.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..20 {
                match session.pop_item().await? {
                    Some(item) => got.push(item),
                    None => break,
                }
            }
            Ok::<_, Error>(got)
        }));
    }
    let mut popped = Vec::new();
    for task in tasks {
        popped.extend(
            task.await
                .map_err(|e| Fail(format!("pop task panicked: {e}")))??,
        );
    }
    let unique: HashSet<&str> = popped.iter().map(Item::as_str).collect();
    ensure_eq!(unique.len(), popped.len(), "no item popped twice");
    let remaining = session.get_items(None).await?;
    ensure_eq!(
        remaining.len() + popped.len(),
        ITEMS as usize,
        "the history shrank by exactly the number popped"
    );
    ensure_eq!(
        remaining,
        numbered(0..remaining.len() as u64),
        "the oldest items remain"
    );
    for p in &popped {
        ensure!(
            !remaining.contains(p),
            "a popped item is still stored: {p:?}"
        );
    }
    Ok(())
}

// ---- persistence ----

async fn persistence_across_reopen(ctx: &Ctx<'_>) -> CaseResult {
    let items = agents_sdk_items();
    let created_at = {
        let store = ctx.store().await?;
        let s = ctx.session(&store, "persist")?;
        s.add_items(items.clone()).await?;
        store
            .session_info(s.session_id())
            .await?
            .map(|i| i.created_at)
    };
    let store = ctx.store().await?;
    let s = ctx.session(&store, "persist")?;
    ensure_eq!(
        s.get_items(None).await?,
        items,
        "history after re-opening the store"
    );
    let info = store.session_info(s.session_id()).await?;
    ensure_eq!(
        info.as_ref().map(|i| i.created_at),
        created_at,
        "created_at after re-open"
    );
    ensure_eq!(
        info.map(|i| i.item_count),
        Some(5),
        "item_count after re-open"
    );
    ensure_eq!(
        store.list_all_sessions(Some(&ctx.ns)).await?,
        vec![s.session_id().to_owned()],
        "listing after re-open"
    );
    Ok(())
}

// ---- corrupt and unreadable records ----

/// Records that decode as corrupt: damaged JSON, JSON that is not an object, empty, binary,
/// invalid UTF-8, text another program wrote.
pub fn corrupt_records() -> Vec<Vec<u8>> {
    vec![
        b"{\"role\":\"user\",\"content\":\"trunc".to_vec(),
        b"[1,2,3]".to_vec(),
        b"\"a string\"".to_vec(),
        Vec::new(),
        vec![0xff, 0xfe, 0x00, 0x01],
        vec![b'{', 0xc3, 0x28, b'}'],
        b"hello from another program".to_vec(),
        vec![ENVELOPE_MAGIC],
    ]
}

/// A record that decodes as unreadable with any configuration: an envelope of a newer format
/// version. (An encrypted envelope is unreadable only with keys configured; without one it
/// fails reads with `EncryptionKeyMissing`: see [`foreign_encrypted_record`].)
pub fn unreadable_record() -> Vec<u8> {
    let mut record = vec![ENVELOPE_MAGIC, RECORD_FORMAT_VERSION + 1, FLAG_ENCRYPTED];
    record.extend_from_slice(&random_text(48, 7).into_bytes());
    record
}

async fn raw(store: &Store, id: &str, record: Vec<u8>) -> CaseResult {
    match store.raw_records() {
        Some(hook) => Ok(hook.append_raw(id, record).await?),
        None => Err(Fail(
            "the factory declared raw_records but the store has no hook".into(),
        )),
    }
}

async fn corrupt_records_skipped_and_not_counted(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = ctx.session(&store, "corrupt-get")?;
    let id = s.session_id().to_owned();
    let corrupt = corrupt_records();
    s.add_items(numbered(0..2)).await?;
    for record in &corrupt {
        raw(&store, &id, record.clone()).await?;
    }
    s.add_items(numbered(2..3)).await?;
    raw(&store, &id, corrupt[0].clone()).await?;
    raw(&store, &id, corrupt[4].clone()).await?;
    ensure_eq!(
        s.get_items(None).await?,
        numbered(0..3),
        "get_items(None) skips corrupt"
    );
    ensure_eq!(
        s.get_items(Some(1)).await?,
        numbered(2..3),
        "limit 1 widens past corrupt"
    );
    ensure_eq!(
        s.get_items(Some(2)).await?,
        numbered(1..3),
        "limit 2 widens past corrupt"
    );
    ensure_eq!(s.get_items(Some(3)).await?, numbered(0..3), "limit 3");
    ensure_eq!(s.get_items(Some(50)).await?, numbered(0..3), "limit beyond");
    Ok(())
}

async fn corrupt_records_dropped_by_pop(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = ctx.session(&store, "corrupt-pop")?;
    let id = s.session_id().to_owned();
    s.add_items(numbered(0..2)).await?;
    raw(&store, &id, corrupt_records()[1].clone()).await?;
    s.add_items(numbered(2..3)).await?;
    raw(&store, &id, corrupt_records()[0].clone()).await?;
    raw(&store, &id, corrupt_records()[5].clone()).await?;
    ensure_eq!(
        s.pop_item().await?,
        Some(item(json!({"n": 2}))),
        "pop past two corrupt records"
    );
    ensure_eq!(
        s.pop_item().await?,
        Some(item(json!({"n": 1}))),
        "pop past one corrupt record"
    );
    ensure_eq!(
        s.get_items(None).await?,
        numbered(0..1),
        "history after pops"
    );
    let info = store.session_info(&id).await?;
    ensure_eq!(
        info.map(|i| i.item_count),
        Some(1),
        "corrupt records were dropped"
    );
    ensure_eq!(s.pop_item().await?, Some(item(json!({"n": 0}))), "last pop");
    ensure_eq!(s.pop_item().await?, None, "empty");
    // A session holding only corrupt records pops nothing and ends up empty.
    let only = ctx.session(&store, "only-corrupt")?;
    raw(&store, only.session_id(), corrupt_records()[0].clone()).await?;
    ensure_eq!(only.pop_item().await?, None, "pop on corrupt-only session");
    ensure!(
        only.get_items(None).await?.is_empty(),
        "corrupt-only reads empty"
    );
    Ok(())
}

async fn unreadable_records_skipped_and_never_deleted(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = ctx.session(&store, "unreadable")?;
    let id = s.session_id().to_owned();
    s.add_items(numbered(0..1)).await?;
    raw(&store, &id, unreadable_record()).await?;
    s.add_items(numbered(1..2)).await?;
    ensure_eq!(
        s.get_items(None).await?,
        numbered(0..2),
        "reads skip unreadable records"
    );
    ensure_eq!(
        s.get_items(Some(2)).await?,
        numbered(0..2),
        "unreadable not counted toward limit"
    );
    ensure_eq!(
        s.pop_item().await?,
        Some(item(json!({"n": 1}))),
        "pop above the unreadable"
    );
    for attempt in 0..2 {
        let err = s.pop_item().await.err();
        ensure_eq!(
            err.map(|e| e.kind()),
            Some(ErrorKind::Unreadable),
            "pop on an unreadable record (attempt {attempt})"
        );
    }
    ensure_eq!(
        s.get_items(None).await?,
        numbered(0..1),
        "nothing was removed"
    );
    let info = store.session_info(&id).await?;
    ensure_eq!(
        info.map(|i| i.item_count),
        Some(2),
        "the unreadable record is kept"
    );
    Ok(())
}

// ---- TTL (margins of at least one second either side) ----

fn ttl_options(ttl: u64, refresh: bool) -> FactoryOptions {
    FactoryOptions {
        ttl: Some(ttl),
        refresh_on_read: Some(refresh),
        ..FactoryOptions::default()
    }
}

async fn ttl_expired_session_is_invisible(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store_with(ttl_options(2, true)).await?;
    let s = seeded(ctx, &store, "expiring", 3).await?;
    let info = store.session_info(s.session_id()).await?;
    let Some(info) = info else {
        return Err(Fail("no info before expiry".into()));
    };
    let expires = info
        .expires_at
        .map(|t| t.as_millis() - info.updated_at.as_millis());
    ensure!(
        expires.is_some_and(|ms| (1_000..=3_000).contains(&ms)),
        "expires_at is about ttl after the write: {expires:?} ms"
    );
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    ensure!(
        s.get_items(None).await?.is_empty(),
        "expired session reads empty"
    );
    ensure!(
        s.get_items(Some(1)).await?.is_empty(),
        "expired session reads empty with a limit"
    );
    ensure!(
        store.session_info(s.session_id()).await?.is_none(),
        "expired session has no info"
    );
    ensure!(
        store.list_all_sessions(Some(&ctx.ns)).await?.is_empty(),
        "expired session is not listed"
    );
    ensure_eq!(s.pop_item().await?, None, "expired session pops nothing");
    Ok(())
}

async fn ttl_read_refreshes_expiry(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store_with(ttl_options(3, true)).await?;
    let s = seeded(ctx, &store, "sliding", 2).await?;
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    ensure_eq!(
        s.get_items(None).await?,
        numbered(0..2),
        "visible before expiry"
    );
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    // 4 s after the write (1 s past its TTL), 2 s after the read (1 s before the refreshed TTL).
    ensure_eq!(
        s.get_items(None).await?,
        numbered(0..2),
        "the read refreshed the TTL"
    );
    Ok(())
}

async fn ttl_no_refresh_on_read(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store_with(ttl_options(3, false)).await?;
    let s = seeded(ctx, &store, "fixed", 2).await?;
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    ensure_eq!(
        s.get_items(None).await?,
        numbered(0..2),
        "visible before expiry"
    );
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    ensure!(
        s.get_items(None).await?.is_empty(),
        "reads did not refresh the TTL"
    );
    Ok(())
}

async fn ttl_write_after_expiry_starts_fresh(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store_with(ttl_options(2, true)).await?;
    let s = seeded(ctx, &store, "reborn", 3).await?;
    let before = store
        .session_info(s.session_id())
        .await?
        .map(|i| i.created_at);
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    s.add_items(numbered(100..101)).await?;
    ensure_eq!(
        s.get_items(None).await?,
        numbered(100..101),
        "expired items never reappear"
    );
    let info = store.session_info(s.session_id()).await?;
    ensure_eq!(
        info.as_ref().map(|i| i.item_count),
        Some(1),
        "item_count of the new session"
    );
    ensure!(
        info.map(|i| i.created_at) > before,
        "the new session has a new created_at"
    );
    ensure_eq!(
        s.pop_item().await?,
        Some(item(json!({"n": 100}))),
        "pop the new item"
    );
    ensure_eq!(s.pop_item().await?, None, "no expired item under it");
    Ok(())
}

// ---- staged writes and pages (the transfer tools' paths for sessions of any size) ----

async fn staged_append_is_invisible_until_commit(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = seeded(ctx, &store, "s", 3).await?;
    let fresh = ctx.session(&store, "fresh")?;
    let mut staged = store
        .stage(s.session_id(), StageMode::Append, Some(40))
        .await?;
    let mut new_one = store
        .stage(fresh.session_id(), StageMode::Append, None)
        .await?;
    for part in 0..4 {
        staged
            .append(numbered(100 + part * 10..110 + part * 10))
            .await?;
        new_one.append(numbered(part * 2..part * 2 + 2)).await?;
        ensure_eq!(
            s.get_items(None).await?,
            numbered(0..3),
            "before the commit, part {part}"
        );
        ensure!(
            fresh.get_items(None).await?.is_empty(),
            "a new session stays invisible, part {part}"
        );
    }
    // More than announced: the backend must still keep the batch whole and contiguous.
    staged.append(numbered(140..150)).await?;
    ensure_eq!(staged.staged(), 50, "items staged");
    // A write while the batch is staged: it lands before or after the batch (backends fix the
    // batch's place at its first part or at its commit), never inside it.
    s.add_items(numbered(3..4)).await?;
    ensure_eq!(staged.commit().await?, 50, "items committed");
    ensure_eq!(
        new_one.commit().await?,
        8,
        "items committed to the new session"
    );
    let batch = numbered(100..150);
    let history = s.get_items(None).await?;
    let before: Vec<Item> = numbered(0..4).into_iter().chain(batch.clone()).collect();
    let after: Vec<Item> = numbered(0..3)
        .into_iter()
        .chain(batch.clone())
        .chain(numbered(3..4))
        .collect();
    ensure!(
        history == before || history == after,
        "the batch lands whole and contiguous: {history:?}"
    );
    ensure_eq!(
        s.get_items(Some(2)).await?,
        history[history.len() - 2..].to_vec(),
        "newest 2 after the commit"
    );
    ensure_eq!(
        fresh.get_items(None).await?,
        numbered(0..8),
        "the new session"
    );
    let info = store.session_info(s.session_id()).await?;
    ensure_eq!(
        info.map(|i| i.item_count),
        Some(54),
        "item_count after the commit"
    );
    ensure_eq!(
        s.pop_item().await?,
        history.last().cloned(),
        "pop after the commit"
    );
    Ok(())
}

async fn staged_replace_swaps_the_history_at_once(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = seeded(ctx, &store, "s", 5).await?;
    let other = seeded(ctx, &store, "other", 2).await?;
    let mut staged = store
        .stage(s.session_id(), StageMode::Replace, Some(30))
        .await?;
    for part in 0..3 {
        staged
            .append(numbered(50 + part * 10..60 + part * 10))
            .await?;
        ensure_eq!(
            s.get_items(None).await?,
            numbered(0..5),
            "the old history until the commit, part {part}"
        );
    }
    ensure_eq!(staged.commit().await?, 30, "items committed");
    ensure_eq!(
        s.get_items(None).await?,
        numbered(50..80),
        "only the new history after the commit"
    );
    ensure_eq!(
        s.get_items(Some(1)).await?,
        numbered(79..80),
        "newest after the replace"
    );
    let info = store.session_info(s.session_id()).await?;
    ensure_eq!(
        info.map(|i| i.item_count),
        Some(30),
        "item_count after the replace"
    );
    ensure_eq!(
        other.get_items(None).await?,
        numbered(0..2),
        "another session untouched"
    );
    s.add_items(numbered(80..81)).await?;
    ensure_eq!(
        s.get_items(Some(2)).await?,
        numbered(79..81),
        "appending after a replace"
    );
    // Replacing a missing session creates it; replacing with nothing clears it.
    let missing = ctx.session(&store, "missing")?;
    let mut staged = store
        .stage(missing.session_id(), StageMode::Replace, None)
        .await?;
    staged.append(numbered(0..3)).await?;
    staged.commit().await?;
    ensure_eq!(
        missing.get_items(None).await?,
        numbered(0..3),
        "replace of a missing session"
    );
    let staged = store
        .stage(missing.session_id(), StageMode::Replace, None)
        .await?;
    ensure_eq!(staged.commit().await?, 0, "an empty replace");
    ensure!(
        store.session_info(missing.session_id()).await?.is_none(),
        "an empty replace clears"
    );
    Ok(())
}

async fn staged_write_abandoned_leaves_nothing(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = seeded(ctx, &store, "s", 3).await?;
    let fresh = ctx.session(&store, "fresh")?;
    {
        let mut a = store
            .stage(s.session_id(), StageMode::Append, Some(10))
            .await?;
        a.append(numbered(10..20)).await?;
        let mut r = store
            .stage(s.session_id(), StageMode::Replace, Some(10))
            .await?;
        r.append(numbered(30..40)).await?;
        let mut f = store
            .stage(fresh.session_id(), StageMode::Append, Some(10))
            .await?;
        f.append(numbered(0..10)).await?;
        // Dropped without a commit, as an interrupted copy does.
    }
    ensure_eq!(
        s.get_items(None).await?,
        numbered(0..3),
        "the history is untouched"
    );
    ensure!(
        fresh.get_items(None).await?.is_empty(),
        "nothing of an abandoned new session is visible"
    );
    s.add_items(numbered(3..5)).await?;
    ensure_eq!(
        s.get_items(None).await?,
        numbered(0..5),
        "writes after an abandoned stage"
    );
    ensure_eq!(
        s.pop_item().await?,
        Some(item(json!({ "n": 4 }))),
        "pop after an abandoned stage"
    );
    Ok(())
}

async fn staged_write_checks_item_sizes(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx
        .store_with(FactoryOptions {
            max_item_bytes: Some(1000),
            ..FactoryOptions::default()
        })
        .await?;
    let s = seeded(ctx, &store, "s", 2).await?;
    let mut staged = store.stage(s.session_id(), StageMode::Append, None).await?;
    staged.append(numbered(10..12)).await?;
    let big = item(json!({ "blob": "x".repeat(2000) }));
    let err = staged.append(vec![item(json!({ "n": 12 })), big]).await;
    ensure!(
        err.as_ref().is_err_and(|e| e.kind() == ErrorKind::TooLarge),
        "an oversized item is TooLarge, got {err:?}"
    );
    ensure_eq!(staged.staged(), 2, "nothing of the refused part was staged");
    staged.commit().await?;
    let want: Vec<Item> = numbered(0..2).into_iter().chain(numbered(10..12)).collect();
    ensure_eq!(s.get_items(None).await?, want, "the accepted parts land");
    Ok(())
}

async fn read_pages_walk_the_history_in_order(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = seeded(ctx, &store, "s", 300).await?;
    s.pop_item().await?; // a gap at the top
    let one = item(json!({ "n": 0 })).len_bytes();
    for max_bytes in [1, one * 7, 1 << 20] {
        let (mut all, mut after, mut pages) = (Vec::new(), None, 0);
        loop {
            let page = store.read_page(s.session_id(), after, max_bytes).await?;
            pages += 1;
            ensure!(
                !page.items.is_empty() || page.next.is_none(),
                "a page with a next has items"
            );
            all.extend(page.items);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
            ensure!(pages <= 400, "paging ends");
        }
        ensure_eq!(all, numbered(0..299), "pages of at most {max_bytes} bytes");
        if max_bytes == 1 {
            ensure!(
                pages >= 299 / 2,
                "small pages split the history ({pages} pages)"
            );
        }
    }
    let missing = store.read_page(&ctx.id("missing"), None, 1000).await?;
    ensure!(
        missing.items.is_empty() && missing.next.is_none(),
        "a missing session reads empty"
    );
    Ok(())
}

async fn read_pages_skip_corrupt_records(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = ctx.session(&store, "corrupt-pages")?;
    let id = s.session_id().to_owned();
    s.add_items(numbered(0..2)).await?;
    for record in corrupt_records() {
        raw(&store, &id, record).await?;
    }
    s.add_items(numbered(2..4)).await?;
    let (mut all, mut after) = (Vec::new(), None);
    loop {
        let page = store.read_page(&id, after, 1).await?;
        all.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    ensure_eq!(all, numbered(0..4), "pages skip corrupt records");
    Ok(())
}
