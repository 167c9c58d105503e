//! Reads: the newest items (one `get` call; more only past undecodable records), pages,
//! session info and the session list, each one statement.

use super::layout::prefix_successor;
use super::*;

/// Records one `page` call reads.
const PAGE_RECORDS: i64 = 256;

impl Inner {
    pub(super) async fn read_tail(
        &self,
        session_id: &str,
        limit: Option<usize>,
    ) -> Result<Vec<Item>> {
        let op = Operation::GetItems;
        let mut collector = TailCollector::new(limit);
        let mut before = i64::MAX;
        let mut refresh = self.options.refreshes_on_read();
        let ttl = self.ttl_ms();
        loop {
            let wanted = collector
                .wanted()
                .map(|w| i64::try_from(w).unwrap_or(i64::MAX));
            let row = self
                .one(
                    op,
                    &self.sql.get,
                    &[&sid(session_id), &wanted, &before, &ttl, &refresh],
                )
                .await?;
            refresh = false;
            let live: bool = row
                .try_get::<_, Option<bool>>(0)
                .map_err(|e| row_error(op, e))?
                .unwrap_or(false);
            if !live {
                return collector.finish();
            }
            let records: Vec<Vec<u8>> = row
                .try_get::<_, Option<Vec<Vec<u8>>>>(1)
                .map_err(|e| row_error(op, e))?
                .unwrap_or_default();
            let lowest: Option<i64> = row.try_get(2).map_err(|e| row_error(op, e))?;
            let fetched = records.len() as i64;
            for record in &records {
                if collector.push(self.codec.decode(session_id, record)) {
                    return collector.finish();
                }
            }
            match (wanted, lowest) {
                // Fewer than asked for: the history ended.
                (Some(w), Some(low)) if fetched >= w => before = low,
                _ => return collector.finish(),
            }
        }
    }

    pub(super) async fn read_page(
        &self,
        session_id: &str,
        after: Option<u64>,
        max_bytes: usize,
    ) -> Result<ItemPage> {
        let op = Operation::GetItems;
        let mut last = after.map_or(0, |a| i64::try_from(a).unwrap_or(i64::MAX));
        let (mut items, mut bytes) = (Vec::new(), 0usize);
        loop {
            let row = self
                .one(
                    op,
                    &self.sql.page,
                    &[&sid(session_id), &last, &PAGE_RECORDS],
                )
                .await?;
            let live: bool = row
                .try_get::<_, Option<bool>>(0)
                .map_err(|e| row_error(op, e))?
                .unwrap_or(false);
            if !live {
                return Ok(ItemPage::new(items, None));
            }
            let seqs: Vec<i64> = row
                .try_get::<_, Option<Vec<i64>>>(1)
                .map_err(|e| row_error(op, e))?
                .unwrap_or_default();
            let records: Vec<Vec<u8>> = row
                .try_get::<_, Option<Vec<Vec<u8>>>>(2)
                .map_err(|e| row_error(op, e))?
                .unwrap_or_default();
            let fetched = seqs.len() as i64;
            for (seq, record) in seqs.into_iter().zip(records) {
                if bytes >= max_bytes {
                    return Ok(ItemPage::new(items, Some(last as u64)));
                }
                last = seq;
                if let Decoded::Valid(item) = self.codec.decode(session_id, &record) {
                    bytes += item.len_bytes();
                    items.push(item);
                }
            }
            if fetched < PAGE_RECORDS {
                return Ok(ItemPage::new(items, None));
            }
        }
    }

    /// The newest `limit` valid items below position `before` (the newest with `None`): one
    /// index range of `limit` rows, more only past undecodable records; no refresh.
    pub(super) async fn read_before(
        &self,
        session_id: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<crate::pages::PageBefore> {
        let op = Operation::GetItems;
        let mut collector = crate::pages::BeforeCollector::new(limit);
        let mut below = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        loop {
            let want = i64::try_from(collector.wanted()).unwrap_or(i64::MAX);
            self.stats.record_requests(op, 1);
            let rows = self
                .conn
                .query(op, &self.sql.before, &[&sid(session_id), &below, &want])
                .await?;
            let fetched = rows.len() as i64;
            for r in &rows {
                below = r.try_get(0).map_err(|e| row_error(op, e))?;
                let record: Vec<u8> = r.try_get(1).map_err(|e| row_error(op, e))?;
                let position = u64::try_from(below).unwrap_or(0);
                if collector.push(position, self.codec.decode(session_id, &record)) {
                    return Ok(collector.finish());
                }
            }
            if fetched < want {
                return Ok(collector.finish());
            }
        }
    }

    pub(super) async fn info(&self, session_id: &str) -> Result<Option<SessionInfo>> {
        let op = Operation::SessionInfo;
        self.stats.record_requests(op, 1);
        let rows = self
            .conn
            .query(op, &self.sql.info, &[&sid(session_id)])
            .await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let get_i64 =
            |i: usize| -> Result<i64> { r.try_get::<_, i64>(i).map_err(|e| row_error(op, e)) };
        let lease = match r
            .try_get::<_, Option<Vec<u8>>>(4)
            .map_err(|e| row_error(op, e))?
        {
            Some(owner) => Some(Lease::new(
                String::from_utf8_lossy(&owner).into_owned(),
                u64::try_from(get_i64(5)?).unwrap_or(0),
                Timestamp::from_millis(get_i64(6)?),
            )),
            None => None,
        };
        let expires: Option<i64> = r.try_get(3).map_err(|e| row_error(op, e))?;
        Ok(Some(
            SessionInfo::new(
                session_id,
                get_i64(0)?.max(0) as u64,
                Timestamp::from_millis(get_i64(1)?),
                Timestamp::from_millis(get_i64(2)?),
                expires.map(Timestamp::from_millis),
            )
            .with_lease(lease),
        ))
    }

    /// Most recently updated first (see `LIST_NEWEST`); the cursor is `updated_ms:session_id`.
    async fn list_newest_first(&self, options: &ListOptions) -> Result<SessionPage> {
        let op = Operation::ListSessions;
        let prefix = options.prefix.clone().unwrap_or_default();
        let page_size = options.effective_page_size();
        let (at, after_id): (i64, Vec<u8>) = match &options.cursor {
            Some(c) => match c
                .split_once(':')
                .and_then(|(t, id)| Some((t.parse::<i64>().ok()?, id)))
            {
                Some((t, id)) => (t, id.as_bytes().to_vec()),
                None => {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        op,
                        format!("invalid newest-first list cursor {c:?}"),
                    ))
                }
            },
            None => (i64::MAX, Vec::new()),
        };
        let prefix_len = i32::try_from(prefix.len()).unwrap_or(i32::MAX);
        let limit = i64::try_from(page_size).unwrap_or(i64::MAX - 1) + 1;
        self.stats.record_requests(op, 1);
        let rows = self
            .conn
            .query(
                op,
                &self.sql.list_newest,
                &[&at, &after_id, &prefix.as_bytes(), &prefix_len, &limit],
            )
            .await?;
        let mut page = Vec::with_capacity(rows.len());
        for r in &rows {
            let bytes: Vec<u8> = r.try_get(0).map_err(|e| row_error(op, e))?;
            let updated: i64 = r.try_get(1).map_err(|e| row_error(op, e))?;
            match String::from_utf8(bytes) {
                Ok(id) => page.push((id, updated)),
                Err(_) => tracing::warn!("skipping a session id that is not UTF-8"),
            }
        }
        let next_cursor = if page.len() > page_size {
            page.truncate(page_size);
            page.last().map(|(id, t)| format!("{t}:{id}"))
        } else {
            None
        };
        let ids = page.into_iter().map(|(id, _)| id).collect();
        Ok(SessionPage::new(ids, next_cursor).sorted_newest_first())
    }

    pub(super) async fn list(&self, options: &ListOptions) -> Result<SessionPage> {
        if options.newest_first {
            return self.list_newest_first(options).await;
        }
        let op = Operation::ListSessions;
        let prefix = options.prefix.clone().unwrap_or_default();
        let page_size = options.effective_page_size();
        // One range of the session_id index: from the cursor (exclusive) or the prefix up to
        // the prefix's successor. Byte order of UTF-8 is code point order, as Rust's.
        let (lower, after): (Vec<u8>, Vec<u8>) = match &options.cursor {
            Some(cursor) if cursor.as_str() >= prefix.as_str() => {
                (cursor.as_bytes().to_vec(), cursor.as_bytes().to_vec())
            }
            _ => (prefix.as_bytes().to_vec(), Vec::new()),
        };
        let upper = prefix_successor(prefix.as_bytes());
        let limit = i64::try_from(page_size).unwrap_or(i64::MAX - 1) + 1;
        self.stats.record_requests(op, 1);
        let rows = self
            .conn
            .query(op, &self.sql.list, &[&lower, &upper, &after, &limit])
            .await?;
        let mut ids = Vec::with_capacity(rows.len());
        for r in &rows {
            let bytes: Vec<u8> = r.try_get(0).map_err(|e| row_error(op, e))?;
            match String::from_utf8(bytes) {
                Ok(id) if id.starts_with(prefix.as_str()) => ids.push(id),
                Ok(_) => {}
                Err(_) => tracing::warn!("skipping a session id that is not UTF-8"),
            }
        }
        let next_cursor = if ids.len() > page_size {
            ids.truncate(page_size);
            ids.last().cloned()
        } else {
            None
        };
        Ok(SessionPage::new(ids, next_cursor))
    }
}
