//! Moving conversations: export to JSON Lines, import from it, and copy between any two stores
//! (the read-only legacy layouts included, which is how data leaves the Python stores).
//!
//! The export format is one record per line, `{"session_id": ID, "item": {...}}`, each
//! session's items contiguous and oldest first. Each session moves as one atomic batch; one
//! session at a time is held in memory.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> openai_agents_session::Result<()> {
//! use openai_agents_session::transfer::{copy_sessions, CopyOptions, OnExisting};
//! use openai_agents_session::{Session, Store};
//! let from = Store::open("memory://").await?;
//! from.session("a")?.add_items(vec![r#"{"role":"user","content":"hi"}"#.parse()?]).await?;
//! let to = Store::open("memory://").await?;
//! let summary = copy_sessions(&from, &to, &CopyOptions::default(), &mut |_| {}).await?;
//! assert_eq!((summary.sessions, summary.items), (1, 1));
//! // Copying again fails by default: the session exists in the target.
//! assert!(copy_sessions(&from, &to, &CopyOptions::default(), &mut |_| {}).await.is_err());
//! let again = CopyOptions::default().on_existing(OnExisting::Skip);
//! assert_eq!(copy_sessions(&from, &to, &again, &mut |_| {}).await?.skipped, 1);
//! # Ok(()) }
//! ```

use std::collections::HashSet;
use std::io::{BufRead, Write};

use serde_json::value::RawValue;

use crate::error::{Error, ErrorKind, Operation, Result};
use crate::item::Item;
use crate::store::{Session, Store};

impl CopyOptions {
    /// Copies only these sessions.
    pub fn sessions(mut self, ids: Vec<String>) -> Self {
        self.sessions = ids;
        self
    }

    /// Copies only sessions whose id starts with `prefix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Sets what happens to sessions that already exist in the target.
    pub fn on_existing(mut self, mode: OnExisting) -> Self {
        self.on_existing = mode;
        self
    }
}

/// What to do with a session that already exists in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnExisting {
    /// Fail before writing anything, naming the session (the default).
    #[default]
    Error,
    /// Leave it as it is (a re-run after a partial failure completes without duplicates).
    Skip,
    /// Clear it, then write the source's items.
    Replace,
    /// Add the source's items after its own.
    Append,
}

impl std::str::FromStr for OnExisting {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "error" => Ok(OnExisting::Error),
            "skip" => Ok(OnExisting::Skip),
            "replace" => Ok(OnExisting::Replace),
            "append" => Ok(OnExisting::Append),
            other => Err(Error::new(
                ErrorKind::InvalidInput,
                Operation::Open,
                format!("on-existing must be error, skip, replace or append, got {other:?}"),
            )),
        }
    }
}

/// Which sessions to copy and how.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CopyOptions {
    /// These sessions only (all of the source's when empty).
    pub sessions: Vec<String>,
    /// Only sessions whose id starts with this literal prefix.
    pub prefix: Option<String>,
    /// Sessions that already exist in the target.
    pub on_existing: OnExisting,
}

/// Progress of a transfer, reported after each session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Sessions done (written or skipped).
    pub sessions_done: u64,
    /// Sessions in all, when known.
    pub sessions_total: Option<u64>,
    /// Items written.
    pub items: u64,
    /// Bytes of item JSON written.
    pub bytes: u64,
}

/// What a transfer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// Sessions written.
    pub sessions: u64,
    /// Sessions left alone (`OnExisting::Skip`).
    pub skipped: u64,
    /// Items written.
    pub items: u64,
    /// Bytes of item JSON written.
    pub bytes: u64,
}

fn exists_error(op: Operation, id: &str) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        op,
        format!("session {id:?} already exists in the target; nothing was written (choose --on-existing skip, replace or append)"),
    )
    .with_session(id)
}

/// The sessions to move: those named, or every session of `store` (with the prefix).
async fn chosen_sessions(
    store: &Store,
    names: &[String],
    prefix: Option<&str>,
) -> Result<Vec<String>> {
    if names.is_empty() {
        return store.list_all_sessions(prefix).await;
    }
    Ok(names
        .iter()
        .filter(|n| prefix.is_none_or(|p| n.starts_with(p)))
        .cloned()
        .collect())
}

/// Writes one session's items into the target according to `on_existing`; returns whether it
/// was written.
async fn write_session(
    to: &Store,
    id: &str,
    items: Vec<Item>,
    on_existing: OnExisting,
) -> Result<bool> {
    let exists = to.session_info(id).await?.is_some();
    let target = to.session(id)?;
    match (exists, on_existing) {
        (true, OnExisting::Skip) => return Ok(false),
        (true, OnExisting::Error) => return Err(exists_error(Operation::AddItems, id)),
        (true, OnExisting::Replace) => target.clear_session().await?,
        _ => {}
    }
    target.add_items(items).await?;
    Ok(true)
}

/// With [`OnExisting::Error`], fails naming the first of `ids` that exists in `to`, before
/// anything is written.
async fn ensure_none_exist(to: &Store, ids: &[String], on_existing: OnExisting) -> Result<()> {
    if on_existing == OnExisting::Error {
        for id in ids {
            if to.session_info(id).await?.is_some() {
                return Err(exists_error(Operation::AddItems, id));
            }
        }
    }
    Ok(())
}

/// The running totals of a transfer and its progress reports.
struct Tally<'p> {
    summary: Summary,
    state: Progress,
    progress: &'p mut dyn FnMut(Progress),
}

impl<'p> Tally<'p> {
    fn new(total: usize, progress: &'p mut dyn FnMut(Progress)) -> Self {
        Tally {
            summary: Summary::default(),
            state: Progress {
                sessions_total: Some(total as u64),
                ..Progress::default()
            },
            progress,
        }
    }

    /// Writes one session (an empty one is only counted as done) and reports progress.
    async fn write(
        &mut self,
        to: &Store,
        id: &str,
        items: Vec<Item>,
        on_existing: OnExisting,
    ) -> Result<()> {
        let (count, bytes) = (
            items.len() as u64,
            items.iter().map(|i| i.len_bytes() as u64).sum::<u64>(),
        );
        if !items.is_empty() {
            if write_session(to, id, items, on_existing).await? {
                self.summary.sessions += 1;
                self.summary.items += count;
                self.summary.bytes += bytes;
            } else {
                self.summary.skipped += 1;
            }
        }
        self.state.sessions_done += 1;
        self.state.items = self.summary.items;
        self.state.bytes = self.summary.bytes;
        (self.progress)(self.state);
        Ok(())
    }
}

/// Copies sessions from one store to another, exactly and in order, one atomic batch per
/// session, with the target's own TTL. With [`OnExisting::Error`] every target session is
/// checked before anything is written.
pub async fn copy_sessions(
    from: &Store,
    to: &Store,
    options: &CopyOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Summary> {
    let ids = chosen_sessions(from, &options.sessions, options.prefix.as_deref()).await?;
    ensure_none_exist(to, &ids, options.on_existing).await?;
    let mut tally = Tally::new(ids.len(), progress);
    for id in &ids {
        let items = from.session(id)?.get_items(None).await?;
        tally.write(to, id, items, options.on_existing).await?;
    }
    Ok(tally.summary)
}

/// Writes sessions as JSON Lines (`{"session_id": ..., "item": {...}}`), each session's items
/// contiguous and oldest first: the named ones, or every session of the store.
pub async fn export_sessions(
    store: &Store,
    sessions: &[String],
    out: &mut dyn Write,
    progress: &mut dyn FnMut(Progress),
) -> Result<Summary> {
    let ids = chosen_sessions(store, sessions, None).await?;
    let io = |e: std::io::Error| {
        Error::new(
            ErrorKind::Backend,
            Operation::GetItems,
            "cannot write the export",
        )
        .with_source(e)
    };
    let mut summary = Summary::default();
    let mut state = Progress {
        sessions_total: Some(ids.len() as u64),
        ..Progress::default()
    };
    for id in &ids {
        let items = store.session(id)?.get_items(None).await?;
        let id_json = serde_json::Value::String(id.clone()).to_string();
        for item in &items {
            // The item's text as stored: numbers and escapes exactly as they are.
            writeln!(out, "{{\"session_id\":{id_json},\"item\":{item}}}").map_err(io)?;
            summary.bytes += item.len_bytes() as u64;
        }
        summary.items += items.len() as u64;
        summary.sessions += u64::from(!items.is_empty());
        state.sessions_done += 1;
        state.items = summary.items;
        state.bytes = summary.bytes;
        progress(state);
    }
    out.flush().map_err(io)?;
    Ok(summary)
}

#[derive(serde::Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    session_id: &'a RawValue,
    #[serde(borrow)]
    item: &'a RawValue,
}

fn parse_line(line: &str, number: usize) -> Result<(String, Item)> {
    let bad = |why: String| {
        Error::new(
            ErrorKind::InvalidInput,
            Operation::AddItems,
            format!("line {number}: {why}; nothing was written"),
        )
    };
    let parsed: Line<'_> = serde_json::from_str(line).map_err(|e| {
        bad(format!(
            "not a {{\"session_id\": ..., \"item\": {{...}}}} record ({e})"
        ))
    })?;
    let id: String = serde_json::from_str(parsed.session_id.get())
        .map_err(|_| bad("session_id is not a string".to_owned()))?;
    crate::store::validate_session_id(&id).map_err(|e| bad(e.message().to_owned()))?;
    let item = Item::from_json_str(parsed.item.get()).map_err(|e| bad(e.message().to_owned()))?;
    Ok((id, item))
}

/// Imports JSON Lines written by [`export_sessions`] from a file that can be read twice (the
/// CLI spools stdin to a temporary file). The whole input is validated first: a bad line is an
/// [`ErrorKind::InvalidInput`] error naming its line number, and nothing is written. Each
/// session is then written as one atomic batch.
pub async fn import_sessions(
    store: &Store,
    path: &std::path::Path,
    on_existing: OnExisting,
    progress: &mut dyn FnMut(Progress),
) -> Result<Summary> {
    let open = || {
        std::fs::File::open(path)
            .map(std::io::BufReader::new)
            .map_err(|e| {
                Error::new(
                    ErrorKind::InvalidInput,
                    Operation::AddItems,
                    format!("cannot read {}", path.display()),
                )
                .with_source(e)
            })
    };
    let read_error = |e: std::io::Error| {
        Error::new(
            ErrorKind::InvalidInput,
            Operation::AddItems,
            "cannot read the input",
        )
        .with_source(e)
    };
    // Pass 1: validate everything, and learn the sessions (each must be contiguous).
    let mut order: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for (index, line) in open()?.lines().enumerate() {
        let line = line.map_err(read_error)?;
        if line.trim().is_empty() {
            continue;
        }
        let (id, item) = parse_line(&line, index + 1)?;
        if item.len_bytes() > store.options().max_item_bytes {
            return Err(Error::new(
                ErrorKind::TooLarge,
                Operation::AddItems,
                format!(
                    "line {}: the item is over max_item_bytes; nothing was written",
                    index + 1
                ),
            ));
        }
        if order.last() != Some(&id) {
            if !seen.insert(id.clone()) {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    Operation::AddItems,
                    format!("line {}: session {id:?} appears again after other sessions; each session's items must be contiguous; nothing was written", index + 1),
                ));
            }
            order.push(id);
        }
    }
    ensure_none_exist(store, &order, on_existing).await?;
    // Pass 2: write session by session.
    let mut tally = Tally::new(order.len(), progress);
    let mut current: Option<String> = None;
    let mut batch: Vec<Item> = Vec::new();
    let mut lines = open()?.lines().enumerate();
    loop {
        let next = match lines.next() {
            Some((index, line)) => {
                let line = line.map_err(read_error)?;
                if line.trim().is_empty() {
                    continue;
                }
                Some(parse_line(&line, index + 1)?)
            }
            None => None,
        };
        let switching = match (&current, &next) {
            (Some(cur), Some((id, _))) => cur != id,
            (Some(_), None) => true,
            _ => false,
        };
        if switching {
            if let Some(id) = current.take() {
                let items = std::mem::take(&mut batch);
                tally.write(store, &id, items, on_existing).await?;
            }
        }
        match next {
            Some((id, item)) => {
                current = Some(id);
                batch.push(item);
            }
            None => return Ok(tally.summary),
        }
    }
}

/// Reads a whole input (stdin) into a temporary file, for [`import_sessions`].
pub fn spool(input: &mut dyn BufRead) -> Result<tempfile_path::TempPath> {
    tempfile_path::spool(input)
}

/// A minimal temporary file that deletes itself.
pub mod tempfile_path {
    use std::io::{BufRead, Write};
    use std::path::{Path, PathBuf};

    use crate::error::{Error, ErrorKind, Operation, Result};

    /// A temporary file path, deleted on drop.
    #[derive(Debug)]
    pub struct TempPath(PathBuf);

    impl TempPath {
        /// The path.
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    pub(crate) fn spool(input: &mut dyn BufRead) -> Result<TempPath> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "agent-session-import-{}-{}.jsonl",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let err = |e: std::io::Error| {
            Error::new(
                ErrorKind::InvalidInput,
                Operation::AddItems,
                "cannot spool the input",
            )
            .with_source(e)
        };
        let temp = TempPath(path);
        let mut file = std::io::BufWriter::new(std::fs::File::create(temp.path()).map_err(err)?);
        std::io::copy(input, &mut file).map_err(err)?;
        file.flush().map_err(err)?;
        Ok(temp)
    }
}
