//! Reads: the newest items, pages, session info and the session list, each one transaction.

use super::*;

/// How [`Inner::read_tail`] may run.
#[derive(Debug, Default)]
pub(super) struct TailMode {
    /// Take the write lock first (a retry after SQLITE_BUSY_SNAPSHOT).
    pub(super) immediate: bool,
    /// On the caller's thread: read at most this many rows, and never write.
    pub(super) row_budget: Option<usize>,
    /// Set when the read stopped within its budget: run it again on the blocking pool.
    pub(super) deferred: bool,
    /// The session's record count as the read found it (0: no live session).
    pub(super) item_count: i64,
}

impl Inner {
    /// One page of the live session's items after sequence `after`.
    pub(super) fn read_page(
        &self,
        conn: &mut Connection,
        session_id: &str,
        after: i64,
        max_bytes: usize,
    ) -> TxResult<ItemPage> {
        let now = Timestamp::now();
        let tx = conn.transaction()?;
        let Some(row) = find_session(&tx, session_id)? else {
            return Ok(Ok(ItemPage::default()));
        };
        if is_expired(row.expires_at, now) {
            return Ok(Ok(ItemPage::default()));
        }
        let (mut items, mut bytes, mut last) = (Vec::new(), 0usize, after);
        let mut query = tx.prepare_cached(
            "SELECT seq, record FROM oas_items WHERE session = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        loop {
            let mut rows = query.query(params![row.key, last, 256])?;
            let mut fetched = 0;
            while let Some(r) = rows.next()? {
                if bytes >= max_bytes {
                    return Ok(Ok(ItemPage::new(items, Some(last as u64))));
                }
                fetched += 1;
                last = r.get(0)?;
                let decoded = self.codec.decode(session_id, record_bytes(r.get_ref(1)?));
                if let Some(e) = decoded.read_error(Operation::GetItems) {
                    return Ok(Err(e));
                }
                if let Decoded::Valid(item) = decoded {
                    bytes += item.len_bytes();
                    items.push(item);
                }
            }
            if fetched < 256 {
                return Ok(Ok(ItemPage::new(items, None)));
            }
        }
    }

    /// The newest `limit` items below sequence `before`, with their sequences: a read
    /// transaction of one session lookup and index range scans of `limit + 1` rows (more only
    /// past undecodable records).
    pub(super) fn read_before(
        &self,
        conn: &mut Connection,
        session_id: &str,
        before: i64,
        limit: usize,
    ) -> TxResult<PageBefore> {
        let now = Timestamp::now();
        let tx = conn.transaction()?;
        let Some(row) = find_session(&tx, session_id)? else {
            return Ok(Ok(PageBefore::default()));
        };
        if is_expired(row.expires_at, now) {
            return Ok(Ok(PageBefore::default()));
        }
        let mut collector = BeforeCollector::new(limit);
        let mut below = before;
        let mut query = tx.prepare_cached(
            "SELECT seq, record FROM oas_items WHERE session = ?1 AND seq < ?2
             ORDER BY seq DESC LIMIT ?3",
        )?;
        'pages: loop {
            let want = collector.wanted() as i64;
            let mut rows = query.query(params![row.key, below, want])?;
            let mut fetched = 0i64;
            while let Some(r) = rows.next()? {
                fetched += 1;
                below = r.get(0)?;
                let decoded = self.codec.decode(session_id, record_bytes(r.get_ref(1)?));
                if collector.push(below.max(0) as u64, decoded) {
                    break 'pages;
                }
            }
            if fetched < want {
                break;
            }
        }
        Ok(Ok(collector.finish()))
    }

    /// The newest `limit` items. A read transaction, unless the read must refresh the expiry
    /// (`refresh_on_read`) and the refresh is due: it is skipped while it would move the expiry
    /// by less than the granularity, ttl / 100 (36 s of a one-hour TTL), as on Redis and
    /// DynamoDB, so most reads write nothing and sync nothing. A due refresh upgrades the
    /// transaction to a write; if another writer committed meanwhile (SQLITE_BUSY_SNAPSHOT)
    /// the transaction is retried, and `mode.immediate` makes the retry take the write lock
    /// first. With `mode.row_budget` (a read on the caller's thread, `inline.rs`), a read that
    /// would write or would take more rows than the budget stops before doing so, sets
    /// `mode.deferred` and writes nothing: the caller runs it again on the blocking pool.
    pub(super) fn read_tail(
        &self,
        conn: &mut Connection,
        session_id: &str,
        limit: Option<usize>,
        mode: &mut TailMode,
    ) -> TxResult<Vec<Item>> {
        let now = Timestamp::now();
        let refresh = self.config.options.refreshes_on_read();
        let tx = if refresh && mode.immediate {
            conn.transaction_with_behavior(TransactionBehavior::Immediate)?
        } else {
            conn.transaction()?
        };
        mode.item_count = 0;
        let Some(row) = find_session(&tx, session_id)? else {
            return Ok(Ok(Vec::new()));
        };
        if is_expired(row.expires_at, now) {
            return Ok(Ok(Vec::new()));
        }
        mode.item_count = row.item_count;
        // A whole history longer than the budget is left to the pool before any row is read.
        if let (None, Some(budget)) = (limit, mode.row_budget) {
            if row.item_count > budget as i64 {
                mode.deferred = true;
                return Ok(Ok(Vec::new()));
            }
        }
        let mut collector = TailCollector::new(limit);
        let mut before = i64::MAX;
        let mut rows_read = 0usize;
        {
            let mut page_query = tx.prepare_cached(
                "SELECT seq, record FROM oas_items WHERE session = ?1 AND seq < ?2
                 ORDER BY seq DESC LIMIT ?3",
            )?;
            'pages: loop {
                // LIMIT -1 is no limit: the whole history in one pass. Within a row budget,
                // at most one row more than the budget is asked for.
                let page = match (collector.wanted(), mode.row_budget) {
                    (wanted, Some(budget)) => {
                        let left = (budget + 1).saturating_sub(rows_read);
                        wanted.map_or(left, |w| w.min(left)) as i64
                    }
                    (wanted, None) => wanted.map_or(-1, |w| w as i64),
                };
                let mut rows = page_query.query(params![row.key, before, page])?;
                let mut fetched = 0i64;
                while let Some(r) = rows.next()? {
                    fetched += 1;
                    rows_read += 1;
                    if mode.row_budget.is_some_and(|budget| rows_read > budget) {
                        mode.deferred = true;
                        return Ok(Ok(Vec::new()));
                    }
                    before = r.get(0)?;
                    if collector.push(self.codec.decode(session_id, record_bytes(r.get_ref(1)?))) {
                        break 'pages;
                    }
                }
                if page < 0 || fetched < page {
                    break;
                }
            }
        }
        let items = collector.finish();
        let ttl = self.config.options.ttl;
        if refresh && items.is_ok() && refresh_due(row.expires_at, now, ttl) {
            if mode.row_budget.is_some() {
                mode.deferred = true;
                return Ok(Ok(Vec::new()));
            }
            mode.immediate = true;
            tx.prepare_cached("UPDATE oas_sessions SET expires_at = ?2 WHERE id = ?1")?
                .execute(params![
                    row.key,
                    expiry_after(now, ttl).map(Timestamp::as_millis)
                ])?;
        }
        tx.commit()?;
        Ok(items)
    }

    pub(super) fn info(
        &self,
        conn: &mut Connection,
        session_id: &str,
    ) -> TxResult<Option<SessionInfo>> {
        let now = Timestamp::now();
        // One statement: the session row and its lease row (if live) as of one snapshot.
        let info = conn
            .prepare_cached(
                "SELECT s.item_count, s.created_at, s.updated_at, s.expires_at,
                        l.owner, l.token, l.expires_at
                 FROM oas_sessions s
                 LEFT JOIN oas_leases l ON l.session_id = s.session_id AND l.expires_at > ?2
                 WHERE s.session_id = ?1",
            )?
            .query_row(params![session_id, now.as_millis()], |r| {
                let lease = match r.get::<_, Option<String>>(4)? {
                    Some(owner) => Some(crate::lease::Lease::new(
                        owner,
                        u64::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
                        Timestamp::from_millis(r.get(6)?),
                    )),
                    None => None,
                };
                Ok(SessionInfo::new(
                    session_id,
                    r.get::<_, i64>(0)?.max(0) as u64,
                    Timestamp::from_millis(r.get(1)?),
                    Timestamp::from_millis(r.get(2)?),
                    r.get::<_, Option<i64>>(3)?.map(Timestamp::from_millis),
                )
                .with_lease(lease))
            })
            .optional()?;
        Ok(Ok(info.filter(|i| !is_expired(i.expires_at, now))))
    }

    /// Most recently updated first: the `oas_sessions_updated_at` index walked backwards from
    /// the cursor `updated_ms:session_id`, the prefix as a filter.
    fn list_newest_first(
        &self,
        conn: &mut Connection,
        options: &ListOptions,
    ) -> TxResult<SessionPage> {
        let now = Timestamp::now();
        let prefix = options.prefix.clone().unwrap_or_default();
        let page_size = options.effective_page_size();
        let (at, after_id) = match &options.cursor {
            Some(c) => match c
                .split_once(':')
                .and_then(|(t, id)| Some((t.parse::<i64>().ok()?, id)))
            {
                Some((t, id)) => (t, id.to_owned()),
                None => {
                    return Ok(Err(Error::new(
                        ErrorKind::InvalidInput,
                        Operation::ListSessions,
                        format!("invalid newest-first list cursor {c:?}"),
                    )))
                }
            },
            None => (i64::MAX, String::new()),
        };
        let mut stmt = conn.prepare_cached(
            "SELECT session_id, updated_at FROM oas_sessions INDEXED BY oas_sessions_updated_at
             WHERE (updated_at < ?1 OR (updated_at = ?1 AND ?2 <> '' AND session_id < ?2))
               AND substr(CAST(session_id AS BLOB), 1, ?4) = CAST(?3 AS BLOB)
               AND (expires_at IS NULL OR expires_at > ?5)
             ORDER BY updated_at DESC, session_id DESC LIMIT ?6",
        )?;
        let mut rows = stmt
            .query_map(
                params![
                    at,
                    after_id,
                    prefix,
                    prefix.len() as i64,
                    now.as_millis(),
                    page_size as i64 + 1
                ],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let next_cursor = if rows.len() > page_size {
            rows.truncate(page_size);
            rows.last().map(|(id, t)| format!("{t}:{id}"))
        } else {
            None
        };
        let ids = rows.into_iter().map(|(id, _)| id).collect();
        Ok(Ok(SessionPage::new(ids, next_cursor).sorted_newest_first()))
    }

    pub(super) fn list(
        &self,
        conn: &mut Connection,
        options: &ListOptions,
    ) -> TxResult<SessionPage> {
        if options.newest_first {
            return self.list_newest_first(conn, options);
        }
        let now = Timestamp::now();
        let prefix = options.prefix.clone().unwrap_or_default();
        let page_size = options.effective_page_size();
        // One range on the primary-key index: from the cursor (or the prefix) up to the first
        // id past every id with this prefix; the byte-wise prefix test stays as the filter.
        let (lower_op, lower) = match &options.cursor {
            Some(cursor) if cursor.as_str() >= prefix.as_str() => (">", cursor.clone()),
            _ => (">=", prefix.clone()),
        };
        let upper = prefix_successor(&prefix);
        let sql = format!(
            "SELECT session_id FROM oas_sessions
             WHERE session_id {lower_op} ?1 {}
               AND substr(CAST(session_id AS BLOB), 1, ?3) = CAST(?2 AS BLOB)
               AND (expires_at IS NULL OR expires_at > ?4)
             ORDER BY session_id LIMIT ?5",
            if upper.is_some() {
                "AND session_id < ?6"
            } else {
                ""
            }
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut bound: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(6);
        let (len, now_ms, limit) = (prefix.len() as i64, now.as_millis(), page_size as i64 + 1);
        bound.extend([
            &lower as &dyn rusqlite::ToSql,
            &prefix,
            &len,
            &now_ms,
            &limit,
        ]);
        if let Some(upper) = &upper {
            bound.push(upper);
        }
        let mut ids = stmt
            .query_map(bound.as_slice(), |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let next_cursor = if ids.len() > page_size {
            ids.truncate(page_size);
            ids.last().cloned()
        } else {
            None
        };
        Ok(Ok(SessionPage::new(ids, next_cursor)))
    }
}

/// Whether a read at `now` must push the expiry `current` to now + ttl: only when that moves
/// it by at least the granularity, ttl / 100 (a session without an expiry gets one).
pub(super) fn refresh_due(
    current: Option<Timestamp>,
    now: Timestamp,
    ttl_secs: Option<u64>,
) -> bool {
    let Some(ttl) = ttl_secs else { return false };
    let Some(current) = current else { return true };
    let ttl_ms = i64::try_from(ttl)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    let moved = now.as_millis().saturating_add(ttl_ms) - current.as_millis();
    moved >= (ttl_ms / 100).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_granularity_is_a_hundredth_of_the_ttl() {
        let now = Timestamp::from_millis(1_000_000);
        let ttl = Some(3600);
        // Refreshed 35 s ago: the expiry would move by 35 s < 36 s.
        let recent = Some(Timestamp::from_millis(1_000_000 + 3_600_000 - 35_000));
        assert!(!refresh_due(recent, now, ttl));
        let due = Some(Timestamp::from_millis(1_000_000 + 3_600_000 - 36_000));
        assert!(refresh_due(due, now, ttl));
        assert!(refresh_due(None, now, ttl));
        assert!(!refresh_due(recent, now, None));
        // A 3 s TTL read at 2 s: moved by 2 s >= 30 ms.
        let three = Some(Timestamp::from_millis(1_000_000 + 1_000));
        assert!(refresh_due(three, now, Some(3)));
    }
}
