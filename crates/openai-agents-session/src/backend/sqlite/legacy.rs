//! Read-only access to the official Agents SDK `SQLiteSession` tables, for migration:
//! `sqlite:///PATH?layout=openai-agents[&sessions_table=agent_sessions&messages_table=agent_messages]`.
//! Get, list and info work; writes are invalid input.

use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::records::parse_sqlite_time;
use crate::codec::{RecordCodec, TailCollector};
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::item::Item;
use crate::stats::RequestStats;
use crate::store::{
    Backend, BoxFuture, ListOptions, PruneReport, SessionInfo, SessionPage, Store, StoreOptions,
};

#[derive(Debug)]
struct AgentsTables {
    conn: Arc<Mutex<Connection>>,
    sessions: String,
    messages: String,
    codec: RecordCodec,
    stats: RequestStats,
}

fn identifier(name: &str, value: String) -> Result<String> {
    if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            Operation::Open,
            format!("{name} must be a plain table name (letters, digits, _), got {value:?}"),
        ));
    }
    Ok(value)
}

pub(crate) fn open(
    path: String,
    sessions: Option<String>,
    messages: Option<String>,
    options: StoreOptions,
) -> Result<Store> {
    let sessions = identifier(
        "sessions_table",
        sessions.unwrap_or_else(|| "agent_sessions".to_owned()),
    )?;
    let messages = identifier(
        "messages_table",
        messages.unwrap_or_else(|| "agent_messages".to_owned()),
    )?;
    let conn =
        Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                Operation::Open,
                format!("cannot open the Agents SDK database {path:?} read-only"),
            )
            .with_source(e)
        })?;
    for table in [&sessions, &messages] {
        let found: Option<String> = conn
            .query_row(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| {
                Error::new(ErrorKind::Backend, Operation::Open, "SQLite failed").with_source(e)
            })?;
        if found.is_none() {
            return Err(Error::new(
                ErrorKind::Config,
                Operation::Open,
                format!("{path:?} has no table {table:?} (the Agents SDK SQLiteSession layout)"),
            ));
        }
    }
    let backend = AgentsTables {
        conn: Arc::new(Mutex::new(conn)),
        sessions,
        messages,
        codec: RecordCodec::new(options.encryption.clone()),
        stats: RequestStats::default(),
    };
    Ok(Store::from_backend(Arc::new(backend), options))
}

impl AgentsTables {
    fn with<T>(
        &self,
        op: Operation,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        self.stats.record_requests(op, 1);
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(|e| Error::new(ErrorKind::Backend, op, "SQLite failed").with_source(e))
    }

    fn denied<T: Send + 'static>(&self, op: Operation) -> BoxFuture<'_, Result<T>> {
        Box::pin(async move {
            Err(Error::new(ErrorKind::InvalidInput, op, "layout=openai-agents is read-only (it exists to migrate the Agents SDK's data); open the store without `layout` to write"))
        })
    }
}

impl Backend for AgentsTables {
    fn name(&self) -> &'static str {
        "sqlite-openai-agents"
    }

    fn get_items<'a>(
        &'a self,
        session_id: &'a str,
        limit: Option<usize>,
    ) -> BoxFuture<'a, Result<Vec<Item>>> {
        Box::pin(async move {
            let rows: Vec<Vec<u8>> = self.with(Operation::GetItems, |c| {
                let mut stmt = c.prepare(&format!(
                    "SELECT message_data FROM {} WHERE session_id = ?1 ORDER BY id DESC",
                    self.messages
                ))?;
                let rows = stmt.query_map([session_id], |r| {
                    Ok(match r.get_ref(0)? {
                        rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                            t.to_vec()
                        }
                        _ => Vec::new(),
                    })
                })?;
                rows.collect()
            })?;
            let mut collector = TailCollector::new(limit);
            for record in &rows {
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
            let row: Option<(String, String)> = self.with(Operation::SessionInfo, |c| {
                c.query_row(
                    &format!("SELECT CAST(created_at AS TEXT), CAST(updated_at AS TEXT) FROM {} WHERE session_id = ?1", self.sessions),
                    [session_id],
                    |r| Ok((r.get::<_, Option<String>>(0)?.unwrap_or_default(), r.get::<_, Option<String>>(1)?.unwrap_or_default())),
                )
                .optional()
            })?;
            let Some((created, updated)) = row else {
                return Ok(None);
            };
            let count: i64 = self.with(Operation::SessionInfo, |c| {
                c.query_row(
                    &format!(
                        "SELECT count(*) FROM {} WHERE session_id = ?1",
                        self.messages
                    ),
                    params![session_id],
                    |r| r.get(0),
                )
            })?;
            let created = parse_sqlite_time(&created).unwrap_or_default();
            let updated = parse_sqlite_time(&updated).unwrap_or(created);
            Ok(Some(SessionInfo::new(
                session_id,
                count.max(0) as u64,
                created,
                updated,
                None,
            )))
        })
    }

    fn list_sessions<'a>(&'a self, options: &'a ListOptions) -> BoxFuture<'a, Result<SessionPage>> {
        Box::pin(async move {
            let prefix = options.prefix.clone().unwrap_or_default();
            let page = options.effective_page_size();
            let cursor = options.cursor.clone().unwrap_or_default();
            let mut ids: Vec<String> = self.with(Operation::ListSessions, |c| {
                let mut stmt = c.prepare(&format!(
                    "SELECT session_id FROM {} WHERE substr(CAST(session_id AS BLOB), 1, ?2) = CAST(?1 AS BLOB)
                     AND session_id > ?3 ORDER BY session_id LIMIT ?4",
                    self.sessions
                ))?;
                let rows = stmt.query_map(params![prefix, prefix.len() as i64, cursor, page as i64 + 1], |r| r.get::<_, String>(0))?;
                rows.collect()
            })?;
            let next = if ids.len() > page {
                ids.truncate(page);
                ids.last().cloned()
            } else {
                None
            };
            Ok(SessionPage::new(ids, next))
        })
    }

    fn prune(&self) -> BoxFuture<'_, Result<PruneReport>> {
        self.denied(Operation::Prune)
    }

    fn stats(&self) -> &RequestStats {
        &self.stats
    }
}
