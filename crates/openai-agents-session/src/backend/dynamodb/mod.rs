//! The DynamoDB backend (feature `dynamodb`): `dynamodb://TABLE?region=...&endpoint=...`.
//!
//! One DynamoDB item per conversation item, keyed by session and sequence, plus one metadata
//! item per session; batches are atomic (one TransactWriteItems, or a commit protocol for
//! larger ones); items larger than DynamoDB's 400 KB limit are compressed and split; expired
//! sessions are invisible at once. The layout is in `docs/storage/dynamodb.md`.

mod legacy;

/// The AWS SDK crate this backend is built on, for building a client of your own with the
/// matching version (see [`DynamoDbBackend::store_from_client`]).
pub use ::aws_sdk_dynamodb;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, DeleteRequest, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, Projection, ProjectionType, Put, PutRequest, ReturnValue,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification, TransactWriteItem, Update,
    WriteRequest,
};
use aws_sdk_dynamodb::Client;

use crate::codec::{Decoded, RecordCodec, TailCollector};
use crate::error::{Error, ErrorKind, FailureCause, Operation, Result};
use crate::item::Item;
use crate::staged::{ItemPage, StageMode, StagedWrite};
use crate::stats::RequestStats;
use crate::store::{
    Backend, BoxFuture, ListOptions, PruneReport, RawRecords, SessionInfo, SessionPage, Store,
    StoreOptions,
};
use crate::time::{advance_updated, Timestamp};
use crate::url::{parse_bool, parse_positive, parse_seconds, StoreUrl};

/// The layout version written into every session's metadata item (`v`).
pub const LAYOUT_VERSION: i64 = 1;
/// The name of the sparse global secondary index over metadata items (for listing).
pub const SESSIONS_INDEX: &str = "sessions";
/// The largest record stored in one DynamoDB item; larger ones are compressed, then split.
pub const PART_BYTES: usize = 350_000;
/// Metadata attributes naming uncommitted batches start with this.
const PENDING_PREFIX: &str = "p_";
/// Metadata attributes naming the generation a pending replace writes start with this.
const REPLACING_PREFIX: &str = "q_";
/// The sort key of a session's metadata item.
const META_SK: &str = "m";
/// A transaction carries at most 100 actions and 4 MB.
const MAX_TX_ACTIONS: usize = 100;
const MAX_TX_BYTES: usize = 3_500_000;
/// Uncommitted batches older than this are reclaimed by `prune` (URL option `stale_batch_secs`).
const DEFAULT_STALE_BATCH_SECS: u64 = 3600;
const WRITE_ATTEMPTS: usize = 200;
/// How long a replaced generation stays readable for readers that saw the metadata before the
/// replace committed.
const REPLACED_GENERATION_GRACE: Duration = Duration::from_secs(10);

/// What the metadata item says, as far as a writer needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetaState {
    Missing,
    /// `stamp`: the oldest `ttl` stamp on the session's records (0: none).
    Live {
        gen: i64,
        next: i64,
        updated: i64,
        stamp: i64,
    },
    Expired {
        gen: i64,
    },
}

#[derive(Debug, Clone, Default)]
struct Meta {
    gen: i64,
    next: i64,
    count: i64,
    created_at: i64,
    updated_at: i64,
    expires_at: Option<i64>,
    stamp: Option<i64>,
    pending: HashSet<String>,
    /// Pending replaces: batch id -> the generation they write (`q_<batch>`).
    replacing: HashMap<String, i64>,
    /// Pending batches older than the stale threshold (filled in by `prune`).
    abandoned: HashSet<String>,
}

impl Meta {
    fn parse(item: &HashMap<String, AttributeValue>) -> Result<Meta> {
        let num = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<i64>().ok())
        };
        if let Some(v) = num("v") {
            if v > LAYOUT_VERSION {
                return Err(Error::new(
                    ErrorKind::UnsupportedFormat,
                    Operation::Open,
                    format!("the session's metadata has layout version {v}; this build reads up to {LAYOUT_VERSION}"),
                ));
            }
        }
        Ok(Meta {
            gen: num("gen").unwrap_or(0),
            next: num("next").unwrap_or(0),
            count: num("count").unwrap_or(0),
            created_at: num("created_at").unwrap_or(0),
            updated_at: num("updated_at").unwrap_or(0),
            expires_at: num("expires_at"),
            stamp: num("stamp"),
            // Pending (uncommitted) batches are top-level attributes `p_<batch id>`.
            pending: item
                .keys()
                .filter_map(|k| k.strip_prefix(PENDING_PREFIX))
                .map(str::to_owned)
                .collect(),
            replacing: item
                .iter()
                .filter_map(|(k, v)| {
                    let batch = k.strip_prefix(REPLACING_PREFIX)?;
                    Some((batch.to_owned(), v.as_n().ok()?.parse::<i64>().ok()?))
                })
                .collect(),
            abandoned: HashSet::new(),
        })
    }

    fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    fn state(&self, now: i64) -> MetaState {
        if self.expired(now) {
            MetaState::Expired { gen: self.gen }
        } else {
            MetaState::Live {
                gen: self.gen,
                next: self.next,
                updated: self.updated_at,
                stamp: self.stamp.unwrap_or(0),
            }
        }
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn item_sk(gen: i64, seq: i64) -> String {
    format!("i#{gen:020}#{seq:020}")
}

fn item_prefix(gen: i64) -> String {
    format!("i#{gen:020}#")
}

fn part_prefix(gen: i64, seq: i64) -> String {
    format!("c#{gen:020}#{seq:020}#")
}

fn part_sk(gen: i64, seq: i64, k: usize) -> String {
    format!("c#{gen:020}#{seq:020}#{k:05}")
}

fn seq_of(sk: &str) -> Option<i64> {
    sk.rsplit('#').next()?.parse().ok()
}

fn build_error(op: Operation, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Backend, op, "cannot build a DynamoDB request").with_source(e)
}

/// Maps an SDK error. A write whose answer was lost may have been applied: `OutcomeUnknown`.
fn map_sdk<E, R>(op: Operation, table: &str, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let (kind, message) = match &err {
        SdkError::ConstructionFailure(_) => (ErrorKind::Config, "cannot build the DynamoDB request".to_owned()),
        SdkError::TimeoutError(_) if op.is_write() => (ErrorKind::OutcomeUnknown, "DynamoDB did not answer in time; the write may or may not have been applied".to_owned()),
        SdkError::TimeoutError(_) => (ErrorKind::Timeout, "DynamoDB did not answer in time".to_owned()),
        SdkError::DispatchFailure(d) if d.is_timeout() && op.is_write() => (ErrorKind::OutcomeUnknown, "the request to DynamoDB timed out; the write may or may not have been applied".to_owned()),
        SdkError::DispatchFailure(d) if d.is_timeout() => (ErrorKind::Timeout, "the request to DynamoDB timed out".to_owned()),
        SdkError::DispatchFailure(_) => (ErrorKind::Connection, "cannot reach DynamoDB (check the endpoint and region)".to_owned()),
        SdkError::ResponseError(_) if op.is_write() => (ErrorKind::OutcomeUnknown, "the answer from DynamoDB was lost; the write may or may not have been applied".to_owned()),
        SdkError::ResponseError(_) => (ErrorKind::Connection, "the answer from DynamoDB was lost".to_owned()),
        SdkError::ServiceError(se) => match se.err().code() {
            Some("ResourceNotFoundException") => (
                ErrorKind::Config,
                format!("DynamoDB table {table:?} does not exist; create it with: agent-session init --url 'dynamodb://{table}?...'"),
            ),
            Some("ThrottlingException" | "ProvisionedThroughputExceededException" | "RequestLimitExceeded") => {
                (ErrorKind::Timeout, "DynamoDB kept throttling the request after retries".to_owned())
            }
            Some("UnrecognizedClientException" | "InvalidSignatureException" | "AccessDeniedException" | "MissingAuthenticationTokenException") => {
                (ErrorKind::Config, "DynamoDB refused the credentials".to_owned())
            }
            Some(code) => (ErrorKind::Backend, format!("DynamoDB answered {code}: {}", se.err().message().unwrap_or(""))),
            None => (ErrorKind::Backend, "DynamoDB failed".to_owned()),
        },
        _ => (ErrorKind::Backend, "DynamoDB failed".to_owned()),
    };
    let cause = match &err {
        SdkError::TimeoutError(_) => Some(FailureCause::Timeout),
        SdkError::DispatchFailure(d) if d.is_timeout() => Some(FailureCause::Timeout),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => Some(FailureCause::Connection),
        _ => None,
    };
    let error = Error::new(kind, op, message).with_source(err);
    match cause {
        Some(cause) if kind == ErrorKind::OutcomeUnknown => error.with_cause(cause),
        _ => error,
    }
}

/// Whether a transaction failed on a condition (someone else wrote first) or a conflict.
fn cancellation<R>(
    err: &SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError, R>,
) -> Option<Vec<String>> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
    match err {
        SdkError::ServiceError(se) => match se.err() {
            E::TransactionCanceledException(c) => Some(
                c.cancellation_reasons()
                    .iter()
                    .map(|r| r.code().unwrap_or("None").to_owned())
                    .collect(),
            ),
            _ => None,
        },
        _ => None,
    }
}

/// Options of a DynamoDB store beyond the shared ones.
#[derive(Debug, Clone)]
struct DynamoOptions {
    table: String,
    /// Seconds items outlive their session's expiry (default: the TTL).
    grace_secs: Option<u64>,
    /// Seconds after which `prune` treats an uncommitted batch as abandoned.
    stale_batch_secs: u64,
}

/// The DynamoDB backend. Open it with [`Store::open`]`("dynamodb://TABLE?region=...")`, or
/// from a client you own with [`DynamoDbBackend::store_from_client`].
#[derive(Debug)]
pub struct DynamoDbBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Client,
    table: String,
    options: StoreOptions,
    grace_secs: u64,
    stale_batch_ms: i64,
    codec: RecordCodec,
    stats: RequestStats,
    /// The last metadata state seen per session: lets a write guess its sequence numbers and
    /// be one request; a wrong guess fails its condition and is corrected.
    known: Mutex<HashMap<String, MetaState>>,
    /// Writers of one session in this process take turns (conditions still guard against
    /// other processes): contention on the metadata item costs retries, turns cost nothing.
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Sessions whose records are being re-stamped in the background.
    restamping: Mutex<HashSet<String>>,
}

fn now_ms() -> i64 {
    Timestamp::now().as_millis()
}

/// One writer's turn on a session; the entry is dropped when nobody else waits for it.
struct Turn<'a> {
    inner: &'a Inner,
    session_id: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut turns = self.inner.turns.lock().unwrap_or_else(|p| p.into_inner());
        // Ours, the map's and the guard's: nobody else holds or waits for it.
        if Arc::strong_count(&self.lock) <= 3 {
            turns.remove(&self.session_id);
        }
    }
}

/// A prepared record: inline, or split into parts.
struct Prepared {
    head: Option<Vec<u8>>,
    parts: Vec<Vec<u8>>,
}

impl Prepared {
    fn bytes(&self) -> usize {
        self.head.as_ref().map_or(0, Vec::len) + self.parts.iter().map(Vec::len).sum::<usize>()
    }
    fn actions(&self) -> usize {
        1 + self.parts.len()
    }
}

impl DynamoDbBackend {
    /// A store on a client the caller owns, for an existing table with this layout.
    pub fn store_from_client(
        client: Client,
        table: impl Into<String>,
        options: StoreOptions,
    ) -> Store {
        let backend = DynamoDbBackend::new(
            client,
            DynamoOptions {
                table: table.into(),
                grace_secs: None,
                stale_batch_secs: DEFAULT_STALE_BATCH_SECS,
            },
            options.clone(),
        );
        Store::from_backend(Arc::new(backend), options)
    }

    fn new(client: Client, opts: DynamoOptions, options: StoreOptions) -> Self {
        let grace_secs = opts.grace_secs.or(options.ttl).unwrap_or(0);
        DynamoDbBackend {
            inner: Arc::new(Inner {
                client,
                table: opts.table,
                options,
                grace_secs,
                stale_batch_ms: (opts.stale_batch_secs as i64).saturating_mul(1000),
                codec: RecordCodec::default(),
                stats: RequestStats::default(),
                known: Mutex::new(HashMap::new()),
                turns: Mutex::new(HashMap::new()),
                restamping: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// Creates the table (on-demand billing, the key schema, the sessions index, TTL on `ttl`)
    /// when it does not exist, enables TTL when it does, and waits until it is active. A table
    /// with another schema (the seed's included) is an error naming the migration.
    pub async fn create_table_if_not_exists(&self) -> Result<()> {
        self.inner.create_table_if_not_exists().await
    }
}

impl Inner {
    fn remember(&self, session_id: &str, state: MetaState) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() > 100_000 {
            known.clear();
        }
        known.insert(session_id.to_owned(), state);
    }

    /// Waits for this process's turn to write `session_id`.
    async fn turn(&self, session_id: &str) -> Turn<'_> {
        let lock = {
            let mut turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(turns.entry(session_id.to_owned()).or_default())
        };
        let guard = Arc::clone(&lock).lock_owned().await;
        Turn {
            inner: self,
            session_id: session_id.to_owned(),
            lock,
            _guard: guard,
        }
    }

    fn forget(&self, session_id: &str) {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(session_id);
    }

    fn guess(&self, session_id: &str) -> MetaState {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(session_id)
            .copied()
            .unwrap_or(MetaState::Missing)
    }

    fn ttl_ms(&self) -> Option<i64> {
        self.options.ttl.map(|t| (t as i64).saturating_mul(1000))
    }

    /// The `ttl` attribute (epoch seconds) for records of a session expiring at `expires_at`.
    fn item_ttl(&self, expires_at: Option<i64>) -> Option<i64> {
        expires_at.map(|at| at / 1000 + self.grace_secs as i64)
    }

    fn prepare(&self, record: Vec<u8>) -> Prepared {
        if record.len() <= PART_BYTES {
            return Prepared {
                head: Some(record),
                parts: Vec::new(),
            };
        }
        // Compress large plain records (the codec keeps the smaller form), then split.
        let record = match Item::from_json_slice(&record) {
            Ok(item) => self.codec.encode_compressed(&item),
            Err(_) => record,
        };
        if record.len() <= PART_BYTES {
            return Prepared {
                head: Some(record),
                parts: Vec::new(),
            };
        }
        Prepared {
            head: None,
            parts: record.chunks(PART_BYTES).map(<[u8]>::to_vec).collect(),
        }
    }

    async fn get_meta(&self, op: Operation, session_id: &str) -> Result<Option<Meta>> {
        self.stats.record_requests(op, 1);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(session_id))
            .key("sk", s(META_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| map_sdk(op, &self.table, e))?;
        match out.item() {
            Some(item) => Ok(Some(Meta::parse(item).map_err(|e| e.with_operation(op))?)),
            None => Ok(None),
        }
    }

    async fn read_state(&self, op: Operation, session_id: &str) -> Result<MetaState> {
        let now = now_ms();
        let state = match self.get_meta(op, session_id).await? {
            None => MetaState::Missing,
            Some(meta) => meta.state(now),
        };
        self.remember(session_id, state);
        Ok(state)
    }

    fn record_puts(
        &self,
        session_id: &str,
        gen: i64,
        start: i64,
        prepared: &[Prepared],
        ttl: Option<i64>,
        batch: Option<&str>,
    ) -> Vec<HashMap<String, AttributeValue>> {
        let mut out = Vec::new();
        for (i, p) in prepared.iter().enumerate() {
            let seq = start + i as i64;
            let mut head = HashMap::from([
                ("pk".to_owned(), s(session_id)),
                ("sk".to_owned(), s(item_sk(gen, seq))),
            ]);
            match &p.head {
                Some(bytes) => {
                    head.insert("r".to_owned(), AttributeValue::B(bytes.clone().into()));
                }
                None => {
                    head.insert("parts".to_owned(), n(p.parts.len() as i64));
                }
            }
            if let Some(t) = ttl {
                head.insert("ttl".to_owned(), n(t));
            }
            if let Some(b) = batch {
                head.insert("b".to_owned(), s(b));
            }
            out.push(head);
            for (k, part) in p.parts.iter().enumerate() {
                let mut item = HashMap::from([
                    ("pk".to_owned(), s(session_id)),
                    ("sk".to_owned(), s(part_sk(gen, seq, k))),
                    ("r".to_owned(), AttributeValue::B(part.clone().into())),
                ]);
                if let Some(t) = ttl {
                    item.insert("ttl".to_owned(), n(t));
                }
                out.push(item);
            }
        }
        out
    }

    /// Appends records as one atomic batch.
    async fn append(&self, op: Operation, session_id: &str, records: Vec<Vec<u8>>) -> Result<()> {
        let _turn = self.turn(session_id).await;
        let prepared: Vec<Prepared> = records.into_iter().map(|r| self.prepare(r)).collect();
        let actions: usize = prepared.iter().map(Prepared::actions).sum::<usize>() + 1;
        let bytes: usize = prepared.iter().map(Prepared::bytes).sum();
        if actions <= MAX_TX_ACTIONS && bytes <= MAX_TX_BYTES {
            self.append_transaction(op, session_id, &prepared).await
        } else {
            self.append_committed(op, session_id, &prepared).await
        }
    }
}

/// Expression attribute names and values, as the SDK's setters take them.
type ExprMaps = (
    Option<HashMap<String, String>>,
    Option<HashMap<String, AttributeValue>>,
);

/// Expression attribute names and values for a set of expressions: only the `#name`s and
/// `:value`s that appear (DynamoDB rejects unused ones).
fn expr_maps(
    texts: &[&str],
    values: Vec<(&str, AttributeValue)>,
    extra_names: &[(&str, &str)],
) -> ExprMaps {
    const NAMES: &[(&str, &str)] = &[
        ("#pk", "pk"),
        ("#gen", "gen"),
        ("#next", "next"),
        ("#count", "count"),
        ("#ttl", "ttl"),
        ("#exp", "expires_at"),
        ("#upd", "updated_at"),
        ("#cre", "created_at"),
        ("#stamp", "stamp"),
        ("#v", "v"),
        ("#lk", "lk"),
        ("#sid", "sid"),
    ];
    let joined = texts.join(" ");
    let tokens: HashSet<&str> = joined
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '#' || c == ':' || c == '_'))
        .filter(|t| t.starts_with('#') || t.starts_with(':'))
        .collect();
    let names: HashMap<String, String> = NAMES
        .iter()
        .chain(extra_names.iter())
        .filter(|(k, _)| tokens.contains(k))
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let values: HashMap<String, AttributeValue> = values
        .into_iter()
        .filter(|(k, _)| tokens.contains(k))
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    (
        (!names.is_empty()).then_some(names),
        (!values.is_empty()).then_some(values),
    )
}

fn backoff(attempt: usize) -> Duration {
    let base = 5u64 << attempt.min(6);
    let jitter = (now_ms() as u64 ^ (attempt as u64).wrapping_mul(0x9E37_79B9)) % base.max(1);
    Duration::from_millis(base + jitter)
}

fn is_throttling<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    matches!(
        e.as_service_error().and_then(|se| se.code()),
        Some(
            "ThrottlingException"
                | "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
        )
    )
}

fn is_condition_failure<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error().and_then(|se| se.code()) == Some("ConditionalCheckFailedException")
}

/// A new session, or a new life after expiry: its generation (newer than any earlier one, so
/// records of an earlier life never reappear) and the condition that the metadata is still
/// missing, or still the expired life we saw, with the condition's names and values.
fn new_life(state: MetaState, now: i64) -> (i64, &'static str, ExprMaps) {
    let (gen, cond, old) = match state {
        MetaState::Expired { gen } => (gen.max(now) + 1, "#gen = :old AND #exp <= :now", gen),
        _ => (now, "attribute_not_exists(#pk)", 0),
    };
    (
        gen,
        cond,
        expr_maps(&[cond], vec![(":old", n(old)), (":now", n(now))], &[]),
    )
}

fn meta_key(session_id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), s(session_id)),
        ("sk".to_owned(), s(META_SK)),
    ])
}

impl Inner {
    /// The metadata item of a new session (or of a new life after expiry).
    fn new_meta(
        &self,
        session_id: &str,
        gen: i64,
        next: i64,
        count: i64,
        now: i64,
        pending: Option<&str>,
    ) -> HashMap<String, AttributeValue> {
        let mut item = meta_key(session_id);
        for (k, v) in [
            ("v", n(LAYOUT_VERSION)),
            ("gen", n(gen)),
            ("next", n(next)),
            ("count", n(count)),
            ("created_at", n(now)),
            ("updated_at", n(now)),
            ("lk", s("s")),
            ("sid", s(session_id)),
        ] {
            item.insert(k.to_owned(), v);
        }
        if let Some(at) = self.ttl_ms().map(|t| now + t) {
            item.insert("expires_at".to_owned(), n(at));
            if let Some(t) = self.item_ttl(Some(at)) {
                item.insert("ttl".to_owned(), n(t));
                item.insert("stamp".to_owned(), n(t));
            }
        }
        if let Some(batch) = pending {
            item.insert(format!("{PENDING_PREFIX}{batch}"), n(now));
        }
        item
    }

    /// Up to one transaction's worth: one TransactWriteItems (the metadata write and every
    /// record), idempotent through its ClientRequestToken. The sequence numbers are guessed from
    /// the last metadata seen, and the guess is the transaction's condition: a stale guess fails,
    /// is corrected with one GetItem, and the transaction is retried.
    async fn append_transaction(
        &self,
        op: Operation,
        session_id: &str,
        prepared: &[Prepared],
    ) -> Result<()> {
        let k = prepared.len() as i64;
        let mut state = self.guess(session_id);
        for attempt in 0..WRITE_ATTEMPTS {
            let now = now_ms();
            let expires_at = self.ttl_ms().map(|t| now + t);
            let ttl_attr = self.item_ttl(expires_at);
            let (gen, start, meta_write, new_state) = match state {
                MetaState::Live {
                    gen,
                    next,
                    updated,
                    stamp,
                } => {
                    let upd = advance_updated(
                        Some(Timestamp::from_millis(updated)),
                        Timestamp::from_millis(now),
                    )
                    .as_millis();
                    let cond = "#gen = :gen AND #next = :next AND (attribute_not_exists(#exp) OR #exp > :now)";
                    let update = match expires_at {
                        Some(_) => "SET #next = :n2, #count = #count + :k, #upd = :upd, #exp = :exp, #ttl = :ttl, #stamp = if_not_exists(#stamp, :ttl)",
                        None => "SET #next = :n2, #count = #count + :k, #upd = :upd REMOVE #exp, #ttl, #stamp",
                    };
                    let (names, values) = expr_maps(
                        &[cond, update],
                        vec![
                            (":gen", n(gen)),
                            (":next", n(next)),
                            (":now", n(now)),
                            (":n2", n(next + k)),
                            (":k", n(k)),
                            (":upd", n(upd)),
                            (":exp", n(expires_at.unwrap_or(0))),
                            (":ttl", n(ttl_attr.unwrap_or(0))),
                        ],
                        &[],
                    );
                    let u = Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(meta_key(session_id)))
                        .condition_expression(cond)
                        .update_expression(update)
                        .set_expression_attribute_names(names)
                        .set_expression_attribute_values(values)
                        .build()
                        .map_err(|e| build_error(op, e))?;
                    (
                        gen,
                        next,
                        TransactWriteItem::builder().update(u).build(),
                        MetaState::Live {
                            gen,
                            next: next + k,
                            updated: upd,
                            stamp: if stamp == 0 {
                                ttl_attr.unwrap_or(0)
                            } else {
                                stamp
                            },
                        },
                    )
                }
                MetaState::Missing | MetaState::Expired { .. } => {
                    let (gen, cond, (names, values)) = new_life(state, now);
                    let p = Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(self.new_meta(session_id, gen, k, k, now, None)))
                        .condition_expression(cond)
                        .set_expression_attribute_names(names)
                        .set_expression_attribute_values(values)
                        .build()
                        .map_err(|e| build_error(op, e))?;
                    (
                        gen,
                        0,
                        TransactWriteItem::builder().put(p).build(),
                        MetaState::Live {
                            gen,
                            next: k,
                            updated: now,
                            stamp: ttl_attr.unwrap_or(0),
                        },
                    )
                }
            };
            let mut items = vec![meta_write];
            for record in self.record_puts(session_id, gen, start, prepared, ttl_attr, None) {
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(record))
                    .build()
                    .map_err(|e| build_error(op, e))?;
                items.push(TransactWriteItem::builder().put(put).build());
            }
            // A conflict with a concurrent transaction (or throttling the SDK gave up on)
            // resends the very same request with the same ClientRequestToken: if an earlier
            // attempt was applied after all, DynamoDB answers it without applying it twice.
            let token = self.token();
            let mut conflicts = 0;
            let outcome = loop {
                self.stats.record_requests(op, 1);
                let result = self
                    .client
                    .transact_write_items()
                    .set_transact_items(Some(items.clone()))
                    .client_request_token(&token)
                    .send()
                    .await;
                match result {
                    Ok(_) => break Ok(()),
                    Err(e) => match cancellation(&e) {
                        Some(reasons) if reasons.iter().any(|r| r == "ConditionalCheckFailed") => {
                            break Err(None)
                        }
                        Some(_) if conflicts < 30 => {
                            conflicts += 1;
                            tokio::time::sleep(backoff(conflicts)).await;
                        }
                        _ if is_throttling(&e) && conflicts < 30 => {
                            conflicts += 1;
                            tokio::time::sleep(backoff(conflicts)).await;
                        }
                        _ => break Err(Some(map_sdk(op, &self.table, e))),
                    },
                }
            };
            match outcome {
                Ok(()) => {
                    self.remember(session_id, new_state);
                    return Ok(());
                }
                // Our picture of the metadata was stale: read it, rebuild, new token.
                Err(None) => {
                    if attempt > 0 {
                        tokio::time::sleep(backoff(attempt.min(3))).await;
                    }
                    state = self.read_state(op, session_id).await?;
                }
                Err(Some(e)) => {
                    self.forget(session_id);
                    return Err(e);
                }
            }
        }
        Err(Error::new(
            ErrorKind::Timeout,
            op,
            format!("gave up after {WRITE_ATTEMPTS} conflicting attempts; nothing was written"),
        ))
    }

    /// A ClientRequestToken (and batch id) unique across stores, processes and hosts.
    fn token(&self) -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let seed = SEED.get_or_init(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            nanos ^ (u64::from(std::process::id()) << 32)
        });
        format!("oas{seed:x}{:x}", COUNTER.fetch_add(1, Ordering::Relaxed))
    }

    /// The commit protocol's first step: reserves `k` sequence numbers after the session's
    /// newest and marks `batch` pending in the metadata (creating it for a new session, or a
    /// new life after expiry) with one conditional write. Returns (generation, first sequence).
    async fn reserve(
        &self,
        op: Operation,
        session_id: &str,
        batch: &str,
        k: i64,
    ) -> Result<(i64, i64)> {
        let pending_attr = format!("{PENDING_PREFIX}{batch}");
        let extra = [("#b", pending_attr.as_str())];
        let mut attempt = 0;
        let (gen, start) = loop {
            attempt += 1;
            let now = now_ms();
            let state = self.read_state(op, session_id).await?;
            let result = match state {
                MetaState::Live { gen, next, .. } => {
                    let cond = "#gen = :gen AND #next = :next AND (attribute_not_exists(#exp) OR #exp > :now)";
                    let update = "SET #next = :n2, #b = :now";
                    self.update_meta(
                        op,
                        session_id,
                        cond,
                        update,
                        vec![
                            (":gen", n(gen)),
                            (":next", n(next)),
                            (":now", n(now)),
                            (":n2", n(next + k)),
                        ],
                        &extra,
                    )
                    .send()
                    .await
                    .map(|_| (gen, next))
                    .map_err(|e| (is_condition_failure(&e), map_sdk(op, &self.table, e)))
                }
                MetaState::Missing | MetaState::Expired { .. } => {
                    let (gen, cond, (names, values)) = new_life(state, now);
                    let mut item = self.new_meta(session_id, gen, k, 0, now, Some(batch));
                    // Not visible until committed: no expiry yet, so the reservation itself
                    // never expires the session early.
                    item.remove("expires_at");
                    self.stats.record_requests(op, 1);
                    self.client
                        .put_item()
                        .table_name(&self.table)
                        .set_item(Some(item))
                        .condition_expression(cond)
                        .set_expression_attribute_names(names)
                        .set_expression_attribute_values(values)
                        .send()
                        .await
                        .map(|_| (gen, 0))
                        .map_err(|e| (is_condition_failure(&e), map_sdk(op, &self.table, e)))
                }
            };
            match result {
                Ok(reserved) => break reserved,
                Err((true, _)) if attempt < WRITE_ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt)).await
                }
                Err((_, e)) => return Err(e),
            }
        };
        Ok((gen, start))
    }

    /// Batches too large for one transaction (imports, 10,000 items, huge items): reserve the
    /// sequence range and mark the batch pending in the metadata (one write), write the records
    /// tagged with the batch id (BatchWriteItem, 25 at a time), then commit by removing the
    /// pending mark (one write). Readers skip records of pending batches, so nobody sees part of
    /// a batch; a crash leaves only invisible records, which `prune` reclaims.
    async fn append_committed(
        &self,
        op: Operation,
        session_id: &str,
        prepared: &[Prepared],
    ) -> Result<()> {
        let k = prepared.len() as i64;
        let batch = self.token();
        // 1. Reserve.
        let (gen, start) = self.reserve(op, session_id, &batch, k).await?;
        self.forget(session_id);
        // 2. Write the records, invisible while the batch is pending.
        let ttl_attr = self.item_ttl(self.ttl_ms().map(|t| now_ms() + t));
        let mut requests = Vec::new();
        for item in self.record_puts(session_id, gen, start, prepared, ttl_attr, Some(&batch)) {
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(|e| build_error(op, e))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        self.batch_write(op, requests).await?;
        // 3. Commit.
        self.commit_batch(op, session_id, &batch, gen, k).await
    }

    /// BatchWriteItem in groups of 25, retrying unprocessed items with backoff.
    async fn batch_write(&self, op: Operation, requests: Vec<WriteRequest>) -> Result<()> {
        for chunk in requests.chunks(25) {
            let mut pending = chunk.to_vec();
            let mut attempt = 0;
            while !pending.is_empty() {
                self.stats.record_requests(op, 1);
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending.clone())
                    .send()
                    .await
                    .map_err(|e| map_sdk(op, &self.table, e))?;
                pending = out
                    .unprocessed_items()
                    .and_then(|m| m.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                if !pending.is_empty() {
                    attempt += 1;
                    if attempt > 20 {
                        return Err(Error::new(
                            ErrorKind::Timeout,
                            op,
                            "DynamoDB kept leaving items unprocessed",
                        ));
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
        Ok(())
    }

    /// One strongly consistent Query from the top of the session's key range: the metadata
    /// item first (its sort key `m` sorts above every record), then the newest records.
    async fn query_page(
        &self,
        op: Operation,
        session_id: &str,
        start: Option<HashMap<String, AttributeValue>>,
        limit: Option<i32>,
        below: Option<&str>,
    ) -> Result<(
        Vec<HashMap<String, AttributeValue>>,
        Option<HashMap<String, AttributeValue>>,
    )> {
        self.stats.record_requests(op, 1);
        // From the metadata down, or (during a staged replace, whose newer generation sorts
        // above the current one) from just below a sort key.
        let (condition, bound) = match below {
            Some(b) => ("pk = :pk AND sk < :m", b),
            None => ("pk = :pk AND sk <= :m", META_SK),
        };
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression(condition)
            .expression_attribute_values(":pk", s(session_id))
            .expression_attribute_values(":m", s(bound))
            .scan_index_forward(false)
            .consistent_read(true)
            .set_limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| map_sdk(op, &self.table, e))?;
        Ok((out.items().to_vec(), out.last_evaluated_key().cloned()))
    }

    /// Every key under a prefix of the session's range (for parts, clear and prune).
    async fn keys_with_prefix(
        &self,
        op: Operation,
        session_id: &str,
        prefix: &str,
        with_values: bool,
    ) -> Result<Vec<HashMap<String, AttributeValue>>> {
        let mut out_items = Vec::new();
        let mut start = None;
        loop {
            self.stats.record_requests(op, 1);
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                .expression_attribute_values(":pk", s(session_id))
                .expression_attribute_values(":p", s(prefix))
                .consistent_read(true)
                .set_exclusive_start_key(start);
            if !with_values {
                q = q.projection_expression("pk, sk");
            }
            let out = q.send().await.map_err(|e| map_sdk(op, &self.table, e))?;
            out_items.extend(out.items().iter().cloned());
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(out_items);
            }
        }
    }

    /// The bytes of a record item: inline, or reassembled from its parts (one more Query).
    async fn record_bytes(
        &self,
        op: Operation,
        session_id: &str,
        gen: i64,
        item: &HashMap<String, AttributeValue>,
    ) -> Result<Vec<u8>> {
        if let Some(AttributeValue::B(b)) = item.get("r") {
            return Ok(b.as_ref().to_vec());
        }
        let parts = item
            .get("parts")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let Some(seq) = item
            .get("sk")
            .and_then(|v| v.as_s().ok())
            .and_then(|sk| seq_of(sk))
        else {
            return Ok(Vec::new());
        };
        let found = self
            .keys_with_prefix(op, session_id, &part_prefix(gen, seq), true)
            .await?;
        if found.len() != parts || parts == 0 {
            return Ok(Vec::new()); // a missing part makes the record corrupt, not an error
        }
        let mut bytes = Vec::new();
        for part in &found {
            if let Some(AttributeValue::B(b)) = part.get("r") {
                bytes.extend_from_slice(b.as_ref());
            }
        }
        Ok(bytes)
    }

    /// Reads the metadata and walks the current generation's records newest first, calling
    /// `visit` with (sort key, record item, decoded) until it returns true.
    async fn walk<F>(
        &self,
        op: Operation,
        session_id: &str,
        page_hint: Option<usize>,
        mut visit: F,
    ) -> Result<Option<Meta>>
    where
        F: FnMut(&str, &HashMap<String, AttributeValue>, Decoded) -> bool,
    {
        let now = now_ms();
        let mut start = None;
        let mut meta: Option<Meta> = None;
        let mut below: Option<String> = None;
        loop {
            let limit = page_hint.map(|w| {
                w.saturating_add(1 + meta.as_ref().map_or(0, |m| m.pending.len()))
                    .min(1000) as i32
            });
            let (items, last) = self
                .query_page(op, session_id, start.take(), limit, below.as_deref())
                .await?;
            let mut rows = items.iter();
            if meta.is_none() {
                let Some(first) = rows.next() else {
                    return Ok(None);
                };
                if first
                    .get("sk")
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str)
                    != Some(META_SK)
                {
                    return Ok(None); // no metadata: the session does not exist
                }
                let m = Meta::parse(first).map_err(|e| e.with_operation(op))?;
                self.remember(session_id, m.state(now));
                if m.expired(now) {
                    return Ok(None);
                }
                if !m.replacing.is_empty() {
                    // A staged replace writes a newer generation, which sorts above this one:
                    // read again from just below it.
                    below = Some(item_prefix(m.gen + 1));
                    meta = Some(m);
                    continue;
                }
                meta = Some(m);
            }
            let Some(m) = meta.as_ref() else {
                return Ok(None);
            };
            let prefix = item_prefix(m.gen);
            for row in rows {
                let sk = row
                    .get("sk")
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                if !sk.starts_with(&prefix) {
                    return Ok(meta); // an earlier life's records, or parts: the history ends
                }
                if let Some(AttributeValue::S(b)) = row.get("b") {
                    if m.pending.contains(b) {
                        continue; // part of a batch not committed yet
                    }
                }
                let bytes = self.record_bytes(op, session_id, m.gen, row).await?;
                if visit(&sk, row, self.codec.decode(&bytes)) {
                    return Ok(meta);
                }
            }
            match last {
                Some(key) => start = Some(key),
                None => return Ok(meta),
            }
        }
    }
}

impl DynamoDbBackend {
    async fn get(&self, session_id: &str, limit: Option<usize>) -> Result<Vec<Item>> {
        let op = Operation::GetItems;
        let now = now_ms();
        let mut collector = TailCollector::new(limit);
        let meta = self
            .inner
            .walk(op, session_id, limit, |_, _, decoded| {
                collector.push(decoded)
            })
            .await?;
        if let Some(m) = &meta {
            self.maybe_refresh(op, session_id, m, now).await?;
        }
        Ok(collector.finish())
    }

    /// With `refresh_on_read`, pushes the expiry forward: at most one UpdateItem, skipped when
    /// it was extended less than max(1 s, 1% of the TTL) ago.
    async fn maybe_refresh(
        &self,
        op: Operation,
        session_id: &str,
        m: &Meta,
        now: i64,
    ) -> Result<()> {
        let inner = &self.inner;
        let (Some(ttl), Some(expires)) = (inner.ttl_ms(), m.expires_at) else {
            return Ok(());
        };
        if !inner.options.refresh_on_read || now - (expires - ttl) < (ttl / 100).max(1000) {
            return Ok(());
        }
        let at = now + ttl;
        let cond = "#gen = :gen AND #exp > :now";
        let update = "SET #exp = :exp, #ttl = :ttl";
        let result = inner
            .update_meta(
                op,
                session_id,
                cond,
                update,
                vec![
                    (":gen", n(m.gen)),
                    (":now", n(now)),
                    (":exp", n(at)),
                    (":ttl", n(inner.item_ttl(Some(at)).unwrap_or(0))),
                ],
                &[],
            )
            .send()
            .await;
        match result {
            Ok(_) => {
                self.maybe_restamp(session_id, m, at);
                Ok(())
            }
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(map_sdk(op, &inner.table, e)),
        }
    }

    /// Records carry the session's expiry plus a grace period in `ttl`, so that DynamoDB's TTL
    /// reclaims abandoned sessions but never a live one. When the session's expiry comes within
    /// half a grace period of the oldest stamp, every record is re-stamped in the background.
    fn maybe_restamp(&self, session_id: &str, m: &Meta, expires_at: i64) {
        if let Some(stamp) = m.stamp {
            self.restamp_if_due(session_id, m.gen, stamp, expires_at);
        }
    }

    /// Starts a background re-stamp when the session's expiry came within half a grace period
    /// of its records' oldest stamp (at most one at a time per session).
    fn restamp_if_due(&self, session_id: &str, gen: i64, stamp: i64, expires_at: i64) {
        let half_grace = (self.inner.grace_secs as i64) / 2;
        if stamp == 0 || expires_at / 1000 + half_grace < stamp {
            return;
        }
        {
            let mut busy = self
                .inner
                .restamping
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if !busy.insert(session_id.to_owned()) {
                return;
            }
        }
        let inner = Arc::clone(&self.inner);
        let id = session_id.to_owned();
        tokio::spawn(async move {
            match inner.restamp(&id, gen, expires_at).await {
                Ok(new_stamp) => {
                    let mut known = inner.known.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(MetaState::Live { gen: g, stamp, .. }) = known.get_mut(&id) {
                        if *g == gen {
                            *stamp = new_stamp;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "re-stamping record expiry failed; the next write or refresh retries")
                }
            }
            inner
                .restamping
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
    }

    async fn pop(&self, session_id: &str) -> Result<Option<Item>> {
        let op = Operation::PopItem;
        let inner = &self.inner;
        let _turn = inner.turn(session_id).await;
        for attempt in 0..WRITE_ATTEMPTS {
            let mut doomed: Vec<String> = Vec::new();
            let mut found: Option<(String, Item, usize)> = None;
            let mut unreadable: Option<String> = None;
            let meta = inner
                .walk(op, session_id, Some(1), |sk, row, decoded| {
                    let parts = row
                        .get("parts")
                        .and_then(|v| v.as_n().ok())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    match decoded {
                        Decoded::Valid(item) => {
                            found = Some((sk.to_owned(), item, parts));
                            true
                        }
                        Decoded::Corrupt(_) => {
                            doomed.push(sk.to_owned());
                            doomed.len() >= 50
                        }
                        Decoded::Unreadable(reason) => {
                            unreadable = Some(reason);
                            true
                        }
                    }
                })
                .await?;
            let Some(meta) = meta else { return Ok(None) };
            if let Some(reason) = unreadable {
                return Err(Error::new(
                    ErrorKind::Unreadable,
                    op,
                    format!("the newest record is unreadable: {reason}; nothing was removed"),
                ));
            }
            if found.is_none() && doomed.is_empty() {
                return Ok(None);
            }
            let now = now_ms();
            let mut deletes: Vec<String> = doomed.clone();
            let mut parts_of_found = 0;
            if let Some((sk, _, parts)) = &found {
                deletes.push(sk.clone());
                parts_of_found = *parts;
            }
            let removed = deletes.len() as i64;
            let expires_at = inner.ttl_ms().map(|t| now + t);
            let cond = "#gen = :gen";
            let update = match expires_at {
                Some(_) => "SET #count = #count - :k, #upd = :upd, #exp = :exp, #ttl = :ttl",
                None => "SET #count = #count - :k, #upd = :upd",
            };
            let upd = advance_updated(
                Some(Timestamp::from_millis(meta.updated_at)),
                Timestamp::from_millis(now),
            )
            .as_millis();
            let (names, values) = expr_maps(
                &[cond, update],
                vec![
                    (":gen", n(meta.gen)),
                    (":k", n(removed)),
                    (":upd", n(upd)),
                    (":exp", n(expires_at.unwrap_or(0))),
                    (":ttl", n(inner.item_ttl(expires_at).unwrap_or(0))),
                ],
                &[],
            );
            let mut actions = vec![TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(&inner.table)
                        .set_key(Some(meta_key(session_id)))
                        .condition_expression(cond)
                        .update_expression(update)
                        .set_expression_attribute_names(names)
                        .set_expression_attribute_values(values)
                        .build()
                        .map_err(|e| build_error(op, e))?,
                )
                .build()];
            for sk in &deletes {
                // The condition makes concurrent pops of the same record fail: each record is
                // returned at most once.
                let d = Delete::builder()
                    .table_name(&inner.table)
                    .key("pk", s(session_id))
                    .key("sk", s(sk.clone()))
                    .condition_expression("attribute_exists(pk)")
                    .build()
                    .map_err(|e| build_error(op, e))?;
                actions.push(TransactWriteItem::builder().delete(d).build());
            }
            inner.stats.record_requests(op, 1);
            let result = inner
                .client
                .transact_write_items()
                .set_transact_items(Some(actions))
                .client_request_token(inner.token())
                .send()
                .await;
            match result {
                Ok(_) => {
                    inner.forget(session_id);
                    if let Some((sk, item, _)) = found {
                        if parts_of_found > 0 {
                            if let Some(seq) = seq_of(&sk) {
                                inner
                                    .delete_prefix(op, session_id, &part_prefix(meta.gen, seq))
                                    .await?;
                            }
                        }
                        return Ok(Some(item));
                    }
                    // Only corrupt records were on top: they are gone; look again.
                }
                Err(e) => match cancellation(&e) {
                    Some(_) => tokio::time::sleep(backoff(attempt.min(4))).await,
                    None => return Err(map_sdk(op, &inner.table, e)),
                },
            }
        }
        Err(Error::new(
            ErrorKind::Timeout,
            op,
            format!("gave up after {WRITE_ATTEMPTS} conflicting attempts"),
        ))
    }

    async fn clear(&self, session_id: &str) -> Result<()> {
        let op = Operation::ClearSession;
        let inner = &self.inner;
        inner.stats.record_requests(op, 1);
        let out = inner
            .client
            .delete_item()
            .table_name(&inner.table)
            .set_key(Some(meta_key(session_id)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| map_sdk(op, &inner.table, e))?;
        inner.remember(session_id, MetaState::Missing);
        // The records of the cleared life are invisible from now on (no metadata names their
        // generation); delete them in the background, or leave them to prune and TTL.
        if let Some(old) = out.attributes().and_then(|a| Meta::parse(a).ok()) {
            inner.delete_generation_later(session_id, old.gen, Duration::ZERO);
        }
        Ok(())
    }

    async fn info(&self, session_id: &str) -> Result<Option<SessionInfo>> {
        let op = Operation::SessionInfo;
        let now = now_ms();
        Ok(self
            .inner
            .get_meta(op, session_id)
            .await?
            .filter(|m| !m.expired(now))
            .map(|m| {
                SessionInfo::new(
                    session_id,
                    m.count.max(0) as u64,
                    Timestamp::from_millis(m.created_at),
                    Timestamp::from_millis(m.updated_at),
                    m.expires_at.map(Timestamp::from_millis),
                )
            }))
    }

    async fn list(&self, options: &ListOptions) -> Result<SessionPage> {
        let op = Operation::ListSessions;
        let inner = &self.inner;
        let page_size = options.effective_page_size();
        let prefix = options.prefix.clone().unwrap_or_default();
        let now = now_ms();
        let mut ids = Vec::new();
        let mut start = options.cursor.as_ref().map(|c| {
            HashMap::from([
                ("lk".to_owned(), s("s")),
                ("sid".to_owned(), s(c.clone())),
                ("pk".to_owned(), s(c.clone())),
                ("sk".to_owned(), s(META_SK)),
            ])
        });
        loop {
            let mut q = inner
                .client
                .query()
                .table_name(&inner.table)
                .index_name(SESSIONS_INDEX)
                .expression_attribute_values(":lk", s("s"))
                .limit((page_size - ids.len()).clamp(1, 1000) as i32)
                .set_exclusive_start_key(start.take());
            q = if prefix.is_empty() {
                q.key_condition_expression("lk = :lk")
            } else {
                q.key_condition_expression("lk = :lk AND begins_with(sid, :p)")
                    .expression_attribute_values(":p", s(prefix.clone()))
            };
            inner.stats.record_requests(op, 1);
            let out = q.send().await.map_err(|e| map_sdk(op, &inner.table, e))?;
            for row in out.items() {
                let expired = row
                    .get("expires_at")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|at| at <= now);
                if let (false, Some(id)) = (expired, row.get("sid").and_then(|v| v.as_s().ok())) {
                    ids.push(id.clone());
                }
            }
            let last = out.last_evaluated_key().cloned();
            match last {
                Some(key) if ids.len() < page_size => start = Some(key),
                Some(key) => {
                    let cursor = key.get("sid").and_then(|v| v.as_s().ok()).cloned();
                    return Ok(SessionPage::new(ids, cursor));
                }
                None => return Ok(SessionPage::new(ids, None)),
            }
        }
    }
}

impl Inner {
    async fn delete_prefix(&self, op: Operation, session_id: &str, prefix: &str) -> Result<u64> {
        let keys = self.keys_with_prefix(op, session_id, prefix, false).await?;
        let n = keys.len() as u64;
        let mut requests = Vec::with_capacity(keys.len());
        for key in keys {
            let d = DeleteRequest::builder()
                .set_key(Some(key))
                .build()
                .map_err(|e| build_error(op, e))?;
            requests.push(WriteRequest::builder().delete_request(d).build());
        }
        self.batch_write(op, requests).await?;
        Ok(n)
    }

    async fn restamp(&self, session_id: &str, gen: i64, expires_at: i64) -> Result<i64> {
        let op = Operation::Prune;
        let stamp = self.item_ttl(Some(expires_at)).unwrap_or(0);
        let mut keys = self
            .keys_with_prefix(op, session_id, &item_prefix(gen), false)
            .await?;
        keys.extend(
            self.keys_with_prefix(op, session_id, &format!("c#{gen:020}#"), false)
                .await?,
        );
        for key in keys {
            self.stats.record_requests(op, 1);
            let _ = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key))
                .condition_expression("attribute_exists(pk)")
                .update_expression("SET #ttl = :ttl")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":ttl", n(stamp))
                .send()
                .await;
        }

        let _ = self
            .update_meta(
                op,
                session_id,
                "#gen = :gen",
                "SET #stamp = :ttl",
                vec![(":gen", n(gen)), (":ttl", n(stamp))],
                &[],
            )
            .send()
            .await;
        Ok(stamp)
    }

    /// Every item a strongly consistent Scan with this filter (on the sort key, `:m` = the
    /// metadata sort key) returns, following pages.
    async fn scan_all(
        &self,
        op: Operation,
        filter: &str,
        projection: Option<&str>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            self.stats.record_requests(op, 1);
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression(filter)
                .expression_attribute_values(":m", s(META_SK))
                .set_projection_expression(projection.map(str::to_owned))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| map_sdk(op, &self.table, e))?;
            items.extend(out.items().iter().cloned());
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    /// Scans the table: deletes expired sessions, records no live generation names (cleared
    /// or earlier lives) and records of batches left uncommitted for over an hour.
    async fn prune(&self) -> Result<PruneReport> {
        let op = Operation::Prune;
        let now = now_ms();
        // Pass 1: the metadata items.
        let mut metas: HashMap<String, Meta> = HashMap::new();
        let mut removed_sessions = 0u64;
        for item in &self.scan_all(op, "sk = :m", None).await? {
            let Some(pk) = item.get("pk").and_then(|v| v.as_s().ok()) else {
                continue;
            };
            let Ok(meta) = Meta::parse(item) else {
                continue;
            };
            if meta.expired(now) {
                self.stats.record_requests(op, 1);
                let cond = "#gen = :gen AND #exp <= :now";
                let (names, values) =
                    expr_maps(&[cond], vec![(":gen", n(meta.gen)), (":now", n(now))], &[]);
                let deleted = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(meta_key(pk)))
                    .condition_expression(cond)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .send()
                    .await;
                if deleted.is_ok() {
                    removed_sessions += 1;
                }
                continue;
            }
            // Uncommitted batches older than the threshold are abandoned.
            let mut meta = meta;
            for (attr, value) in item {
                if let Some(batch) = attr.strip_prefix(PENDING_PREFIX) {
                    let started = value
                        .as_n()
                        .ok()
                        .and_then(|v| v.parse::<i64>().ok())
                        .unwrap_or(now);
                    if now - started > self.stale_batch_ms {
                        meta.abandoned.insert(batch.to_owned());
                    }
                }
            }
            metas.insert(pk.clone(), meta);
        }
        // Pass 2: records no live metadata accounts for.
        let mut doomed = Vec::new();
        for item in &self.scan_all(op, "sk <> :m", Some("pk, sk, b")).await? {
            let (Some(pk), Some(sk)) = (
                item.get("pk").and_then(|v| v.as_s().ok()),
                item.get("sk").and_then(|v| v.as_s().ok()),
            ) else {
                continue;
            };
            let gen = sk.split('#').nth(1).and_then(|g| g.parse::<i64>().ok());
            let keep = match (metas.get(pk), gen) {
                (Some(meta), Some(gen)) if gen == meta.gen => !item
                    .get("b")
                    .and_then(|v| v.as_s().ok())
                    .is_some_and(|b| meta.abandoned.contains(b)),
                // The new generation of a replace still being staged.
                (Some(meta), Some(gen)) => meta
                    .replacing
                    .iter()
                    .any(|(b, g)| *g == gen && !meta.abandoned.contains(b)),
                _ => false,
            };
            if !keep {
                doomed.push(HashMap::from([
                    ("pk".to_owned(), s(pk.clone())),
                    ("sk".to_owned(), s(sk.clone())),
                ]));
            }
        }
        let leftovers = doomed.len() as u64;
        let mut requests = Vec::with_capacity(doomed.len());
        for key in doomed {
            let d = DeleteRequest::builder()
                .set_key(Some(key))
                .build()
                .map_err(|e| build_error(op, e))?;
            requests.push(WriteRequest::builder().delete_request(d).build());
        }
        self.batch_write(op, requests).await?;
        // Pass 3: only now drop the marks of abandoned batches (dropping them first would make
        // their records look committed).
        for (pk, meta) in &metas {
            for batch in &meta.abandoned {
                self.stats.record_requests(op, 1);
                let _ = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(meta_key(pk)))
                    .update_expression("REMOVE #b, #q")
                    .expression_attribute_names("#b", format!("{PENDING_PREFIX}{batch}"))
                    .expression_attribute_names("#q", format!("{REPLACING_PREFIX}{batch}"))
                    .send()
                    .await;
            }
        }
        Ok(PruneReport::new(removed_sessions, leftovers))
    }
}

impl Backend for DynamoDbBackend {
    fn name(&self) -> &'static str {
        "dynamodb"
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
            let records = items.iter().map(|i| self.inner.codec.encode(i)).collect();
            drop(items);
            self.inner
                .append(Operation::AddItems, session_id, records)
                .await?;
            // A write extends the session: re-stamp its records when their stamp is near.
            if let (Some(ttl), MetaState::Live { gen, stamp, .. }) =
                (self.inner.ttl_ms(), self.inner.guess(session_id))
            {
                self.restamp_if_due(session_id, gen, stamp, now_ms() + ttl);
            }
            Ok(())
        })
    }

    fn pop_item<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<Option<Item>>> {
        Box::pin(self.pop(session_id))
    }

    fn clear_session<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.clear(session_id))
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
        Box::pin(self.inner.prune())
    }

    fn stats(&self) -> &RequestStats {
        &self.inner.stats
    }

    fn raw_records(&self) -> Option<&dyn RawRecords> {
        Some(self)
    }

    fn init(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.inner.create_table_if_not_exists())
    }

    fn read_page<'a>(
        &'a self,
        session_id: &'a str,
        after: Option<u64>,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Option<ItemPage>>> {
        Box::pin(async move {
            self.inner
                .page(session_id, after, max_bytes)
                .await
                .map(Some)
        })
    }

    fn stage<'a>(
        &'a self,
        session_id: &str,
        mode: StageMode,
        expected_items: Option<u64>,
    ) -> BoxFuture<'a, Result<Option<Box<dyn StagedWrite + 'a>>>> {
        let staged: Box<dyn StagedWrite + 'a> = Box::new(DynamoStaged {
            inner: &self.inner,
            session_id: session_id.to_owned(),
            replace: mode == StageMode::Replace,
            expected: expected_items.unwrap_or(0).min(i64::MAX as u64) as i64,
            batch: self.inner.token(),
            target: None,
            count: 0,
            split: Vec::new(),
            used: 0,
            committed: false,
        });
        Box::pin(async move { Ok(Some(staged)) })
    }
}

/// Where a staged write's records go, once reserved.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// After the session's records: `capacity` sequences reserved from `start` in `gen`.
    Append { gen: i64, start: i64, capacity: i64 },
    /// A new generation, named by the pending replace; becomes the session's at the commit.
    Replace { gen: i64 },
}

/// A staged write of the DynamoDB backend: the commit protocol with the batch kept open.
/// Appends reserve the expected number of sequences up front (more later, still contiguous,
/// unless another writer got in between: then the write fails and nothing is visible);
/// replaces write a new generation that the commit makes current in one conditional update.
/// Readers skip pending batches' records and never read another generation, so nothing is
/// visible before the commit. Dropped without a commit, the records stay invisible and
/// `prune` reclaims them after `stale_batch_secs`.
struct DynamoStaged<'a> {
    inner: &'a Arc<Inner>,
    session_id: String,
    replace: bool,
    expected: i64,
    batch: String,
    target: Option<Target>,
    count: i64,
    /// Records written split into parts, as (sequence, parts): what an abandon must delete
    /// besides the records themselves.
    split: Vec<(i64, usize)>,
    /// Sequences (from the start) that parts may have written, failed ones included.
    used: i64,
    committed: bool,
}

impl DynamoStaged<'_> {
    async fn open(&mut self, first: i64) -> Result<Target> {
        if let Some(t) = self.target {
            return Ok(t);
        }
        let op = Operation::AddItems;
        let inner = self.inner;
        let target = if self.replace {
            match inner
                .reserve_replace(op, &self.session_id, &self.batch)
                .await?
            {
                Some(gen) => Target::Replace { gen },
                None => self.reserve_append(first).await?,
            }
        } else {
            self.reserve_append(first).await?
        };
        self.target = Some(target);
        Ok(target)
    }

    async fn reserve_append(&mut self, first: i64) -> Result<Target> {
        let capacity = self.expected.max(first).max(1);
        let (gen, start) = self
            .inner
            .reserve(Operation::AddItems, &self.session_id, &self.batch, capacity)
            .await?;
        Ok(Target::Append {
            gen,
            start,
            capacity,
        })
    }
}

impl StagedWrite for DynamoStaged<'_> {
    fn append(&mut self, items: Vec<Item>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let op = Operation::AddItems;
            let k = items.len() as i64;
            let mut target = self.open(k).await?;
            if let Target::Append {
                gen,
                start,
                capacity,
            } = target
            {
                if self.count + k > capacity {
                    let more = (self.count + k - capacity).max(capacity);
                    self.inner
                        .extend_reservation(
                            op,
                            &self.session_id,
                            &self.batch,
                            gen,
                            start + capacity,
                            more,
                        )
                        .await?;
                    target = Target::Append {
                        gen,
                        start,
                        capacity: capacity + more,
                    };
                    self.target = Some(target);
                }
            }
            let (gen, first_seq) = match target {
                Target::Append { gen, start, .. } => (gen, start + self.count),
                Target::Replace { gen } => (gen, self.count),
            };
            let inner = self.inner;
            let prepared: Vec<Prepared> = items
                .iter()
                .map(|i| inner.prepare(inner.codec.encode(i)))
                .collect();
            drop(items);
            let ttl_attr = inner.item_ttl(inner.ttl_ms().map(|t| now_ms() + t));
            let mut requests = Vec::new();
            for item in inner.record_puts(
                &self.session_id,
                gen,
                first_seq,
                &prepared,
                ttl_attr,
                Some(&self.batch),
            ) {
                let put = PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(|e| build_error(op, e))?;
                requests.push(WriteRequest::builder().put_request(put).build());
            }
            // Known before the write, so that an abandon after a failed part deletes it too.
            self.split.extend(
                prepared
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.head.is_none())
                    .map(|(i, p)| (first_seq + i as i64, p.parts.len())),
            );
            // Sequences possibly written, for an abandon; `count` only once the part is whole.
            self.used = self.used.max(self.count + k);
            inner.batch_write(op, requests).await?;
            self.count += k;
            Ok(())
        })
    }

    fn commit(&mut self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let op = Operation::AddItems;
            let target = self.open(0).await?;
            let inner = self.inner;
            match target {
                Target::Append { gen, .. } => {
                    inner
                        .commit_batch(op, &self.session_id, &self.batch, gen, self.count)
                        .await?
                }
                Target::Replace { gen } => {
                    inner
                        .commit_replace(op, &self.session_id, &self.batch, gen, self.count)
                        .await?
                }
            }
            self.committed = true;
            Ok(self.count as u64)
        })
    }
}

impl Drop for DynamoStaged<'_> {
    fn drop(&mut self) {
        // Abandoned: delete what was written (in the background, when a runtime is at hand),
        // then the pending marks. A crash leaves it all invisible, for prune.
        let (false, Some(target)) = (self.committed, self.target) else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = Arc::clone(self.inner);
        let (id, batch) = (self.session_id.clone(), self.batch.clone());
        let (count, split) = (self.used, std::mem::take(&mut self.split));
        handle.spawn(async move {
            if let Err(e) = inner.abandon(&id, &batch, target, count, &split).await {
                tracing::debug!(error = %e, "cleaning up an abandoned staged write failed; prune reclaims it");
            }
        });
    }
}

impl Inner {
    /// Deletes an abandoned staged write's records (a replace's whole generation; an append's
    /// `count` sequences from its start, and the parts of its split records), then its
    /// pending marks, which must outlive the records they hide.
    async fn abandon(
        &self,
        session_id: &str,
        batch: &str,
        target: Target,
        count: i64,
        split: &[(i64, usize)],
    ) -> Result<()> {
        let op = Operation::Prune;
        let key = |sk: String| {
            HashMap::from([("pk".to_owned(), s(session_id)), ("sk".to_owned(), s(sk))])
        };
        let keys: Vec<HashMap<String, AttributeValue>> =
            match target {
                Target::Replace { gen } => {
                    let mut keys = self
                        .keys_with_prefix(op, session_id, &item_prefix(gen), false)
                        .await?;
                    keys.extend(
                        self.keys_with_prefix(op, session_id, &format!("c#{gen:020}#"), false)
                            .await?,
                    );
                    keys
                }
                Target::Append { gen, start, .. } => (start..start + count)
                    .map(|seq| key(item_sk(gen, seq)))
                    .chain(split.iter().flat_map(|&(seq, parts)| {
                        (0..parts).map(move |k| key(part_sk(gen, seq, k)))
                    }))
                    .collect(),
            };
        let mut requests = Vec::with_capacity(keys.len());
        for k in keys {
            let d = DeleteRequest::builder()
                .set_key(Some(k))
                .build()
                .map_err(|e| build_error(op, e))?;
            requests.push(WriteRequest::builder().delete_request(d).build());
        }
        self.batch_write(op, requests).await?;
        let pending = format!("{PENDING_PREFIX}{batch}");
        let replacing = format!("{REPLACING_PREFIX}{batch}");
        match self
            .update_meta(
                op,
                session_id,
                "attribute_exists(#b)",
                "REMOVE #b, #q",
                Vec::new(),
                &[("#b", pending.as_str()), ("#q", replacing.as_str())],
            )
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()), // cleared or pruned meanwhile
            Err(e) => Err(map_sdk(op, &self.table, e)),
        }
    }

    /// A conditional `UpdateItem` of a session's metadata item, counted as one request, ready
    /// to send (or to be given more settings first); its names and values are those the two
    /// expressions use (`expr_maps`).
    fn update_meta(
        &self,
        op: Operation,
        session_id: &str,
        condition: &str,
        update: &str,
        values: Vec<(&str, AttributeValue)>,
        extra_names: &[(&str, &str)],
    ) -> UpdateItemFluentBuilder {
        let (names, values) = expr_maps(&[condition, update], values, extra_names);
        self.stats.record_requests(op, 1);
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(meta_key(session_id)))
            .condition_expression(condition)
            .update_expression(update)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
    }

    /// The values every commit sets: the batch's generation and size, now, and the expiry
    /// with its `ttl` stamp (zero without a TTL, when the update removes them instead).
    fn commit_values(&self, gen: i64, k: i64) -> (bool, Vec<(&'static str, AttributeValue)>) {
        let now = now_ms();
        let expires_at = self.ttl_ms().map(|t| now + t);
        let values = vec![
            (":gen", n(gen)),
            (":k", n(k)),
            (":now", n(now)),
            (":exp", n(expires_at.unwrap_or(0))),
            (":ttl", n(self.item_ttl(expires_at).unwrap_or(0))),
        ];
        (expires_at.is_some(), values)
    }

    /// Deletes a generation no metadata names any more (cleared, replaced) in the background,
    /// after `delay`; what this misses, prune and TTL reclaim.
    fn delete_generation_later(self: &Arc<Self>, session_id: &str, gen: i64, delay: Duration) {
        let inner = Arc::clone(self);
        let id = session_id.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            for prefix in [item_prefix(gen), format!("c#{gen:020}#")] {
                if let Err(e) = inner.delete_prefix(Operation::Prune, &id, &prefix).await {
                    tracing::debug!(error = %e, "background delete of an old generation failed; prune reclaims it");
                }
            }
        });
    }

    /// One page of the live session's records after sequence `after`, oldest first: one
    /// GetItem of the metadata, then ascending Queries of the current generation.
    async fn page(
        &self,
        session_id: &str,
        after: Option<u64>,
        max_bytes: usize,
    ) -> Result<ItemPage> {
        let op = Operation::GetItems;
        let now = now_ms();
        if after.is_none() {
            // The common case, a session within the budget, is one Query: the newest-first
            // walk (metadata and records together), given up once past the budget.
            let (mut items, mut bytes, mut over) = (Vec::new(), 0usize, false);
            let meta = self
                .walk(op, session_id, None, |_, _, decoded| {
                    if let Decoded::Valid(item) = decoded {
                        bytes += item.len_bytes();
                        items.push(item);
                    }
                    over = bytes > max_bytes;
                    over
                })
                .await?;
            if meta.is_none() {
                return Ok(ItemPage::default());
            }
            if !over {
                items.reverse();
                return Ok(ItemPage::new(items, None));
            }
        }
        let Some(meta) = self.get_meta(op, session_id).await? else {
            return Ok(ItemPage::default());
        };
        if meta.expired(now) {
            return Ok(ItemPage::default());
        }
        let from = after.map_or(0, |a| (a as i64).saturating_add(1));
        let (mut items, mut bytes, mut last) = (Vec::new(), 0usize, from - 1);
        let mut start = None;
        loop {
            self.stats.record_requests(op, 1);
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :a AND :b")
                .expression_attribute_values(":pk", s(session_id))
                .expression_attribute_values(":a", s(item_sk(meta.gen, from)))
                .expression_attribute_values(":b", s(item_sk(meta.gen, i64::MAX)))
                .consistent_read(true)
                .limit(100)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| map_sdk(op, &self.table, e))?;
            for row in out.items() {
                if bytes >= max_bytes {
                    return Ok(ItemPage::new(items, Some(last as u64)));
                }
                let Some(seq) = row
                    .get("sk")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|sk| seq_of(sk))
                else {
                    continue;
                };
                last = seq;
                if let Some(AttributeValue::S(b)) = row.get("b") {
                    if meta.pending.contains(b) {
                        continue; // part of a batch not committed yet
                    }
                }
                let record = self.record_bytes(op, session_id, meta.gen, row).await?;
                if let Decoded::Valid(item) = self.codec.decode(&record) {
                    bytes += item.len_bytes();
                    items.push(item);
                }
            }
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(ItemPage::new(items, None));
            }
        }
    }

    /// A replace's reservation: marks the batch pending and names its new generation in the
    /// metadata of an existing session (live or expired). `None` when the session does not
    /// exist: a replace is then an append to a new session.
    async fn reserve_replace(
        &self,
        op: Operation,
        session_id: &str,
        batch: &str,
    ) -> Result<Option<i64>> {
        let now = now_ms();
        let Some(meta) = self.get_meta(op, session_id).await? else {
            return Ok(None);
        };
        let gen = meta.gen.max(now) + 1;
        let pending = format!("{PENDING_PREFIX}{batch}");
        let replacing = format!("{REPLACING_PREFIX}{batch}");
        let cond = "attribute_exists(#pk)";
        let update = "SET #b = :now, #q = :gen";
        let result = self
            .update_meta(
                op,
                session_id,
                cond,
                update,
                vec![(":now", n(now)), (":gen", n(gen))],
                &[("#b", pending.as_str()), ("#q", replacing.as_str())],
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(Some(gen)),
            Err(e) if is_condition_failure(&e) => Ok(None), // cleared meanwhile
            Err(e) => Err(map_sdk(op, &self.table, e)),
        }
    }

    /// Reserves `more` sequences right after an append's reservation, only if nobody else
    /// reserved any since (so the batch stays contiguous).
    async fn extend_reservation(
        &self,
        op: Operation,
        session_id: &str,
        batch: &str,
        gen: i64,
        next: i64,
        more: i64,
    ) -> Result<()> {
        let pending = format!("{PENDING_PREFIX}{batch}");
        let cond = "#gen = :gen AND #next = :next AND attribute_exists(#b)";
        let update = "SET #next = :n2";
        self.update_meta(op, session_id, cond, update, vec![
                (":gen", n(gen)),
                (":next", n(next)),
                (":n2", n(next + more)),
            ], &[("#b", pending.as_str())])
            .send()
            .await
            .map_err(|e| {
                if is_condition_failure(&e) {
                    Error::new(
                        ErrorKind::Backend,
                        op,
                        "the session was written or cleared during a staged write that outgrew its reservation; nothing of it is visible",
                    )
                } else {
                    map_sdk(op, &self.table, e)
                }
            })?;
        self.forget(session_id);
        Ok(())
    }

    /// The commit protocol's last step: removes the pending mark and counts the batch's `k`
    /// records, with the new `updated_at` and expiry, in one conditional update. A session
    /// cleared meanwhile discards the batch, as if it had been written just before the clear.
    async fn commit_batch(
        &self,
        op: Operation,
        session_id: &str,
        batch: &str,
        gen: i64,
        k: i64,
    ) -> Result<()> {
        let pending_attr = format!("{PENDING_PREFIX}{batch}");
        let (expires, values) = self.commit_values(gen, k);
        let cond = "#gen = :gen AND attribute_exists(#b)";
        let update = if expires {
            "SET #count = #count + :k, #upd = :now, #exp = :exp, #ttl = :ttl, #stamp = if_not_exists(#stamp, :ttl) REMOVE #b"
        } else {
            "SET #count = #count + :k, #upd = :now REMOVE #b, #exp, #ttl, #stamp"
        };
        let result = self
            .update_meta(
                op,
                session_id,
                cond,
                update,
                values,
                &[("#b", pending_attr.as_str())],
            )
            .send()
            .await;
        self.forget(session_id);
        match result {
            Ok(_) => Ok(()),
            // Cleared (or pruned) meanwhile: the batch is discarded, as if written just before.
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(map_sdk(op, &self.table, e)),
        }
    }

    /// Commits a replace: one conditional update makes the staged generation current (with
    /// `k` records, a new `created_at` and expiry) while the batch is still pending, then the
    /// old generation's records are deleted in the background (or by prune and TTL).
    async fn commit_replace(
        self: &Arc<Self>,
        op: Operation,
        session_id: &str,
        batch: &str,
        gen: i64,
        k: i64,
    ) -> Result<()> {
        let pending = format!("{PENDING_PREFIX}{batch}");
        let replacing = format!("{REPLACING_PREFIX}{batch}");
        let (expires, values) = self.commit_values(gen, k);
        let cond = "attribute_exists(#b) AND #q = :gen";
        let update = if expires {
            "SET #gen = :gen, #next = :k, #count = :k, #cre = :now, #upd = :now, #exp = :exp, #ttl = :ttl, #stamp = :ttl REMOVE #b, #q"
        } else {
            "SET #gen = :gen, #next = :k, #count = :k, #cre = :now, #upd = :now REMOVE #b, #q, #exp, #ttl, #stamp"
        };
        let result = self
            .update_meta(
                op,
                session_id,
                cond,
                update,
                values,
                &[("#b", pending.as_str()), ("#q", replacing.as_str())],
            )
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        self.forget(session_id);
        let old = match result {
            Ok(out) => out.attributes().and_then(|a| Meta::parse(a).ok()),
            // Cleared meanwhile: the replace is discarded, as if it had come just before.
            Err(e) if is_condition_failure(&e) => None,
            Err(e) => return Err(map_sdk(op, &self.table, e)),
        };
        if let Some(old) = old {
            // Later, not now: a reader that saw the metadata just before this commit reads the
            // old generation's records with its next request.
            self.delete_generation_later(session_id, old.gen, REPLACED_GENERATION_GRACE);
        }
        Ok(())
    }
}

impl RawRecords for DynamoDbBackend {
    fn append_raw<'a>(&'a self, session_id: &'a str, record: Vec<u8>) -> BoxFuture<'a, Result<()>> {
        Box::pin(
            self.inner
                .append(Operation::RawWrite, session_id, vec![record]),
        )
    }
}

impl Inner {
    async fn create_table_if_not_exists(&self) -> Result<()> {
        let op = Operation::Open;
        self.stats.record_requests(op, 1);
        match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(out) => {
                let table = out.table();
                let keys: Vec<(String, String)> = table
                    .map(|t| {
                        t.key_schema()
                            .iter()
                            .map(|k| {
                                (
                                    k.attribute_name().to_owned(),
                                    k.key_type().as_str().to_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let wanted = vec![
                    ("pk".to_owned(), "HASH".to_owned()),
                    ("sk".to_owned(), "RANGE".to_owned()),
                ];
                let has_index = table.is_some_and(|t| {
                    t.global_secondary_indexes()
                        .iter()
                        .any(|g| g.index_name() == Some(SESSIONS_INDEX))
                });
                if keys != wanted || !has_index {
                    let seed = keys == vec![("session_id".to_owned(), "HASH".to_owned())];
                    return Err(Error::new(
                        ErrorKind::Config,
                        op,
                        format!(
                            "DynamoDB table {:?} has another schema ({}); this library needs keys pk (HASH) + sk (RANGE) and the index {SESSIONS_INDEX:?}. Copy its data into a new table with: agent-session copy --from 'dynamodb://{}?layout=seed' --to 'dynamodb://NEW_TABLE'",
                            self.table,
                            if seed { "the seed's: partition key session_id only".to_owned() } else { format!("keys {keys:?}") },
                            self.table
                        ),
                    ));
                }
            }
            Err(e)
                if e.as_service_error().and_then(|se| se.code())
                    == Some("ResourceNotFoundException") =>
            {
                let attr = |name: &str| {
                    AttributeDefinition::builder()
                        .attribute_name(name)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                };
                let key = |name: &str, kind: KeyType| {
                    KeySchemaElement::builder()
                        .attribute_name(name)
                        .key_type(kind)
                        .build()
                };
                let index = GlobalSecondaryIndex::builder()
                    .index_name(SESSIONS_INDEX)
                    .key_schema(key("lk", KeyType::Hash).map_err(|e| build_error(op, e))?)
                    .key_schema(key("sid", KeyType::Range).map_err(|e| build_error(op, e))?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::Include)
                            .non_key_attributes("expires_at")
                            .build(),
                    )
                    .build()
                    .map_err(|e| build_error(op, e))?;
                self.stats.record_requests(op, 1);
                let created = self
                    .client
                    .create_table()
                    .table_name(&self.table)
                    .billing_mode(BillingMode::PayPerRequest)
                    .attribute_definitions(attr("pk").map_err(|e| build_error(op, e))?)
                    .attribute_definitions(attr("sk").map_err(|e| build_error(op, e))?)
                    .attribute_definitions(attr("lk").map_err(|e| build_error(op, e))?)
                    .attribute_definitions(attr("sid").map_err(|e| build_error(op, e))?)
                    .key_schema(key("pk", KeyType::Hash).map_err(|e| build_error(op, e))?)
                    .key_schema(key("sk", KeyType::Range).map_err(|e| build_error(op, e))?)
                    .global_secondary_indexes(index)
                    .send()
                    .await;
                if let Err(e) = created {
                    // Another process may have created it at the same moment.
                    if e.as_service_error().and_then(|se| se.code())
                        != Some("ResourceInUseException")
                    {
                        return Err(map_sdk(op, &self.table, e));
                    }
                }
            }
            Err(e) => return Err(map_sdk(op, &self.table, e)),
        }
        // Wait until active.
        let start = std::time::Instant::now();
        loop {
            self.stats.record_requests(op, 1);
            let out = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| map_sdk(op, &self.table, e))?;
            let active = out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active)
                && out.table().is_some_and(|t| {
                    t.global_secondary_indexes()
                        .iter()
                        .all(|g| g.index_status().is_none_or(|s| s.as_str() == "ACTIVE"))
                });
            if active {
                break;
            }
            if start.elapsed() > Duration::from_secs(300) {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    op,
                    format!("table {:?} did not become active in 5 minutes", self.table),
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // TTL on `ttl` (the seed's attribute name), also when the table already existed.
        self.stats.record_requests(op, 1);
        let ttl = self
            .client
            .describe_time_to_live()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| map_sdk(op, &self.table, e))?;
        let enabled = ttl.time_to_live_description().is_some_and(|d| {
            d.attribute_name() == Some("ttl")
                && matches!(
                    d.time_to_live_status().map(|s| s.as_str()),
                    Some("ENABLED" | "ENABLING")
                )
        });
        if !enabled {
            self.stats.record_requests(op, 1);
            let spec = TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("ttl")
                .build()
                .map_err(|e| build_error(op, e))?;
            if let Err(e) = self
                .client
                .update_time_to_live()
                .table_name(&self.table)
                .time_to_live_specification(spec)
                .send()
                .await
            {
                // Already being enabled by someone else is fine.
                if e.as_service_error().and_then(|se| se.code()) != Some("ValidationException") {
                    return Err(map_sdk(op, &self.table, e));
                }
            }
        }
        Ok(())
    }
}

/// Parses a DynamoDB URL and builds the client from the standard AWS chain.
pub(crate) async fn open(url: StoreUrl, options: StoreOptions) -> Result<Store> {
    open_with(url, options, None).await
}

/// Opens a `dynamodb://TABLE?...` URL (the same options as [`Store::open`]) with AWS credentials
/// from `credentials` instead of the process's default chain. The SDK caches what the provider
/// returns until shortly before its expiry and then asks it again, so a provider that hands out
/// assumed-role or SSO credentials is asked whenever they need refreshing; nothing is copied
/// once. The Python package passes one that asks the boto3 / aiobotocore client.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> openai_agents_session::Result<()> {
/// use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
/// use openai_agents_session::backend::dynamodb::open_with_credentials;
/// let creds = Credentials::new("AKID", "secret", None, None, "example");
/// let store = open_with_credentials(
///     "dynamodb://sessions?region=us-east-1&endpoint=http://127.0.0.1:8000",
///     SharedCredentialsProvider::new(creds),
/// )
/// .await?;
/// # let _ = store; Ok(()) }
/// ```
pub async fn open_with_credentials(
    url: &str,
    credentials: aws_sdk_dynamodb::config::SharedCredentialsProvider,
) -> Result<Store> {
    let mut parsed = StoreUrl::parse(url)?;
    if parsed.scheme != "dynamodb" {
        return Err(Error::new(
            ErrorKind::Config,
            Operation::Open,
            format!(
                "open_with_credentials takes a dynamodb:// URL, got {:?}",
                parsed.redacted
            ),
        ));
    }
    let options = parsed.take_store_options()?;
    open_with(parsed, options, Some(credentials)).await
}

async fn open_with(
    mut url: StoreUrl,
    options: StoreOptions,
    credentials: Option<aws_sdk_dynamodb::config::SharedCredentialsProvider>,
) -> Result<Store> {
    let table = url.location()?;
    let table = table.trim_matches('/').to_owned();
    if table.is_empty()
        || table.len() > 255
        || !table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(Error::new(
            ErrorKind::Config,
            Operation::Open,
            format!(
                "{:?} does not name a valid DynamoDB table (dynamodb://TABLE?region=...)",
                url.redacted
            ),
        ));
    }
    let region = url.take_option("region");
    let endpoint = url.take_option("endpoint");
    let layout = url.take_option("layout");
    let create = match url.take_option("create_table") {
        Some(v) => parse_bool("create_table", &v)?,
        None => false,
    };
    let grace_secs = match url.take_option("grace") {
        Some(v) => Some(parse_positive("grace", &v)?),
        None => None,
    };
    let stale_batch_secs = match url.take_option("stale_batch_secs") {
        Some(v) => parse_positive("stale_batch_secs", &v)?,
        None => DEFAULT_STALE_BATCH_SECS,
    };
    let connect_timeout = match url.take_option("connect_timeout") {
        Some(v) => parse_seconds("connect_timeout", &v)?,
        None => Duration::from_secs(5),
    };
    let response_timeout = match url.take_option("response_timeout") {
        Some(v) => parse_seconds("response_timeout", &v)?,
        None => Duration::from_secs(20),
    };
    let max_attempts = match url.take_option("max_attempts") {
        Some(v) => parse_positive("max_attempts", &v)?.min(100) as u32,
        None => 5,
    };
    url.reject_unknown_options()?;
    if let Some(e) = &endpoint {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            return Err(Error::new(
                ErrorKind::Config,
                Operation::Open,
                format!("endpoint must be an http:// or https:// URL, got {e:?}"),
            ));
        }
    }
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(max_attempts))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(connect_timeout)
                .operation_attempt_timeout(response_timeout)
                // The whole operation, retries included, fails within response_timeout plus
                // one connect (the same bound as Redis; docs/storage/dynamodb.md).
                .operation_timeout(response_timeout + connect_timeout)
                .build(),
        );
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r));
    }
    if let Some(e) = endpoint {
        loader = loader.endpoint_url(e);
    }
    if let Some(provider) = credentials {
        loader = loader.credentials_provider(provider);
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(Error::new(
            ErrorKind::Config,
            Operation::Open,
            "no AWS region: add ?region=... to the URL or set AWS_REGION",
        ));
    }
    let client = Client::new(&config);
    match layout.as_deref() {
        None | Some("native") => {}
        Some("seed") => return Ok(legacy::store(client, table, options)),
        Some(other) => {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                Operation::Open,
                format!("layout must be native or seed, got {other:?}"),
            ));
        }
    }
    let backend = DynamoDbBackend::new(
        client,
        DynamoOptions {
            table,
            grace_secs,
            stale_batch_secs,
        },
        options.clone(),
    );
    if create {
        backend.create_table_if_not_exists().await?;
    }
    Ok(Store::from_backend(Arc::new(backend), options))
}
