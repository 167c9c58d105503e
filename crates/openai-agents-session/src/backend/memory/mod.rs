//! The in-memory backend: `memory://` (private) and `memory://NAME` (shared within the process).
//!
//! Records go through the same codec as every other backend, so corrupt and unreadable records
//! behave the same here. One mutex guards the whole store: every operation is one critical
//! section, which is what makes batches atomic and pops unique, and a fenced write's check of
//! the lease part of the write. Leases live next to the sessions, not in them: a lease record
//! outlives its session's items, clears and expiry.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::codec::{Decoded, RecordCodec, TailCollector};
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::history::{self, Applied, PreparedTransaction};
use crate::item::Item;
use crate::lease::{self, Lease, LeaseGrant};
use crate::pages::{BeforeCollector, PageBefore};
use crate::staged::{ItemPage, StageMode, StagedWrite};
use crate::stats::RequestStats;
use crate::store::{
    Backend, BoxFuture, FencedWrite, ListOptions, PruneReport, RawRecords, SessionInfo,
    SessionPage, Store, StoreOptions, WriteOutcome,
};
use crate::time::{advance_updated, expiry_after, is_expired, Timestamp};
use crate::url::StoreUrl;

#[derive(Debug, Default)]
struct MemorySession {
    created_at: Timestamp,
    updated_at: Option<Timestamp>,
    expires_at: Option<Timestamp>,
    next_seq: u64,
    /// Records by sequence, oldest first.
    records: BTreeMap<u64, Arc<[u8]>>,
    /// History transactions applied: operation id -> (digest, forgotten at).
    operations: HashMap<String, ([u8; 32], Timestamp)>,
}

type Sessions = BTreeMap<String, MemorySession>;

/// What one store (or one named store) holds: the sessions, and the lease records by session id
/// (the newest grant of each session that had one, kept [`lease::LEASE_RECORD_RETENTION`]
/// after the lease ended).
#[derive(Debug, Default)]
struct Shared {
    sessions: Sessions,
    leases: HashMap<String, Lease>,
}

impl Shared {
    /// The live lease of a session.
    fn live_lease(&self, session_id: &str, now: Timestamp) -> Option<&Lease> {
        self.leases
            .get(session_id)
            .filter(|lease| lease.is_live_at(now))
    }

    /// A fenced write's check: `token` must be the session's live lease's.
    fn check_fence(
        &self,
        session_id: &str,
        token: u64,
        now: Timestamp,
        op: Operation,
    ) -> Result<()> {
        match self.live_lease(session_id, now) {
            Some(lease) if lease.token == token => Ok(()),
            live => Err(Error::fenced(op, token, live.cloned())),
        }
    }
}

/// The in-memory backend. Open it with [`Store::open`]`("memory://")`.
#[derive(Debug)]
pub struct MemoryBackend {
    sessions: Arc<Mutex<Shared>>,
    options: StoreOptions,
    codec: RecordCodec,
    stats: RequestStats,
}

fn named_stores() -> &'static Mutex<HashMap<String, Arc<Mutex<Shared>>>> {
    static NAMED: OnceLock<Mutex<HashMap<String, Arc<Mutex<Shared>>>>> = OnceLock::new();
    NAMED.get_or_init(Default::default)
}

pub(crate) fn open(url: StoreUrl, options: StoreOptions) -> Result<Store> {
    url.reject_unknown_options()?;
    let name = url.location()?;
    let sessions = if name.is_empty() {
        Arc::default()
    } else {
        let mut named = named_stores()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        named.entry(name).or_default().clone()
    };
    let backend = MemoryBackend {
        sessions,
        options: options.clone(),
        codec: options.codec(),
        stats: RequestStats::default(),
    };
    Ok(Store::from_backend(Arc::new(backend), options))
}

impl MemoryBackend {
    /// A private in-memory backend (what `memory://` opens), for wrapping or testing.
    ///
    /// ```
    /// use openai_agents_session::backend::memory::MemoryBackend;
    /// use openai_agents_session::{Store, StoreOptions};
    /// let store = Store::from_backend(
    ///     std::sync::Arc::new(MemoryBackend::new(StoreOptions::default())),
    ///     StoreOptions::default(),
    /// );
    /// assert!(store.session("chat").is_ok());
    /// ```
    pub fn new(options: StoreOptions) -> Self {
        let codec = options.codec();
        MemoryBackend {
            sessions: Arc::default(),
            options,
            codec,
            stats: RequestStats::default(),
        }
    }

    fn lock(&self, op: Operation) -> MutexGuard<'_, Shared> {
        self.stats.record_requests(op, 1);
        // A panic while holding the lock cannot leave a half-applied batch: batches are applied
        // by building the new records first and inserting them with infallible map inserts.
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The live session, dropping it first if it has expired.
    fn live<'s>(
        sessions: &'s mut Sessions,
        session_id: &str,
        now: Timestamp,
    ) -> Option<&'s mut MemorySession> {
        let expired = sessions
            .get(session_id)
            .is_some_and(|s| is_expired(s.expires_at, now));
        if expired {
            sessions.remove(session_id);
        }
        sessions.get_mut(session_id)
    }

    fn append(&self, session_id: &str, records: Vec<Arc<[u8]>>, op: Operation) {
        let now = Timestamp::now();
        self.append_locked(&mut self.lock(op).sessions, session_id, records, now);
    }

    fn append_locked(
        &self,
        sessions: &mut Sessions,
        session_id: &str,
        records: Vec<Arc<[u8]>>,
        now: Timestamp,
    ) {
        if Self::live(sessions, session_id, now).is_none() {
            sessions.insert(
                session_id.to_owned(),
                MemorySession {
                    created_at: now,
                    next_seq: 1,
                    ..MemorySession::default()
                },
            );
        }
        if let Some(session) = sessions.get_mut(session_id) {
            for record in records {
                session.records.insert(session.next_seq, record);
                session.next_seq += 1;
            }
            session.updated_at = Some(advance_updated(session.updated_at, now));
            session.expires_at = expiry_after(now, self.options.ttl);
        }
    }

    fn encode(&self, session_id: &str, items: &[Item]) -> Result<Vec<Arc<[u8]>>> {
        items
            .iter()
            .map(|item| self.codec.encode(session_id, item).map(Arc::from))
            .collect()
    }

    fn pop_locked(
        &self,
        sessions: &mut Sessions,
        session_id: &str,
        now: Timestamp,
    ) -> Result<Option<Item>> {
        let Some(session) = Self::live(sessions, session_id, now) else {
            return Ok(None);
        };
        // Find the newest valid record; corrupt ones above it are dropped with it, and an
        // unreadable one stops the pop before anything is removed.
        let mut to_remove = Vec::new();
        let mut popped = None;
        for (&seq, record) in session.records.iter().rev() {
            match self.codec.decode(session_id, record) {
                Decoded::KeyMissing(reason) => {
                    return Err(crate::codec::key_missing_error(Operation::PopItem, &reason));
                }
                Decoded::Valid(item) => {
                    to_remove.push(seq);
                    popped = Some(item);
                    break;
                }
                Decoded::Corrupt(_) => to_remove.push(seq),
                Decoded::Unreadable(reason) => {
                    return Err(Error::new(
                        ErrorKind::Unreadable,
                        Operation::PopItem,
                        format!("newest record (sequence {seq}) is unreadable: {reason}; nothing was removed"),
                    ));
                }
            }
        }
        if !to_remove.is_empty() {
            for seq in to_remove {
                session.records.remove(&seq);
            }
            session.updated_at = Some(advance_updated(session.updated_at, now));
            session.expires_at = expiry_after(now, self.options.ttl);
        }
        Ok(popped)
    }

    fn apply_locked(
        &self,
        sessions: &mut Sessions,
        session_id: &str,
        tx: &PreparedTransaction,
        records: Vec<Arc<[u8]>>,
        now: Timestamp,
    ) -> Result<Applied> {
        if let Some(session) = Self::live(sessions, session_id, now) {
            session.operations.retain(|_, (_, until)| *until > now);
            if let Some((digest, _)) = session.operations.get(&tx.operation_id) {
                return if *digest == tx.digest {
                    Ok(Applied::Before)
                } else {
                    Err(history::operation_reused(&tx.operation_id))
                };
            }
        }
        let expected = tx.transaction.expected_suffix().len();
        let empty = BTreeMap::new();
        let stored = sessions.get(session_id).map_or(&empty, |s| &s.records);
        let suffix: Vec<u64> = stored.keys().rev().take(expected).copied().collect();
        let matches = tx.suffix_matches(
            &self.codec,
            session_id,
            suffix.iter().rev().map(|seq| &*stored[seq]),
        );
        if !matches {
            return Err(history::suffix_mismatch());
        }
        let session = sessions
            .entry(session_id.to_owned())
            .or_insert_with(|| MemorySession {
                created_at: now,
                next_seq: 1,
                ..MemorySession::default()
            });
        for seq in suffix {
            session.records.remove(&seq);
        }
        for record in records {
            session.records.insert(session.next_seq, record);
            session.next_seq += 1;
        }
        let until = Timestamp::from_millis(
            now.as_millis()
                .saturating_add(i64::try_from(tx.retention.as_millis()).unwrap_or(i64::MAX)),
        );
        session
            .operations
            .insert(tx.operation_id.clone(), (tx.digest, until));
        session.updated_at = Some(advance_updated(session.updated_at, now));
        session.expires_at = expiry_after(now, self.options.ttl);
        Ok(Applied::Now)
    }
}

impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn get_items<'a>(
        &'a self,
        session_id: &'a str,
        limit: Option<usize>,
    ) -> BoxFuture<'a, Result<Vec<Item>>> {
        Box::pin(async move {
            let now = Timestamp::now();
            let mut collector = TailCollector::new(limit);
            let mut shared = self.lock(Operation::GetItems);
            let Some(session) = Self::live(&mut shared.sessions, session_id, now) else {
                return Ok(Vec::new());
            };
            if self.options.refreshes_on_read() {
                session.expires_at = expiry_after(now, self.options.ttl);
            }
            for record in session.records.values().rev() {
                if collector.push(self.codec.decode(session_id, record)) {
                    break;
                }
            }
            collector.finish()
        })
    }

    fn add_items<'a>(&'a self, session_id: &'a str, items: Vec<Item>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let records = self.encode(session_id, &items)?;
            self.append(session_id, records, Operation::AddItems);
            Ok(())
        })
    }

    fn pop_item<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<Option<Item>>> {
        Box::pin(async move {
            let now = Timestamp::now();
            self.pop_locked(&mut self.lock(Operation::PopItem).sessions, session_id, now)
        })
    }

    fn apply_transaction<'a>(
        &'a self,
        session_id: &'a str,
        tx: &'a PreparedTransaction,
    ) -> BoxFuture<'a, Result<Applied>> {
        Box::pin(async move {
            let records = self.encode(session_id, tx.transaction.items_added())?;
            let now = Timestamp::now();
            let mut shared = self.lock(Operation::ApplyTransaction);
            self.apply_locked(&mut shared.sessions, session_id, tx, records, now)
        })
    }

    fn clear_session<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.lock(Operation::ClearSession)
                .sessions
                .remove(session_id);
            Ok(())
        })
    }

    fn acquire_lease<'a>(
        &'a self,
        session_id: &'a str,
        owner: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<LeaseGrant>> {
        Box::pin(async move {
            let now = Timestamp::now();
            let mut shared = self.lock(Operation::AcquireLease);
            let expires_at = lease::expiry(now, ttl);
            if let Some(live) = shared.leases.get_mut(session_id) {
                if live.is_live_at(now) {
                    if live.owner != owner {
                        return Ok(LeaseGrant::Held(live.clone()));
                    }
                    live.expires_at = expires_at;
                    return Ok(LeaseGrant::Granted(live.clone()));
                }
            }
            let last = shared.leases.get(session_id).map_or(0, |l| l.token);
            let granted = Lease::new(
                owner,
                lease::next_token(last, lease::now_micros()),
                expires_at,
            );
            shared.leases.insert(session_id.to_owned(), granted.clone());
            Ok(LeaseGrant::Granted(granted))
        })
    }

    fn renew_lease<'a>(
        &'a self,
        session_id: &'a str,
        token: u64,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(async move {
            let now = Timestamp::now();
            let mut shared = self.lock(Operation::RenewLease);
            shared.check_fence(session_id, token, now, Operation::RenewLease)?;
            let live = shared
                .leases
                .get_mut(session_id)
                .ok_or_else(|| Error::fenced(Operation::RenewLease, token, None))?;
            live.expires_at = lease::expiry(now, ttl);
            Ok(live.clone())
        })
    }

    fn release_lease<'a>(&'a self, session_id: &'a str, token: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let now = Timestamp::now();
            let mut shared = self.lock(Operation::ReleaseLease);
            match shared.leases.get_mut(session_id) {
                Some(newest) if newest.token == token => {
                    // Ended now; the record stays (the newest token). Ended already: no-op.
                    newest.expires_at = newest.expires_at.min(now);
                    Ok(())
                }
                newest => {
                    let live = newest.filter(|l| l.is_live_at(now)).map(|l| l.clone());
                    Err(Error::fenced(Operation::ReleaseLease, token, live))
                }
            }
        })
    }

    fn lease_info<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<Option<Lease>>> {
        Box::pin(async move {
            let now = Timestamp::now();
            let shared = self.lock(Operation::LeaseInfo);
            Ok(shared.live_lease(session_id, now).cloned())
        })
    }

    fn fenced_write<'a>(
        &'a self,
        session_id: &'a str,
        token: u64,
        write: FencedWrite<'a>,
    ) -> BoxFuture<'a, Result<WriteOutcome>> {
        Box::pin(async move {
            let op = write.operation();
            let records = match &write {
                FencedWrite::AddItems(items) => self.encode(session_id, items)?,
                FencedWrite::ApplyTransaction(tx) => {
                    self.encode(session_id, tx.transaction.items_added())?
                }
                _ => Vec::new(),
            };
            let now = Timestamp::now();
            let mut shared = self.lock(op);
            shared.check_fence(session_id, token, now, op)?;
            let sessions = &mut shared.sessions;
            Ok(match write {
                FencedWrite::AddItems(_) => {
                    self.append_locked(sessions, session_id, records, now);
                    WriteOutcome::Done
                }
                FencedWrite::PopItem => {
                    WriteOutcome::Popped(self.pop_locked(sessions, session_id, now)?)
                }
                FencedWrite::ClearSession => {
                    sessions.remove(session_id);
                    WriteOutcome::Done
                }
                FencedWrite::ApplyTransaction(tx) => WriteOutcome::Applied(
                    self.apply_locked(sessions, session_id, tx, records, now)?,
                ),
            })
        })
    }

    fn session_info<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionInfo>>> {
        Box::pin(async move {
            let now = Timestamp::now();
            let mut shared = self.lock(Operation::SessionInfo);
            let lease = shared.live_lease(session_id, now).cloned();
            Ok(Self::live(&mut shared.sessions, session_id, now).map(|s| {
                SessionInfo::new(
                    session_id,
                    s.records.len() as u64,
                    s.created_at,
                    s.updated_at.unwrap_or(s.created_at),
                    s.expires_at,
                )
                .with_lease(lease)
            }))
        })
    }

    fn list_sessions<'a>(&'a self, options: &'a ListOptions) -> BoxFuture<'a, Result<SessionPage>> {
        Box::pin(async move {
            let now = Timestamp::now();
            let prefix = options.prefix.as_deref().unwrap_or("");
            let page_size = options.effective_page_size();
            let shared = self.lock(Operation::ListSessions);
            let sessions = &shared.sessions;
            let start = match &options.cursor {
                Some(cursor) => std::ops::Bound::Excluded(cursor.clone()),
                None => std::ops::Bound::Included(prefix.to_owned()),
            };
            let mut ids: Vec<String> = sessions
                .range((start, std::ops::Bound::Unbounded))
                .skip_while(|(id, _)| id.as_str() < prefix)
                .take_while(|(id, _)| id.starts_with(prefix))
                .filter(|(_, s)| !is_expired(s.expires_at, now))
                .map(|(id, _)| id.clone())
                .take(page_size + 1)
                .collect();
            let next_cursor = if ids.len() > page_size {
                ids.truncate(page_size);
                ids.last().cloned()
            } else {
                None
            };
            Ok(SessionPage::new(ids, next_cursor))
        })
    }

    fn prune(&self) -> BoxFuture<'_, Result<PruneReport>> {
        Box::pin(async move {
            let now = Timestamp::now();
            let mut shared = self.lock(Operation::Prune);
            let before = shared.sessions.len();
            shared
                .sessions
                .retain(|_, s| !is_expired(s.expires_at, now));
            let expired = (before - shared.sessions.len()) as u64;
            // Lease records a day past their end: the clock keeps tokens growing from here.
            shared
                .leases
                .retain(|_, l| lease::record_kept_until(l.expires_at) > now);
            Ok(PruneReport::new(expired, 0))
        })
    }

    fn stats(&self) -> &RequestStats {
        &self.stats
    }

    fn raw_records(&self) -> Option<&dyn RawRecords> {
        Some(self)
    }

    fn read_page<'a>(
        &'a self,
        session_id: &'a str,
        after: Option<u64>,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Option<ItemPage>>> {
        Box::pin(async move {
            let now = Timestamp::now();
            let mut shared = self.lock(Operation::GetItems);
            let Some(session) = Self::live(&mut shared.sessions, session_id, now) else {
                return Ok(Some(ItemPage::default()));
            };
            let start = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
            let (mut items, mut bytes, mut last) = (Vec::new(), 0usize, None);
            for (&seq, record) in session.records.range((start, std::ops::Bound::Unbounded)) {
                if bytes >= max_bytes {
                    return Ok(Some(ItemPage::new(items, last)));
                }
                last = Some(seq);
                let decoded = self.codec.decode(session_id, record);
                if let Some(e) = decoded.read_error(Operation::GetItems) {
                    return Err(e);
                }
                if let Decoded::Valid(item) = decoded {
                    bytes += item.len_bytes();
                    items.push(item);
                }
            }
            Ok(Some(ItemPage::new(items, None)))
        })
    }

    fn read_before<'a>(
        &'a self,
        session_id: &'a str,
        before: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Option<PageBefore>>> {
        Box::pin(async move {
            let now = Timestamp::now();
            let mut shared = self.lock(Operation::GetItems);
            let Some(session) = Self::live(&mut shared.sessions, session_id, now) else {
                return Ok(Some(PageBefore::default()));
            };
            let end = before.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
            let mut collector = BeforeCollector::new(limit);
            for (&seq, record) in session
                .records
                .range((std::ops::Bound::Unbounded, end))
                .rev()
            {
                if collector.push(seq, self.codec.decode(session_id, record)) {
                    break;
                }
            }
            Ok(Some(collector.finish()))
        })
    }

    fn stage<'a>(
        &'a self,
        session_id: &str,
        mode: StageMode,
        _expected_items: Option<u64>,
    ) -> BoxFuture<'a, Result<Option<Box<dyn StagedWrite + 'a>>>> {
        let session_id = session_id.to_owned();
        Box::pin(async move {
            let staged: Box<dyn StagedWrite + 'a> = Box::new(MemoryStaged {
                backend: self,
                session_id,
                mode,
                records: Vec::new(),
            });
            Ok(Some(staged))
        })
    }
}

/// A staged write of the memory backend: the encoded records wait here, and the commit applies
/// them in one critical section.
struct MemoryStaged<'a> {
    backend: &'a MemoryBackend,
    session_id: String,
    mode: StageMode,
    records: Vec<Arc<[u8]>>,
}

impl StagedWrite for MemoryStaged<'_> {
    fn append(&mut self, items: Vec<Item>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let codec = &self.backend.codec;
            let id = &self.session_id;
            for item in &items {
                self.records.push(Arc::from(codec.encode(id, item)?));
            }
            Ok(())
        })
    }

    fn commit(&mut self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let records = std::mem::take(&mut self.records);
            let n = records.len() as u64;
            let b = self.backend;
            if self.mode == StageMode::Replace {
                let now = Timestamp::now();
                let mut shared = b.lock(Operation::AddItems);
                let sessions = &mut shared.sessions;
                let mut session = MemorySession {
                    created_at: now,
                    updated_at: Some(now),
                    expires_at: expiry_after(now, b.options.ttl),
                    next_seq: n + 1,
                    records: BTreeMap::new(),
                    // A replaced history keeps the operation ids it remembers.
                    operations: sessions
                        .get(&self.session_id)
                        .filter(|s| !is_expired(s.expires_at, now))
                        .map(|s| s.operations.clone())
                        .unwrap_or_default(),
                };
                session.records.extend((1..).zip(records));
                if n == 0 {
                    sessions.remove(&self.session_id);
                } else {
                    sessions.insert(self.session_id.clone(), session);
                }
            } else if n > 0 {
                b.append(&self.session_id, records, Operation::AddItems);
            }
            Ok(n)
        })
    }
}

impl RawRecords for MemoryBackend {
    fn append_raw<'a>(&'a self, session_id: &'a str, record: Vec<u8>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.append(session_id, vec![Arc::from(record)], Operation::RawWrite);
            Ok(())
        })
    }
}
