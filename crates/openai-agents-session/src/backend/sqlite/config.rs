//! The SQLite store's URL options, read in one place.
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `synchronous` | `normal` | `normal` or `full` (an fsync per commit) |
//! | `busy_timeout` (alias `busy_timeout_ms`, milliseconds) | 5 s | how long a statement waits for a lock |
//! | `stale_stage_after` (alias `stale_batch_secs`) | 1 h | age after which `prune` removes a staged write never committed |
//! | `layout` | `native` | `openai-agents` opens the Agents SDK's `SQLiteSession` tables read-only |
//! | `sessions_table`, `messages_table` | the SDK's | table names of `layout=openai-agents` |

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Operation, Result};
use crate::url::{parse_duration, StoreUrl};

const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_STALE_STAGE_AFTER: Duration = Duration::from_secs(3600);

/// The `synchronous` pragma: what a commit waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Synchronous {
    /// Commits survive a crash of the process; the last ones may be lost on power loss (WAL).
    Normal,
    /// Commits also survive power loss (an fsync per commit).
    Full,
}

impl Synchronous {
    pub(super) fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// Where the store's data is, and in which layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SqliteLayout {
    /// This library's tables.
    Native,
    /// The Agents SDK's tables (read-only).
    OpenAiAgents {
        sessions_table: Option<String>,
        messages_table: Option<String>,
    },
}

/// Every option of an SQLite store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SqliteConfig {
    pub path: PathBuf,
    pub layout: SqliteLayout,
    pub synchronous: Synchronous,
    pub busy_timeout: Duration,
    pub stale_stage_after: Duration,
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidInput, Operation::Open, message)
}

impl SqliteConfig {
    /// Takes the SQLite options out of `url` (the shared ones are already gone) and rejects any
    /// left over, by name.
    pub(crate) fn from_url(url: &mut StoreUrl) -> Result<SqliteConfig> {
        let layout = match url.take_option("layout").as_deref() {
            None | Some("native") => SqliteLayout::Native,
            Some("openai-agents") => SqliteLayout::OpenAiAgents {
                sessions_table: url.take_option("sessions_table"),
                messages_table: url.take_option("messages_table"),
            },
            Some(other) => {
                return Err(invalid(format!(
                    "layout must be native or openai-agents, got {other:?}"
                )))
            }
        };
        let synchronous = url
            .take_parsed("synchronous", &[], |name, v| {
                match v.to_ascii_lowercase().as_str() {
                    "normal" => Ok(Synchronous::Normal),
                    "full" => Ok(Synchronous::Full),
                    _ => Err(invalid(format!("{name} must be normal or full, got {v:?}"))),
                }
            })?
            .unwrap_or(Synchronous::Normal);
        let busy_timeout = url
            .take_parsed("busy_timeout", &["busy_timeout_ms"], parse_duration)?
            .unwrap_or(DEFAULT_BUSY_TIMEOUT);
        let stale_stage_after = url
            .take_parsed("stale_stage_after", &["stale_batch_secs"], parse_duration)?
            .unwrap_or(DEFAULT_STALE_STAGE_AFTER);
        url.reject_unknown_options()?;
        let path = url.location()?;
        if path.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                Operation::Open,
                format!(
                    "{:?} names no file (use sqlite://relative/path.db or sqlite:///absolute/path.db)",
                    url.redacted
                ),
            ));
        }
        Ok(SqliteConfig {
            path: PathBuf::from(path),
            layout,
            synchronous,
            busy_timeout,
            stale_stage_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> Result<SqliteConfig> {
        let mut url = StoreUrl::parse(url)?;
        url.take_store_options()?;
        SqliteConfig::from_url(&mut url)
    }

    #[test]
    fn defaults_and_names() {
        let c = config("sqlite://s.db").unwrap();
        assert_eq!(c.path, PathBuf::from("s.db"));
        assert_eq!(c.synchronous, Synchronous::Normal);
        assert_eq!(c.busy_timeout, DEFAULT_BUSY_TIMEOUT);
        assert_eq!(c.stale_stage_after, DEFAULT_STALE_STAGE_AFTER);
        let c = config("sqlite://s.db?synchronous=FULL&busy_timeout=0.25&stale_stage_after=90")
            .unwrap();
        assert_eq!(c.synchronous, Synchronous::Full);
        assert_eq!(c.busy_timeout, Duration::from_millis(250));
        assert_eq!(c.stale_stage_after, Duration::from_secs(90));
    }

    #[test]
    fn the_names_users_already_write_keep_working() {
        let c = config("sqlite://s.db?busy_timeout_ms=1500&stale_batch_secs=60").unwrap();
        assert_eq!(c.busy_timeout, Duration::from_millis(1500));
        assert_eq!(c.stale_stage_after, Duration::from_secs(60));
        let err = config("sqlite://s.db?busy_timeout_ms=1&busy_timeout=1").unwrap_err();
        assert!(err.to_string().contains("same option"), "{err}");
    }

    #[test]
    fn bad_values_and_unknown_options_are_named() {
        for (url, needle) in [
            ("sqlite://s.db?synchronous=off", "synchronous"),
            ("sqlite://s.db?busy_timeout_ms=-1", "busy_timeout_ms"),
            ("sqlite://s.db?stale_stage_after=0", "stale_stage_after"),
            ("sqlite://s.db?layout=other", "layout"),
            ("sqlite://s.db?nope=1", "nope"),
            ("sqlite://", "names no file"),
        ] {
            let err = config(url).unwrap_err();
            assert!(err.to_string().contains(needle), "{url}: {err}");
        }
        let c =
            config("sqlite://a.db?layout=openai-agents&sessions_table=s&messages_table=m").unwrap();
        assert_eq!(
            c.layout,
            SqliteLayout::OpenAiAgents {
                sessions_table: Some("s".into()),
                messages_table: Some("m".into())
            }
        );
    }
}
