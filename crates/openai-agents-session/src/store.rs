//! The contract: the [`Session`] trait callers use, the [`Backend`] trait storage implements, and
//! the [`Store`] that joins them and keeps the shared rules (validation, limits, sizes, error
//! context, call counting) in one place.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::codec::RecordCodec;
use crate::encryption::{Encryption, RecordTally};
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::history::{
    Applied, HistoryTransaction, PreparedTransaction, DEFAULT_OPERATION_RETENTION,
};
use crate::item::Item;
use crate::lease::{Lease, LeaseGrant, MAX_OWNER_BYTES};
use crate::stats::RequestStats;
use crate::time::Timestamp;

/// A boxed, `Send` future: what the dyn-compatible async traits of this crate return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The longest session id accepted, in UTF-8 bytes.
pub const MAX_SESSION_ID_BYTES: usize = 1024;

/// The longest TTL accepted: 100 years, in seconds.
pub const MAX_TTL_SECS: u64 = 100 * 365 * 24 * 3600;

/// The default `max_item_bytes`: 32 MiB of serialised JSON per item.
pub const DEFAULT_MAX_ITEM_BYTES: usize = 32 * 1024 * 1024;

/// Conversation memory for one session: the four operations of the Python Agents SDK's
/// `SessionABC`. Dyn-compatible, `Send + Sync`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> openai_agents_session::Result<()> {
/// use openai_agents_session::{Item, Session, Store};
/// let store = Store::open("memory://").await?;
/// let session: Box<dyn Session> = Box::new(store.session("chat-1")?);
/// session.add_items(vec![r#"{"role":"user","content":"hi"}"#.parse()?]).await?;
/// session.add_items(vec![r#"{"role":"assistant","content":"hello"}"#.parse()?]).await?;
/// let newest = session.get_items(Some(1)).await?;
/// assert_eq!(newest[0].as_str(), r#"{"role":"assistant","content":"hello"}"#);
/// assert_eq!(session.pop_item().await?.unwrap(), newest[0]);
/// session.clear_session().await?;
/// assert!(session.get_items(None).await?.is_empty());
/// # Ok(()) }
/// ```
pub trait Session: Send + Sync + fmt::Debug {
    /// The session id.
    fn session_id(&self) -> &str;

    /// The history, oldest first: all of it with `None`, the newest `n` with `Some(n)`
    /// (`Some(0)` is empty). Undecodable records are skipped and not counted.
    fn get_items(&self, limit: Option<usize>) -> BoxFuture<'_, Result<Vec<Item>>>;

    /// Appends one batch atomically and contiguously; an empty batch is a no-op.
    fn add_items(&self, items: Vec<Item>) -> BoxFuture<'_, Result<()>>;

    /// Removes and returns the newest item; `None` when the session is empty.
    fn pop_item(&self) -> BoxFuture<'_, Result<Option<Item>>>;

    /// Deletes the session; clearing a missing session succeeds.
    fn clear_session(&self) -> BoxFuture<'_, Result<()>>;

    /// Applies a history transaction under `operation_id`, atomically and idempotently (see
    /// [`crate::history`]). The default says the session does not support them; a
    /// [`StoreSession`] supports them on every backend of this crate.
    fn apply_history_transaction<'a>(
        &'a self,
        operation_id: &'a str,
        transaction: &'a HistoryTransaction,
    ) -> BoxFuture<'a, Result<Applied>> {
        let _ = (operation_id, transaction);
        Box::pin(async {
            Err(Error::new(
                ErrorKind::Backend,
                Operation::ApplyTransaction,
                "this session does not support history transactions",
            ))
        })
    }
}

/// What a session store knows about one session, without loading its items.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The session id.
    pub session_id: String,
    /// Stored records (corrupt ones included, until a pop drops them).
    pub item_count: u64,
    /// When the session was first written (set once; a write after expiry starts anew).
    pub created_at: Timestamp,
    /// When the session was last written; advances on every write.
    pub updated_at: Timestamp,
    /// When the session expires, without further access; `None` without a TTL.
    pub expires_at: Option<Timestamp>,
    /// The session's live lease, if any (see [`crate::lease`]).
    pub lease: Option<Lease>,
}

impl SessionInfo {
    /// A new info record (for backend implementors).
    pub fn new(
        session_id: impl Into<String>,
        item_count: u64,
        created_at: Timestamp,
        updated_at: Timestamp,
        expires_at: Option<Timestamp>,
    ) -> Self {
        SessionInfo {
            session_id: session_id.into(),
            item_count,
            created_at,
            updated_at,
            expires_at,
            lease: None,
        }
    }

    /// Adds the session's live lease (for backend implementors).
    pub fn with_lease(mut self, lease: Option<Lease>) -> Self {
        self.lease = lease;
        self
    }
}

/// What [`Store::prune`] removed.
///
/// ```
/// use openai_agents_session::PruneReport;
/// let report = PruneReport::new(2, 1);
/// assert_eq!(report.to_string(), "2 expired sessions, 1 leftover of interrupted writes");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PruneReport {
    /// Expired sessions whose data was deleted.
    pub expired_sessions: u64,
    /// Leftovers removed that interrupted writes or cleared sessions left behind (SQLite:
    /// staged writes never committed; Redis: their staging lists; DynamoDB: records and parts
    /// of uncommitted batches and of cleared or replaced generations).
    pub leftovers: u64,
    /// What the backend wants the user to know (Redis: it expires keys by itself).
    pub note: Option<&'static str>,
}

impl PruneReport {
    /// A report (for backend implementors).
    pub fn new(expired_sessions: u64, leftovers: u64) -> Self {
        PruneReport {
            expired_sessions,
            leftovers,
            note: None,
        }
    }

    /// Adds a note.
    pub fn with_note(mut self, note: &'static str) -> Self {
        self.note = Some(note);
        self
    }
}

impl fmt::Display for PruneReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: u64| if n == 1 { "" } else { "s" };
        write!(
            f,
            "{} expired session{}, {} leftover{} of interrupted writes",
            self.expired_sessions,
            plural(self.expired_sessions),
            self.leftovers,
            plural(self.leftovers)
        )?;
        if let Some(note) = self.note {
            write!(f, " ({note})")?;
        }
        Ok(())
    }
}

/// Options of [`Store::list_sessions`].
///
/// ```
/// use openai_agents_session::ListOptions;
/// let opts = ListOptions::default().prefix("user-42:").page_size(100);
/// assert_eq!(opts.prefix.as_deref(), Some("user-42:"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListOptions {
    /// Only ids starting with this literal text (no wildcards).
    pub prefix: Option<String>,
    /// At most this many ids per page (the backend's default when `None`).
    pub page_size: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Most recently updated first, where the backend can sort cheaply (SQLite); the others
    /// list in their usual order. [`SessionPage::newest_first`] says which order a page has.
    /// A cursor belongs to the order it was made in.
    pub newest_first: bool,
}

impl ListOptions {
    /// The default page size.
    pub const DEFAULT_PAGE_SIZE: usize = 1000;

    /// Sets the literal id prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Sets the page size.
    pub fn page_size(mut self, n: usize) -> Self {
        self.page_size = Some(n);
        self
    }

    /// Continues after a previous page.
    pub fn cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }

    /// Asks for the most recently updated sessions first (see [`ListOptions::newest_first`]).
    pub fn newest_first(mut self, yes: bool) -> Self {
        self.newest_first = yes;
        self
    }

    /// The page size to use (at least 1).
    pub fn effective_page_size(&self) -> usize {
        self.page_size.unwrap_or(Self::DEFAULT_PAGE_SIZE).max(1)
    }
}

/// One page of session ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionPage {
    /// Live (unexpired) session ids; sorted by their UTF-8 bytes where the backend can.
    pub session_ids: Vec<String>,
    /// Pass to [`ListOptions::cursor`] for the next page; `None` at the end.
    pub next_cursor: Option<String>,
    /// Whether the ids are most recently updated first (asked for and supported).
    pub newest_first: bool,
}

impl SessionPage {
    /// A page (for backend implementors).
    pub fn new(session_ids: Vec<String>, next_cursor: Option<String>) -> Self {
        SessionPage {
            session_ids,
            next_cursor,
            newest_first: false,
        }
    }

    /// Marks the page as most recently updated first (for backend implementors).
    pub fn sorted_newest_first(mut self) -> Self {
        self.newest_first = true;
        self
    }
}

/// The options every backend shares; parsed from a URL's query or built in code.
///
/// ```
/// use openai_agents_session::StoreOptions;
/// let opts = StoreOptions::default().with_ttl(Some(3600)).unwrap();
/// assert!(opts.refresh_on_read);
/// assert!(StoreOptions::default().with_ttl(Some(0)).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreOptions {
    /// Seconds after the last write (or access, with `refresh_on_read`) when a session expires;
    /// `None`: never.
    pub ttl: Option<u64>,
    /// Whether reads refresh the TTL (the default when a TTL is set).
    pub refresh_on_read: bool,
    /// The largest item accepted, in bytes of compact JSON.
    pub max_item_bytes: usize,
    /// How long history transactions' operation ids are remembered (URL option
    /// `operation_retention`, seconds; default a day).
    pub operation_retention: Duration,
    /// Encryption at rest (URL options `encryption_key_env`, `encryption_key_file`,
    /// `require_encryption`; [`with_encryption`](Self::with_encryption)). Default: none.
    pub encryption: Encryption,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            ttl: None,
            refresh_on_read: true,
            max_item_bytes: DEFAULT_MAX_ITEM_BYTES,
            operation_retention: DEFAULT_OPERATION_RETENTION,
            encryption: Encryption::none(),
        }
    }
}

impl StoreOptions {
    /// Sets the TTL in seconds; zero or more than [`MAX_TTL_SECS`] is invalid input.
    pub fn with_ttl(mut self, ttl: Option<u64>) -> Result<Self> {
        if ttl.is_some_and(|t| t == 0 || t > MAX_TTL_SECS) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                Operation::Open,
                format!("ttl must be a positive whole number of seconds, at most {MAX_TTL_SECS}"),
            ));
        }
        self.ttl = ttl;
        Ok(self)
    }

    /// Sets whether reads refresh the TTL.
    pub fn with_refresh_on_read(mut self, refresh: bool) -> Self {
        self.refresh_on_read = refresh;
        self
    }

    /// Sets the largest item accepted; zero is invalid input.
    pub fn with_max_item_bytes(mut self, bytes: usize) -> Result<Self> {
        if bytes == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                Operation::Open,
                "max_item_bytes must be positive",
            ));
        }
        self.max_item_bytes = bytes;
        Ok(self)
    }

    /// Sets the encryption at rest: every backend encrypts and decrypts through the codec
    /// these options build ([`codec`](Self::codec)), staged writes included.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> openai_agents_session::Result<()> {
    /// use openai_agents_session::encryption::{Encryption, EncryptionKey};
    /// use openai_agents_session::{backend::memory::MemoryBackend, Session, Store, StoreOptions};
    /// let options = StoreOptions::default()
    ///     .with_encryption(Encryption::new(vec![EncryptionKey::generate()?]))?;
    /// let store = Store::from_backend(
    ///     std::sync::Arc::new(MemoryBackend::new(options.clone())),
    ///     options,
    /// );
    /// let session = store.session("chat")?;
    /// session.add_items(vec![r#"{"role":"user","content":"secret"}"#.parse()?]).await?;
    /// assert_eq!(session.get_items(None).await?.len(), 1);
    /// # Ok(()) }
    /// ```
    pub fn with_encryption(mut self, encryption: Encryption) -> Result<Self> {
        encryption.check()?;
        let mut encryption = encryption;
        if encryption.tally.is_none() {
            encryption.tally = self.encryption.tally.take();
        }
        self.encryption = encryption;
        Ok(self)
    }

    /// Keys given in code (the Python package's `encryption_key=`, the Node package's
    /// `encryptionKey`) in place of the URL's `encryption_key_env` / `encryption_key_file`;
    /// the URL's `require_encryption` stays. `None` keeps the URL's keys. The one rule both
    /// language packages open their stores with.
    ///
    /// ```
    /// use openai_agents_session::encryption::{Encryption, KeyMaterial};
    /// use openai_agents_session::StoreOptions;
    /// let url_keys = Encryption::new(vec![]).with_required(false);
    /// let options = StoreOptions::default().with_encryption(url_keys).unwrap();
    /// let code = Encryption::from_key_material([KeyMaterial::Bytes(&[7; 32])], "encryption_key")
    ///     .unwrap();
    /// let options = options.with_keys_from_code(Some(code.clone())).unwrap();
    /// assert_eq!(options.encryption.key_ids(), code.key_ids());
    /// assert!(StoreOptions::default().with_keys_from_code(None).unwrap().encryption.key_ids().is_empty());
    /// ```
    pub fn with_keys_from_code(self, keys: Option<Encryption>) -> Result<Self> {
        match keys {
            Some(keys) => {
                let required = self.encryption.is_required();
                self.with_encryption(keys.with_required(required))
            }
            None => Ok(self),
        }
    }

    /// Counts every record the codec decodes into `tally` (an audit hook: `agent-session info
    /// --verify` and `rekey` use it).
    pub fn with_record_tally(mut self, tally: Arc<RecordTally>) -> Self {
        self.encryption.tally = Some(tally);
        self
    }

    /// The record codec of a store opened with these options (what every backend encodes and
    /// decodes with).
    pub fn codec(&self) -> RecordCodec {
        RecordCodec::new(self.encryption.clone())
    }

    /// Whether reads refresh the TTL under these options.
    pub fn refreshes_on_read(&self) -> bool {
        self.ttl.is_some() && self.refresh_on_read
    }
}

/// Test hook: writes raw record bytes, bypassing the codec, so that the conformance kit can plant
/// corrupt and unreadable records. Backends that can offer it return it from
/// [`Backend::raw_records`].
pub trait RawRecords: Send + Sync {
    /// Appends `record` as the session's newest record, exactly as given.
    fn append_raw<'a>(&'a self, session_id: &'a str, record: Vec<u8>) -> BoxFuture<'a, Result<()>>;
}

/// What a storage backend implements. Callers use [`Store`] and [`Session`] instead: the store
/// validates ids, sizes and limits, and adds the operation and session id to errors, so a backend
/// receives only valid input (`limit` is never `Some(0)`, batches are never empty).
///
/// Implement it to add a backend of your own, wrap it with [`Store::from_backend`], and run the
/// conformance kit (feature `conformance`) against it.
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// A short name (`"sqlite"`, `"memory"`...).
    fn name(&self) -> &'static str;

    /// See [`Session::get_items`]; `limit` is never `Some(0)`.
    fn get_items<'a>(
        &'a self,
        session_id: &'a str,
        limit: Option<usize>,
    ) -> BoxFuture<'a, Result<Vec<Item>>>;

    /// See [`Session::add_items`]; `items` is never empty and every item is within size.
    fn add_items<'a>(&'a self, session_id: &'a str, items: Vec<Item>) -> BoxFuture<'a, Result<()>>;

    /// See [`Session::pop_item`].
    fn pop_item<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<Option<Item>>>;

    /// See [`Session::clear_session`].
    fn clear_session<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<()>>;

    /// See [`Store::session_info`].
    fn session_info<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionInfo>>>;

    /// See [`Store::list_sessions`].
    fn list_sessions<'a>(&'a self, options: &'a ListOptions) -> BoxFuture<'a, Result<SessionPage>>;

    /// See [`Store::prune`].
    fn prune(&self) -> BoxFuture<'_, Result<PruneReport>>;

    /// The store's request counters.
    fn stats(&self) -> &RequestStats;

    /// The raw-write test hook, where the backend has one.
    fn raw_records(&self) -> Option<&dyn RawRecords> {
        None
    }

    /// Creates what the storage needs (a table, an index) when it is missing; see
    /// [`Store::init`]. The default does nothing.
    fn init(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// One page of a session's items, oldest first, after the opaque position `after` (from
    /// the start with `None`): at least one item, and no more items once `max_bytes` of item
    /// JSON are reached. `Ok(None)` (the default) means "not supported": the store then reads
    /// the whole session in one page. Pages are not a snapshot: items added meanwhile may
    /// appear in a later page.
    fn read_page<'a>(
        &'a self,
        session_id: &'a str,
        after: Option<u64>,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Option<ItemPage>>> {
        let _ = (session_id, after, max_bytes);
        Box::pin(async { Ok(None) })
    }

    /// The newest `limit` valid items before the opaque position `before` (the newest of the
    /// session with `None`), oldest first, each with its position (see [`crate::pages`]).
    /// `limit` is at least 1. Undecodable records are skipped, not counted toward `limit`,
    /// and reported in [`PageBefore::unreadable`] / [`PageBefore::corrupt`]. Positions are the
    /// backend's stored sequence or index: an item keeps its position across pops of newer
    /// items and appends. Does not refresh the TTL. The cost must not depend on the history's
    /// length. `Ok(None)` (the default) means "not supported": the store then reads the whole
    /// session through `get_items` and numbers the items itself (correct, but it costs the
    /// whole history and refreshes the TTL where that backend's reads do).
    fn read_before<'a>(
        &'a self,
        session_id: &'a str,
        before: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Option<PageBefore>>> {
        let _ = (session_id, before, limit);
        Box::pin(async { Ok(None) })
    }

    /// Starts a staged write (see [`crate::staged`]); `expected_items` is a hint of how many
    /// items will be staged. `Ok(None)` (the default) means "not supported": the store then
    /// holds the staged items in memory and writes them at the commit.
    fn stage<'a>(
        &'a self,
        session_id: &str,
        mode: StageMode,
        expected_items: Option<u64>,
    ) -> BoxFuture<'a, Result<Option<Box<dyn StagedWrite + 'a>>>> {
        let _ = (session_id, mode, expected_items);
        Box::pin(async { Ok(None) })
    }

    /// Applies a prepared history transaction atomically: checks the operation id (applied
    /// before with the same digest: [`Applied::Before`]; with another:
    /// [`history::operation_reused`](crate::history::operation_reused)), checks the expected
    /// suffix against the newest records ([`PreparedTransaction::suffix_matches`]; else
    /// [`history::suffix_mismatch`](crate::history::suffix_mismatch)), then replaces the suffix
    /// with the transaction's items and remembers the id for `retention`, all in one step, or
    /// changes nothing. Items are within size. The default: not supported.
    fn apply_transaction<'a>(
        &'a self,
        session_id: &'a str,
        transaction: &'a PreparedTransaction,
    ) -> BoxFuture<'a, Result<Applied>> {
        let _ = (session_id, transaction);
        Box::pin(async {
            Err(Error::new(
                ErrorKind::Backend,
                Operation::ApplyTransaction,
                "this backend does not support history transactions",
            ))
        })
    }

    /// One attempt to acquire the session's lease for `owner` (see [`crate::lease`]), in one
    /// atomic step: no live lease (none, expired or released) grants a new token,
    /// [`next_token`](crate::lease::next_token) of the session's newest; a live lease of the same owner is
    /// extended to `now + ttl` with its token; one of another owner is [`LeaseGrant::Held`]
    /// and nothing changes. The owner is valid and `ttl` at least a millisecond; the session
    /// itself is neither created nor touched. The default: not supported.
    fn acquire_lease<'a>(
        &'a self,
        session_id: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<LeaseGrant>> {
        let _ = (session_id, owner, ttl);
        Box::pin(async { Err(leases_unsupported(Operation::AcquireLease)) })
    }

    /// Moves the expiry of the live lease whose token is `token` to `now + ttl`; anything else
    /// (another token, an expired or released lease) is [`Error::fenced`]. The default: not
    /// supported.
    fn renew_lease<'a>(
        &'a self,
        session_id: &'a str,
        token: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Lease>> {
        let _ = (session_id, token, ttl);
        Box::pin(async { Err(leases_unsupported(Operation::RenewLease)) })
    }

    /// Ends the lease of `token` now, keeping its record (the newest token); a no-op when that
    /// lease already ended. A token that is not the session's newest is [`Error::fenced`]. The
    /// default: not supported.
    fn release_lease<'a>(&'a self, session_id: &'a str, token: u64) -> BoxFuture<'a, Result<()>> {
        let _ = (session_id, token);
        Box::pin(async { Err(leases_unsupported(Operation::ReleaseLease)) })
    }

    /// The session's live lease, if any. The default: not supported.
    fn lease_info<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<Option<Lease>>> {
        let _ = session_id;
        Box::pin(async { Err(leases_unsupported(Operation::LeaseInfo)) })
    }

    /// A write of a fenced handle: as the unfenced method of the same write, and in the same
    /// atomic step it first checks that `token` is the session's live lease's, else fails with
    /// [`Error::fenced`] having changed nothing. Batches are non-empty and within size, as
    /// for `add_items`. The default: not supported.
    fn fenced_write<'a>(
        &'a self,
        session_id: &'a str,
        token: u64,
        write: FencedWrite<'a>,
    ) -> BoxFuture<'a, Result<WriteOutcome>> {
        let _ = (session_id, token);
        let op = write.operation();
        Box::pin(async move { Err(leases_unsupported(op)) })
    }
}

fn leases_unsupported(op: Operation) -> Error {
    Error::new(
        ErrorKind::Backend,
        op,
        "this backend does not support session leases",
    )
}

/// A write of a fenced session handle, as [`Backend::fenced_write`] receives it.
#[derive(Debug)]
#[non_exhaustive]
pub enum FencedWrite<'a> {
    /// `add_items` of a non-empty batch within size.
    AddItems(Vec<Item>),
    /// `pop_item`.
    PopItem,
    /// `clear_session` (the lease stays).
    ClearSession,
    /// `apply_history_transaction`.
    ApplyTransaction(&'a PreparedTransaction),
}

impl FencedWrite<'_> {
    /// The operation of the write.
    pub fn operation(&self) -> Operation {
        match self {
            FencedWrite::AddItems(_) => Operation::AddItems,
            FencedWrite::PopItem => Operation::PopItem,
            FencedWrite::ClearSession => Operation::ClearSession,
            FencedWrite::ApplyTransaction(_) => Operation::ApplyTransaction,
        }
    }
}

/// What a fenced write returned: the result of the unfenced write of the same kind.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteOutcome {
    /// `add_items` or `clear_session` done.
    Done,
    /// `pop_item`'s item (`None`: the session was empty).
    Popped(Option<Item>),
    /// `apply_history_transaction`'s outcome.
    Applied(Applied),
}

fn unexpected_outcome(op: Operation, outcome: &WriteOutcome, session_id: &str) -> Error {
    Error::new(
        ErrorKind::Backend,
        op,
        format!("the backend's fenced write returned {outcome:?}"),
    )
    .with_session(session_id)
}

/// An open session store: cheap to clone, shared by every session it hands out.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> openai_agents_session::Result<()> {
/// use openai_agents_session::{ListOptions, Session, Store};
/// let store = Store::open("memory://?ttl=3600").await?;
/// let session = store.session("user-1:chat-1")?; // no I/O
/// session.add_items(vec![r#"{"role":"user","content":"hi"}"#.parse()?]).await?;
/// let info = store.session_info("user-1:chat-1").await?.expect("exists");
/// assert_eq!(info.item_count, 1);
/// assert!(info.expires_at.is_some());
/// let page = store.list_sessions(&ListOptions::default().prefix("user-1:")).await?;
/// assert_eq!(page.session_ids, vec!["user-1:chat-1".to_string()]);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Store {
    /// The backend inside the `observe.rs` layer (`Store::from_backend` is in `observe.rs`).
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) options: Arc<StoreOptions>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("options", &self.options)
            .finish()
    }
}

/// Checks a session id: non-empty UTF-8, at most [`MAX_SESSION_ID_BYTES`] bytes.
///
/// ```
/// use openai_agents_session::validate_session_id;
/// assert!(validate_session_id("a:b{c}*").is_ok());
/// assert!(validate_session_id("").is_err());
/// assert!(validate_session_id(&"x".repeat(1025)).is_err());
/// ```
pub fn validate_session_id(session_id: &str) -> Result<()> {
    if session_id.is_empty() || session_id.len() > MAX_SESSION_ID_BYTES {
        let shown: String = session_id.chars().take(64).collect();
        return Err(Error::new(
            ErrorKind::InvalidSessionId,
            Operation::Open,
            format!(
                "a session id must be 1 to {MAX_SESSION_ID_BYTES} bytes of UTF-8, got {} bytes",
                session_id.len()
            ),
        )
        .with_session(shown));
    }
    Ok(())
}

impl Store {
    /// A handle on one session: validates the id, does no I/O, shares this store's connections.
    pub fn session(&self, session_id: &str) -> Result<StoreSession> {
        validate_session_id(session_id)?;
        Ok(StoreSession {
            store: self.clone(),
            session_id: Arc::from(session_id),
            fence: None,
        })
    }

    /// Acquires the session's lease for `owner` for `ttl` (see [`crate::lease`]): a new token
    /// when no live lease is held, the same token with its expiry moved to `now + ttl` when
    /// `owner` holds it already. While another owner holds it: [`ErrorKind::LeaseHeld`]
    /// (naming the holder; [`Error::lease_holder`]) at once with `wait` `None`, else after
    /// polling with backoff (10 ms doubling to 500 ms, jittered, and never sleeping past the
    /// holder's expiry) for up to `wait`. Each attempt is one request. Does not create the
    /// session. `owner` is 1 to 256 bytes of any text, `ttl` at least 1 ms.
    pub async fn acquire_lease(
        &self,
        session_id: &str,
        owner: &str,
        ttl: Duration,
        wait: Option<Duration>,
    ) -> Result<Lease> {
        let op = Operation::AcquireLease;
        validate_session_id(session_id).map_err(|e| e.with_operation(op))?;
        self.stats().record_call(op);
        check_owner(owner)
            .and_then(|()| check_lease_ttl(ttl))
            .map_err(|e| context(e, op, session_id))?;
        let deadline = wait.and_then(|w| std::time::Instant::now().checked_add(w));
        let mut backoff = Duration::from_millis(10);
        loop {
            let grant = self
                .backend
                .acquire_lease(session_id, owner, ttl)
                .await
                .map_err(|e| context(e, op, session_id))?;
            let holder = match grant {
                LeaseGrant::Granted(lease) => return Ok(lease),
                LeaseGrant::Held(holder) => holder,
            };
            let left = deadline
                .and_then(|d| d.checked_duration_since(std::time::Instant::now()))
                .filter(|left| !left.is_zero());
            let Some(left) = left else {
                return Err(context(Error::lease_held(holder), op, session_id));
            };
            let until_expiry = Duration::from_millis(
                u64::try_from(holder.expires_at.as_millis() - Timestamp::now().as_millis())
                    .unwrap_or(0)
                    .saturating_add(1),
            );
            tokio::time::sleep(jittered(backoff).min(until_expiry).min(left)).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    /// Moves the expiry of the session's live lease of `token` to `now + ttl`, returning it;
    /// [`ErrorKind::Fenced`] when `token` is not the live lease's (it expired, was released or
    /// taken over). One request.
    pub async fn renew_lease(&self, session_id: &str, token: u64, ttl: Duration) -> Result<Lease> {
        let op = Operation::RenewLease;
        validate_session_id(session_id).map_err(|e| e.with_operation(op))?;
        self.stats().record_call(op);
        check_lease_ttl(ttl).map_err(|e| context(e, op, session_id))?;
        self.backend
            .renew_lease(session_id, token, ttl)
            .await
            .map_err(|e| context(e, op, session_id))
    }

    /// Ends the session's lease of `token` now, so that anyone may acquire it; a no-op when it
    /// ended already (released or expired). [`ErrorKind::Fenced`] when another token was
    /// granted since. One request.
    pub async fn release_lease(&self, session_id: &str, token: u64) -> Result<()> {
        let op = Operation::ReleaseLease;
        validate_session_id(session_id).map_err(|e| e.with_operation(op))?;
        self.stats().record_call(op);
        self.backend
            .release_lease(session_id, token)
            .await
            .map_err(|e| context(e, op, session_id))
    }

    /// The session's live lease, if any (also in [`SessionInfo::lease`]). One request.
    pub async fn lease_info(&self, session_id: &str) -> Result<Option<Lease>> {
        let op = Operation::LeaseInfo;
        validate_session_id(session_id).map_err(|e| e.with_operation(op))?;
        self.stats().record_call(op);
        self.backend
            .lease_info(session_id)
            .await
            .map_err(|e| context(e, op, session_id))
    }

    /// Metadata of one session, without loading items; `None` if missing or expired.
    /// Reading it does not refresh the TTL.
    pub async fn session_info(&self, session_id: &str) -> Result<Option<SessionInfo>> {
        let op = Operation::SessionInfo;
        validate_session_id(session_id).map_err(|e| e.with_operation(op))?;
        self.stats().record_call(op);
        self.backend
            .session_info(session_id)
            .await
            .map_err(|e| context(e, op, session_id))
    }

    /// One page of live session ids whose id starts with the literal `prefix`.
    pub async fn list_sessions(&self, options: &ListOptions) -> Result<SessionPage> {
        self.stats().record_call(Operation::ListSessions);
        self.backend
            .list_sessions(options)
            .await
            .map_err(|e| e.with_operation(Operation::ListSessions))
    }

    /// Every live session id starting with `prefix`, following pages to the end.
    pub async fn list_all_sessions(&self, prefix: Option<&str>) -> Result<Vec<String>> {
        let mut options = ListOptions {
            prefix: prefix.map(str::to_owned),
            ..ListOptions::default()
        };
        let mut all = Vec::new();
        loop {
            let page = self.list_sessions(&options).await?;
            all.extend(page.session_ids);
            match page.next_cursor {
                Some(cursor) => options.cursor = Some(cursor),
                None => return Ok(all),
            }
        }
    }

    /// Deletes expired sessions' data now (backends also do it opportunistically), and what
    /// interrupted writes left behind; says what it removed.
    pub async fn prune(&self) -> Result<PruneReport> {
        self.stats().record_call(Operation::Prune);
        self.backend
            .prune()
            .await
            .map_err(|e| e.with_operation(Operation::Prune))
    }

    /// Creates the storage's table and indexes when missing (DynamoDB), and checks that an
    /// existing one has the right schema; a no-op where opening already does it (SQLite).
    pub async fn init(&self) -> Result<()> {
        self.backend
            .init()
            .await
            .map_err(|e| e.with_operation(Operation::Open))
    }

    /// The store's per-operation call and request counters.
    pub fn stats(&self) -> &RequestStats {
        self.backend.stats()
    }

    /// The options in force.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// The backend's short name.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// The raw-write test hook, where the backend has one.
    pub fn raw_records(&self) -> Option<&dyn RawRecords> {
        self.backend.raw_records()
    }
}

fn check_owner(owner: &str) -> Result<()> {
    if owner.is_empty() || owner.len() > MAX_OWNER_BYTES {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            Operation::AcquireLease,
            format!(
                "a lease owner must be 1 to {MAX_OWNER_BYTES} bytes of UTF-8, got {} bytes",
                owner.len()
            ),
        ));
    }
    Ok(())
}

fn check_lease_ttl(ttl: Duration) -> Result<()> {
    if ttl < Duration::from_millis(1) || ttl > Duration::from_secs(MAX_TTL_SECS) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            Operation::AcquireLease,
            format!("a lease ttl must be 1 ms to {MAX_TTL_SECS} s, got {ttl:?}"),
        ));
    }
    Ok(())
}

/// `delay` scaled by a random factor in [0.5, 1]: waiters that started together spread out.
pub(crate) fn jittered(delay: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    delay.mul_f64(0.5 + (random % 1024) as f64 / 2046.0)
}

pub(crate) fn context(err: Error, op: Operation, session_id: &str) -> Error {
    let err = err.with_operation(op);
    if err.session_id().is_none() {
        err.with_session(session_id)
    } else {
        err
    }
}

/// A [`Session`] handed out by [`Store::session`], or a fenced one ([`StoreSession::fenced`]).
#[derive(Clone)]
pub struct StoreSession {
    store: Store,
    session_id: Arc<str>,
    fence: Option<u64>,
}

impl fmt::Debug for StoreSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreSession")
            .field("session_id", &self.session_id)
            .field("backend", &self.store.backend_name())
            .field("fence", &self.fence)
            .finish()
    }
}

impl StoreSession {
    /// The store this session belongs to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A handle on the same session bound to fencing token `token` (see [`crate::lease`]):
    /// each of its writes (`add_items`, `pop_item`, `clear_session`,
    /// `apply_history_transaction`) checks, in the same atomic step as the write, that `token`
    /// is the session's live lease's, and otherwise fails with [`ErrorKind::Fenced`] having
    /// changed nothing. Its reads are not fenced. No I/O; an empty `add_items` batch stays a
    /// no-op. Staged writes ([`Store::stage`]) and transfers are not fenced.
    pub fn fenced(&self, token: u64) -> StoreSession {
        StoreSession {
            fence: Some(token),
            ..self.clone()
        }
    }

    /// The fencing token the handle's writes carry (`None`: unfenced).
    pub fn fencing_token(&self) -> Option<u64> {
        self.fence
    }

    async fn write_fenced(
        &self,
        token: u64,
        write: FencedWrite<'_>,
        op: Operation,
    ) -> Result<WriteOutcome> {
        self.store
            .backend
            .fenced_write(&self.session_id, token, write)
            .await
            .map_err(|e| context(e, op, &self.session_id))
    }

    fn check_sizes(&self, items: &[Item]) -> Result<()> {
        check_item_sizes(items, self.store.options.max_item_bytes)
    }
}

/// The one item size check of every write path (`add_items`, staged parts, imports): the first
/// item over `max_item_bytes` fails the whole call with `TooLarge`, naming its index (within
/// the call) and size. Nothing of the call is written.
///
/// ```
/// use openai_agents_session::{check_item_sizes, ErrorKind, Item};
/// let items: Vec<Item> = vec![r#"{"a":1}"#.parse().unwrap(), r#"{"b":"long"}"#.parse().unwrap()];
/// let err = check_item_sizes(&items, 8).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::TooLarge);
/// assert_eq!(err.message(), "item 1 is 12 bytes, over max_item_bytes 8; nothing was written");
/// ```
pub fn check_item_sizes(items: &[Item], max_item_bytes: usize) -> Result<()> {
    match items
        .iter()
        .enumerate()
        .find(|(_, item)| item.len_bytes() > max_item_bytes)
    {
        Some((index, item)) => Err(Error::new(
            ErrorKind::TooLarge,
            Operation::AddItems,
            format!(
                "item {index} is {} bytes, over max_item_bytes {max_item_bytes}; nothing was written",
                item.len_bytes()
            ),
        )),
        None => Ok(()),
    }
}

impl Session for StoreSession {
    fn session_id(&self) -> &str {
        &self.session_id
    }

    fn get_items(&self, limit: Option<usize>) -> BoxFuture<'_, Result<Vec<Item>>> {
        Box::pin(async move {
            let op = Operation::GetItems;
            self.store.stats().record_call(op);
            if limit == Some(0) {
                return Ok(Vec::new());
            }
            self.store
                .backend
                .get_items(&self.session_id, limit)
                .await
                .map_err(|e| context(e, op, &self.session_id))
        })
    }

    fn add_items(&self, items: Vec<Item>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let op = Operation::AddItems;
            self.store.stats().record_call(op);
            self.check_sizes(&items)
                .map_err(|e| context(e, op, &self.session_id))?;
            if items.is_empty() {
                return Ok(());
            }
            if let Some(token) = self.fence {
                return match self
                    .write_fenced(token, FencedWrite::AddItems(items), op)
                    .await?
                {
                    WriteOutcome::Done => Ok(()),
                    other => Err(unexpected_outcome(op, &other, &self.session_id)),
                };
            }
            self.store
                .backend
                .add_items(&self.session_id, items)
                .await
                .map_err(|e| context(e, op, &self.session_id))
        })
    }

    fn pop_item(&self) -> BoxFuture<'_, Result<Option<Item>>> {
        Box::pin(async move {
            let op = Operation::PopItem;
            self.store.stats().record_call(op);
            if let Some(token) = self.fence {
                return match self.write_fenced(token, FencedWrite::PopItem, op).await? {
                    WriteOutcome::Popped(item) => Ok(item),
                    other => Err(unexpected_outcome(op, &other, &self.session_id)),
                };
            }
            self.store
                .backend
                .pop_item(&self.session_id)
                .await
                .map_err(|e| context(e, op, &self.session_id))
        })
    }

    fn apply_history_transaction<'a>(
        &'a self,
        operation_id: &'a str,
        transaction: &'a HistoryTransaction,
    ) -> BoxFuture<'a, Result<Applied>> {
        Box::pin(async move {
            let op = Operation::ApplyTransaction;
            self.store.stats().record_call(op);
            let prepared =
                check_item_sizes(transaction.items_added(), self.store.options.max_item_bytes)
                    .and_then(|()| {
                        PreparedTransaction::new(
                            operation_id,
                            transaction,
                            self.store.options.operation_retention,
                        )
                    })
                    .map_err(|e| context(e.with_operation(op), op, &self.session_id))?;
            if let Some(token) = self.fence {
                return match self
                    .write_fenced(token, FencedWrite::ApplyTransaction(&prepared), op)
                    .await?
                {
                    WriteOutcome::Applied(applied) => Ok(applied),
                    other => Err(unexpected_outcome(op, &other, &self.session_id)),
                };
            }
            self.store
                .backend
                .apply_transaction(&self.session_id, &prepared)
                .await
                .map_err(|e| context(e.with_operation(op), op, &self.session_id))
        })
    }

    fn clear_session(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let op = Operation::ClearSession;
            self.store.stats().record_call(op);
            if let Some(token) = self.fence {
                return match self
                    .write_fenced(token, FencedWrite::ClearSession, op)
                    .await?
                {
                    WriteOutcome::Done => Ok(()),
                    other => Err(unexpected_outcome(op, &other, &self.session_id)),
                };
            }
            self.store
                .backend
                .clear_session(&self.session_id)
                .await
                .map_err(|e| context(e, op, &self.session_id))
        })
    }
}

/// How a staged write lands on its session when committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StageMode {
    /// After the session's items (a new session when it has none), like one `add_items` batch.
    Append,
    /// In place of the session's items, in one step: readers see the old history or the new
    /// one, never a mix and never an empty session in between (on backends with native
    /// staging; see [`Staged::is_native`]).
    Replace,
}

/// One page of a session's items, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ItemPage {
    /// The items of this page, oldest first (undecodable records skipped).
    pub items: Vec<Item>,
    /// Pass to the next [`Store::read_page`] call; `None` after the last page. Opaque.
    pub next: Option<u64>,
}

impl ItemPage {
    /// A page (for backend implementors).
    pub fn new(items: Vec<Item>, next: Option<u64>) -> Self {
        ItemPage { items, next }
    }
}

/// One item with its position in its session (opaque; see [`Store::read_before`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PositionedItem {
    /// The item's position: larger is newer; kept across pops of newer items and appends.
    pub position: u64,
    /// The item.
    pub item: Item,
}

impl PositionedItem {
    /// A positioned item (for backend implementors).
    pub fn new(position: u64, item: Item) -> Self {
        PositionedItem { position, item }
    }
}

/// A page of a session's items before a position, from [`Store::read_before`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PageBefore {
    /// The items, oldest first.
    pub items: Vec<PositionedItem>,
    /// Pass as `before` to read the page before this one; `None` when no older record exists.
    pub earlier: Option<u64>,
    /// Records within this page's range that this build cannot read (another key, a newer
    /// format): skipped, never deleted.
    pub unreadable: u64,
    /// Corrupt records within this page's range: skipped.
    pub corrupt: u64,
}

impl PageBefore {
    /// A page (for backend implementors).
    pub fn new(items: Vec<PositionedItem>, earlier: Option<u64>) -> Self {
        PageBefore {
            items,
            earlier,
            ..PageBefore::default()
        }
    }

    /// Sets the counts of skipped records.
    pub fn with_skipped(mut self, unreadable: u64, corrupt: u64) -> Self {
        self.unreadable = unreadable;
        self.corrupt = corrupt;
        self
    }

    /// The position of the newest item of the page.
    pub fn newest_position(&self) -> Option<u64> {
        self.items.last().map(|i| i.position)
    }
}

/// A backend's staged write, returned by [`Backend::stage`](crate::Backend::stage). Items
/// appended are stored but invisible; `commit` makes them all visible at once. Dropped without
/// a commit, nothing becomes visible: the backend removes what it staged (at once where it
/// can, or later through `prune` and expiry).
pub trait StagedWrite: Send {
    /// Stores more items, in order, after those already staged (never empty, sizes checked).
    fn append(&mut self, items: Vec<Item>) -> BoxFuture<'_, Result<()>>;

    /// Makes every staged item visible in one step; returns how many were committed.
    fn commit(&mut self) -> BoxFuture<'_, Result<u64>>;

    /// Abandons the write: nothing becomes visible, and what was staged is deleted now where
    /// the storage allows (the CLI awaits it on Ctrl-C). The default does nothing, leaving the
    /// cleanup to `Drop` and to `prune`. Calling `commit` afterwards is an error.
    fn abort(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}
