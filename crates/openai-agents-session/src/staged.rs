//! Sessions too large for one batch: read in pages ([`Store::read_page`]) and written through a
//! staged write ([`Store::stage`]) that stays invisible until its commit makes every item visible
//! at once, appended after the session's items or replacing them. This is how the transfer
//! tools move a session of any size with bounded memory, and how `--on-existing replace` swaps
//! a session's history atomically.
//!
//! Backends implement [`Backend::stage`](crate::Backend::stage) and
//! [`Backend::read_page`](crate::Backend::read_page) where their storage allows it (memory,
//! SQLite: a staging table; Redis: a staging list in the session's slot, renamed or appended by
//! one script; DynamoDB: the commit protocol, in a new generation for a replace). Elsewhere the
//! store falls back to holding the session in memory, with the same results.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> openai_agents_session::Result<()> {
//! use openai_agents_session::{Session, StageMode, Store};
//! let store = Store::open("memory://").await?;
//! let session = store.session("big")?;
//! session.add_items(vec![r#"{"old":1}"#.parse()?]).await?;
//! let mut staged = store.stage("big", StageMode::Replace, None).await?;
//! staged.append(vec![r#"{"new":1}"#.parse()?]).await?;
//! staged.append(vec![r#"{"new":2}"#.parse()?]).await?;
//! assert_eq!(session.get_items(None).await?.len(), 1); // nothing visible before the commit
//! assert_eq!(staged.commit().await?, 2);
//! let page = store.read_page("big", None, 1).await?; // at least one item per page
//! assert_eq!(page.items[0].as_str(), r#"{"new":1}"#);
//! let rest = store.read_page("big", page.next, 1 << 20).await?;
//! assert_eq!((rest.items.len(), rest.next), (1, None));
//! # Ok(()) }
//! ```

use crate::error::{Error, Operation, Result};
use crate::item::Item;
use crate::store::{context, validate_session_id, Store};
pub use crate::store::{ItemPage, StageMode, StagedWrite};

enum Writer<'a> {
    Native(Box<dyn StagedWrite + 'a>),
    /// The fallback for backends without staging: the session is held in memory and written at
    /// the commit (a replace is then a clear followed by one batch).
    Buffered(Vec<Item>),
}

/// A staged write in progress, from [`Store::stage`].
pub struct Staged<'a> {
    store: &'a Store,
    session_id: String,
    mode: StageMode,
    writer: Writer<'a>,
    staged: u64,
}

impl std::fmt::Debug for Staged<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged")
            .field("session_id", &self.session_id)
            .field("mode", &self.mode)
            .field("native", &self.is_native())
            .field("staged", &self.staged)
            .finish()
    }
}

impl<'a> Staged<'a> {
    pub(crate) fn new(
        store: &'a Store,
        session_id: &str,
        mode: StageMode,
        native: Option<Box<dyn StagedWrite + 'a>>,
    ) -> Self {
        Staged {
            store,
            session_id: session_id.to_owned(),
            mode,
            writer: native.map_or_else(|| Writer::Buffered(Vec::new()), Writer::Native),
            staged: 0,
        }
    }

    /// Whether the backend stages natively (bounded memory, atomic replace) rather than
    /// through the in-memory fallback.
    pub fn is_native(&self) -> bool {
        matches!(self.writer, Writer::Native(_))
    }

    /// Items staged so far.
    pub fn staged(&self) -> u64 {
        self.staged
    }

    fn context(&self, err: Error) -> Error {
        let err = err.with_operation(Operation::AddItems);
        if err.session_id().is_none() {
            err.with_session(self.session_id.clone())
        } else {
            err
        }
    }

    /// Stages more items, after those already staged. Every item is checked against
    /// `max_item_bytes` before anything of this call is stored.
    pub async fn append(&mut self, items: Vec<Item>) -> Result<()> {
        crate::store::check_item_sizes(&items, self.store.options().max_item_bytes)
            .map_err(|e| self.context(e))?;
        if items.is_empty() {
            return Ok(());
        }
        let n = items.len() as u64;
        let result = match &mut self.writer {
            Writer::Native(w) => w.append(items).await,
            Writer::Buffered(held) => {
                held.extend(items);
                Ok(())
            }
        };
        result.map_err(|e| self.context(e))?;
        self.staged += n;
        Ok(())
    }

    /// Abandons the write and waits for what was staged to be deleted (where the backend can
    /// do it now; otherwise `prune` removes it after `stale_batch_secs`). Nothing becomes
    /// visible.
    pub async fn abort(mut self) -> Result<()> {
        match &mut self.writer {
            Writer::Native(w) => w.abort().await.map_err(|e| self.context(e)),
            Writer::Buffered(held) => {
                held.clear();
                Ok(())
            }
        }
    }

    /// Makes every staged item visible in one step; returns how many were committed. A replace
    /// with nothing staged clears the session.
    pub async fn commit(mut self) -> Result<u64> {
        self.store.stats().record_call(Operation::AddItems);
        if self.mode == StageMode::Replace && self.staged == 0 {
            // Replacing with nothing is clearing (what a native writer reserved is abandoned).
            return self
                .store
                .backend
                .clear_session(&self.session_id)
                .await
                .map(|()| 0)
                .map_err(|e| self.context(e));
        }
        let result = match &mut self.writer {
            Writer::Native(w) => w.commit().await,
            Writer::Buffered(held) => {
                let items = std::mem::take(held);
                let n = items.len() as u64;
                // The backend directly: this commit is the one counted AddItems call.
                let backend = &self.store.backend;
                if self.mode == StageMode::Replace {
                    backend.clear_session(&self.session_id).await?;
                }
                backend.add_items(&self.session_id, items).await.map(|()| n)
            }
        };
        result.map_err(|e| self.context(e))
    }
}

impl Store {
    /// One page of a session's items, oldest first, after `after` (the previous page's
    /// [`ItemPage::next`]; `None` to start): at least one item when any remain, and no more
    /// once `max_bytes` of item JSON are reached. One counted call. On every backend of this
    /// crate it does not refresh the TTL. A backend without paging (a third-party one that does
    /// not implement [`Backend::read_page`](crate::Backend::read_page)) returns the whole
    /// session as one page through its `get_items`, which refreshes the TTL if that backend
    /// refreshes on read.
    pub async fn read_page(
        &self,
        session_id: &str,
        after: Option<u64>,
        max_bytes: usize,
    ) -> Result<ItemPage> {
        let op = Operation::GetItems;
        validate_session_id(session_id).map_err(|e| e.with_operation(op))?;
        self.stats().record_call(op);
        match self
            .backend
            .read_page(session_id, after, max_bytes.max(1))
            .await
            .map_err(|e| context(e, op, session_id))?
        {
            Some(page) => Ok(page),
            None if after.is_some() => Ok(ItemPage::default()),
            // One counted call, one backend read. A backend without paging reads through its
            // `get_items`, which refreshes the TTL if that backend refreshes on read.
            None => Ok(ItemPage::new(
                self.backend
                    .get_items(session_id, None)
                    .await
                    .map_err(|e| context(e, op, session_id))?,
                None,
            )),
        }
    }

    /// Starts a staged write on a session: items appended to it are invisible until
    /// [`Staged::commit`] makes them all visible at once (see [`crate::staged`]).
    /// `expected_items` (how many will be staged) lets some backends reserve space up front.
    pub async fn stage(
        &self,
        session_id: &str,
        mode: StageMode,
        expected_items: Option<u64>,
    ) -> Result<Staged<'_>> {
        let op = Operation::AddItems;
        validate_session_id(session_id).map_err(|e| e.with_operation(op))?;
        let native = self
            .backend
            .stage(session_id, mode, expected_items)
            .await
            .map_err(|e| context(e, op, session_id))?;
        Ok(Staged::new(self, session_id, mode, native))
    }
}
