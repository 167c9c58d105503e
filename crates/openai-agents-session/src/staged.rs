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

use crate::error::{Error, ErrorKind, Operation, Result};
use crate::item::Item;
use crate::store::{context, validate_session_id, Session, Store};
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
        let max = self.store.options().max_item_bytes;
        if let Some(item) = items.iter().find(|i| i.len_bytes() > max) {
            let err = Error::new(
                ErrorKind::TooLarge,
                Operation::AddItems,
                format!(
                    "an item of {} bytes is over max_item_bytes {max}; nothing of this part was staged",
                    item.len_bytes()
                ),
            );
            return Err(self.context(err));
        }
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

    /// Makes every staged item visible in one step; returns how many were committed. A replace
    /// with nothing staged clears the session.
    pub async fn commit(mut self) -> Result<u64> {
        self.store.stats().record_call(Operation::AddItems);
        if self.mode == StageMode::Replace && self.staged == 0 {
            // Replacing with nothing is clearing (what a native writer reserved is abandoned).
            let session = self.store.session(&self.session_id)?;
            return session.clear_session().await.map(|()| 0);
        }
        let result = match &mut self.writer {
            Writer::Native(w) => w.commit().await,
            Writer::Buffered(held) => {
                let items = std::mem::take(held);
                let n = items.len() as u64;
                let session = self.store.session(&self.session_id)?;
                if self.mode == StageMode::Replace {
                    session.clear_session().await?;
                }
                session.add_items(items).await.map(|()| n)
            }
        };
        result.map_err(|e| self.context(e))
    }
}

impl Store {
    /// One page of a session's items, oldest first, after `after` (the previous page's
    /// [`ItemPage::next`]; `None` to start): at least one item when any remain, and no more
    /// once `max_bytes` of item JSON are reached. Backends without paging return the whole
    /// session as one page. Does not refresh the TTL.
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
            None => Ok(ItemPage::new(
                self.session(session_id)?.get_items(None).await?,
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
