//! Read-only access to older programs' Redis layouts, for migration (`?layout=seed`,
//! `?layout=openai-agents`): get, list and info work; writes are invalid input.

use std::sync::Arc;

use redis::Value;

use super::error::map_redis;
use super::layout::{glob_escape, value_bytes, value_int, value_string};
use super::read::scan_pages;
use super::{Layout, RedisConnection};
use crate::codec::{RecordCodec, TailCollector};
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::item::Item;
use crate::stats::RequestStats;
use crate::store::{
    Backend, BoxFuture, ListOptions, PruneReport, SessionInfo, SessionPage, Store, StoreOptions,
};
use crate::time::Timestamp;

#[derive(Debug)]
struct LegacyBackend {
    conn: RedisConnection,
    layout: Layout,
    prefix: String,
    codec: RecordCodec,
    stats: RequestStats,
}

pub(crate) fn store(
    conn: RedisConnection,
    layout: Layout,
    prefix: String,
    options: StoreOptions,
) -> Store {
    let backend = LegacyBackend {
        conn,
        layout,
        prefix,
        codec: RecordCodec::new(options.encryption.clone()),
        stats: RequestStats::default(),
    };
    Store::from_backend(Arc::new(backend), options)
}

impl LegacyBackend {
    fn layout_name(&self) -> &'static str {
        match self.layout {
            Layout::Seed => "seed",
            _ => "openai-agents",
        }
    }

    /// The key of the list holding the session's items.
    fn items_key(&self, session_id: &str) -> String {
        match self.layout {
            Layout::Seed => format!("{}:{session_id}", self.prefix),
            _ => format!("{}:{session_id}:messages", self.prefix),
        }
    }

    async fn query(&self, op: Operation, cmd: &redis::Cmd) -> Result<Value> {
        self.stats.record_requests(op, 1);
        self.conn.query(op, cmd).await.map_err(|e| map_redis(op, e))
    }

    fn read_only(&self, op: Operation) -> BoxFuture<'_, Result<()>> {
        let message = format!(
            "layout={} is read-only (it exists to migrate older data); open the store without `layout` to write",
            self.layout_name()
        );
        Box::pin(async move { Err(Error::new(ErrorKind::InvalidInput, op, message)) })
    }

    async fn get(&self, session_id: &str, limit: Option<usize>) -> Result<Vec<Item>> {
        let op = Operation::GetItems;
        let key = self.items_key(session_id);
        let mut collector = TailCollector::new(limit);
        let mut offset = 0i64;
        loop {
            let (start, stop) = match collector.wanted() {
                None => (0, -1 - offset),
                Some(w) => (-(offset + w as i64), -(offset + 1)),
            };
            let reply = self
                .query(op, redis::cmd("LRANGE").arg(&key).arg(start).arg(stop))
                .await?;
            let records: Vec<Vec<u8>> = match reply {
                Value::Array(values) => values.into_iter().filter_map(value_bytes).collect(),
                Value::Nil => Vec::new(),
                other => {
                    return Err(Error::new(
                        ErrorKind::Backend,
                        op,
                        format!("unexpected LRANGE reply {other:?}"),
                    ))
                }
            };
            let fetched = records.len() as i64;
            for record in records.iter().rev() {
                if collector.push(self.codec.decode(session_id, record)) {
                    break;
                }
            }
            offset += fetched;
            if collector.is_full() || limit.is_none() || fetched == 0 {
                return collector.finish();
            }
        }
    }

    async fn info(&self, session_id: &str) -> Result<Option<SessionInfo>> {
        let op = Operation::SessionInfo;
        let key = self.items_key(session_id);
        let len = self.query(op, redis::cmd("LLEN").arg(&key)).await?;
        let len = value_int(&len).unwrap_or(0);
        let pttl = self.query(op, redis::cmd("PTTL").arg(&key)).await?;
        let now = Timestamp::now();
        let expires_at = value_int(&pttl)
            .filter(|ms| *ms > 0)
            .map(|ms| Timestamp::from_millis(now.as_millis() + ms));
        match self.layout {
            Layout::Seed => {
                // The seed records no timestamps: they are reported as the Unix epoch.
                Ok((len > 0).then(|| {
                    SessionInfo::new(
                        session_id,
                        len as u64,
                        Timestamp::from_millis(0),
                        Timestamp::from_millis(0),
                        expires_at,
                    )
                }))
            }
            _ => {
                let hash = format!("{}:{session_id}", self.prefix);
                let fields = self
                    .query(
                        op,
                        redis::cmd("HMGET")
                            .arg(&hash)
                            .arg("created_at")
                            .arg("updated_at"),
                    )
                    .await?;
                let secs = |v: Option<&Value>| {
                    v.and_then(value_string)
                        .and_then(|s| s.parse::<f64>().ok())
                        .map(|s| Timestamp::from_millis((s * 1000.0) as i64))
                };
                let (created, updated) = match &fields {
                    Value::Array(f) => (secs(f.first()), secs(f.get(1))),
                    _ => (None, None),
                };
                if created.is_none() && len == 0 {
                    return Ok(None);
                }
                let created = created.unwrap_or(Timestamp::from_millis(0));
                Ok(Some(SessionInfo::new(
                    session_id,
                    len.max(0) as u64,
                    created,
                    updated.unwrap_or(created),
                    expires_at,
                )))
            }
        }
    }

    async fn list(&self, options: &ListOptions) -> Result<SessionPage> {
        let op = Operation::ListSessions;
        let id_prefix = options.prefix.as_deref().unwrap_or("");
        let pattern = format!("{}:{}*", glob_escape(&self.prefix), glob_escape(id_prefix));
        let head = format!("{}:", self.prefix);
        let seed = self.layout == Layout::Seed;
        let parse = |key: &[u8]| -> Option<String> {
            let id = std::str::from_utf8(key).ok()?.strip_prefix(head.as_str())?;
            // Under the seed's prefix, this library's own item lists are lists too: skip them.
            if seed && id.starts_with('{') && id.ends_with("}:items") {
                return None;
            }
            id.starts_with(id_prefix).then(|| id.to_owned())
        };
        let key_type = if seed { "list" } else { "hash" };
        scan_pages(
            &self.conn,
            &self.stats,
            op,
            options,
            &pattern,
            Some(key_type),
            parse,
        )
        .await
    }
}

impl Backend for LegacyBackend {
    fn name(&self) -> &'static str {
        match self.layout {
            Layout::Seed => "redis-seed",
            _ => "redis-openai-agents",
        }
    }

    fn get_items<'a>(
        &'a self,
        session_id: &'a str,
        limit: Option<usize>,
    ) -> BoxFuture<'a, Result<Vec<Item>>> {
        Box::pin(self.get(session_id, limit))
    }

    fn add_items<'a>(
        &'a self,
        _session_id: &'a str,
        _items: Vec<Item>,
    ) -> BoxFuture<'a, Result<()>> {
        self.read_only(Operation::AddItems)
    }

    fn pop_item<'a>(&'a self, _session_id: &'a str) -> BoxFuture<'a, Result<Option<Item>>> {
        let denied = self.read_only(Operation::PopItem);
        Box::pin(async move { denied.await.map(|()| None) })
    }

    fn clear_session<'a>(&'a self, _session_id: &'a str) -> BoxFuture<'a, Result<()>> {
        self.read_only(Operation::ClearSession)
    }

    fn session_info<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionInfo>>> {
        Box::pin(self.info(session_id))
    }

    fn list_sessions<'a>(&'a self, options: &'a ListOptions) -> BoxFuture<'a, Result<SessionPage>> {
        Box::pin(self.list(options))
    }

    fn prune(&self) -> BoxFuture<'_, Result<PruneReport>> {
        let denied = self.read_only(Operation::Prune);
        Box::pin(async move { denied.await.map(|()| PruneReport::default()) })
    }

    fn stats(&self) -> &RequestStats {
        &self.stats
    }
}
