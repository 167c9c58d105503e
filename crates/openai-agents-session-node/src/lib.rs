//! The native half of the npm package `openai-agents-session`: a store handle whose operations
//! are Promises running on napi-rs's shared tokio runtime, off the JavaScript thread, so they
//! never block the event loop. The JavaScript classes (`SQLiteSession`, `RedisSession`,
//! `DynamoDBSession`, `openSession`) and the error table live in `index.cjs`.
//!
//! Items cross as JSON texts: JavaScript builds them with one `JSON.parse` of the stored text
//! (never property by property) and hands them over as `JSON.stringify`'s text, which the core
//! validates before anything is written.
//!
//! A core error crosses as a JavaScript `Error` whose message is `OAS_NATIVE:` followed by a
//! JSON object `{kind, cause, operation, sessionId, message, reason, lease}` (the stable names
//! of `ErrorKind::name()`, `FailureCause::name()`, `Operation::as_str()`, the session id, the
//! full message, `ConflictReason::name()` and the lease of a `lease_held` / `fenced` error);
//! `index.cjs` raises the class of the error table for it.

#![deny(clippy::all)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use openai_agents_session::encryption::{Encryption, EncryptionKey, KeyMaterial};
use openai_agents_session::{
    Applied, ConflictReason, Error as CoreError, ErrorKind, FailureCause, HistoryTransaction, Item,
    Lease, Operation, Session, Store, StoreSession, Timestamp,
};
use serde_json::json;
use tokio::sync::OnceCell;

/// The prefix of a transported core error's message (the JSON payload follows it).
const MARKER: &str = "OAS_NATIVE:";

/// A lease as JavaScript receives it.
#[napi(object)]
pub struct NativeLease {
    /// The holder's owner label.
    pub owner: String,
    /// The fencing token (below 2^53: tokens are microseconds since the epoch, or larger by one).
    pub token: i64,
    /// When the lease ends unless renewed, in milliseconds since the Unix epoch.
    pub expires_at_ms: f64,
}

fn lease_to_js(lease: &Lease) -> NativeLease {
    NativeLease {
        owner: lease.owner.clone(),
        token: lease.token as i64,
        expires_at_ms: lease.expires_at.as_millis() as f64,
    }
}

/// The one transport of a core error to JavaScript: its stable names, never a `Debug` string.
fn to_js(err: CoreError) -> napi::Error {
    let lease = err.lease_holder().map(
        |l| json!({"owner": l.owner, "token": l.token, "expiresAtMs": l.expires_at.as_millis()}),
    );
    let payload = json!({
        "kind": err.kind().name(),
        "cause": err.cause().map(FailureCause::name),
        "operation": err.operation().as_str(),
        "sessionId": err.session_id(),
        "message": err.to_string(),
        "reason": err.conflict_reason().map(ConflictReason::name),
        "lease": lease,
    });
    napi::Error::new(Status::GenericFailure, format!("{MARKER}{payload}"))
}

fn invalid(op: Operation, session_id: &str, message: String) -> napi::Error {
    to_js(CoreError::new(ErrorKind::InvalidInput, op, message).with_session(session_id))
}

/// A duration in seconds from JavaScript: finite and not negative, else `invalid_input`.
fn seconds(op: Operation, session_id: &str, what: &str, secs: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        invalid(
            op,
            session_id,
            format!("{what} must be a finite number of seconds, at least 0, got {secs}"),
        )
    })
}

/// A fencing token from JavaScript (a non-negative safe integer).
fn token(op: Operation, session_id: &str, token: Option<i64>) -> Result<Option<u64>> {
    token
        .map(|t| {
            u64::try_from(t).map_err(|_| {
                invalid(
                    op,
                    session_id,
                    format!("a fencing token is a non-negative integer, got {t}"),
                )
            })
        })
        .transpose()
}

/// The handle a write goes through: fenced by `fencing_token` when one is given.
fn handle(
    store: &Store,
    session_id: &str,
    fencing_token: Option<u64>,
) -> openai_agents_session::Result<StoreSession> {
    let session = store.session(session_id)?;
    Ok(match fencing_token {
        Some(token) => session.fenced(token),
        None => session,
    })
}

/// A store opened lazily from a URL (the constructor does no I/O) and shared by every session
/// the package creates from the same URL.
#[napi]
pub struct NativeStore {
    url: String,
    encryption: Option<Encryption>,
    store: Arc<OnceCell<Store>>,
}

/// The keys of `encryptionKey` (newest first): each a `Buffer` of 32 raw bytes or a base64
/// string. A malformed one is a `config` error naming its place, never the key.
fn encryption_of(keys: Vec<Either<Buffer, String>>) -> Result<Encryption> {
    let material = keys.iter().map(|key| match key {
        Either::A(bytes) => KeyMaterial::Bytes(bytes),
        Either::B(text) => KeyMaterial::Base64(text),
    });
    Encryption::from_key_material(material, "encryptionKey").map_err(to_js)
}

impl NativeStore {
    /// Opens the store if needed and runs `work` on it; a failure to open the store is
    /// reported as a failure of `op` on `session_id`, the call the user made.
    async fn run<T, F, Fut>(&self, op: Operation, session_id: Option<&str>, work: F) -> Result<T>
    where
        F: FnOnce(Store) -> Fut,
        Fut: Future<Output = openai_agents_session::Result<T>>,
    {
        let cell = Arc::clone(&self.store);
        let url = self.url.clone();
        let encryption = self.encryption.clone();
        let adjust =
            move |o: openai_agents_session::StoreOptions| o.with_keys_from_code(encryption);
        let store = cell
            .get_or_try_init(|| async move { Store::open_with(&url, adjust).await })
            .await
            .cloned()
            .map_err(|err| {
                let err = err.with_operation(op);
                to_js(match session_id {
                    Some(id) if err.session_id().is_none() => err.with_session(id),
                    _ => err,
                })
            })?;
        work(store).await.map_err(to_js)
    }
}

#[napi]
impl NativeStore {
    /// A store for `url` (any URL the library opens); no I/O until the first operation.
    /// `encryption_keys`: keys newest first (32-byte `Buffer`s or base64 strings), replacing
    /// the URL's `encryption_key_env` / `encryption_key_file` (its `require_encryption` stays).
    #[napi(constructor)]
    pub fn new(url: String, encryption_keys: Option<Vec<Either<Buffer, String>>>) -> Result<Self> {
        Ok(NativeStore {
            url,
            encryption: encryption_keys.map(encryption_of).transpose()?,
            store: Arc::new(OnceCell::new()),
        })
    }

    /// The ids of the keys given in code (16 hex digits each), newest first; never the keys.
    #[napi(getter)]
    pub fn encryption_key_ids(&self) -> Vec<String> {
        self.encryption
            .as_ref()
            .map(|e| e.key_ids().iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    /// A new encryption key as standard base64 (what `agent-session keygen` prints).
    #[napi]
    pub fn generate_key() -> Result<String> {
        Ok(EncryptionKey::generate()
            .map_err(to_js)?
            .to_base64()
            .as_str()
            .to_owned())
    }

    /// The URL with any password hidden.
    #[napi(getter)]
    pub fn redacted_url(&self) -> String {
        openai_agents_session::url::redact(&self.url)
    }

    /// Opens the store now (connects); resolves to the backend's name.
    #[napi]
    pub async fn connect(&self) -> Result<String> {
        self.run(Operation::Open, None, |store| async move {
            Ok(store.backend_name().to_owned())
        })
        .await
    }

    /// The newest `limit` items (all without one), oldest first, as the text of one JSON array
    /// (one `JSON.parse` on the JavaScript side).
    #[napi]
    pub async fn get_items(&self, session_id: String, limit: Option<u32>) -> Result<String> {
        let id = session_id.clone();
        self.run(Operation::GetItems, Some(&id), move |store| async move {
            let items = store
                .session(&session_id)?
                .get_items(limit.map(|n| n as usize))
                .await?;
            let mut text =
                String::with_capacity(2 + items.iter().map(|i| i.len_bytes() + 1).sum::<usize>());
            text.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    text.push(',');
                }
                text.push_str(item.as_str());
            }
            text.push(']');
            Ok(text)
        })
        .await
    }

    /// As `get_items`, each item's exact stored JSON text.
    #[napi]
    pub async fn get_item_texts(
        &self,
        session_id: String,
        limit: Option<u32>,
    ) -> Result<Vec<String>> {
        let id = session_id.clone();
        self.run(Operation::GetItems, Some(&id), move |store| async move {
            let items = store
                .session(&session_id)?
                .get_items(limit.map(|n| n as usize))
                .await?;
            Ok(items.into_iter().map(Item::into_string).collect())
        })
        .await
    }

    /// Appends JSON object texts as one atomic batch. Every text is validated before anything
    /// is written. With `fencing_token`, the write checks in the same atomic step that the
    /// token is the session's live lease's (else `fenced`, nothing written).
    #[napi]
    pub async fn add_items(
        &self,
        session_id: String,
        items: Vec<String>,
        fencing_token: Option<i64>,
    ) -> Result<()> {
        let op = Operation::AddItems;
        let fencing_token = token(op, &session_id, fencing_token)?;
        let parsed = items
            .iter()
            .enumerate()
            .map(|(i, text)| {
                Item::from_json_str(text).map_err(|e| {
                    let detail = std::error::Error::source(&e)
                        .map(|source| format!(": {source}"))
                        .unwrap_or_default();
                    let message = format!("item {i}: {}{detail}; nothing was written", e.message());
                    to_js(CoreError::new(e.kind(), op, message).with_session(session_id.as_str()))
                })
            })
            .collect::<Result<Vec<Item>>>()?;
        let id = session_id.clone();
        self.run(op, Some(&id), move |store| async move {
            handle(&store, &session_id, fencing_token)?
                .add_items(parsed)
                .await
        })
        .await
    }

    /// Applies a history transaction (its JSON text: `{type: "append_items", items}` or
    /// `{type: "replace_suffix", expectedSuffix, replacement}`) under `operation_id`;
    /// resolves to `true` when applied now, `false` when it had been applied before under the
    /// same id. The text and the id are checked before anything is written.
    #[napi]
    pub async fn apply_history_transaction(
        &self,
        session_id: String,
        operation_id: String,
        transaction: String,
        fencing_token: Option<i64>,
    ) -> Result<bool> {
        let op = Operation::ApplyTransaction;
        let fencing_token = token(op, &session_id, fencing_token)?;
        let refuse = |e: CoreError| {
            let message = format!("{}; nothing was written", e.message());
            to_js(CoreError::new(e.kind(), op, message).with_session(session_id.as_str()))
        };
        openai_agents_session::history::validate_operation_id(&operation_id).map_err(refuse)?;
        let tx = HistoryTransaction::from_json(&transaction).map_err(refuse)?;
        let id = session_id.clone();
        self.run(op, Some(&id), move |store| async move {
            let applied = handle(&store, &session_id, fencing_token)?
                .apply_history_transaction(&operation_id, &tx)
                .await?;
            Ok(applied == Applied::Now)
        })
        .await
    }

    /// Removes and returns the newest item's JSON text, or null.
    #[napi]
    pub async fn pop_item(
        &self,
        session_id: String,
        fencing_token: Option<i64>,
    ) -> Result<Option<String>> {
        let op = Operation::PopItem;
        let fencing_token = token(op, &session_id, fencing_token)?;
        let id = session_id.clone();
        self.run(op, Some(&id), move |store| async move {
            let item = handle(&store, &session_id, fencing_token)?
                .pop_item()
                .await?;
            Ok(item.map(Item::into_string))
        })
        .await
    }

    /// Deletes the session (not its lease).
    #[napi]
    pub async fn clear_session(
        &self,
        session_id: String,
        fencing_token: Option<i64>,
    ) -> Result<()> {
        let op = Operation::ClearSession;
        let fencing_token = token(op, &session_id, fencing_token)?;
        let id = session_id.clone();
        self.run(op, Some(&id), move |store| async move {
            handle(&store, &session_id, fencing_token)?
                .clear_session()
                .await
        })
        .await
    }

    /// Acquires the session's lease for `owner` for `ttl` seconds, polling with backoff for up
    /// to `wait` seconds while another owner holds it (none: fail at once with `lease_held`).
    #[napi]
    pub async fn acquire_lease(
        &self,
        session_id: String,
        owner: String,
        ttl: f64,
        wait: Option<f64>,
    ) -> Result<NativeLease> {
        let op = Operation::AcquireLease;
        let ttl = seconds(op, &session_id, "a lease ttl", ttl)?;
        let wait = wait
            .map(|w| seconds(op, &session_id, "a lease wait", w))
            .transpose()?;
        let id = session_id.clone();
        self.run(op, Some(&id), move |store| async move {
            let lease = store.acquire_lease(&session_id, &owner, ttl, wait).await?;
            Ok(lease_to_js(&lease))
        })
        .await
    }

    /// Moves the expiry of the session's live lease of `token` to now + `ttl` seconds;
    /// `fenced` when `token` is not the live lease's.
    #[napi]
    pub async fn renew_lease(
        &self,
        session_id: String,
        token: i64,
        ttl: f64,
    ) -> Result<NativeLease> {
        let op = Operation::RenewLease;
        let ttl = seconds(op, &session_id, "a lease ttl", ttl)?;
        let token = self::token(op, &session_id, Some(token))?.unwrap_or_default();
        let id = session_id.clone();
        self.run(op, Some(&id), move |store| async move {
            let lease = store.renew_lease(&session_id, token, ttl).await?;
            Ok(lease_to_js(&lease))
        })
        .await
    }

    /// Ends the session's lease of `token` now (a no-op when it ended already).
    #[napi]
    pub async fn release_lease(&self, session_id: String, token: i64) -> Result<()> {
        let op = Operation::ReleaseLease;
        let token = self::token(op, &session_id, Some(token))?.unwrap_or_default();
        let id = session_id.clone();
        self.run(op, Some(&id), move |store| async move {
            store.release_lease(&session_id, token).await
        })
        .await
    }

    /// The session's live lease, or null.
    #[napi]
    pub async fn lease_info(&self, session_id: String) -> Result<Option<NativeLease>> {
        let id = session_id.clone();
        self.run(Operation::LeaseInfo, Some(&id), move |store| async move {
            let lease = store.lease_info(&session_id).await?;
            Ok(lease.as_ref().map(lease_to_js))
        })
        .await
    }

    /// Creates the storage's table if missing (DynamoDB: on-demand, TTL on `ttl`).
    #[napi]
    pub async fn init(&self) -> Result<()> {
        self.run(
            Operation::Open,
            None,
            |store| async move { store.init().await },
        )
        .await
    }

    /// Validates a session id without I/O (throws on an invalid one).
    #[napi]
    pub fn validate_session_id(session_id: String) -> Result<()> {
        openai_agents_session::validate_session_id(&session_id).map_err(to_js)
    }
}

/// The stable names of every `ErrorKind` of the core, in declaration order (for the test that
/// the JavaScript error table covers them all).
#[napi]
pub fn error_kinds() -> Vec<&'static str> {
    ErrorKind::ALL.iter().map(|kind| kind.name()).collect()
}

/// Test hook: throws the transported error of a real core `Error` of kind `kind`, with `cause`
/// (`"timeout"`, `"connection"`), `operation` (an `Operation::as_str()`), `session_id`, `reason`
/// (a `ConflictReason::name()`) and, for `lease_held` / `fenced`, a lease `(owner, token,
/// expires_at_ms)`, through the same `to_js` as every operation.
#[napi]
pub fn raise_for_test(
    kind: String,
    cause: Option<String>,
    operation: Option<String>,
    session_id: Option<String>,
    reason: Option<String>,
    lease: Option<NativeLease>,
) -> Result<()> {
    let unknown = |what: &str, name: &str| {
        napi::Error::new(Status::InvalidArg, format!("unknown {what} {name:?}"))
    };
    let kind = ErrorKind::ALL
        .into_iter()
        .find(|k| k.name() == kind)
        .ok_or_else(|| unknown("kind", &kind))?;
    let operation = operation.unwrap_or_else(|| "add_items".to_owned());
    let operation = Operation::ALL
        .into_iter()
        .find(|op| op.as_str() == operation)
        .ok_or_else(|| unknown("operation", &operation))?;
    let lease = lease.map(|l| {
        Lease::new(
            l.owner,
            l.token as u64,
            Timestamp::from_millis(l.expires_at_ms as i64),
        )
    });
    let mut err = match (kind, lease) {
        (_, None) => CoreError::new(kind, operation, format!("a test {} error", kind.name())),
        (ErrorKind::LeaseHeld, Some(lease)) => {
            CoreError::lease_held(lease).with_operation(operation)
        }
        (ErrorKind::Fenced, Some(lease)) => CoreError::fenced(operation, 1, Some(lease)),
        (_, Some(_)) => {
            return Err(napi::Error::new(
                Status::InvalidArg,
                "a lease goes with kind lease_held or fenced only",
            ))
        }
    };
    if let Some(cause) = cause {
        err = err.with_cause(
            [FailureCause::Timeout, FailureCause::Connection]
                .into_iter()
                .find(|c| c.name() == cause)
                .ok_or_else(|| unknown("cause", &cause))?,
        );
    }
    if let Some(id) = session_id {
        err = err.with_session(id);
    }
    if let Some(reason) = reason {
        err = err.with_conflict(
            [
                ConflictReason::OperationReused,
                ConflictReason::SuffixMismatch,
            ]
            .into_iter()
            .find(|r| r.name() == reason)
            .ok_or_else(|| unknown("reason", &reason))?,
        );
    }
    Err(to_js(err))
}

/// The URL schemes this build opens (the built backends', then registered ones).
#[napi]
pub fn known_schemes() -> Vec<String> {
    openai_agents_session::open::known_schemes()
}
