//! The DynamoDB backend (feature `dynamodb`): `dynamodb://TABLE?region=...&endpoint=...`.
//!
//! One DynamoDB item per conversation item, keyed by session and sequence, plus one metadata
//! item per session; batches are atomic (one TransactWriteItems, or a commit protocol for
//! larger ones); items larger than DynamoDB's 400 KB limit are compressed and split; expired
//! sessions are invisible at once. The layout is in `docs/storage/dynamodb.md`.
//!
//! The rooms: this file holds the backend type, its `Backend` impl, table creation and
//! opening; `config.rs` the URL options; `layout.rs` keys, item formats and expression maps
//! (pure, unit-tested); `read.rs` the newest-first walk and listing; `write.rs` appends
//! (one transaction, or the commit protocol), pop and clear; `history.rs` history
//! transactions (operation ids as items of the session); `lease.rs` session leases (one
//! item per session, checked by fenced writes in their own transaction); `staged.rs` staged writes and
//! pages; `prune.rs` prune, re-stamping and background deletes; `error.rs` SDK errors as
//! `ErrorKind`s; `legacy.rs` the seed's read-only layout.

pub(crate) mod config;
mod error;
mod history;
mod layout;
mod lease;
mod legacy;
mod prune;
mod read;
pub(crate) mod records;
mod staged;
mod write;

/// The AWS SDK crate this backend is built on, for building a client of your own with the
/// matching version (see [`DynamoDbBackend::store_from_client`]).
pub use ::aws_sdk_dynamodb;
pub use layout::{LAYOUT_VERSION, PART_BYTES, SESSIONS_INDEX};

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;

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
use crate::time::Timestamp;
use crate::url::StoreUrl;

use config::{DynamoConfig, Layout};
use error::{build_error, map_sdk};
use layout::{s, MetaState};
use staged::DynamoStaged;

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
    /// How long records outlive their session's expiry (whole seconds).
    grace: Duration,
    /// After this, `prune` treats an uncommitted batch as abandoned.
    stale_stage_after: Duration,
    /// Table creation turns DynamoDB's TTL on (URL option `enable_ttl`).
    enable_ttl: bool,
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
    /// The lease item last seen per session: lets an acquisition be one request (a wrong
    /// picture fails its condition, which returns the stored lease).
    leases: Mutex<HashMap<String, Lease>>,
}

fn now_ms() -> i64 {
    Timestamp::now().as_millis()
}

/// A duration in the layout's milliseconds (saturating).
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
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

impl DynamoDbBackend {
    /// A store on a client the caller owns, for an existing table with this layout.
    pub fn store_from_client(
        client: Client,
        table: impl Into<String>,
        options: StoreOptions,
    ) -> Store {
        let backend = DynamoDbBackend::new(
            client,
            &DynamoConfig::for_table(table.into()),
            options.clone(),
        );
        Store::from_backend(Arc::new(backend), options)
    }

    fn new(client: Client, config: &DynamoConfig, options: StoreOptions) -> Self {
        let codec = options.codec();
        let grace = config
            .grace
            .unwrap_or_else(|| Duration::from_secs(options.ttl.unwrap_or(0)));
        DynamoDbBackend {
            inner: Arc::new(Inner {
                client,
                table: config.table.clone(),
                options,
                grace,
                stale_stage_after: config.stale_stage_after,
                enable_ttl: config.enable_ttl,
                codec,
                stats: RequestStats::default(),
                known: Mutex::new(HashMap::new()),
                turns: Mutex::new(HashMap::new()),
                restamping: Mutex::new(HashSet::new()),
                leases: Mutex::new(HashMap::new()),
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
        expires_at.map(|at| at / 1000 + self.grace.as_secs() as i64)
    }

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
        // TTL on `ttl` (the seed's attribute name), also when the table already existed;
        // with `enable_ttl=false` the table's TTL setting is left as it is.
        if !self.enable_ttl {
            return Ok(());
        }
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
        Box::pin(self.add(session_id, items, None))
    }

    fn pop_item<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<Option<Item>>> {
        Box::pin(self.pop(session_id, None))
    }

    fn apply_transaction<'a>(
        &'a self,
        session_id: &'a str,
        transaction: &'a PreparedTransaction,
    ) -> BoxFuture<'a, Result<Applied>> {
        Box::pin(self.apply(session_id, transaction, None))
    }

    fn clear_session<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.clear(session_id))
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

    /// The unfenced write with a `ConditionCheck` of the lease item in the transaction that
    /// makes it visible (`docs/storage/dynamodb.md`, "Leases"): the same requests.
    fn fenced_write<'a>(
        &'a self,
        session_id: &'a str,
        token: u64,
        write: FencedWrite<'a>,
    ) -> BoxFuture<'a, Result<WriteOutcome>> {
        Box::pin(async move {
            match write {
                FencedWrite::AddItems(items) => self
                    .add(session_id, items, Some(token))
                    .await
                    .map(|()| WriteOutcome::Done),
                FencedWrite::PopItem => self
                    .pop(session_id, Some(token))
                    .await
                    .map(WriteOutcome::Popped),
                FencedWrite::ClearSession => self
                    .clear_fenced(session_id, token)
                    .await
                    .map(|()| WriteOutcome::Done),
                FencedWrite::ApplyTransaction(prepared) => self
                    .apply(session_id, prepared, Some(token))
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
        expected_items: Option<u64>,
    ) -> BoxFuture<'a, Result<Option<Box<dyn StagedWrite + 'a>>>> {
        let staged: Box<dyn StagedWrite + 'a> = Box::new(DynamoStaged::new(
            &self.inner,
            session_id,
            mode == StageMode::Replace,
            expected_items,
        ));
        Box::pin(async move { Ok(Some(staged)) })
    }
}

impl DynamoDbBackend {
    /// `add_items`, fenced by `fence` when given.
    async fn add(&self, session_id: &str, items: Vec<Item>, fence: Option<u64>) -> Result<()> {
        let records = items
            .iter()
            .map(|i| self.inner.codec.encode(session_id, i))
            .collect::<Result<_>>()?;
        drop(items);
        self.inner
            .append(Operation::AddItems, session_id, records, fence)
            .await?;
        // A write extends the session: re-stamp its records when their stamp is near.
        if let (Some(ttl), MetaState::Live { gen, stamp, .. }) =
            (self.inner.ttl_ms(), self.inner.guess(session_id))
        {
            self.restamp_if_due(session_id, gen, stamp, now_ms() + ttl);
        }
        Ok(())
    }

    /// `apply_history_transaction`, fenced by `fence` when given.
    async fn apply(
        &self,
        session_id: &str,
        transaction: &PreparedTransaction,
        fence: Option<u64>,
    ) -> Result<Applied> {
        let applied = self.apply_history(session_id, transaction, fence).await?;
        // A write extends the session: re-stamp its records when their stamp is near.
        if let (Applied::Now, Some(ttl), MetaState::Live { gen, stamp, .. }) =
            (applied, self.inner.ttl_ms(), self.inner.guess(session_id))
        {
            self.restamp_if_due(session_id, gen, stamp, now_ms() + ttl);
        }
        Ok(applied)
    }
}

impl RawRecords for DynamoDbBackend {
    fn append_raw<'a>(&'a self, session_id: &'a str, record: Vec<u8>) -> BoxFuture<'a, Result<()>> {
        Box::pin(
            self.inner
                .append(Operation::RawWrite, session_id, vec![record], None),
        )
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

/// As [`open_with_credentials`], with the URL's shared options adjusted in code (as
/// [`Store::open_with`]: keys given by the Python package's `encryption_key=`).
pub async fn open_with_credentials_and<F>(
    url: &str,
    credentials: aws_sdk_dynamodb::config::SharedCredentialsProvider,
    adjust: F,
) -> Result<Store>
where
    F: FnOnce(StoreOptions) -> Result<StoreOptions>,
{
    let mut parsed = StoreUrl::parse(url)?;
    if parsed.scheme != "dynamodb" {
        return open_with_credentials(url, credentials).await;
    }
    let options = adjust(parsed.take_store_options()?)?;
    open_with(parsed, options, Some(credentials)).await
}

async fn open_with(
    mut url: StoreUrl,
    options: StoreOptions,
    credentials: Option<aws_sdk_dynamodb::config::SharedCredentialsProvider>,
) -> Result<Store> {
    let config = DynamoConfig::from_url(&mut url)?;
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(
            aws_config::retry::RetryConfig::standard().with_max_attempts(config.max_attempts),
        )
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(config.connect_timeout)
                .operation_attempt_timeout(config.response_timeout)
                // The whole operation, retries included, fails within response_timeout plus
                // one connect (the same bound as Redis; docs/storage/dynamodb.md).
                .operation_timeout(config.response_timeout + config.connect_timeout)
                .build(),
        );
    if let Some(r) = &config.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    if let Some(e) = &config.endpoint {
        loader = loader.endpoint_url(e);
    }
    if let Some(provider) = credentials {
        loader = loader.credentials_provider(provider);
    }
    let sdk_config = loader.load().await;
    if sdk_config.region().is_none() {
        return Err(Error::new(
            ErrorKind::Config,
            Operation::Open,
            "no AWS region: add ?region=... to the URL or set AWS_REGION",
        ));
    }
    let client = Client::new(&sdk_config);
    if config.layout == Layout::Seed {
        return Ok(legacy::store(client, config.table, options));
    }
    let backend = DynamoDbBackend::new(client, &config, options.clone());
    if config.create_table {
        backend.create_table_if_not_exists().await?;
    }
    Ok(Store::from_backend(Arc::new(backend), options))
}
