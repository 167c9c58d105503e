//! Reading a history backwards, a page at a time: [`Store::read_before`] returns the newest
//! items before a position, each with its position, so that a viewer opens a 10,000-item session
//! as fast as a 10-item one and loads earlier pages on demand.
//!
//! Positions are opaque `u64`s taken from what each backend stores (memory, SQLite and DynamoDB:
//! the record's sequence; Redis: its index in the session's list). Larger is newer, and an item
//! keeps its position across pops of newer items and appends; a clear or a replace starts over.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> openai_agents_session::Result<()> {
//! use openai_agents_session::{Session, Store};
//! let store = Store::open("memory://").await?;
//! let session = store.session("long")?;
//! let items: Vec<_> = (0..10).map(|n| format!(r#"{{"n":{n}}}"#).parse().unwrap()).collect();
//! session.add_items(items).await?;
//! let newest = session.read_before(None, 3).await?; // n = 7, 8, 9
//! assert_eq!(newest.items[0].item.as_str(), r#"{"n":7}"#);
//! let earlier = session.read_before(newest.earlier, 3).await?; // n = 4, 5, 6
//! assert_eq!(earlier.items[2].item.as_str(), r#"{"n":6}"#);
//! let first = session.read_before(Some(earlier.items[0].position), 100).await?;
//! assert_eq!((first.items.len(), first.earlier), (4, None));
//! # Ok(()) }
//! ```

use crate::codec::Decoded;
use crate::error::{Operation, Result};
use crate::store::{context, validate_session_id, Store, StoreSession};
pub use crate::store::{PageBefore, PositionedItem};

/// Collects one [`PageBefore`] from records offered newest first: `limit` valid items, then
/// one more record (of any kind) to learn that older ones exist. Backends fetch `limit + 1`
/// records at a time and offer them until `push` says stop.
#[derive(Debug)]
pub(crate) struct BeforeCollector {
    limit: usize,
    newest_first: Vec<PositionedItem>,
    more: bool,
    unreadable: u64,
    corrupt: u64,
}

impl BeforeCollector {
    pub(crate) fn new(limit: usize) -> Self {
        BeforeCollector {
            limit: limit.max(1),
            newest_first: Vec::new(),
            more: false,
            unreadable: 0,
            corrupt: 0,
        }
    }

    /// How many records to fetch next: the items still wanted plus the one that tells whether
    /// older records exist. (The server backends fetch in windows; memory and SQLite do not.)
    #[cfg_attr(
        not(any(feature = "redis", feature = "dynamodb", feature = "postgres")),
        allow(dead_code)
    )]
    pub(crate) fn wanted(&self) -> usize {
        self.limit - self.newest_first.len() + 1
    }

    /// Offers the next older record; returns true once the page is complete.
    pub(crate) fn push(&mut self, position: u64, decoded: Decoded) -> bool {
        if self.newest_first.len() >= self.limit {
            self.more = true;
            return true;
        }
        match decoded {
            Decoded::Valid(item) => self.newest_first.push(PositionedItem::new(position, item)),
            Decoded::Corrupt(reason) => {
                self.corrupt += 1;
                tracing::debug!(%reason, position, "skipping a corrupt record");
            }
            // Without a key, an encrypted record is counted as unreadable here: a page of a
            // viewer shows how many it could not read rather than failing.
            Decoded::Unreadable(reason) | Decoded::KeyMissing(reason) => {
                self.unreadable += 1;
                tracing::debug!(%reason, position, "skipping an unreadable record");
            }
        }
        false
    }

    pub(crate) fn finish(mut self) -> PageBefore {
        self.newest_first.reverse();
        let earlier = if self.more {
            self.newest_first.first().map(|i| i.position)
        } else {
            None
        };
        PageBefore::new(self.newest_first, earlier).with_skipped(self.unreadable, self.corrupt)
    }
}

impl Store {
    /// The newest `limit` items before `before` (an item's [`PositionedItem::position`], or
    /// the page's [`PageBefore::earlier`]; `None`: the newest of the session), oldest first,
    /// each with its position. Undecodable records are skipped and not counted toward `limit`
    /// (their numbers are in the page). One counted call; it does not refresh the TTL. On
    /// every backend of this crate its cost depends on `limit`, not on the history's length;
    /// a third-party backend without [`Backend::read_before`](crate::Backend::read_before)
    /// is read whole through its `get_items`, its items numbered from 1.
    pub async fn read_before(
        &self,
        session_id: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<PageBefore> {
        let op = Operation::GetItems;
        validate_session_id(session_id).map_err(|e| e.with_operation(op))?;
        self.stats().record_call(op);
        if limit == 0 || before == Some(0) {
            return Ok(PageBefore::default());
        }
        if let Some(page) = self
            .backend
            .read_before(session_id, before, limit)
            .await
            .map_err(|e| context(e, op, session_id))?
        {
            return Ok(page);
        }
        let all = self
            .backend
            .get_items(session_id, None)
            .await
            .map_err(|e| context(e, op, session_id))?;
        let mut positioned: Vec<PositionedItem> = all
            .into_iter()
            .zip(1u64..)
            .map(|(item, position)| PositionedItem::new(position, item))
            .filter(|i| before.is_none_or(|b| i.position < b))
            .collect();
        let start = positioned.len().saturating_sub(limit);
        let page: Vec<PositionedItem> = positioned.split_off(start);
        let earlier = (start > 0)
            .then(|| page.first().map(|i| i.position))
            .flatten();
        Ok(PageBefore::new(page, earlier))
    }
}

impl StoreSession {
    /// [`Store::read_before`] on this session.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> openai_agents_session::Result<()> {
    /// use openai_agents_session::{Session, Store};
    /// let session = Store::open("memory://").await?.session("s")?;
    /// session.add_items(vec![r#"{"a":1}"#.parse()?, r#"{"a":2}"#.parse()?]).await?;
    /// let page = session.read_before(None, 1).await?;
    /// assert_eq!(page.items[0].item.as_str(), r#"{"a":2}"#);
    /// assert!(page.earlier.is_some());
    /// # Ok(()) }
    /// ```
    pub async fn read_before(&self, before: Option<u64>, limit: usize) -> Result<PageBefore> {
        self.store()
            .read_before(crate::Session::session_id(self), before, limit)
            .await
    }
}
