//! Reads of the native layout: items (`GET`), pages (`PAGE`), info (`INFO`) and session lists
//! (SCAN on every master, also used by the legacy layouts and `prune`).

use std::collections::HashSet;

use redis::Value;

use crate::codec::{Decoded, TailCollector};
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::item::Item;
use crate::pages::{BeforeCollector, PageBefore};
use crate::staged::ItemPage;
use crate::stats::RequestStats;
use crate::store::{ListOptions, SessionInfo, SessionPage};

use super::error::{map_redis, unexpected};
use super::layout::{
    info_from_reply, meta_pattern, session_id_of_meta_key, tag, value_bytes, value_int, ScanCursor,
    SessionKeys,
};
use super::{RedisBackend, RedisConnection};

/// LRANGE's window for `get_items(limit)`: the newest `limit` records (`1 0` is an empty
/// range), or all.
fn lrange_window(limit: Option<usize>) -> (i64, i64) {
    match limit {
        None => (0, -1),
        Some(0) => (1, 0),
        Some(n) => (-(i64::try_from(n).unwrap_or(i64::MAX)), -1),
    }
}

/// A pipelined command's array reply (`what` names it in the error of any other reply; a
/// server error, `WRONGTYPE` say, is a typed error).
fn array_reply(op: Operation, what: &str, reply: Value) -> Result<Vec<Value>> {
    match reply.extract_error().map_err(|e| map_redis(op, e))? {
        Value::Array(values) => Ok(values),
        other => Err(unexpected(op, what, &[other])),
    }
}

/// The records of a pipelined `LRANGE`'s reply (a server error, `WRONGTYPE` say, as a typed
/// error).
fn lrange_records(op: Operation, reply: Value) -> Result<Vec<Value>> {
    match reply.extract_error().map_err(|e| map_redis(op, e))? {
        Value::Array(records) => Ok(records),
        Value::Nil => Ok(Vec::new()),
        other => Err(unexpected(op, "LRANGE", &[other])),
    }
}

/// Records per PAGE script call.
const PAGE_SLICE: u64 = 256;

impl RedisBackend {
    /// `get_items`: one round trip of two pipelined commands, the HEAD script (metadata, expiry,
    /// seed migration, the refresh when due; a small reply) then a plain `LRANGE` of the newest
    /// `limit` records, which Redis returns without passing them through Lua. When that window
    /// holds records that do not decode as items (corrupt, unreadable) and older records remain,
    /// the GET script widens the window instead, so that such records are never counted.
    pub(super) async fn get(&self, session_id: &str, limit: Option<usize>) -> Result<Vec<Item>> {
        match self.get_without_script(session_id, limit).await? {
            Some(items) => Ok(items),
            None => self.get_headed(session_id, limit).await,
        }
    }

    /// The common `get_items` without Lua: one round trip of plain commands, `HMGET` of the
    /// metadata (`v`, `expires_at`, `created_at`), `PTTL` of the metadata key, the `LRANGE` of
    /// the newest `limit` records and, when the seed layout may hold this session (standalone,
    /// the seed's prefix), `TYPE` of its key. A live session of this layout whose expiry is not
    /// due for a refresh is answered from that; a missing one (with no seed history) is empty.
    /// Anything else (an expiry to refresh or to set, seed history to migrate, a newer layout,
    /// metadata without a version) is `None`: the caller takes the HEAD script's path, which
    /// decides it as before. Redis runs a client's pipelined commands in order but may run
    /// other clients' commands between them; every interleaving reads a state the session was
    /// in (a clear or an append between the `HMGET` and the `LRANGE` is a write that happened
    /// before the read; an expiry is Redis's own, the keys' expiry being `expires_at`).
    async fn get_without_script(
        &self,
        session_id: &str,
        limit: Option<usize>,
    ) -> Result<Option<Vec<Item>>> {
        let op = Operation::GetItems;
        let keys = SessionKeys::new(&self.prefix, session_id);
        let seed = self.check_seed && !self.conn.is_cluster() && keys.seed_may_hold_history();
        let (from, to) = lrange_window(limit);
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.cmd("HMGET")
            .arg(keys.meta.as_slice())
            .arg("v")
            .arg("expires_at")
            .arg("created_at");
        pipe.cmd("PTTL").arg(keys.meta.as_slice());
        pipe.cmd("LRANGE")
            .arg(keys.items.as_slice())
            .arg(from)
            .arg(to);
        if seed {
            pipe.cmd("TYPE").arg(keys.seed.as_slice());
        }
        self.stats.record_requests(op, 1);
        let replies = self
            .conn
            .query_pipeline(op, &pipe)
            .await
            .map_err(|e| map_redis(op, e))?;
        let mut replies = replies.into_iter();
        let (Some(meta), Some(pttl), Some(records)) =
            (replies.next(), replies.next(), replies.next())
        else {
            return Err(Error::new(
                ErrorKind::Backend,
                op,
                "the get pipeline returned fewer than three replies",
            ));
        };
        // A key of another type fails the read (nothing was changed), as in the scripts.
        let meta = array_reply(op, "HMGET", meta)?;
        let records = lrange_records(op, records)?;
        let field = |i: usize| match meta.get(i) {
            Some(Value::BulkString(b)) => Some(b.as_slice()),
            _ => None,
        };
        match (field(0), field(2)) {
            (None, None) => {
                let seed_list = matches!(
                    replies.next(),
                    Some(Value::SimpleString(t)) if t == "list"
                );
                if seed_list {
                    return Ok(None); // HEAD migrates it
                }
                self.check_seed_key(op, &keys, session_id).await?;
                return Ok(Some(Vec::new()));
            }
            (Some(b"1"), _) => {}
            _ => return Ok(None),
        }
        let pttl = value_int(&pttl).unwrap_or(-2);
        let refresh = self.refresh_ttl_ms();
        let settled = match (field(1).is_some(), pttl) {
            (false, -1) => refresh == 0,
            // The same due test as the scripts' `refresh`: now + ttl - expires_at against
            // ttl / 100, with expires_at - now = the key's PTTL.
            (true, left) if left > 0 => refresh == 0 || refresh - left < refresh / 100,
            _ => false,
        };
        if !settled {
            return Ok(None);
        }
        self.decode_window(session_id, limit, records)
            .await
            .map(Some)
    }

    /// Decodes the newest records an `LRANGE` returned (oldest first); when they hold records
    /// that are not items and the window was full, the GET script widens it.
    async fn decode_window(
        &self,
        session_id: &str,
        limit: Option<usize>,
        records: Vec<Value>,
    ) -> Result<Vec<Item>> {
        let fetched = records.len();
        let mut collector = TailCollector::new(limit);
        for record in records.into_iter().rev() {
            let bytes = value_bytes(record).unwrap_or_default();
            if collector.push(self.codec.decode_owned(session_id, bytes)) {
                break;
            }
        }
        // The window held records that are not items (never counted toward `limit`): the
        // script widens it past them, from the newest record again (items may have been
        // added since).
        if !collector.is_full() && limit.is_some_and(|n| fetched >= n) {
            tracing::debug!(
                skipped = collector.skipped,
                "records that are not items in the newest window; widening it in the GET script"
            );
            return self.get_scripted(session_id, limit).await;
        }
        collector.finish()
    }

    /// `get_items` through the HEAD script (the cases [`RedisBackend::get_without_script`]
    /// leaves to it).
    async fn get_headed(&self, session_id: &str, limit: Option<usize>) -> Result<Vec<Item>> {
        let op = Operation::GetItems;
        let keys = SessionKeys::new(&self.prefix, session_id);
        let script_keys = self.script_keys(&keys);
        let refresh = self.refresh_ttl_ms().to_string();
        let (from, to) = lrange_window(limit);
        let pipeline = |verb: &str, body: &str| {
            let mut pipe = redis::pipe();
            // Each command's server error stays a value (NOSCRIPT is answered with EVAL).
            pipe.ignore_errors();
            let cmd = pipe.cmd(verb).arg(body).arg(script_keys.len());
            for k in &script_keys {
                cmd.arg(k.as_slice());
            }
            cmd.arg(refresh.as_bytes());
            pipe.cmd("LRANGE")
                .arg(keys.items.as_slice())
                .arg(from)
                .arg(to);
            pipe
        };
        self.stats.record_requests(op, 1);
        let mut replies = self
            .conn
            .query_pipeline(op, &pipeline("EVALSHA", &self.scripts.head.sha))
            .await
            .map_err(|e| map_redis(op, e))?;
        if matches!(replies.first(), Some(Value::ServerError(e)) if e.code() == "NOSCRIPT") {
            tracing::debug!(script = "head", "NOSCRIPT: sending the script with EVAL");
            self.stats.record_requests(op, 1);
            replies = self
                .conn
                .query_pipeline(op, &pipeline("EVAL", &self.scripts.head.source))
                .await
                .map_err(|e| map_redis(op, e))?;
        }
        let mut replies = replies.into_iter();
        let (head, records) = match (replies.next(), replies.next()) {
            (Some(head), Some(records)) => (head, records),
            _ => {
                return Err(Error::new(
                    ErrorKind::Backend,
                    op,
                    "the get pipeline returned fewer than two replies",
                ))
            }
        };
        let head = array_reply(op, "head", head)?;
        match tag(&head) {
            Some("MISSING") => {
                self.check_seed_key(op, &keys, session_id).await?;
                return Ok(Vec::new());
            }
            Some("OK") => {}
            _ => return Err(unexpected(op, "head", &head)),
        }
        let records = lrange_records(op, records)?;
        self.decode_window(session_id, limit, records).await
    }

    /// The GET script's path: the records carried through Lua, widened past implausible ones
    /// in the script. Taken when the common path's window held records that are not items.
    async fn get_scripted(&self, session_id: &str, limit: Option<usize>) -> Result<Vec<Item>> {
        let op = Operation::GetItems;
        let keys = SessionKeys::new(&self.prefix, session_id);
        let script_keys = self.script_keys(&keys);
        let refresh = self.refresh_ttl_ms().to_string();
        let mut collector = TailCollector::new(limit);
        let mut offset = 0usize;
        loop {
            let want = collector.wanted().map_or(-1, |w| w as i64).to_string();
            let offset_arg = offset.to_string();
            let reply = self
                .eval(
                    op,
                    &self.scripts.get,
                    &script_keys,
                    &[want.as_bytes(), offset_arg.as_bytes(), refresh.as_bytes()],
                )
                .await?;
            match tag(&reply) {
                Some("MISSING") => {
                    self.check_seed_key(op, &keys, session_id).await?;
                    return Ok(Vec::new());
                }
                Some("OK") => {}
                _ => return Err(unexpected(op, "get", &reply)),
            }
            let len = reply.get(1).and_then(value_int).unwrap_or(0).max(0) as usize;
            let records: Vec<Value> = reply.into_iter().skip(2).collect();
            let fetched = records.len();
            // The script returns oldest first; the collector wants newest first.
            for record in records.into_iter().rev() {
                let bytes = value_bytes(record).unwrap_or_default();
                if collector.push(self.codec.decode(session_id, &bytes)) {
                    break;
                }
            }
            offset += fetched;
            // Another round trip only when the script's plausibility test let a corrupt record
            // through and older records remain.
            if collector.is_full() || limit.is_none() || fetched == 0 || offset >= len {
                return collector.finish();
            }
        }
    }

    pub(super) async fn info(&self, session_id: &str) -> Result<Option<SessionInfo>> {
        let op = Operation::SessionInfo;
        let keys = SessionKeys::new(&self.prefix, session_id);
        let reply = self
            .eval(op, &self.scripts.info, &self.script_keys(&keys), &[])
            .await?;
        match tag(&reply) {
            Some("MISSING") => {
                self.check_seed_key(op, &keys, session_id).await?;
                Ok(None)
            }
            Some("OK") => Ok(Some(info_from_reply(session_id, &reply))),
            _ => Err(unexpected(op, "info", &reply)),
        }
    }

    pub(super) async fn list(&self, options: &ListOptions) -> Result<SessionPage> {
        let op = Operation::ListSessions;
        let prefix = options.prefix.as_deref().unwrap_or("");
        let pattern = meta_pattern(&self.prefix, prefix);
        let parse = |key: &[u8]| {
            session_id_of_meta_key(&self.prefix, key).filter(|id| id.starts_with(prefix))
        };
        scan_pages(
            &self.conn,
            &self.stats,
            op,
            options,
            &pattern,
            Some("hash"),
            parse,
        )
        .await
    }

    /// One page of the live session's records from list position `start` on (LRANGE in
    /// slices; the positions of records below the tail never change, see the layout doc).
    pub(super) async fn page(
        &self,
        session_id: &str,
        start: u64,
        max_bytes: usize,
    ) -> Result<ItemPage> {
        let op = Operation::GetItems;
        let keys = SessionKeys::new(&self.prefix, session_id);
        let script_keys = self.script_keys(&keys);
        let (mut items, mut bytes, mut pos) = (Vec::new(), 0usize, start);
        loop {
            // One EVALSHA per slice: the checks and LRANGE together, so a session within one
            // slice is one round trip.
            let (from, count) = (pos.to_string(), PAGE_SLICE.to_string());
            let reply = self
                .eval(
                    op,
                    &self.scripts.page,
                    &script_keys,
                    &[from.as_bytes(), count.as_bytes()],
                )
                .await?;
            match tag(&reply) {
                Some("MISSING") if items.is_empty() && pos == start => {
                    self.check_seed_key(op, &keys, session_id).await?;
                    return Ok(ItemPage::default());
                }
                Some("MISSING") => return Ok(ItemPage::new(items, None)), // cleared meanwhile
                Some("OK") => {}
                _ => return Err(unexpected(op, "page", &reply)),
            }
            let records: Vec<Value> = reply.into_iter().skip(2).collect();
            let fetched = records.len() as u64;
            for record in records {
                if bytes >= max_bytes {
                    return Ok(ItemPage::new(items, Some(pos)));
                }
                pos += 1;
                let raw = value_bytes(record).unwrap_or_default();
                let decoded = self.codec.decode(session_id, &raw);
                if let Some(e) = decoded.read_error(op) {
                    return Err(e);
                }
                if let Decoded::Valid(item) = decoded {
                    bytes += item.len_bytes();
                    items.push(item);
                }
            }
            if fetched < PAGE_SLICE {
                return Ok(ItemPage::new(items, None));
            }
        }
    }
}

impl RedisBackend {
    /// The newest `limit` items below list index `before` (the list's end with `None`), with
    /// their indexes: one PAGE script call of `limit + 1` records (LRANGE from the end, by a
    /// negative index, when `before` is `None`), more only past undecodable records.
    pub(super) async fn before(
        &self,
        session_id: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<PageBefore> {
        let op = Operation::GetItems;
        let keys = SessionKeys::new(&self.prefix, session_id);
        let script_keys = self.script_keys(&keys);
        let mut collector = BeforeCollector::new(limit);
        let mut end = before;
        let mut first = true;
        loop {
            let want = collector.wanted() as u64;
            let (start, count): (i64, u64) = match end {
                None => (-(want as i64), want),
                Some(0) => break,
                Some(e) => {
                    let s = e.saturating_sub(want);
                    (s as i64, e - s)
                }
            };
            let (from, n) = (start.to_string(), count.to_string());
            let reply = self
                .eval(
                    op,
                    &self.scripts.page,
                    &script_keys,
                    &[from.as_bytes(), n.as_bytes()],
                )
                .await?;
            match tag(&reply) {
                Some("MISSING") if first => {
                    self.check_seed_key(op, &keys, session_id).await?;
                    return Ok(PageBefore::default());
                }
                Some("MISSING") => break, // cleared meanwhile
                Some("OK") => {}
                _ => return Err(unexpected(op, "page", &reply)),
            }
            first = false;
            let len = reply.get(1).and_then(value_int).unwrap_or(0).max(0) as u64;
            let records: Vec<Value> = reply.into_iter().skip(2).collect();
            let fetched = records.len() as u64;
            // Where the slice starts in the list: a negative start counts from the end.
            let base = if start < 0 {
                len.saturating_sub(fetched)
            } else {
                start as u64
            };
            for (i, record) in records.into_iter().enumerate().rev() {
                let bytes = value_bytes(record).unwrap_or_default();
                if collector.push(base + i as u64, self.codec.decode(session_id, &bytes)) {
                    return Ok(collector.finish());
                }
            }
            if base == 0 || fetched == 0 {
                break;
            }
            end = Some(base);
        }
        Ok(collector.finish())
    }
}

/// Pages through SCAN on every master, keeping the keys `parse` turns into ids. The page cursor
/// is a [`ScanCursor`] (`node:scan_cursor:skip`).
pub(super) async fn scan_pages(
    conn: &RedisConnection,
    stats: &RequestStats,
    op: Operation,
    options: &ListOptions,
    pattern: &str,
    key_type: Option<&str>,
    parse: impl Fn(&[u8]) -> Option<String>,
) -> Result<SessionPage> {
    let page_size = options.effective_page_size();
    stats.record_requests(op, 1);
    let masters = conn.masters().await.map_err(|e| map_redis(op, e))?;
    let mut at = match &options.cursor {
        Some(c) => ScanCursor::parse(c).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                op,
                format!("invalid list cursor {c:?}"),
            )
        })?,
        None => ScanCursor::default(),
    };
    let mut ids = Vec::new();
    let mut seen = HashSet::new();
    while at.node < masters.len() {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(at.scan)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(page_size.clamp(100, 10_000));
        if let Some(t) = key_type {
            cmd.arg("TYPE").arg(t);
        }
        stats.record_requests(op, 1);
        let reply = conn
            .query_on(op, masters[at.node].as_ref(), &cmd)
            .await
            .map_err(|e| map_redis(op, e))?;
        let (next, keys) = match reply {
            Value::Array(mut parts) if parts.len() == 2 => {
                let keys = parts.pop().unwrap_or(Value::Nil);
                let next = parts.pop().as_ref().and_then(value_int).unwrap_or(0) as u64;
                (next, keys)
            }
            other => {
                return Err(Error::new(
                    ErrorKind::Backend,
                    op,
                    format!("unexpected SCAN reply {other:?}"),
                ))
            }
        };
        let batch: Vec<String> = match keys {
            Value::Array(keys) => keys
                .into_iter()
                .filter_map(value_bytes)
                .filter_map(|k| parse(&k))
                .collect(),
            _ => Vec::new(),
        };
        for (taken, id) in batch.iter().skip(at.skip).enumerate() {
            if ids.len() == page_size {
                // The page is full inside this batch: resume here next time.
                let resume = ScanCursor {
                    skip: at.skip + taken,
                    ..at
                };
                return Ok(SessionPage::new(ids, Some(resume.to_string())));
            }
            if seen.insert(id.clone()) {
                ids.push(id.clone());
            }
        }
        at.skip = 0;
        if next == 0 {
            at.node += 1;
            at.scan = 0;
        } else {
            at.scan = next;
        }
        if ids.len() == page_size {
            let more = at.node < masters.len();
            return Ok(SessionPage::new(ids, more.then(|| at.to_string())));
        }
    }
    Ok(SessionPage::new(ids, None))
}
