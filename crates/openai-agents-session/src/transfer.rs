//! Moving conversations: export to JSON Lines, import from it, and copy between any two stores
//! (the read-only legacy layouts included, which is how data leaves the Python stores).
//!
//! The export format is one record per line, `{"session_id": ID, "item": {...}}`, each
//! session's items contiguous and oldest first. Each session lands in the target in one step:
//! as one batch when it fits in one chunk ([`DEFAULT_CHUNK_BYTES`]), and otherwise read page by
//! page and written through the target's staged write ([`crate::staged`]), so memory holds one
//! chunk, never a whole session. `OnExisting::Replace` swaps a session's history atomically on
//! backends that stage natively (all of this crate's writable ones).
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
use crate::staged::StageMode;
use crate::store::{Session, Store};

/// The default chunk: a session with more item JSON than this is streamed through a staged
/// write in parts of about this size.
pub const DEFAULT_CHUNK_BYTES: usize = 8 * 1024 * 1024;

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

    /// Sets the chunk size: sessions with more item JSON are streamed in parts of about this
    /// many bytes (at least one item per part).
    pub fn chunk_bytes(mut self, bytes: usize) -> Self {
        self.chunk_bytes = bytes.max(1);
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
    /// Put the source's items in its place, in one step (readers never see it empty).
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
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CopyOptions {
    /// These sessions only (all of the source's when empty).
    pub sessions: Vec<String>,
    /// Only sessions whose id starts with this literal prefix.
    pub prefix: Option<String>,
    /// Sessions that already exist in the target.
    pub on_existing: OnExisting,
    /// Sessions with more item JSON than this are streamed in parts of about this size.
    pub chunk_bytes: usize,
    /// Stops the copy before its next write when set (see [`Interrupt`]).
    pub interrupt: Interrupt,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            sessions: Vec::new(),
            prefix: None,
            on_existing: OnExisting::Error,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            interrupt: Interrupt::new(),
        }
    }
}

/// A request to stop a transfer (Ctrl-C): the transfer notices it before its next write, aborts
/// the staged write in flight (awaiting the deletion of what it staged) and fails with an
/// [`ErrorKind::InvalidInput`] error saying it was interrupted. Sessions already written are
/// whole. Clones share the flag.
///
/// ```
/// let interrupt = openai_agents_session::transfer::Interrupt::new();
/// assert!(!interrupt.is_set());
/// interrupt.clone().set();
/// assert!(interrupt.is_set());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Interrupt(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Interrupt {
    /// A flag not yet set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every transfer holding a clone to stop.
    pub fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn interrupted(id: &str) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        Operation::AddItems,
        "interrupted: the session in flight was not written",
    )
    .with_session(id)
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

/// Where one session's items go: one batch while they fit in a chunk, a staged write once
/// they do not (or for a replace, which must swap the history in one step).
struct SessionWriter<'s> {
    to: &'s Store,
    id: String,
    mode: StageMode,
    expected: Option<u64>,
    chunk_bytes: usize,
    held: Vec<Item>,
    held_bytes: usize,
    staged: Option<crate::staged::Staged<'s>>,
    items: u64,
    bytes: u64,
    interrupt: Interrupt,
}

impl<'s> SessionWriter<'s> {
    /// Decides what to do with session `id` of the target: `None` to skip it.
    async fn open(
        to: &'s Store,
        id: &str,
        on_existing: OnExisting,
        expected: Option<u64>,
        chunk_bytes: usize,
        interrupt: &Interrupt,
    ) -> Result<Option<SessionWriter<'s>>> {
        let exists = to.session_info(id).await?.is_some();
        let mode = match (exists, on_existing) {
            (true, OnExisting::Skip) => return Ok(None),
            (true, OnExisting::Error) => return Err(exists_error(Operation::AddItems, id)),
            (true, OnExisting::Replace) => StageMode::Replace,
            _ => StageMode::Append,
        };
        Ok(Some(SessionWriter {
            to,
            id: id.to_owned(),
            mode,
            expected,
            chunk_bytes,
            held: Vec::new(),
            held_bytes: 0,
            staged: None,
            items: 0,
            bytes: 0,
            interrupt: interrupt.clone(),
        }))
    }

    /// Adds items; past one chunk they go to a staged write, one chunk at a time.
    async fn push(&mut self, items: Vec<Item>) -> Result<()> {
        for item in items {
            self.items += 1;
            self.bytes += item.len_bytes() as u64;
            self.held_bytes += item.len_bytes();
            self.held.push(item);
            if self.held_bytes >= self.chunk_bytes {
                self.flush().await?;
            }
        }
        Ok(())
    }

    /// When interrupted: the staged write in flight is aborted (awaited), and the transfer fails.
    async fn check_interrupt(&mut self) -> Result<()> {
        if !self.interrupt.is_set() {
            return Ok(());
        }
        if let Some(staged) = self.staged.take() {
            staged.abort().await?;
        }
        Err(interrupted(&self.id))
    }

    async fn flush(&mut self) -> Result<()> {
        self.check_interrupt().await?;
        if self.staged.is_none() {
            self.staged = Some(self.to.stage(&self.id, self.mode, self.expected).await?);
        }
        let part = std::mem::take(&mut self.held);
        self.held_bytes = 0;
        if let Some(staged) = self.staged.as_mut() {
            staged.append(part).await?;
        }
        Ok(())
    }

    /// Lands the session in one step; returns whether anything was written.
    async fn finish(mut self) -> Result<bool> {
        self.check_interrupt().await?;
        match self.staged.take() {
            Some(mut staged) => {
                staged.append(std::mem::take(&mut self.held)).await?;
                staged.commit().await?;
                Ok(true)
            }
            None if self.held.is_empty() => Ok(false),
            None if self.mode == StageMode::Replace => {
                let mut staged = self.to.stage(&self.id, self.mode, self.expected).await?;
                staged.append(std::mem::take(&mut self.held)).await?;
                staged.commit().await?;
                Ok(true)
            }
            None => {
                let items = std::mem::take(&mut self.held);
                self.to.session(&self.id)?.add_items(items).await?;
                Ok(true)
            }
        }
    }
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

    /// Counts one finished session (`None`: skipped) and reports progress.
    fn done(&mut self, written: Option<(bool, u64, u64)>) {
        match written {
            Some((true, items, bytes)) => {
                self.summary.sessions += 1;
                self.summary.items += items;
                self.summary.bytes += bytes;
            }
            Some((false, _, _)) => {}
            None => self.summary.skipped += 1,
        }
        self.state.sessions_done += 1;
        self.state.items = self.summary.items;
        self.state.bytes = self.summary.bytes;
        (self.progress)(self.state);
    }

    /// Reports progress inside a large session.
    fn partial(&mut self, writer: &SessionWriter<'_>) {
        let state = Progress {
            items: self.summary.items + writer.items,
            bytes: self.summary.bytes + writer.bytes,
            ..self.state
        };
        (self.progress)(state);
    }

    /// Lands a session and counts it.
    async fn finish(&mut self, writer: SessionWriter<'_>) -> Result<()> {
        let (items, bytes) = (writer.items, writer.bytes);
        let wrote = writer.finish().await?;
        self.done(Some((wrote, items, bytes)));
        Ok(())
    }
}

/// Copies sessions from one store to another, exactly and in order, with the target's own TTL.
/// Each session lands in one step (one batch, or a staged write for sessions larger than
/// [`CopyOptions::chunk_bytes`], read page by page); with [`OnExisting::Error`] every target
/// session is checked before anything is written.
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
        let mut page = from.read_page(id, None, options.chunk_bytes).await?;
        // Only a session of several pages needs the count hint.
        let expected = match page.next {
            Some(_) => from.session_info(id).await?.map(|i| i.item_count),
            None => Some(page.items.len() as u64),
        };
        if page.items.is_empty() && page.next.is_none() {
            tally.done(Some((false, 0, 0)));
            continue;
        }
        let Some(mut writer) = SessionWriter::open(
            to,
            id,
            options.on_existing,
            expected,
            options.chunk_bytes,
            &options.interrupt,
        )
        .await?
        else {
            tally.done(None);
            continue;
        };
        loop {
            writer.push(std::mem::take(&mut page.items)).await?;
            let Some(after) = page.next else { break };
            tally.partial(&writer);
            page = from.read_page(id, Some(after), options.chunk_bytes).await?;
        }
        tally.finish(writer).await?;
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
        let id_json = serde_json::Value::String(id.clone()).to_string();
        let mut after = None;
        let mut any = false;
        loop {
            // One chunk at a time: a session of any size streams through bounded memory.
            let page = store.read_page(id, after, DEFAULT_CHUNK_BYTES).await?;
            for item in &page.items {
                // The item's text as stored: numbers and escapes exactly as they are.
                writeln!(out, "{{\"session_id\":{id_json},\"item\":{item}}}").map_err(io)?;
                summary.bytes += item.len_bytes() as u64;
            }
            summary.items += page.items.len() as u64;
            any |= !page.items.is_empty();
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        summary.sessions += u64::from(any);
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
    import_sessions_chunked(store, path, on_existing, DEFAULT_CHUNK_BYTES, progress).await
}

/// [`import_sessions`] with a chunk size: sessions with more item JSON than `chunk_bytes` are
/// written through a staged write in parts of about that size, so memory holds one part.
pub async fn import_sessions_chunked(
    store: &Store,
    path: &std::path::Path,
    on_existing: OnExisting,
    chunk_bytes: usize,
    progress: &mut dyn FnMut(Progress),
) -> Result<Summary> {
    import_sessions_interruptible(
        store,
        path,
        on_existing,
        chunk_bytes,
        &Interrupt::new(),
        progress,
    )
    .await
}

/// [`import_sessions_chunked`] that stops before its next write once `interrupt` is set,
/// aborting the staged write in flight.
pub async fn import_sessions_interruptible(
    store: &Store,
    path: &std::path::Path,
    on_existing: OnExisting,
    chunk_bytes: usize,
    interrupt: &Interrupt,
    progress: &mut dyn FnMut(Progress),
) -> Result<Summary> {
    let chunk_bytes = chunk_bytes.max(1);
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
    let mut counts: Vec<u64> = Vec::new();
    let mut seen = HashSet::new();
    for (index, line) in open()?.lines().enumerate() {
        let line = line.map_err(read_error)?;
        if line.trim().is_empty() {
            continue;
        }
        let (id, item) = parse_line(&line, index + 1)?;
        crate::store::check_item_sizes(std::slice::from_ref(&item), store.options().max_item_bytes)
            .map_err(|e| {
                Error::new(
                    ErrorKind::TooLarge,
                    Operation::AddItems,
                    format!("line {}: {}", index + 1, e.message()),
                )
            })?;
        if order.last() != Some(&id) {
            if !seen.insert(id.clone()) {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    Operation::AddItems,
                    format!("line {}: session {id:?} appears again after other sessions; each session's items must be contiguous; nothing was written", index + 1),
                ));
            }
            order.push(id);
            counts.push(0);
        }
        if let Some(n) = counts.last_mut() {
            *n += 1;
        }
    }
    ensure_none_exist(store, &order, on_existing).await?;
    // Pass 2: write session by session, one chunk in memory at a time.
    let mut tally = Tally::new(order.len(), progress);
    let mut current: Option<(String, Option<SessionWriter<'_>>)> = None;
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
            (Some((cur, _)), Some((id, _))) => cur != id,
            (Some(_), None) => true,
            _ => false,
        };
        if switching {
            match current.take() {
                Some((_, Some(writer))) => tally.finish(writer).await?,
                Some((_, None)) => tally.done(None),
                None => {}
            }
        }
        let Some((id, item)) = next else {
            return Ok(tally.summary);
        };
        if current.is_none() {
            // Pass 1 checked that sessions are contiguous: this is the next one of `order`.
            let k = tally.state.sessions_done as usize;
            let expected = counts.get(k).copied();
            let writer =
                SessionWriter::open(store, &id, on_existing, expected, chunk_bytes, interrupt)
                    .await?;
            current = Some((id, writer));
        }
        if let Some((_, Some(writer))) = current.as_mut() {
            writer.push(vec![item]).await?;
            if writer.held.is_empty() {
                tally.partial(writer); // a chunk was just staged
            }
        }
    }
}
