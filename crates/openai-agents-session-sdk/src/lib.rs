//! # openai-agents-session-sdk
//!
//! [openai-agents-session](openai_agents_session) stores as sessions of the Rust Agents SDK
//! ([`openai_agents_sdk`], 0.24): [`AgentsSession`] implements
//! [`openai_agents_sdk::memory::Session`] over a session of any of our stores (SQLite, memory,
//! Redis, DynamoDB, PostgreSQL: whatever store URL or [`Store`] you have), so that the SDK's
//! [`Runner`](openai_agents_sdk::Runner) keeps its conversation history there, with our
//! contract: atomic batches, nothing lost under concurrent writers, items returned exactly as
//! given, TTLs, typed errors.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use openai_agents_sdk::testing::{assistant_message, FakeModel};
//! use openai_agents_sdk::{Agent, RunOptions, Runner};
//! use openai_agents_session::Session as _; // our trait, for `inner()`
//! use openai_agents_session_sdk::AgentsSession;
//!
//! # let dir = tempfile::tempdir()?;
//! let url = format!("sqlite://{}/sessions.db", dir.path().display());
//! let session = Arc::new(AgentsSession::open(&url, "user-42:chat").await?);
//!
//! # openai_agents_sdk::tracing::set_tracing_disabled(true);
//! let model = Arc::new(FakeModel::new()); // a scripted model: no network in this example
//! model.add_turn(vec![assistant_message("Hello!")]);
//! let agent = Agent::<()>::new("Assistant").with_model_instance(model);
//! let result = Runner::run_with_options(&agent, "Hi", RunOptions::new(()).session(session.clone()))
//!     .await?;
//! assert_eq!(result.final_output_text().as_deref(), Some("Hello!"));
//!
//! // The run's input and output are in the store: a restart (or another process) sees them.
//! let history = session.inner().get_items(None).await?;
//! assert_eq!(history.len(), 2);
//! # Ok(()) }
//! ```
//!
//! The crate is separate from `openai-agents-session` because the SDK always brings its HTTP
//! stack (reqwest, rustls): the library's own builds stay free of it. The SDK is used with no
//! default features and none added; enable `sdk-sqlite` to use the SDK's own SQLite sessions
//! beside ours (both link the same bundled SQLite).

#![warn(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};

use async_trait::async_trait;
use openai_agents_sdk::error::{AgentsError, Result as SdkResult};
use openai_agents_sdk::items::InputItem;
use openai_agents_sdk::memory::{
    resolve_session_limit, CompactionSnapshot, SessionSettings, SnapshotHandle,
};
use openai_agents_session::{
    Error, ErrorKind, HistoryTransaction, Item, Session as _, Store, StoreSession,
};

pub use openai_agents_sdk;
pub use openai_agents_session;

/// One session of an openai-agents-session [`Store`] as an Agents SDK
/// [`Session`](openai_agents_sdk::memory::Session).
///
/// Every method is one call of ours: `get_items`, `add_items`, `pop_item`, `clear_session`
/// keep their contract (one batch atomic and contiguous, newest `n` oldest first, `Some(0)`
/// empty, pops returning each item at most once under concurrency). The SDK's compaction hooks
/// go through our history transactions: [`compaction_snapshot`] hands out the tail with each
/// item as its handle, and [`replace_compaction_suffix`] and [`replace_history_atomically`]
/// replace exactly that suffix (the whole history) in one atomic step, or change nothing and
/// return `false` when a concurrent write changed the tail meanwhile.
///
/// Failures are [`AgentsError::Io`] errors whose inner error is our typed [`Error`] (naming the
/// operation, session and [`ErrorKind`]): get it back with [`store_error`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use openai_agents_sdk::items::InputItem;
/// use openai_agents_sdk::memory::Session;
/// use openai_agents_session_sdk::AgentsSession;
///
/// let session = AgentsSession::open("memory://", "chat-1").await?;
/// session
///     .add_items(vec![InputItem::user("hi"), InputItem::assistant("hello")])
///     .await?;
/// assert_eq!(session.get_items(Some(1)).await?[0].text_content().as_deref(), Some("hello"));
/// assert!(session.pop_item().await?.is_some());
/// session.clear_session().await?;
/// assert!(session.get_items(None).await?.is_empty());
/// # Ok(()) }
/// ```
///
/// [`compaction_snapshot`]: openai_agents_sdk::memory::Session::compaction_snapshot
/// [`replace_compaction_suffix`]: openai_agents_sdk::memory::Session::replace_compaction_suffix
/// [`replace_history_atomically`]: openai_agents_sdk::memory::Session::replace_history_atomically
#[derive(Clone)]
#[non_exhaustive]
pub struct AgentsSession {
    inner: StoreSession,
    settings: Option<SessionSettings>,
}

impl fmt::Debug for AgentsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentsSession")
            .field("inner", &self.inner)
            .field("settings", &self.settings)
            .finish()
    }
}

impl AgentsSession {
    /// Wraps one of our sessions.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use openai_agents_session::{Session as _, Store};
    /// use openai_agents_session_sdk::AgentsSession;
    ///
    /// let store = Store::open("memory://?ttl=3600").await?;
    /// let session = AgentsSession::new(store.session("user-1:chat-1")?);
    /// assert_eq!(session.inner().session_id(), "user-1:chat-1");
    /// # Ok(()) }
    /// ```
    pub fn new(session: StoreSession) -> AgentsSession {
        AgentsSession {
            inner: session,
            settings: None,
        }
    }

    /// Session `session_id` of `store` (validates the id, no I/O; shares the store's
    /// connections, so open the store once and take every session from it).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use openai_agents_session::Store;
    /// use openai_agents_session_sdk::AgentsSession;
    ///
    /// let store = Store::open("memory://").await?;
    /// let a = AgentsSession::from_store(&store, "a")?;
    /// let b = AgentsSession::from_store(&store, "b")?;
    /// assert!(AgentsSession::from_store(&store, "").is_err()); // an empty id is refused
    /// # let _ = (a, b);
    /// # Ok(()) }
    /// ```
    pub fn from_store(store: &Store, session_id: &str) -> Result<AgentsSession, Error> {
        Ok(AgentsSession::new(store.session(session_id)?))
    }

    /// Opens the store at `url` (any of our store URLs: `sqlite://PATH`, `memory://`,
    /// `redis://...`, `dynamodb://TABLE`, `postgres://...`, with their options) and takes
    /// session `session_id` from it. To serve many sessions, open the [`Store`] once and use
    /// [`from_store`](Self::from_store).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use openai_agents_session_sdk::AgentsSession;
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let url = format!("sqlite://{}/chat.db?ttl=86400", dir.path().display());
    /// let session = AgentsSession::open(&url, "user-7").await?;
    /// # let _ = session;
    /// assert!(AgentsSession::open("nosuch://x", "user-7").await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn open(url: &str, session_id: &str) -> Result<AgentsSession, Error> {
        AgentsSession::from_store(&Store::open(url).await?, session_id)
    }

    /// Default settings the SDK reads ([`SessionSettings::limit`]: the most items a
    /// `get_items(None)` returns, as the SDK's own sessions do).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use openai_agents_sdk::items::InputItem;
    /// use openai_agents_sdk::memory::{Session, SessionSettings};
    /// use openai_agents_session_sdk::AgentsSession;
    ///
    /// let session = AgentsSession::open("memory://", "s")
    ///     .await?
    ///     .with_settings(SessionSettings::with_limit(2));
    /// session.add_items((0..5).map(|i| InputItem::user(i.to_string())).collect()).await?;
    /// assert_eq!(session.get_items(None).await?.len(), 2);
    /// assert_eq!(session.get_items(Some(3)).await?.len(), 3); // an explicit limit wins
    /// # Ok(()) }
    /// ```
    pub fn with_settings(mut self, settings: SessionSettings) -> AgentsSession {
        self.settings = Some(settings);
        self
    }

    /// Our session underneath: for what the SDK's trait has no word for (history
    /// transactions, session info, leases through its [`store`](StoreSession::store)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use openai_agents_session::Session as _;
    /// use openai_agents_session_sdk::AgentsSession;
    ///
    /// let session = AgentsSession::open("memory://", "s").await?;
    /// session.inner().add_items(vec![r#"{"role":"user","content":"hi"}"#.parse()?]).await?;
    /// let info = session.inner().store().session_info("s").await?.expect("written");
    /// assert_eq!(info.item_count, 1);
    /// # Ok(()) }
    /// ```
    pub fn inner(&self) -> &StoreSession {
        &self.inner
    }

    /// Unwraps our session.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use openai_agents_session::Session as _;
    /// use openai_agents_session_sdk::AgentsSession;
    /// let ours = AgentsSession::open("memory://", "s").await?.into_inner();
    /// assert_eq!(ours.session_id(), "s");
    /// # Ok(()) }
    /// ```
    pub fn into_inner(self) -> StoreSession {
        self.inner
    }
}

/// Our typed [`Error`] inside an SDK error returned by [`AgentsSession`] (its kind, operation
/// and session), or `None` for an error that did not come from our store.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use openai_agents_sdk::items::InputItem;
/// use openai_agents_sdk::memory::Session;
/// use openai_agents_session::ErrorKind;
/// use openai_agents_session_sdk::{store_error, AgentsSession};
///
/// let session = AgentsSession::open("memory://?max_item_bytes=64", "s").await?;
/// let err = session.add_items(vec![InputItem::user("x".repeat(100))]).await.unwrap_err();
/// let ours = store_error(&err).expect("from our store");
/// assert_eq!(ours.kind(), ErrorKind::TooLarge);
/// assert_eq!(ours.session_id(), Some("s"));
/// assert!(session.get_items(None).await?.is_empty()); // nothing was written
/// # Ok(()) }
/// ```
pub fn store_error(error: &AgentsError) -> Option<&Error> {
    match error {
        AgentsError::Io(io) => io.get_ref()?.downcast_ref::<Error>(),
        _ => None,
    }
}

/// Our error as the SDK's: [`AgentsError::Io`] of the closest [`std::io::ErrorKind`], holding
/// ours (see [`store_error`]).
fn sdk_error(error: Error) -> AgentsError {
    use std::io::ErrorKind as Io;
    let kind = match error.kind() {
        ErrorKind::InvalidInput | ErrorKind::InvalidSessionId | ErrorKind::TooLarge => {
            Io::InvalidInput
        }
        ErrorKind::NotFound => Io::NotFound,
        ErrorKind::Connection => Io::NotConnected,
        ErrorKind::Timeout => Io::TimedOut,
        ErrorKind::Unreadable | ErrorKind::UnsupportedFormat | ErrorKind::LegacyData => {
            Io::InvalidData
        }
        _ => Io::Other,
    };
    AgentsError::Io(std::io::Error::new(kind, error))
}

fn to_input(item: Item) -> InputItem {
    InputItem(item.to_value())
}

fn to_items(items: Vec<InputItem>, session: &str) -> Result<Vec<Item>, AgentsError> {
    items
        .into_iter()
        .map(|i| Item::from_value(i.0).map_err(|e| sdk_error(e.with_session(session))))
        .collect()
}

/// A fresh operation id for a history transaction (128 random bits, from the standard
/// library's per-instance hash keys).
fn operation_id(what: &str) -> String {
    let mut words = [0u64; 2];
    for (i, w) in words.iter_mut().enumerate() {
        let mut h = RandomState::new().build_hasher();
        h.write_usize(i);
        *w = h.finish();
    }
    format!("agents-sdk:{what}:{:016x}{:016x}", words[0], words[1])
}

impl AgentsSession {
    /// Applies `replace_suffix(expected, replacement)`: `Ok(false)` when the tail no longer is
    /// `expected` (a concurrent write), nothing changed.
    async fn replace_suffix(
        &self,
        what: &str,
        expected: Vec<Item>,
        replacement: Vec<Item>,
    ) -> SdkResult<bool> {
        let tx = HistoryTransaction::replace_suffix(expected, replacement);
        match self
            .inner
            .apply_history_transaction(&operation_id(what), &tx)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::Conflict => Ok(false),
            Err(e) => Err(sdk_error(e)),
        }
    }
}

#[async_trait]
impl openai_agents_sdk::memory::Session for AgentsSession {
    fn session_id(&self) -> &str {
        self.inner.session_id()
    }

    fn session_settings(&self) -> Option<SessionSettings> {
        self.settings.clone()
    }

    async fn get_items(&self, limit: Option<usize>) -> SdkResult<Vec<InputItem>> {
        let limit = resolve_session_limit(limit, self.settings.as_ref());
        let items = self.inner.get_items(limit).await.map_err(sdk_error)?;
        Ok(items.into_iter().map(to_input).collect())
    }

    async fn add_items(&self, items: Vec<InputItem>) -> SdkResult<()> {
        // Every item is checked before anything is written: one batch, all or nothing.
        let items = to_items(items, self.inner.session_id())?;
        self.inner.add_items(items).await.map_err(sdk_error)
    }

    async fn pop_item(&self) -> SdkResult<Option<InputItem>> {
        let item = self.inner.pop_item().await.map_err(sdk_error)?;
        Ok(item.map(to_input))
    }

    async fn clear_session(&self) -> SdkResult<()> {
        self.inner.clear_session().await.map_err(sdk_error)
    }

    /// The newest `limit` items; each handle is the item's stored JSON, so that
    /// [`replace_compaction_suffix`](Self::replace_compaction_suffix) can name the exact suffix
    /// it replaces.
    async fn compaction_snapshot(&self, limit: usize) -> SdkResult<Option<CompactionSnapshot>> {
        // One item more than asked tells whether the window reaches the start.
        let mut items = self
            .inner
            .get_items(Some(limit.saturating_add(1)))
            .await
            .map_err(sdk_error)?;
        let complete = items.len() <= limit;
        if !complete {
            items.remove(0);
        }
        let mut snapshot = CompactionSnapshot {
            complete,
            ..CompactionSnapshot::default()
        };
        for item in items {
            snapshot
                .handles
                .push(SnapshotHandle(item.as_str().to_owned()));
            snapshot.items.push(to_input(item));
        }
        Ok(Some(snapshot))
    }

    /// Replaces the suffix the handles name, atomically, only if the history still ends with
    /// it (our `replace_suffix` history transaction); `false` and nothing changed otherwise.
    async fn replace_compaction_suffix(
        &self,
        handles: &[SnapshotHandle],
        items: Vec<InputItem>,
    ) -> SdkResult<bool> {
        let session = self.inner.session_id();
        let expected = handles
            .iter()
            .map(|h| Item::from_json_str(&h.0).map_err(|e| sdk_error(e.with_session(session))))
            .collect::<SdkResult<Vec<Item>>>()?;
        let replacement = to_items(items, session)?;
        self.replace_suffix("compaction", expected, replacement)
            .await
    }

    /// Replaces the whole history in one atomic step (no moment where it is empty): the
    /// history read now is the expected suffix, so a write that lands in between makes this
    /// retry with the new history, never lose it.
    async fn replace_history_atomically(&self, items: Vec<InputItem>) -> SdkResult<bool> {
        let replacement = to_items(items, self.inner.session_id())?;
        for _ in 0..8 {
            let current = self.inner.get_items(None).await.map_err(sdk_error)?;
            if self
                .replace_suffix("replace", current, replacement.clone())
                .await?
            {
                return Ok(true);
            }
        }
        // Writers kept changing the history: let the caller fall back.
        Ok(false)
    }
}
