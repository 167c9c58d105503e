//! Read-only access to the seed's DynamoDB layout (`dynamodb://TABLE?layout=seed`): one item
//! per session, partition key `session_id`, the whole history as a JSON string in
//! `conversation_data`, `updated_at` and `ttl` in epoch seconds. Get, list and info work;
//! writes are invalid input.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::layout::{seed_info, seed_num, seed_records};
use super::{map_sdk, s};
use crate::codec::{RecordCodec, TailCollector};
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::item::Item;
use crate::stats::RequestStats;
use crate::store::{
    Backend, BoxFuture, ListOptions, PruneReport, SessionInfo, SessionPage, Store, StoreOptions,
};
use crate::time::Timestamp;

#[derive(Debug)]
struct SeedTable {
    client: Client,
    table: String,
    codec: RecordCodec,
    stats: RequestStats,
}

pub(crate) fn store(client: Client, table: String, options: StoreOptions) -> Store {
    Store::from_backend(
        Arc::new(SeedTable {
            client,
            table,
            codec: RecordCodec::new(options.encryption.clone()),
            stats: RequestStats::default(),
        }),
        options,
    )
}

impl SeedTable {
    fn denied<T: Send + 'static>(&self, op: Operation) -> BoxFuture<'_, Result<T>> {
        Box::pin(async move {
            Err(Error::new(ErrorKind::InvalidInput, op, "layout=seed is read-only (it exists to migrate the seed's data); open the store without `layout` to write"))
        })
    }

    /// The session's item, unless missing or past its `ttl` (the seed never hid those).
    async fn load(
        &self,
        op: Operation,
        session_id: &str,
    ) -> Result<Option<std::collections::HashMap<String, AttributeValue>>> {
        self.stats.record_requests(op, 1);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("session_id", s(session_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| map_sdk(op, &self.table, e))?;
        let now_secs = Timestamp::now().as_millis() / 1000;
        Ok(out
            .item()
            .filter(|i| seed_num(i, "ttl").is_none_or(|t| t > now_secs))
            .cloned())
    }
}

impl Backend for SeedTable {
    fn name(&self) -> &'static str {
        "dynamodb-seed"
    }

    fn get_items<'a>(
        &'a self,
        session_id: &'a str,
        limit: Option<usize>,
    ) -> BoxFuture<'a, Result<Vec<Item>>> {
        Box::pin(async move {
            let Some(item) = self.load(Operation::GetItems, session_id).await? else {
                return Ok(Vec::new());
            };
            let mut collector = TailCollector::new(limit);
            for record in seed_records(&item).iter().rev() {
                if collector.push(self.codec.decode(session_id, record)) {
                    break;
                }
            }
            collector.finish()
        })
    }

    fn add_items<'a>(&'a self, _: &'a str, _: Vec<Item>) -> BoxFuture<'a, Result<()>> {
        self.denied(Operation::AddItems)
    }

    fn pop_item<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<Item>>> {
        self.denied(Operation::PopItem)
    }

    fn clear_session<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<()>> {
        self.denied(Operation::ClearSession)
    }

    fn session_info<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionInfo>>> {
        Box::pin(async move {
            let Some(item) = self.load(Operation::SessionInfo, session_id).await? else {
                return Ok(None);
            };
            Ok(Some(seed_info(session_id, &item)))
        })
    }

    fn list_sessions<'a>(&'a self, options: &'a ListOptions) -> BoxFuture<'a, Result<SessionPage>> {
        Box::pin(async move {
            let op = Operation::ListSessions;
            let prefix = options.prefix.clone().unwrap_or_default();
            let now_secs = Timestamp::now().as_millis() / 1000;
            let mut ids = Vec::new();
            let mut start = None;
            loop {
                self.stats.record_requests(op, 1);
                let out = self
                    .client
                    .scan()
                    .table_name(&self.table)
                    .projection_expression("session_id, #t")
                    .expression_attribute_names("#t", "ttl")
                    .consistent_read(true)
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(|e| map_sdk(op, &self.table, e))?;
                for item in out.items() {
                    let live = seed_num(item, "ttl").is_none_or(|t| t > now_secs);
                    if let (true, Some(id)) =
                        (live, item.get("session_id").and_then(|v| v.as_s().ok()))
                    {
                        if id.starts_with(&prefix) {
                            ids.push(id.clone());
                        }
                    }
                }
                start = out.last_evaluated_key().cloned();
                if start.is_none() {
                    break;
                }
            }
            ids.sort();
            // A scan has no order: the whole (sorted) list is paged by cursor = last id.
            let after: Vec<String> = match &options.cursor {
                Some(c) => ids.into_iter().filter(|id| id > c).collect(),
                None => ids,
            };
            let page = options.effective_page_size();
            let next = (after.len() > page).then(|| after[page - 1].clone());
            Ok(SessionPage::new(
                after.into_iter().take(page).collect(),
                next,
            ))
        })
    }

    fn prune(&self) -> BoxFuture<'_, Result<PruneReport>> {
        self.denied(Operation::Prune)
    }

    fn stats(&self) -> &RequestStats {
        &self.stats
    }
}
