//! Read-only access to the tables the Python Agents SDK's `SQLAlchemySession` creates, for
//! migration: `postgres://...?layout=openai-agents[&sessions_table=agent_sessions&messages_table=agent_messages]`.
//! Get (messages in `created_at, id` order), list and info work; writes are invalid input, so
//! `agent-session copy --from 'postgres://...?layout=openai-agents' --to postgres://...`
//! upgrades in one command.

use super::conn::Conn;
use super::*;

#[derive(Debug)]
struct AgentsTables {
    conn: Conn,
    get: String,
    info: String,
    list: String,
    codec: RecordCodec,
    stats: RequestStats,
}

pub(super) async fn open(
    conn: Conn,
    schema: &str,
    sessions_table: &str,
    messages_table: &str,
    options: StoreOptions,
) -> Result<Store> {
    let op = Operation::Open;
    let sessions = format!("\"{schema}\".\"{sessions_table}\"");
    let messages = format!("\"{schema}\".\"{messages_table}\"");
    for (table, columns) in [
        (
            sessions_table,
            &["session_id", "created_at", "updated_at"][..],
        ),
        (
            messages_table,
            &["id", "session_id", "message_data", "created_at"][..],
        ),
    ] {
        let rows = conn
            .query(
                op,
                "SELECT column_name::text FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2",
                &[&schema, &table],
            )
            .await?;
        let found: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        if found.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                op,
                format!("there is no table {schema}.{table} (the Agents SDK SQLAlchemySession layout; set sessions_table and messages_table if it uses other names)"),
            ));
        }
        if let Some(missing) = columns.iter().find(|c| !found.iter().any(|f| f == *c)) {
            return Err(Error::new(
                ErrorKind::Config,
                op,
                format!("table {schema}.{table} has the wrong shape for layout=openai-agents: no column {missing}"),
            ));
        }
    }
    let backend = AgentsTables {
        conn,
        get: format!(
            "SELECT message_data::text FROM {messages} WHERE session_id = $1::text
              ORDER BY created_at DESC, id DESC LIMIT $2::bigint"
        ),
        info: format!(
            "SELECT (extract(epoch FROM s.created_at) * 1000)::bigint,
                    (extract(epoch FROM s.updated_at) * 1000)::bigint,
                    (SELECT count(*) FROM {messages} m WHERE m.session_id = s.session_id)
               FROM {sessions} s WHERE s.session_id = $1::text"
        ),
        list: format!(
            "SELECT session_id::text FROM {sessions}
              WHERE starts_with(session_id::text, $1::text) AND session_id::text COLLATE \"C\" > $2::text
              ORDER BY session_id::text COLLATE \"C\" LIMIT $3::bigint"
        ),
        codec: RecordCodec::default(),
        stats: RequestStats::default(),
    };
    Ok(Store::from_backend(Arc::new(backend), options))
}

fn denied<'a, T: Send + 'static>(op: Operation) -> BoxFuture<'a, Result<T>> {
    Box::pin(async move {
        Err(Error::new(
            ErrorKind::InvalidInput,
            op,
            "layout=openai-agents is read-only (it exists to migrate the Agents SDK's data); open the store without `layout` to write",
        ))
    })
}

impl AgentsTables {
    async fn records(&self, session_id: &str, limit: Option<i64>) -> Result<Vec<Vec<u8>>> {
        let op = Operation::GetItems;
        self.stats.record_requests(op, 1);
        let rows = self
            .conn
            .query(op, &self.get, &[&session_id, &limit])
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                r.get::<_, Option<String>>(0)
                    .unwrap_or_default()
                    .into_bytes()
            })
            .collect())
    }
}

impl Backend for AgentsTables {
    fn name(&self) -> &'static str {
        "postgres-openai-agents"
    }

    fn get_items<'a>(
        &'a self,
        session_id: &'a str,
        limit: Option<usize>,
    ) -> BoxFuture<'a, Result<Vec<Item>>> {
        Box::pin(async move {
            let wanted = limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
            let mut records = self.records(session_id, wanted).await?;
            let mut collector = TailCollector::new(limit);
            for record in &records {
                if collector.push(self.codec.decode(record)) {
                    return Ok(collector.finish());
                }
            }
            if let Some(w) = wanted {
                if records.len() as i64 >= w {
                    // Undecodable messages among the newest: read the whole history.
                    records = self.records(session_id, None).await?;
                    let mut collector = TailCollector::new(limit);
                    for record in &records {
                        if collector.push(self.codec.decode(record)) {
                            break;
                        }
                    }
                    return Ok(collector.finish());
                }
            }
            Ok(collector.finish())
        })
    }

    fn add_items<'a>(&'a self, _: &'a str, _: Vec<Item>) -> BoxFuture<'a, Result<()>> {
        denied(Operation::AddItems)
    }

    fn pop_item<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<Item>>> {
        denied(Operation::PopItem)
    }

    fn clear_session<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<()>> {
        denied(Operation::ClearSession)
    }

    fn session_info<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionInfo>>> {
        Box::pin(async move {
            let op = Operation::SessionInfo;
            self.stats.record_requests(op, 1);
            let rows = self.conn.query(op, &self.info, &[&session_id]).await?;
            let Some(r) = rows.first() else {
                return Ok(None);
            };
            let created: Option<i64> = r.try_get(0).map_err(|e| row_error(op, e))?;
            let updated: Option<i64> = r.try_get(1).map_err(|e| row_error(op, e))?;
            let count: i64 = r.try_get(2).map_err(|e| row_error(op, e))?;
            let created = Timestamp::from_millis(created.unwrap_or(0));
            Ok(Some(SessionInfo::new(
                session_id,
                count.max(0) as u64,
                created,
                updated.map_or(created, Timestamp::from_millis),
                None,
            )))
        })
    }

    fn list_sessions<'a>(&'a self, options: &'a ListOptions) -> BoxFuture<'a, Result<SessionPage>> {
        Box::pin(async move {
            let op = Operation::ListSessions;
            let prefix = options.prefix.clone().unwrap_or_default();
            let after = options.cursor.clone().unwrap_or_default();
            let page_size = options.effective_page_size();
            let limit = i64::try_from(page_size).unwrap_or(i64::MAX - 1) + 1;
            self.stats.record_requests(op, 1);
            let rows = self
                .conn
                .query(op, &self.list, &[&prefix, &after, &limit])
                .await?;
            let mut ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
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
        Box::pin(async {
            Ok(PruneReport::new(0, 0)
                .with_note("layout=openai-agents is read-only: nothing was pruned"))
        })
    }

    fn stats(&self) -> &RequestStats {
        &self.stats
    }
}
