//! `bench-driver`: the turn workload of `agent-session bench --workload turns`, through the very
//! same engine (`crates/agent-session-cli/src/bench.rs`, compiled here by path), against:
//!
//! * `rust-ours`: our library, any store URL (as the CLI does: a cross-check of it);
//! * `rust-port`: the Rust Agents SDK port (`openai-agents-sdk` 0.24.2): its `RedisSession`
//!   (`redis://` URLs; one multiplexed connection shared by every session, as the port's
//!   `with_connection` expects), its `SqliteSession` (`sqlite://PATH`; one connection shared
//!   through `for_session`, WAL, SQLite's default `synchronous`, which the port does not set)
//!   and its `SqlxSession` (feature `sqlx`; `postgres://` URLs: one sqlx `AnyPool` of
//!   `--pool-size` connections shared by every session, as ours shares its pool of as many);
//! * `rust-bare`: bare redis-rs, one pipelined round trip per operation (`LRANGE`+`PEXPIRE`,
//!   `RPUSH`+`PEXPIRE`), items returned as raw bytes: the client limit on Redis.
//!
//! Prints the engine's JSON report (one object), or its table without `--json`.

use std::sync::Arc;

use clap::Parser;
use openai_agents_sdk::items::InputItem;
use openai_agents_sdk::memory::{
    RedisSession, Session as PortSession, SqliteSession, SqlxDialect, SqlxSession,
};
use openai_agents_session::{BoxError, Store};
use serde_json::Value;

#[allow(dead_code)]
#[path = "../../../crates/agent-session-cli/src/bench.rs"]
mod bench;
// bench.rs's `--metrics` recorder (the driver never installs it, but bench.rs names it).
#[path = "../../../crates/agent-session-cli/src/observe.rs"]
#[allow(dead_code)]
mod observe;

use bench::{BoxFut, RedisProbe, TurnArgs, TurnSettings, TurnTarget};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Target {
    RustOurs,
    RustPort,
    RustBare,
}

#[derive(Debug, Parser)]
#[command(
    name = "bench-driver",
    about = "The turn workload against our library and its Rust peers"
)]
struct Cli {
    /// What to measure.
    #[arg(long, value_enum)]
    target: Target,
    /// The store URL (rust-ours: any of ours, with its options such as ?ttl=3600; rust-port:
    /// redis://HOST:PORT/, sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DB; rust-bare:
    /// redis://HOST:PORT/).
    #[arg(long)]
    url: String,
    /// TTL in seconds of rust-port and rust-bare (rust-ours: the URL's `ttl` option).
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    /// Key prefix of rust-port and rust-bare.
    #[arg(long, default_value = "oasbench")]
    key_prefix: String,
    /// Connections of rust-port's sqlx pool (ours: the URL's `pool_size`, default 16).
    #[arg(long, default_value_t = 16)]
    pool_size: u32,
    /// Print the JSON report instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    turns: TurnArgs,
}

fn boxed(e: impl std::error::Error + Send + Sync + 'static) -> BoxError {
    Box::new(e)
}

// ---------------------------------------------------------------------- the port's sessions ---

struct PortTarget {
    sessions: Vec<Box<dyn PortSession>>,
}

impl TurnTarget for PortTarget {
    fn get_items(&self, session: usize, limit: usize) -> BoxFut<'_, Result<usize, BoxError>> {
        Box::pin(async move {
            let items = self.sessions[session].get_items(Some(limit)).await;
            Ok(items.map_err(boxed)?.len())
        })
    }

    fn add_items(&self, session: usize, items: Vec<Value>) -> BoxFut<'_, Result<(), BoxError>> {
        Box::pin(async move {
            let items = items.into_iter().map(InputItem::from_value).collect();
            self.sessions[session].add_items(items).await.map_err(boxed)
        })
    }

    fn pop_item(&self, session: usize) -> BoxFut<'_, Result<bool, BoxError>> {
        Box::pin(async move {
            Ok(self.sessions[session]
                .pop_item()
                .await
                .map_err(boxed)?
                .is_some())
        })
    }

    fn count_items(&self, session: usize) -> BoxFut<'_, Result<usize, BoxError>> {
        Box::pin(async move {
            Ok(self.sessions[session]
                .get_items(None)
                .await
                .map_err(boxed)?
                .len())
        })
    }

    fn clear(&self, session: usize) -> BoxFut<'_, Result<(), BoxError>> {
        Box::pin(async move { self.sessions[session].clear_session().await.map_err(boxed) })
    }
}

// ------------------------------------------------------------------------- bare redis-rs ---

struct BareTarget {
    conn: redis::aio::MultiplexedConnection,
    keys: Vec<String>,
    ttl_ms: u64,
}

impl TurnTarget for BareTarget {
    fn get_items(&self, session: usize, limit: usize) -> BoxFut<'_, Result<usize, BoxError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let key = &self.keys[session];
            let (items,): (Vec<Vec<u8>>,) = redis::pipe()
                .cmd("LRANGE")
                .arg(key)
                .arg(-(limit as i64))
                .arg(-1)
                .cmd("PEXPIRE")
                .arg(key)
                .arg(self.ttl_ms)
                .ignore()
                .query_async(&mut conn)
                .await
                .map_err(boxed)?;
            Ok(items.len())
        })
    }

    fn add_items(&self, session: usize, items: Vec<Value>) -> BoxFut<'_, Result<(), BoxError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let key = &self.keys[session];
            let records: Vec<Vec<u8>> = items
                .iter()
                .map(serde_json::to_vec)
                .collect::<Result<_, _>>()
                .map_err(boxed)?;
            let () = redis::pipe()
                .cmd("RPUSH")
                .arg(key)
                .arg(&records)
                .ignore()
                .cmd("PEXPIRE")
                .arg(key)
                .arg(self.ttl_ms)
                .ignore()
                .query_async(&mut conn)
                .await
                .map_err(boxed)?;
            Ok(())
        })
    }

    fn pop_item(&self, session: usize) -> BoxFut<'_, Result<bool, BoxError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let key = &self.keys[session];
            let (item,): (Option<Vec<u8>>,) = redis::pipe()
                .cmd("RPOP")
                .arg(key)
                .cmd("PEXPIRE")
                .arg(key)
                .arg(self.ttl_ms)
                .ignore()
                .query_async(&mut conn)
                .await
                .map_err(boxed)?;
            Ok(item.is_some())
        })
    }

    fn count_items(&self, session: usize) -> BoxFut<'_, Result<usize, BoxError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let n: usize = redis::cmd("LLEN")
                .arg(&self.keys[session])
                .query_async(&mut conn)
                .await
                .map_err(boxed)?;
            Ok(n)
        })
    }

    fn clear(&self, session: usize) -> BoxFut<'_, Result<(), BoxError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let () = redis::cmd("DEL")
                .arg(&self.keys[session])
                .query_async(&mut conn)
                .await
                .map_err(boxed)?;
            Ok(())
        })
    }
}

// ------------------------------------------------------------------------------- main ---

fn sqlite_path(url: &str) -> Result<String, BoxError> {
    let rest = url
        .strip_prefix("sqlite://")
        .ok_or_else(|| format!("not a sqlite:// URL: {url}"))?;
    Ok(rest.split('?').next().unwrap_or(rest).to_owned())
}

async fn build(
    cli: &Cli,
    names: &[String],
) -> Result<(Arc<dyn TurnTarget>, TurnSettings), BoxError> {
    let probe = RedisProbe::from_url(&cli.url);
    let redis_durability = || {
        probe
            .as_ref()
            .and_then(|p| p.persistence().ok())
            .unwrap_or_else(|| "the server's (not read)".into())
    };
    match cli.target {
        Target::RustOurs => {
            let store = Store::open(&cli.url).await?;
            let mut settings = bench::store_settings(&store, &cli.url, probe.as_ref());
            settings.target = "rust-ours".into();
            Ok((Arc::new(bench::StoreTarget::new(&store, names)?), settings))
        }
        Target::RustPort if cli.url.starts_with("redis://") => {
            let client = redis::Client::open(cli.url.as_str())?;
            let conn = client.get_multiplexed_async_connection().await?;
            let sessions = names
                .iter()
                .map(|n| {
                    Box::new(
                        RedisSession::with_connection(n.clone(), conn.clone())
                            .with_key_prefix(&format!("{}_port", cli.key_prefix))
                            .with_ttl(cli.ttl),
                    ) as Box<dyn PortSession>
                })
                .collect();
            let settings = TurnSettings {
                target: "rust-port".into(),
                backend: "redis".into(),
                url: openai_agents_session::url::redact(&cli.url),
                ttl_secs: Some(cli.ttl),
                refresh_on_read: false,
                durability: redis_durability(),
                encryption: "off".into(),
            };
            Ok((Arc::new(PortTarget { sessions }), settings))
        }
        Target::RustPort if cli.url.starts_with("postgres") => {
            sqlx::any::install_default_drivers();
            let pool = sqlx::any::AnyPoolOptions::new()
                .max_connections(cli.pool_size)
                .connect(&cli.url)
                .await?;
            let mut sessions: Vec<Box<dyn PortSession>> = Vec::with_capacity(names.len());
            for (i, n) in names.iter().enumerate() {
                // Tables of its own (the SQLAlchemy peer's default names are the same), created
                // once, by the first session, as an application would at startup.
                let session =
                    SqlxSession::with_pool(n.clone(), pool.clone(), SqlxDialect::Postgres, false)
                        .await?
                        .with_tables("oasbench_port_sessions", "oasbench_port_messages")?;
                if i == 0 {
                    session.create_tables().await?;
                }
                sessions.push(Box::new(session));
            }
            let settings = TurnSettings {
                target: "rust-port".into(),
                backend: "postgres".into(),
                url: openai_agents_session::url::redact(&cli.url),
                ttl_secs: None,
                refresh_on_read: false,
                durability: "the server's (the session sets none)".into(),
                encryption: "off".into(),
            };
            Ok((Arc::new(PortTarget { sessions }), settings))
        }
        Target::RustPort => {
            let path = sqlite_path(&cli.url)?;
            let first = SqliteSession::open(names[0].clone(), &path)?;
            let sessions = names
                .iter()
                .map(|n| Box::new(first.for_session(n.clone())) as Box<dyn PortSession>)
                .collect();
            let settings = TurnSettings {
                target: "rust-port".into(),
                backend: "sqlite".into(),
                url: cli.url.clone(),
                ttl_secs: None,
                refresh_on_read: false,
                durability: "WAL, synchronous=full (SQLite's default; the port sets none)".into(),
                encryption: "off".into(),
            };
            Ok((Arc::new(PortTarget { sessions }), settings))
        }
        Target::RustBare => {
            let client = redis::Client::open(cli.url.as_str())?;
            let conn = client.get_multiplexed_async_connection().await?;
            let keys = names
                .iter()
                .map(|n| format!("{}_bare:{n}", cli.key_prefix))
                .collect();
            let settings = TurnSettings {
                target: "rust-bare".into(),
                backend: "redis".into(),
                url: openai_agents_session::url::redact(&cli.url),
                ttl_secs: Some(cli.ttl),
                refresh_on_read: true,
                durability: redis_durability(),
                encryption: "off".into(),
            };
            Ok((
                Arc::new(BareTarget {
                    conn,
                    keys,
                    ttl_ms: cli.ttl * 1000,
                }),
                settings,
            ))
        }
    }
}

async fn run(cli: Cli) -> Result<bool, BoxError> {
    let names = bench::session_names(bench::sessions_for(&cli.turns));
    let (target, settings) = build(&cli, &names).await?;
    let probe = RedisProbe::from_url(&cli.url);
    let report = bench::run_turns(target, &settings, &cli.turns, probe.as_ref()).await?;
    if cli.json {
        println!("{report}");
    } else {
        print!("{}", bench::turns_table(&report));
    }
    Ok(report["errors"].as_u64() == Some(0) && report["items_lost"].as_u64() == Some(0))
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // As the CLI: a multi-threaded runtime with two workers (the machine's two cores).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("bench-driver: some operations failed or items were lost (see the report)");
            std::process::ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("bench-driver: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
