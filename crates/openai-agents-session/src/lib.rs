//! # openai-agents-session
//!
//! Durable conversation memory for AI agents. An agent framework hands a [`Session`] a stream of
//! JSON items (user and assistant messages, reasoning items, function calls and their outputs)
//! and asks for them back. This crate stores them, in memory, in an embedded SQLite file (the
//! default feature) and, behind features, in Redis and DynamoDB, all with one contract:
//!
//! * items are JSON objects returned exactly as given (key order, unicode, numbers as written);
//! * `get_items(None)` is the whole history, `Some(n)` the newest `n` oldest first, `Some(0)` is
//!   empty;
//! * one `add_items` batch is atomic and contiguous; concurrent writers lose nothing; concurrent
//!   pops return each item at most once;
//! * any session id string is isolated from every other; expired sessions are invisible at once;
//! * stored records that cannot be decoded are skipped, never counted, never crash a read;
//! * failures are typed [`Error`]s naming the operation and the session.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> openai_agents_session::Result<()> {
//! use openai_agents_session::{Item, Session, Store};
//!
//! # let dir = tempfile::tempdir().unwrap(); // removed when dropped
//! let url = format!("sqlite://{}/sessions.db?ttl=86400", dir.path().display());
//!
//! let store = Store::open(&url).await?;
//! let session = store.session("user-42:support-chat")?;
//! session
//!     .add_items(vec![
//!         r#"{"role":"user","content":"Where is my order?"}"#.parse()?,
//!         r#"{"type":"function_call","call_id":"c1","name":"track","arguments":"{\"id\":7}"}"#.parse()?,
//!     ])
//!     .await?;
//!
//! // Another process (or a restart) sees the same history.
//! let reopened = Store::open(&url).await?.session("user-42:support-chat")?;
//! let last = reopened.get_items(Some(1)).await?;
//! assert_eq!(last[0].item_type().as_deref(), Some("function_call"));
//! # Ok(()) }
//! ```
//!
//! The pieces, each in one file: [`Session`], [`Backend`] and [`Store`] in `store.rs`; [`Item`]
//! in `item.rs`; the record [`codec`]; the [`url`] syntax; the backends under [`backend`]; the
//! [`conformance`] kit (feature `conformance`).

#![warn(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod backend;
pub mod codec;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod encryption;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod history;
mod item;
pub mod lease;
pub mod observe;
pub mod open;
pub mod pages;
pub mod staged;
mod stats;
mod store;
mod time;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod tls;
pub mod transfer;
pub mod url;

pub use error::{BoxError, ConflictReason, Error, ErrorKind, FailureCause, Operation, Result};
pub use history::{Applied, HistoryTransaction};
pub use item::Item;
pub use lease::{Lease, LeaseGrant};
pub use staged::{ItemPage, StageMode, Staged, StagedWrite};
pub use stats::{OperationStats, RequestStats};
pub use store::{
    check_item_sizes, validate_session_id, Backend, BoxFuture, FencedWrite, ListOptions,
    PageBefore, PositionedItem, PruneReport, RawRecords, Session, SessionInfo, SessionPage, Store,
    StoreOptions, StoreSession, WriteOutcome, DEFAULT_MAX_ITEM_BYTES, MAX_SESSION_ID_BYTES,
    MAX_TTL_SECS,
};
pub use time::Timestamp;

/// The README's code blocks, compiled as doc tests so that they stay true.
#[cfg(all(doctest, feature = "conformance", feature = "sqlite"))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
