//! `agent-session bench`: latency, throughput and round trips per operation against any store.
//!
//! Two workloads:
//!
//! * `scenarios` (the default): single-client scenarios, one operation kind each (`--ops`,
//!   `--history`, `--item-bytes`);
//! * `turns`: the agent-like turn, `get_items(Some(limit))` then `add_items` of one user and one
//!   assistant message, from `--concurrency` clients over `--sessions` sessions, for
//!   `--duration` seconds (or `--turns`) after `--warmup`, on histories pre-filled with
//!   `--prefill` items.
//!
//! Every workload writes sessions under `bench:<pid>:` and clears them afterwards.
//!
//! The turn engine ([`run_turns`], the [`TurnTarget`] trait, the items, the report) uses nothing
//! of the CLI but its dependencies: the comparison harness's Rust driver (`bench/rust-driver`)
//! compiles this very file (through `#[path]`) and runs the peers (the Rust Agents SDK port's
//! sessions, bare redis-rs) through the same loop, timing and report.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, BufReader, Write as _};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openai_agents_session::{
    BoxError, Error, HistoryTransaction, Item, Operation, Session, Store, StoreSession,
};
use serde_json::{json, Value};

/// Which benchmark `agent-session bench` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Single-client scenarios, one operation kind each.
    Scenarios,
    /// Concurrent agent-like turns: `get_items(limit)` then `add_items`.
    Turns,
}

/// Options of the benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The workload: `scenarios` (single-client scenarios) or `turns` (concurrent agent turns).
    #[arg(long, value_enum, default_value_t = Workload::Scenarios)]
    pub workload: Workload,
    /// Scenarios: operations per scenario.
    #[arg(long, default_value_t = 1000)]
    pub ops: usize,
    /// Scenarios: the long history `get_items(Some(10))` is measured on (against a 100-item one).
    #[arg(long, default_value_t = 100_000)]
    pub history: usize,
    /// Scenarios: bytes of text in each item.
    #[arg(long, default_value_t = 512)]
    pub item_bytes: usize,
    /// Print JSON instead of a table (scenarios: one object per scenario; turns: one object).
    #[arg(long)]
    pub json: bool,
    /// Print the metrics of the run after the report (an in-process `metrics` recorder:
    /// operations by backend, operation and outcome, latency histograms, bytes and items).
    #[arg(long)]
    pub metrics: bool,
    #[command(flatten)]
    pub turns: TurnArgs,
}

/// Options of `--workload turns`.
#[derive(Debug, Clone, clap::Args)]
pub struct TurnArgs {
    /// Turns: concurrent clients.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Turns: sessions the clients spread over [default: max(concurrency, 16)].
    #[arg(long)]
    pub sessions: Option<usize>,
    /// Turns: seconds measured (after the warm-up).
    #[arg(long, default_value_t = 10.0, conflicts_with = "turns")]
    pub duration: f64,
    /// Turns: measure this many turns (all clients together) instead of a duration.
    #[arg(long)]
    pub turns: Option<u64>,
    /// Turns: seconds of turns run before measuring (not counted).
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Turns: items written into every session before the run (the history length).
    #[arg(long, default_value_t = 0)]
    pub prefill: usize,
    /// Turns: items added per turn, alternately a user message and an assistant output message.
    #[arg(long, default_value_t = 2)]
    pub items_per_turn: usize,
    /// Turns: compact JSON size in bytes of the items of a turn, in turn (the last one repeats).
    #[arg(long, value_delimiter = ',', default_values_t = [205, 986])]
    pub turn_item_bytes: Vec<usize>,
    /// Turns: every N-th turn of a client is followed by a `pop_item` on the same session.
    #[arg(long)]
    pub pop_every: Option<u64>,
    /// Turns: the `limit` of each turn's `get_items`.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Turns: every N-th turn on a session ends its conversation: the session's items are
    /// counted and checked against what was acknowledged (lost or extra items), then the
    /// session is cleared (this keeps a long run's histories bounded).
    #[arg(long, value_name = "N")]
    pub clear_every: Option<u64>,
    /// Turns, the soak mode: every SECS seconds print one JSON line on stderr (turns/s, errors
    /// by kind, latency, RSS now and peak); latencies go to fixed-size histograms so memory stays
    /// flat however long the run, and a client whose turn failed waits 10 ms before the next.
    #[arg(long, value_name = "SECS")]
    pub report_every: Option<f64>,
    /// Turns: name the sessions `<PREFIX><i>` instead of `bench:<pid>:<i>` (a restarted run
    /// works on the same sessions).
    #[arg(long, value_name = "PREFIX")]
    pub session_prefix: Option<String>,
    /// Turns: a file of the acknowledged writes, appended (one `write` each) as they are
    /// acknowledged and read at start: a run restarted after its process was killed first checks
    /// that every session holds what the earlier runs were told (the resume check), then goes on
    /// counting from there. With records in it, `--prefill` is skipped.
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<std::path::PathBuf>,
    /// Turns: leave the sessions in place at the end instead of clearing them.
    #[arg(long)]
    pub keep: bool,
}

/// A boxed future, as the targets return.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Calls and storage requests of the three operations of a turn run (from `RequestStats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// `(calls, requests)` of `get_items`.
    pub get: (u64, u64),
    /// `(calls, requests)` of `add_items`.
    pub add: (u64, u64),
    /// `(calls, requests)` of `pop_item`.
    pub pop: (u64, u64),
}

impl RequestCounts {
    fn since(self, before: RequestCounts) -> RequestCounts {
        let d = |a: (u64, u64), b: (u64, u64)| (a.0.saturating_sub(b.0), a.1.saturating_sub(b.1));
        RequestCounts {
            get: d(self.get, before.get),
            add: d(self.add, before.add),
            pop: d(self.pop, before.pop),
        }
    }
}

/// A store the turn workload runs against: sessions are known by their index among the names
/// the target was made for ([`session_names`]).
pub trait TurnTarget: Send + Sync + 'static {
    /// `get_items(Some(limit))`: how many items came back.
    fn get_items(&self, session: usize, limit: usize) -> BoxFut<'_, Result<usize, BoxError>>;
    /// `add_items(items)`, the items given as the JSON objects an agent framework holds.
    fn add_items(&self, session: usize, items: Vec<Value>) -> BoxFut<'_, Result<(), BoxError>>;
    /// `pop_item()`: whether an item came back.
    fn pop_item(&self, session: usize) -> BoxFut<'_, Result<bool, BoxError>>;
    /// The session's whole length (after the run: the lost-items check).
    fn count_items(&self, session: usize) -> BoxFut<'_, Result<usize, BoxError>>;
    /// Deletes the session.
    fn clear(&self, session: usize) -> BoxFut<'_, Result<(), BoxError>>;
    /// The store's own request counters, where it has them.
    fn requests(&self) -> Option<RequestCounts> {
        None
    }
}

/// The settings a turn run states with its results.
#[derive(Debug, Clone, Default)]
pub struct TurnSettings {
    /// What runs: `rust-ours`, `rust-port`, `rust-bare`...
    pub target: String,
    /// `redis`, `sqlite`, `memory`, `dynamodb`...
    pub backend: String,
    /// The store URL, password redacted.
    pub url: String,
    /// Session TTL in seconds (`None`: never expires).
    pub ttl_secs: Option<u64>,
    /// Whether reads refresh the TTL.
    pub refresh_on_read: bool,
    /// What a write waits for (SQLite `synchronous`, Redis persistence...).
    pub durability: String,
    /// Encryption at rest of the items.
    pub encryption: String,
}

/// The names of `n` benchmark sessions: `bench:<pid>:<i>`.
pub fn session_names(n: usize) -> Vec<String> {
    let pid = std::process::id();
    (0..n).map(|i| format!("bench:{pid}:{i}")).collect()
}

/// The session names of a turn run: `<--session-prefix><i>`, else [`session_names`].
pub fn turn_session_names(args: &TurnArgs) -> Vec<String> {
    let n = sessions_for(args);
    match &args.session_prefix {
        Some(prefix) => (0..n).map(|i| format!("{prefix}{i}")).collect(),
        None => session_names(n),
    }
}

// ------------------------------------------------------------------------------ turn items ---

const FILLER: &str = "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod \
                      tempor incididunt ut labore et dolore magna aliqua. ";

fn filler(tag: &str, len: usize) -> String {
    let mut text = String::with_capacity(len + FILLER.len());
    text.push_str(tag);
    text.push(' ');
    while text.len() < len {
        text.push_str(FILLER);
    }
    text.truncate(len);
    text
}

/// Item `index` of a turn (`tag` makes it unique), of `bytes` bytes of compact JSON (or the
/// smallest such item when `bytes` is less): even indexes are a user message
/// `{"role":"user","content":...}`, odd ones an assistant output message shaped like the Agents
/// SDK's.
pub fn turn_item(index: usize, tag: &str, bytes: usize) -> Value {
    let make = |text: String| {
        if index % 2 == 0 {
            json!({"role": "user", "content": text})
        } else {
            json!({
                "id": format!("msg_{tag}_{index}"),
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            })
        }
    };
    let skeleton = make(String::new()).to_string().len();
    make(filler(tag, bytes.saturating_sub(skeleton)))
}

/// The items of one turn.
pub fn turn_items(args: &TurnArgs, tag: &str) -> Vec<Value> {
    (0..args.items_per_turn)
        .map(|i| {
            let sizes = &args.turn_item_bytes;
            let bytes = sizes
                .get(i)
                .or(sizes.last())
                .copied()
                .unwrap_or(if i % 2 == 0 { 205 } else { 986 });
            turn_item(i, tag, bytes)
        })
        .collect()
}

// ------------------------------------------------------------------ our store as a target ---

/// Our [`Store`] as a turn target.
pub struct StoreTarget {
    store: Store,
    sessions: Vec<StoreSession>,
}

impl StoreTarget {
    /// A target over the sessions `names` of `store`.
    pub fn new(store: &Store, names: &[String]) -> Result<StoreTarget, Error> {
        Ok(StoreTarget {
            store: store.clone(),
            sessions: names
                .iter()
                .map(|n| store.session(n))
                .collect::<Result<_, _>>()?,
        })
    }
}

impl TurnTarget for StoreTarget {
    fn get_items(&self, session: usize, limit: usize) -> BoxFut<'_, Result<usize, BoxError>> {
        Box::pin(async move {
            Ok(self.sessions[session]
                .get_items(Some(limit))
                .await
                .map(|v| v.len())?)
        })
    }

    fn add_items(&self, session: usize, items: Vec<Value>) -> BoxFut<'_, Result<(), BoxError>> {
        Box::pin(async move {
            let items = items
                .into_iter()
                .map(Item::from_value)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(self.sessions[session].add_items(items).await?)
        })
    }

    fn pop_item(&self, session: usize) -> BoxFut<'_, Result<bool, BoxError>> {
        Box::pin(async move { Ok(self.sessions[session].pop_item().await?.is_some()) })
    }

    fn count_items(&self, session: usize) -> BoxFut<'_, Result<usize, BoxError>> {
        Box::pin(async move { Ok(self.sessions[session].get_items(None).await?.len()) })
    }

    fn clear(&self, session: usize) -> BoxFut<'_, Result<(), BoxError>> {
        Box::pin(async move { Ok(self.sessions[session].clear_session().await?) })
    }

    fn requests(&self) -> Option<RequestCounts> {
        let s = self.store.stats();
        let pair = |op| (s.calls(op), s.requests(op));
        Some(RequestCounts {
            get: pair(Operation::GetItems),
            add: pair(Operation::AddItems),
            pop: pair(Operation::PopItem),
        })
    }
}

/// The settings our store runs with, read from its options and URL (and, for Redis, the
/// server's persistence settings).
pub fn store_settings(store: &Store, url: &str, probe: Option<&RedisProbe>) -> TurnSettings {
    let parsed = openai_agents_session::url::StoreUrl::parse(url).ok();
    let option = |name: &str| parsed.as_ref().and_then(|u| u.options.get(name).cloned());
    let backend = store.backend_name().to_owned();
    let durability = match backend.as_str() {
        "sqlite" => format!(
            "WAL, synchronous={}",
            option("synchronous")
                .unwrap_or_else(|| "normal".into())
                .to_ascii_lowercase()
        ),
        "redis" => probe
            .and_then(|p| p.persistence().ok())
            .unwrap_or_else(|| "the server's (not read)".into()),
        "memory" => "none (process memory)".into(),
        "dynamodb" => "DynamoDB (acknowledged writes)".into(),
        other => format!("{other}'s default"),
    };
    let encryption = parsed
        .as_ref()
        .and_then(|u| {
            u.options
                .keys()
                .find(|k| k.contains("encrypt") || k.contains("cipher") || k.contains("kms"))
                .map(|k| format!("on ({k})"))
        })
        .unwrap_or_else(|| "off".into());
    TurnSettings {
        target: "rust-ours".into(),
        backend,
        url: openai_agents_session::url::redact(url),
        ttl_secs: store.options().ttl,
        refresh_on_read: store.options().refreshes_on_read(),
        durability,
        encryption,
    }
}

// ------------------------------------------------------------ Redis statistics, by hand ---

/// A plain connection to a standalone Redis server (RESP over TCP, no TLS), to read
/// `INFO commandstats`, `INFO cpu` and persistence settings before and after a run.
#[derive(Debug, Clone)]
pub struct RedisProbe {
    addr: String,
    user: Option<String>,
    password: Option<String>,
}

/// What a probe reads from the server at one instant.
#[derive(Debug, Clone, Default)]
pub struct ServerSnapshot {
    /// Calls per command name (`evalsha`, `type`...), the probe's own commands left out.
    pub commands: BTreeMap<String, u64>,
    /// Microseconds the server spent per command name (a script's own time includes the
    /// commands it calls, which are also counted under their names).
    pub usec: BTreeMap<String, u64>,
    /// Server CPU seconds (user + system).
    pub cpu_secs: f64,
}

impl RedisProbe {
    /// A probe for `redis://[user:password@]host[:port][/db]` URLs; `None` for any other
    /// (TLS, cluster, other backends).
    pub fn from_url(url: &str) -> Option<RedisProbe> {
        let parsed = openai_agents_session::url::StoreUrl::parse(url).ok()?;
        if parsed.scheme != "redis" {
            return None;
        }
        let (userinfo, hostport) = match parsed.authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, parsed.authority.as_str()),
        };
        let decode = |s: &str| openai_agents_session::url::percent_decode(s).ok();
        let (user, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (decode(user).filter(|s| !s.is_empty()), decode(pass)),
                None => (decode(u).filter(|s| !s.is_empty()), None),
            },
            None => (None, None),
        };
        let hostport = if hostport.is_empty() {
            "127.0.0.1"
        } else {
            hostport
        };
        let has_port = match hostport.rfind(']') {
            Some(end) => hostport[end..].contains(':'),
            None => hostport.contains(':'),
        };
        let addr = if has_port {
            hostport.to_owned()
        } else {
            format!("{hostport}:6379")
        };
        Some(RedisProbe {
            addr,
            user,
            password,
        })
    }

    fn call(&self, commands: &[&[&str]]) -> std::io::Result<Vec<String>> {
        let mut stream = std::net::TcpStream::connect(&self.addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut all: Vec<Vec<&str>> = Vec::new();
        if let Some(pass) = &self.password {
            match &self.user {
                Some(user) => all.push(vec!["AUTH", user, pass]),
                None => all.push(vec!["AUTH", pass]),
            }
        }
        all.extend(commands.iter().map(|c| c.to_vec()));
        let mut request = Vec::new();
        for cmd in &all {
            request.extend_from_slice(format!("*{}\r\n", cmd.len()).as_bytes());
            for arg in cmd {
                request.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
            }
        }
        stream.write_all(&request)?;
        let mut reader = BufReader::new(stream);
        let mut replies = Vec::new();
        for _ in &all {
            replies.push(read_reply(&mut reader)?);
        }
        if self.password.is_some() {
            replies.remove(0);
        }
        Ok(replies)
    }

    /// `INFO commandstats` and `INFO cpu` now.
    pub fn snapshot(&self) -> std::io::Result<ServerSnapshot> {
        let replies = self.call(&[&["INFO", "commandstats"], &["INFO", "cpu"]])?;
        let mut snap = ServerSnapshot::default();
        for line in replies[0].lines() {
            // cmdstat_evalsha:calls=12,usec=...
            let Some(rest) = line.strip_prefix("cmdstat_") else {
                continue;
            };
            let Some((name, fields)) = rest.split_once(':') else {
                continue;
            };
            let probe_own = ["info", "auth", "config", "hello", "client", "ping"];
            if probe_own
                .iter()
                .any(|p| name == *p || name.starts_with(&format!("{p}|")))
            {
                continue;
            }
            let calls = fields
                .split(',')
                .find_map(|f| f.strip_prefix("calls="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let usec = fields
                .split(',')
                .find_map(|f| f.strip_prefix("usec="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            snap.commands.insert(name.to_owned(), calls);
            snap.usec.insert(name.to_owned(), usec);
        }
        for line in replies[1].lines() {
            for key in ["used_cpu_sys:", "used_cpu_user:"] {
                if let Some(v) = line.trim().strip_prefix(key) {
                    snap.cpu_secs += v.parse::<f64>().unwrap_or(0.0);
                }
            }
        }
        Ok(snap)
    }

    /// The server's persistence settings: `appendonly=..., appendfsync=..., save='...'`.
    pub fn persistence(&self) -> std::io::Result<String> {
        let replies = self.call(&[&["INFO", "persistence"], &["INFO", "server"]])?;
        let field = |text: &str, key: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(key).map(str::to_owned))
                .unwrap_or_default()
        };
        let aof = field(&replies[0], "aof_enabled:");
        let version = field(&replies[1], "redis_version:");
        Ok(format!(
            "Redis {version}, appendonly={}",
            if aof == "1" { "yes" } else { "no" }
        ))
    }
}

/// Reads one RESP reply, flattened to text (bulk strings and simple strings as they are, arrays
/// joined by newlines).
fn read_reply(reader: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end_matches(['\r', '\n']);
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let (kind, rest) = line.split_at(line.len().min(1));
    match kind {
        "+" | ":" => Ok(rest.to_owned()),
        "-" => Err(bad(format!("redis error: {rest}"))),
        "$" => {
            let len: i64 = rest
                .parse()
                .map_err(|_| bad(format!("bad length {rest}")))?;
            if len < 0 {
                return Ok(String::new());
            }
            let mut buf = vec![0; len as usize + 2];
            reader.read_exact(&mut buf)?;
            buf.truncate(len as usize);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        "*" => {
            let n: i64 = rest
                .parse()
                .map_err(|_| bad(format!("bad length {rest}")))?;
            let mut parts = Vec::new();
            for _ in 0..n.max(0) {
                parts.push(read_reply(reader)?);
            }
            Ok(parts.join("\n"))
        }
        _ => Err(bad(format!("unexpected reply {line:?}"))),
    }
}

async fn probe_snapshot(probe: Option<&RedisProbe>) -> Option<ServerSnapshot> {
    let probe = probe?.clone();
    tokio::task::spawn_blocking(move || probe.snapshot().ok())
        .await
        .ok()
        .flatten()
}

// -------------------------------------------------------------------------- turn engine ---

/// Latencies of one operation, in nanoseconds.
#[derive(Debug, Default, Clone)]
struct Latencies {
    nanos: Vec<u64>,
    errors: u64,
}

impl Latencies {
    fn push(&mut self, d: Duration) {
        self.nanos.push(d.as_nanos().min(u64::MAX as u128) as u64);
    }

    fn merge(&mut self, other: Latencies) {
        self.nanos.extend(other.nanos);
        self.errors += other.errors;
    }

    /// Nearest-rank percentile in microseconds (`nanos` sorted).
    fn percentile_us(&self, p: f64) -> f64 {
        if self.nanos.is_empty() {
            return 0.0;
        }
        let rank = ((self.nanos.len() as f64 * p).ceil() as usize).clamp(1, self.nanos.len());
        self.nanos[rank - 1] as f64 / 1000.0
    }

    fn mean_us(&self) -> f64 {
        if self.nanos.is_empty() {
            return 0.0;
        }
        self.nanos.iter().sum::<u64>() as f64 / self.nanos.len() as f64 / 1000.0
    }
}

#[derive(Debug, Default)]
struct ClientResult {
    get: Latencies,
    add: Latencies,
    pop: Latencies,
    turn: Latencies,
    first_error: Option<String>,
}

/// A latency histogram of fixed size (the soak mode's: memory does not grow with the run):
/// 64 sub-buckets per power of two of nanoseconds, so a percentile is within 1.6 %.
struct Histogram {
    buckets: Vec<AtomicU64>,
    sum_ns: AtomicU64,
}

const HIST_BUCKETS: usize = 64 * 64;

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            buckets: (0..HIST_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    fn index(ns: u64) -> usize {
        if ns < 64 {
            return ns as usize;
        }
        let exp = 63 - ns.leading_zeros(); // 6..=63
        let mantissa = (ns >> (exp - 6)) & 63;
        (exp as usize - 5) * 64 + mantissa as usize
    }

    /// The middle of bucket `i`, in nanoseconds.
    fn value(i: usize) -> f64 {
        if i < 64 {
            return i as f64;
        }
        let exp = (i / 64 + 5) as u32;
        let low = ((64 + (i % 64)) as u64) << (exp - 6);
        low as f64 + ((1u64 << (exp - 6)) as f64 - 1.0) / 2.0
    }

    fn record(&self, d: Duration) {
        let ns = d.as_nanos().min(u64::MAX as u128) as u64;
        self.buckets[Histogram::index(ns)].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistSnapshot {
        HistSnapshot {
            counts: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
        }
    }
}

/// The counts of a [`Histogram`] at one instant (or between two, [`HistSnapshot::since`]).
#[derive(Debug, Clone, Default)]
struct HistSnapshot {
    counts: Vec<u64>,
    sum_ns: u64,
}

impl HistSnapshot {
    fn since(&self, before: &HistSnapshot) -> HistSnapshot {
        HistSnapshot {
            counts: self
                .counts
                .iter()
                .enumerate()
                .map(|(i, c)| c.saturating_sub(before.counts.get(i).copied().unwrap_or(0)))
                .collect(),
            sum_ns: self.sum_ns.saturating_sub(before.sum_ns),
        }
    }

    fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Nearest-rank percentile in microseconds.
    fn percentile_us(&self, p: f64) -> f64 {
        let n = self.count();
        if n == 0 {
            return 0.0;
        }
        let rank = ((n as f64 * p).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Histogram::value(i) / 1000.0;
            }
        }
        0.0
    }

    fn mean_us(&self) -> f64 {
        match self.count() {
            0 => 0.0,
            n => self.sum_ns as f64 / n as f64 / 1000.0,
        }
    }

    /// The report's figures of one operation (as `op_json` gives them from exact latencies).
    fn summary(&self, errors: u64) -> Value {
        json!({
            "count": self.count(),
            "errors": errors,
            "p50_us": round(self.percentile_us(0.5), 1),
            "p99_us": round(self.percentile_us(0.99), 1),
            "p999_us": round(self.percentile_us(0.999), 1),
            "mean_us": round(self.mean_us(), 1),
        })
    }
}

/// The kind of a failed operation: our [`Error`]'s kind name, `other` for any other error.
fn error_kind(e: &BoxError) -> &'static str {
    e.downcast_ref::<Error>()
        .map(|e| e.kind().name())
        .unwrap_or("other")
}

/// Whether a failed write may have been applied: only [`ErrorKind::Connection`] and
/// [`ErrorKind::Timeout`] promise it was not (any error not ours may have been).
///
/// [`ErrorKind::Connection`]: openai_agents_session::ErrorKind::Connection
/// [`ErrorKind::Timeout`]: openai_agents_session::ErrorKind::Timeout
fn maybe_applied(e: &BoxError) -> bool {
    use openai_agents_session::ErrorKind;
    !matches!(
        e.downcast_ref::<Error>().map(|e| e.kind()),
        Some(ErrorKind::Connection | ErrorKind::Timeout)
    )
}

/// What the writes so far left in each session, as a range: the fewest and the most items it
/// may hold (writes whose outcome is unknown widen the range), and the totals for the report.
#[derive(Debug, Clone, Default)]
struct Tally {
    low: Vec<i64>,
    high: Vec<i64>,
    /// Items of acknowledged `add_items`.
    added: u64,
    /// Acknowledged `pop_item`s that returned an item.
    popped: u64,
    /// Acknowledged `clear_session`s.
    cleared: u64,
    /// Writes whose outcome is unknown.
    unknown: u64,
}

impl Tally {
    fn new(sessions: usize) -> Tally {
        Tally {
            low: vec![0; sessions],
            high: vec![0; sessions],
            ..Tally::default()
        }
    }

    /// Applies one event of session `s`. Acknowledged writes: `a`dd of `n` items, `p`op of an
    /// item, `c`lear. A write about to be sent (its outcome unknown until it returns; a kill
    /// may come first): `A` (add of `n`), `P` (pop), `C` (clear); then, once it returned, its
    /// outcome: `b` (the add of `n` applied), `x` (the add of `n` failed unapplied:
    /// `connection` or `timeout`), `q` (the pop took an item), `e` (the pop found none), `k`
    /// (the clear applied). Any other failed write keeps its capital: maybe applied.
    fn apply(&mut self, op: char, s: usize, n: u64) {
        let (low, high) = (&mut self.low[s], &mut self.high[s]);
        let n = n as i64;
        match op {
            'a' => {
                *low += n;
                *high += n;
                self.added += n as u64;
            }
            'p' => {
                *low = (*low - 1).max(0);
                *high = (*high - 1).max(0);
                self.popped += 1;
            }
            'c' => {
                *low = 0;
                *high = 0;
                self.cleared += 1;
            }
            'A' => *high += n,
            'P' => *low = (*low - 1).max(0),
            'C' => *low = 0,
            'b' => {
                *low += n;
                self.added += n as u64;
            }
            'q' => {
                *high = (*high - 1).max(0);
                self.popped += 1;
            }
            'e' => {}
            'x' => *high = (*high - n).max(*low),
            'k' => {
                *high = 0;
                self.cleared += 1;
            }
            _ => return,
        }
        match op {
            'A' | 'P' | 'C' => self.unknown += 1,
            'b' | 'q' | 'e' | 'k' | 'x' => self.unknown = self.unknown.saturating_sub(1),
            _ => {}
        }
    }

    /// Items lost and items extra if session `s` holds `found` items.
    fn check(&self, s: usize, found: u64) -> (u64, u64) {
        let found = found as i64;
        (
            (self.low[s] - found).max(0) as u64,
            (found - self.high[s]).max(0) as u64,
        )
    }
}

/// The `--ledger` file: one line per acknowledged (or maybe applied) write, `a <session> <n>`,
/// `p <session>`, `c <session>` (in capitals when the outcome is unknown), each written by one
/// `write` call as the write returns, so that a killed process loses none it was told of.
struct Ledger {
    file: std::sync::Mutex<std::fs::File>,
}

impl Ledger {
    /// Opens (creates) the ledger and reads what earlier runs recorded.
    fn open(path: &std::path::Path, sessions: usize) -> Result<(Ledger, Tally, u64), String> {
        // Read line by line: a long soak's ledger is large, and this is no reason for RSS.
        let mut reader = match std::fs::File::open(path) {
            Ok(f) => Some(BufReader::new(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("reading the ledger {}: {e}", path.display())),
        };
        let mut tally = Tally::new(sessions);
        let mut records = 0;
        let mut cut = false;
        let mut buf = Vec::new();
        while let Some(r) = reader.as_mut() {
            buf.clear();
            let n = r
                .read_until(b'\n', &mut buf)
                .map_err(|e| format!("reading the ledger {}: {e}", path.display()))?;
            if n == 0 {
                break;
            }
            // A line without its newline was cut short by a kill: its write was not finished.
            if buf.last() != Some(&b'\n') {
                cut = true;
                break;
            }
            let Ok(line) = std::str::from_utf8(&buf[..buf.len() - 1]) else {
                continue;
            };
            let mut f = line.split(' ');
            let (Some(op), Some(s)) = (f.next(), f.next().and_then(|s| s.parse::<usize>().ok()))
            else {
                continue;
            };
            let n = f.next().and_then(|n| n.parse::<u64>().ok());
            let op = match (op, n) {
                ("a" | "A" | "b" | "x", Some(_))
                | ("p" | "P" | "c" | "C" | "q" | "e" | "k", None) => op,
                _ => continue,
            };
            if s >= sessions {
                return Err(format!(
                    "the ledger {} names session {s}: run with the --sessions it was written with",
                    path.display()
                ));
            }
            tally.apply(op.chars().next().unwrap_or(' '), s, n.unwrap_or(0));
            records += 1;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("opening the ledger {}: {e}", path.display()))?;
        let ledger = Ledger {
            file: std::sync::Mutex::new(file),
        };
        if cut {
            ledger.record("\n".into()); // ends the cut line, so that it stays apart
        }
        Ok((ledger, tally, records))
    }

    fn record(&self, line: String) {
        if let Ok(mut f) = self.file.lock() {
            // A failed write only weakens the resume check (the item counts as extra).
            let _ = f.write_all(line.as_bytes());
        }
    }
}

fn current_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Items per `add_items` while pre-filling histories (one call of a ~600 KB batch: DynamoDB's
/// 400 KB item of the seed holds 500 such items at most, and a run is not spent pre-filling).
pub const PREFILL_BATCH: usize = 500;

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

struct Shared {
    target: Arc<dyn TurnTarget>,
    args: TurnArgs,
    phase: AtomicU8,
    /// Turns claimed in the measured phase (`--turns`).
    claimed: AtomicU64,
    /// Turns finished in the measured phase (`--turns`).
    finished: AtomicU64,
    done: tokio::sync::Notify,
    sessions: usize,
    /// What each session should hold (lost-items check), since the ledger's start.
    tally: std::sync::Mutex<Tally>,
    /// Failed operations in the measured phase, by `operation:kind`.
    errors: std::sync::Mutex<BTreeMap<String, u64>>,
    /// The soak mode's histograms (get, add, pop, turn); `None` outside it.
    hist: Option<[Histogram; 4]>,
    ledger: Option<Ledger>,
    /// `--clear-every`'s checks so far: how many, items lost, items extra.
    checks: AtomicU64,
    checked_lost: AtomicU64,
    checked_extra: AtomicU64,
}

impl Shared {
    /// Records one write (see [`Tally::apply`]) in the tally and the ledger.
    fn note(&self, op: char, s: usize, n: u64) {
        if let Ok(mut t) = self.tally.lock() {
            t.apply(op, s, n);
        }
        if let Some(ledger) = &self.ledger {
            ledger.record(match op {
                'a' | 'A' | 'b' | 'x' => format!("{op} {s} {n}\n"),
                _ => format!("{op} {s}\n"),
            });
        }
    }

    fn count_error(&self, op: &str, e: &BoxError) {
        if let Ok(mut m) = self.errors.lock() {
            *m.entry(format!("{op}:{}", error_kind(e))).or_default() += 1;
        }
    }
}

/// The sessions client `k` of `c` works on: `k, k + c, k + 2c...`, or, with fewer sessions than
/// clients, session `k mod s` (shared).
fn client_sessions(k: usize, c: usize, s: usize) -> Vec<usize> {
    if s >= c {
        (k..s).step_by(c).collect()
    } else {
        vec![k % s]
    }
}

fn error_text(e: &BoxError) -> String {
    e.to_string()
}

async fn client(shared: Arc<Shared>, k: usize) -> ClientResult {
    let args = &shared.args;
    let target = &shared.target;
    let sessions = client_sessions(k, args.concurrency, shared.sessions);
    let mut out = ClientResult::default();
    let mut n: u64 = 0;
    loop {
        let phase = shared.phase.load(Ordering::Acquire);
        if phase == STOP {
            break;
        }
        let measured = phase == MEASURE;
        if measured {
            if let Some(max) = args.turns {
                if shared.claimed.fetch_add(1, Ordering::AcqRel) >= max {
                    break;
                }
            }
        }
        let s = sessions[(n as usize) % sessions.len()];
        n += 1;
        let items = turn_items(args, &format!("c{k}t{n}"));
        let added = items.len() as u64;
        let t0 = Instant::now();
        let got = target.get_items(s, args.limit).await;
        // Every write is noted before it is sent and once it returned (the ledger survives a
        // kill in between: the write then counts as maybe applied).
        shared.note('A', s, added);
        let t1 = Instant::now();
        let put = target.add_items(s, items).await;
        let t2 = Instant::now();
        match &put {
            Ok(()) => shared.note('b', s, added),
            // Not applied, by the error contract: an item of it found later counts as extra.
            Err(e) if !maybe_applied(e) => shared.note('x', s, added),
            Err(_) => {}
        }
        let popped = match args.pop_every {
            Some(every) if every > 0 && n % every == 0 => {
                shared.note('P', s, 1);
                let r = target.pop_item(s).await;
                match &r {
                    Ok(true) => shared.note('q', s, 1),
                    Ok(false) => shared.note('e', s, 1),
                    Err(_) => {}
                }
                Some((r, t2.elapsed()))
            }
            _ => None,
        };
        let in_window = measured && shared.phase.load(Ordering::Acquire) == MEASURE;
        let mut ok = true;
        if in_window {
            let hist = shared.hist.as_ref();
            let push = |l: &mut Latencies, h: usize, d: Duration| match hist {
                Some(hist) => hist[h].record(d),
                None => l.push(d),
            };
            match got {
                Ok(_) => push(&mut out.get, 0, t1 - t0),
                Err(e) => {
                    ok = false;
                    out.get.errors += 1;
                    shared.count_error("get_items", &e);
                    out.first_error.get_or_insert_with(|| error_text(&e));
                }
            }
            match put {
                Ok(()) => push(&mut out.add, 1, t2 - t1),
                Err(e) => {
                    ok = false;
                    out.add.errors += 1;
                    shared.count_error("add_items", &e);
                    out.first_error.get_or_insert_with(|| error_text(&e));
                }
            }
            if ok {
                push(&mut out.turn, 3, t2 - t0);
            }
            if let Some((r, d)) = popped {
                match r {
                    Ok(_) => push(&mut out.pop, 2, d),
                    Err(e) => {
                        ok = false;
                        out.pop.errors += 1;
                        shared.count_error("pop_item", &e);
                        out.first_error.get_or_insert_with(|| error_text(&e));
                    }
                }
            }
        }
        // This client's turns go round its sessions: the round is this session's turn count.
        let round = (n - 1) / sessions.len() as u64 + 1;
        if args.clear_every.is_some_and(|e| e > 0 && round % e == 0)
            && !end_conversation(&shared, s, measured).await
        {
            ok = false;
        }
        if measured {
            if let Some(max) = args.turns {
                if shared.finished.fetch_add(1, Ordering::AcqRel) + 1 == max {
                    shared.done.notify_one();
                }
            }
        }
        if !ok && shared.hist.is_some() {
            // The soak mode: a store that is down (restarting) is not hammered.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A turn on `memory://` (or a store answering from its cache) never waits, so without
        // this a client's loop never returned to the scheduler: with as many clients as worker
        // threads nothing drove tokio's timer, the phase never moved on and the run never ended.
        tokio::task::yield_now().await;
    }
    out
}

/// `--clear-every`: counts session `s`, checks it against the tally, clears it. Whether it went
/// without error.
async fn end_conversation(shared: &Shared, s: usize, measured: bool) -> bool {
    let found = match shared.target.count_items(s).await {
        Ok(n) => n as u64,
        Err(e) => {
            if measured {
                shared.count_error("count_items", &e);
            }
            return false;
        }
    };
    let (lost, extra) = shared
        .tally
        .lock()
        .map(|t| t.check(s, found))
        .unwrap_or((0, 0));
    shared.checks.fetch_add(1, Ordering::Relaxed);
    shared.checked_lost.fetch_add(lost, Ordering::Relaxed);
    shared.checked_extra.fetch_add(extra, Ordering::Relaxed);
    shared.note('C', s, 0);
    match shared.target.clear(s).await {
        Ok(()) => {
            shared.note('k', s, 0);
            true
        }
        Err(e) => {
            if measured {
                shared.count_error("clear_session", &e);
            }
            false
        }
    }
}

/// Counts every session and checks it against `tally`: `{sessions, items_found, items_lost,
/// items_extra, error}`.
async fn check_sessions(target: &dyn TurnTarget, tally: &Tally, sessions: usize) -> Value {
    let (mut found, mut lost, mut extra) = (0u64, 0u64, 0u64);
    let mut error = None;
    for s in 0..sessions {
        match target.count_items(s).await {
            Ok(n) => {
                let (l, e) = tally.check(s, n as u64);
                found += n as u64;
                lost += l;
                extra += e;
            }
            Err(e) => {
                error.get_or_insert_with(|| format!("counting session {s}: {}", error_text(&e)));
            }
        }
    }
    json!({
        "sessions": sessions,
        "items_acknowledged": tally.added,
        "items_popped": tally.popped,
        "sessions_cleared": tally.cleared,
        "writes_outcome_unknown": tally.unknown,
        "items_found": found,
        "items_lost": lost,
        "items_extra": extra,
        "error": error,
    })
}

/// The soak mode's reporter: one JSON line on stderr every `every` seconds of the measured
/// phase, until the phase ends.
async fn reporter(shared: Arc<Shared>, every: f64, start: Instant) {
    let Some(hist) = shared.hist.as_ref() else {
        return;
    };
    let mut before: Vec<HistSnapshot> = hist.iter().map(Histogram::snapshot).collect();
    let mut errors_before = BTreeMap::new();
    let mut last = Instant::now();
    let mut interval = 0u64;
    loop {
        interval += 1;
        let due = start + Duration::from_secs_f64(every * interval as f64);
        tokio::time::sleep_until(due.into()).await;
        if shared.phase.load(Ordering::Acquire) != MEASURE {
            return;
        }
        let now: Vec<HistSnapshot> = hist.iter().map(Histogram::snapshot).collect();
        let d: Vec<HistSnapshot> = now.iter().zip(&before).map(|(a, b)| a.since(b)).collect();
        let errors = shared.errors.lock().map(|m| m.clone()).unwrap_or_default();
        let new_errors: BTreeMap<&String, u64> = errors
            .iter()
            .map(|(k, v)| (k, v - errors_before.get(k).copied().unwrap_or(0)))
            .filter(|(_, v)| *v > 0)
            .collect();
        let secs = last.elapsed().as_secs_f64().max(1e-9);
        let line = json!({
            "soak": interval,
            "elapsed_s": round(start.elapsed().as_secs_f64(), 1),
            "turns": d[3].count(),
            "turns_per_sec": round(d[3].count() as f64 / secs, 1),
            "ops_per_sec": round((d[0].count() + d[1].count() + d[2].count()) as f64 / secs, 1),
            "turn_p50_us": round(d[3].percentile_us(0.5), 1),
            "turn_p99_us": round(d[3].percentile_us(0.99), 1),
            "errors": new_errors,
            "items_lost_so_far": shared.checked_lost.load(Ordering::Relaxed),
            "items_extra_so_far": shared.checked_extra.load(Ordering::Relaxed),
            "rss_kib": current_rss_kib(),
            "peak_rss_kib": peak_rss_kib(),
        });
        eprintln!("{line}");
        before = now;
        errors_before = errors;
        last = Instant::now();
    }
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU seconds (user + system) this process has used so far, from `/proc/self/stat` (in clock
/// ticks of 10 ms: good to a few percent over a run of seconds).
fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn op_json(l: &Latencies, counts: Option<(u64, u64)>) -> Value {
    json!({
        "count": l.nanos.len(),
        "errors": l.errors,
        "p50_us": round(l.percentile_us(0.5), 1),
        "p99_us": round(l.percentile_us(0.99), 1),
        "p999_us": round(l.percentile_us(0.999), 1),
        "mean_us": round(l.mean_us(), 1),
        "requests_per_op": counts
            .filter(|c| c.0 > 0)
            .map(|(calls, requests)| round(requests as f64 / calls as f64, 3)),
    })
}

/// Runs the turn workload against `target` (made for [`session_names`] of the session count,
/// see [`sessions_for`]) and returns its report as one JSON object.
pub async fn run_turns(
    target: Arc<dyn TurnTarget>,
    settings: &TurnSettings,
    args: &TurnArgs,
    probe: Option<&RedisProbe>,
) -> Result<Value, String> {
    let concurrency = args.concurrency.max(1);
    let sessions = sessions_for(args);
    if args.items_per_turn == 0 {
        return Err("--items-per-turn must be at least 1".into());
    }
    if args.turns.is_none() && (args.duration.is_nan() || args.duration <= 0.0) {
        return Err("--duration must be positive".into());
    }
    if args.turns == Some(0) {
        return Err("--turns must be at least 1".into());
    }
    if let Some(every) = args.report_every {
        if every.is_nan() || every <= 0.0 {
            return Err("--report-every must be positive".into());
        }
    }
    let mut args = args.clone();
    args.concurrency = concurrency;
    let (ledger, tally, ledger_records) = match &args.ledger {
        Some(path) => {
            let (l, t, n) = Ledger::open(path, sessions)?;
            (Some(l), t, n)
        }
        None => (None, Tally::new(sessions), 0),
    };
    // A restarted run: the sessions must hold what the killed runs were told.
    let resume_check = if ledger_records > 0 {
        let check = check_sessions(target.as_ref(), &tally, sessions).await;
        let line = json!({"resume_check": check, "ledger_records": ledger_records});
        if args.report_every.is_some() {
            eprintln!("{line}");
        }
        Some(line)
    } else {
        None
    };
    let shared = Arc::new(Shared {
        target: target.clone(),
        args: args.clone(),
        phase: AtomicU8::new(WARMUP),
        claimed: AtomicU64::new(0),
        finished: AtomicU64::new(0),
        done: tokio::sync::Notify::new(),
        sessions,
        tally: std::sync::Mutex::new(tally),
        errors: std::sync::Mutex::new(BTreeMap::new()),
        hist: args.report_every.map(|_| {
            [
                Histogram::new(),
                Histogram::new(),
                Histogram::new(),
                Histogram::new(),
            ]
        }),
        ledger,
        checks: AtomicU64::new(0),
        checked_lost: AtomicU64::new(0),
        checked_extra: AtomicU64::new(0),
    });

    // Pre-fill: every client fills its own sessions, PREFILL_BATCH items per add_items.
    let prefill_start = Instant::now();
    if args.prefill > 0 && ledger_records == 0 {
        let mut tasks = Vec::new();
        for k in 0..concurrency.min(sessions) {
            let shared = shared.clone();
            tasks.push(tokio::spawn(async move {
                let a = &shared.args;
                for s in client_sessions(k, a.concurrency, shared.sessions) {
                    let mut written = 0;
                    while written < a.prefill {
                        let n = (a.prefill - written).min(PREFILL_BATCH);
                        let items = (written..written + n)
                            .map(|i| {
                                let sizes = &a.turn_item_bytes;
                                let j = i % a.items_per_turn;
                                let bytes = sizes.get(j).or(sizes.last()).copied().unwrap_or(205);
                                turn_item(j, &format!("p{s}i{i}"), bytes)
                            })
                            .collect();
                        shared
                            .target
                            .add_items(s, items)
                            .await
                            .map_err(|e| format!("pre-filling session {s}: {}", error_text(&e)))?;
                        shared.note('a', s, n as u64);
                        written += n;
                    }
                }
                Ok::<(), String>(())
            }));
        }
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
    }
    let prefill_secs = prefill_start.elapsed().as_secs_f64();

    let clients: Vec<_> = (0..concurrency)
        .map(|k| tokio::spawn(client(shared.clone(), k)))
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(args.warmup.max(0.0))).await;
    let requests_before = target.requests();
    let server_before = probe_snapshot(probe).await;
    let cpu_before = process_cpu_secs();
    let start = Instant::now();
    shared.phase.store(MEASURE, Ordering::Release);
    let reporter = args
        .report_every
        .map(|every| tokio::spawn(reporter(shared.clone(), every, start)));
    match args.turns {
        Some(_) => shared.done.notified().await,
        None => tokio::time::sleep(Duration::from_secs_f64(args.duration)).await,
    }
    let elapsed = start.elapsed();
    let cpu_after = process_cpu_secs();
    let requests = target
        .requests()
        .zip(requests_before)
        .map(|(a, b)| a.since(b));
    let server_after = probe_snapshot(probe).await;
    shared.phase.store(STOP, Ordering::Release);
    if let Some(r) = reporter {
        r.abort();
    }
    let mut total = ClientResult::default();
    for c in clients {
        let r = c.await.map_err(|e| e.to_string())?;
        total.get.merge(r.get);
        total.add.merge(r.add);
        total.pop.merge(r.pop);
        total.turn.merge(r.turn);
        if total.first_error.is_none() {
            total.first_error = r.first_error;
        }
    }
    for l in [
        &mut total.get,
        &mut total.add,
        &mut total.pop,
        &mut total.turn,
    ] {
        l.nanos.sort_unstable();
    }

    // Lost items: each session holds what was written to it, less what was popped.
    let tally = shared.tally.lock().map(|t| t.clone()).unwrap_or_default();
    let check = check_sessions(target.as_ref(), &tally, sessions).await;
    let lost =
        check["items_lost"].as_u64().unwrap_or(0) + shared.checked_lost.load(Ordering::Relaxed);
    let extra =
        check["items_extra"].as_u64().unwrap_or(0) + shared.checked_extra.load(Ordering::Relaxed);
    let mut check_error = check["error"].as_str().map(str::to_owned);
    if !args.keep {
        for s in 0..sessions {
            if let Err(e) = target.clear(s).await {
                check_error.get_or_insert_with(|| format!("clearing: {}", error_text(&e)));
            }
        }
    }
    let errors_by_kind = shared.errors.lock().map(|m| m.clone()).unwrap_or_default();
    // The soak mode's figures come from its histograms.
    let hist: Option<Vec<HistSnapshot>> = shared
        .hist
        .as_ref()
        .map(|h| h.iter().map(Histogram::snapshot).collect());

    let secs = elapsed.as_secs_f64().max(1e-9);
    let (turns, ops) = match &hist {
        Some(h) => (
            h[3].count(),
            (h[0].count() + h[1].count() + h[2].count()) as f64,
        ),
        None => (
            total.turn.nanos.len() as u64,
            (total.get.nanos.len() + total.add.nanos.len() + total.pop.nanos.len()) as f64,
        ),
    };
    let op = |l: &Latencies, i: usize, counts: Option<(u64, u64)>| {
        let mut v = match &hist {
            Some(h) => h[i].summary(l.errors),
            None => op_json(l, None),
        };
        v["requests_per_op"] = json!(counts
            .filter(|c| c.0 > 0)
            .map(|(calls, requests)| round(requests as f64 / calls as f64, 3)));
        v
    };
    let server = match (server_before, server_after) {
        (Some(b), Some(a)) => {
            let mut per_turn = serde_json::Map::new();
            let mut usec_per_turn = serde_json::Map::new();
            let mut all = 0u64;
            for (name, usec) in &a.usec {
                let d = usec.saturating_sub(b.usec.get(name).copied().unwrap_or(0));
                if d > 0 {
                    usec_per_turn.insert(
                        name.clone(),
                        json!(round(d as f64 / turns.max(1) as f64, 1)),
                    );
                }
            }
            for (name, calls) in &a.commands {
                let d = calls.saturating_sub(b.commands.get(name).copied().unwrap_or(0));
                if d > 0 {
                    all += d;
                    per_turn.insert(
                        name.clone(),
                        json!(round(d as f64 / turns.max(1) as f64, 2)),
                    );
                }
            }
            json!({
                "commands_per_turn": round(all as f64 / turns.max(1) as f64, 2),
                "by_command_per_turn": per_turn,
                "usec_per_turn_by_command": usec_per_turn,
                "cpu_us_per_turn": round((a.cpu_secs - b.cpu_secs) * 1e6 / turns.max(1) as f64, 1),
                "cpu_percent": round((a.cpu_secs - b.cpu_secs) / secs * 100.0, 1),
            })
        }
        _ => Value::Null,
    };
    let requests_total = requests.map(|r| r.get.1 + r.add.1 + r.pop.1);
    Ok(json!({
        "workload": "turns",
        "target": settings.target,
        "backend": settings.backend,
        "url": settings.url,
        "concurrency": concurrency,
        "sessions": sessions,
        "prefill": args.prefill,
        "limit": args.limit,
        "items_per_turn": args.items_per_turn,
        "turn_item_bytes": args.turn_item_bytes,
        "pop_every": args.pop_every,
        "warmup_s": args.warmup,
        "measured_s": round(secs, 3),
        "prefill_s": round(prefill_secs, 2),
        "turns": turns,
        "turns_per_sec": round(turns as f64 / secs, 1),
        "ops_per_sec": round(ops / secs, 1),
        "ops": {
            "get_items": op(&total.get, 0, requests.map(|r| r.get)),
            "add_items": op(&total.add, 1, requests.map(|r| r.add)),
            "pop_item": op(&total.pop, 2, requests.map(|r| r.pop)),
            "turn": op(&total.turn, 3, None),
        },
        "requests_per_turn": requests_total.map(|t| round(t as f64 / turns.max(1) as f64, 3)),
        "redis_server": server,
        "peak_rss_kib": peak_rss_kib(),
        "client_cpu_us_per_turn": cpu_before
            .zip(cpu_after)
            .map(|(b, a)| round((a - b) * 1e6 / turns.max(1) as f64, 1)),
        "settings": {
            "ttl_s": settings.ttl_secs,
            "refresh_on_read": settings.refresh_on_read,
            "durability": settings.durability,
            "encryption": settings.encryption,
        },
        "items_lost": lost,
        "items_extra": extra,
        "items_check": check,
        "clear_every": args.clear_every,
        "checks_at_clear": {
            "checks": shared.checks.load(Ordering::Relaxed),
            "items_lost": shared.checked_lost.load(Ordering::Relaxed),
            "items_extra": shared.checked_extra.load(Ordering::Relaxed),
        },
        "resume_check": resume_check,
        "errors": total.get.errors + total.add.errors + total.pop.errors,
        "errors_by_kind": errors_by_kind,
        "first_error": total.first_error.or(check_error),
    }))
}

/// The session count of a turn run: `--sessions`, else max(concurrency, 16).
pub fn sessions_for(args: &TurnArgs) -> usize {
    args.sessions
        .unwrap_or_else(|| args.concurrency.max(1).max(16))
        .max(1)
}

/// The report of [`run_turns`] as a table.
pub fn turns_table(r: &Value) -> String {
    let mut t = String::new();
    let s = &r["settings"];
    let ttl = match s["ttl_s"].as_u64() {
        Some(ttl) => format!(
            "{ttl} s{}",
            if s["refresh_on_read"].as_bool() == Some(true) {
                ", refreshed on read"
            } else {
                ", not refreshed on read"
            }
        ),
        None => "none".into(),
    };
    t.push_str(&format!(
        "turns workload: {} on {} ({})\n\
         {} clients, {} sessions, {}-item histories, get_items(limit={}) + add_items({} items of {:?} B){}\n\
         TTL {ttl}; durability {}; encryption {}\n",
        r["target"].as_str().unwrap_or(""),
        r["backend"].as_str().unwrap_or(""),
        r["url"].as_str().unwrap_or(""),
        r["concurrency"],
        r["sessions"],
        r["prefill"],
        r["limit"],
        r["items_per_turn"],
        r["turn_item_bytes"].as_array().map(|a| a.iter().map(|v| v.as_u64().unwrap_or(0)).collect::<Vec<_>>()).unwrap_or_default(),
        match r["pop_every"].as_u64() {
            Some(n) => format!(", pop_item every {n} turns"),
            None => String::new(),
        },
        s["durability"].as_str().unwrap_or(""),
        s["encryption"].as_str().unwrap_or(""),
    ));
    t.push_str(&format!(
        "{} turns in {:.2} s: {:.1} turns/s, {:.1} ops/s\n",
        r["turns"],
        r["measured_s"].as_f64().unwrap_or(0.0),
        r["turns_per_sec"].as_f64().unwrap_or(0.0),
        r["ops_per_sec"].as_f64().unwrap_or(0.0),
    ));
    t.push_str(&format!(
        "{:<10} {:>9} {:>7} {:>10} {:>10} {:>10} {:>10} {:>8}\n",
        "operation", "count", "errors", "mean us", "p50 us", "p99 us", "p99.9 us", "req/op"
    ));
    for name in ["get_items", "add_items", "pop_item", "turn"] {
        let o = &r["ops"][name];
        if o["count"].as_u64() == Some(0) && o["errors"].as_u64() == Some(0) {
            continue;
        }
        let f = |k: &str| o[k].as_f64().unwrap_or(0.0);
        t.push_str(&format!(
            "{:<10} {:>9} {:>7} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>8}\n",
            name,
            o["count"].as_u64().unwrap_or(0),
            o["errors"].as_u64().unwrap_or(0),
            f("mean_us"),
            f("p50_us"),
            f("p99_us"),
            f("p999_us"),
            o["requests_per_op"]
                .as_f64()
                .map(|v| format!("{v:.2}"))
                .unwrap_or_else(|| "-".into()),
        ));
    }
    if let Some(server) = r["redis_server"].as_object() {
        let by: Vec<String> = server["by_command_per_turn"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{k} {v}")).collect())
            .unwrap_or_default();
        t.push_str(&format!(
            "Redis INFO commandstats: {} commands per turn ({}); server CPU {} us per turn ({}% busy)\n",
            server["commands_per_turn"],
            by.join(", "),
            server["cpu_us_per_turn"],
            server["cpu_percent"],
        ));
        let usec: Vec<String> = server["usec_per_turn_by_command"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{k} {v}")).collect())
            .unwrap_or_default();
        if !usec.is_empty() {
            t.push_str(&format!(
                "Redis time per turn, us (a script's includes its commands'): {}\n",
                usec.join(", ")
            ));
        }
    }
    if let Some(kib) = r["peak_rss_kib"].as_u64() {
        t.push_str(&format!("peak RSS {:.1} MiB\n", kib as f64 / 1024.0));
    }
    if let Some(us) = r["client_cpu_us_per_turn"].as_f64() {
        t.push_str(&format!("client CPU {us:.1} us per turn (this process)\n"));
    }
    t.push_str(&format!(
        "items lost: {}, unexpected extra items: {}\n",
        r["items_lost"], r["items_extra"]
    ));
    if let Some(e) = r["first_error"].as_str() {
        t.push_str(&format!("first error: {e}\n"));
    }
    t
}

// --------------------------------------------------------------------------- scenarios ---

struct Scenario {
    name: String,
    op: Operation,
    latencies: Vec<Duration>,
    requests: u64,
    elapsed: Duration,
}

impl Scenario {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(index).copied().unwrap_or_default()
    }

    fn ops_per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn requests_per_op(&self) -> f64 {
        self.requests as f64 / self.latencies.len().max(1) as f64
    }
}

fn item(n: usize, bytes: usize) -> Item {
    let text: String = std::iter::repeat("lorem ipsum ")
        .flat_map(str::chars)
        .take(bytes)
        .collect();
    Item::from_value(serde_json::json!({"role": "user", "n": n, "content": text}))
        .unwrap_or_else(|_| Item::from_map(Default::default()))
}

async fn measure<F, Fut>(
    store: &Store,
    name: &str,
    op: Operation,
    ops: usize,
    mut call: F,
) -> Result<Scenario, Error>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>>,
{
    let before = store.stats().requests(op);
    let mut latencies = Vec::with_capacity(ops);
    let start = Instant::now();
    for i in 0..ops {
        let t = Instant::now();
        call(i).await?;
        latencies.push(t.elapsed());
    }
    Ok(Scenario {
        name: name.to_owned(),
        op,
        latencies,
        requests: store.stats().requests(op) - before,
        elapsed: start.elapsed(),
    })
}

fn output_error(e: std::io::Error) -> Error {
    Error::new(
        openai_agents_session::ErrorKind::Backend,
        Operation::Open,
        "cannot write output",
    )
    .with_source(e)
}

/// Runs the chosen workload against the store at `url` and prints the results.
pub async fn run(
    store: &Store,
    url: &str,
    args: &BenchArgs,
    out: &mut impl std::io::Write,
) -> Result<(), Error> {
    let recorder = args
        .metrics
        .then(crate::observe::MetricsRecorder::install)
        .flatten();
    let result = run_workload(store, url, args, out).await;
    if let Some(recorder) = recorder {
        if args.json {
            writeln!(out, "{}", recorder.render_json()).map_err(output_error)?;
        } else {
            write!(out, "{}", recorder.render_text()).map_err(output_error)?;
        }
    }
    result
}

async fn run_workload(
    store: &Store,
    url: &str,
    args: &BenchArgs,
    out: &mut impl std::io::Write,
) -> Result<(), Error> {
    match args.workload {
        Workload::Scenarios => run_scenarios(store, args, out).await,
        Workload::Turns => {
            let names = turn_session_names(&args.turns);
            let target: Arc<dyn TurnTarget> = Arc::new(StoreTarget::new(store, &names)?);
            let probe = RedisProbe::from_url(url).filter(|_| store.backend_name() == "redis");
            let settings = store_settings(store, url, probe.as_ref());
            let fail = |m: String| {
                Error::new(
                    openai_agents_session::ErrorKind::Backend,
                    Operation::Open,
                    m,
                )
            };
            let report = run_turns(target, &settings, &args.turns, probe.as_ref())
                .await
                .map_err(|m| fail(format!("bench: {m}")))?;
            if args.json {
                writeln!(out, "{report}").map_err(output_error)?;
            } else {
                write!(out, "{}", turns_table(&report)).map_err(output_error)?;
            }
            let errors = report["errors"].as_u64().unwrap_or(0);
            let lost = report["items_lost"].as_u64().unwrap_or(0);
            if errors > 0 || lost > 0 {
                return Err(fail(format!(
                    "bench: {errors} operations failed, {lost} items lost (first error: {})",
                    report["first_error"].as_str().unwrap_or("none")
                )));
            }
            Ok(())
        }
    }
}

/// Runs every scenario and prints the results.
async fn run_scenarios(
    store: &Store,
    args: &BenchArgs,
    out: &mut impl std::io::Write,
) -> Result<(), Error> {
    let prefix = format!("bench:{}:", std::process::id());
    let ops = args.ops.max(1);
    let size = args.item_bytes;
    let mut scenarios = Vec::new();

    let single = store.session(&format!("{prefix}single"))?;
    scenarios.push(
        measure(store, "add_items (1 item)", Operation::AddItems, ops, |i| {
            single.add_items(vec![item(i, size)])
        })
        .await?,
    );
    let batch = store.session(&format!("{prefix}batch"))?;
    scenarios.push(
        measure(
            store,
            "add_items (100 items)",
            Operation::AddItems,
            (ops / 10).max(1),
            |i| batch.add_items((0..100).map(|k| item(i * 100 + k, size)).collect()),
        )
        .await?,
    );

    let short = store.session(&format!("{prefix}short"))?;
    short
        .add_items((0..100).map(|n| item(n, size)).collect())
        .await?;
    let long = store.session(&format!("{prefix}long"))?;
    for chunk in (0..args.history).collect::<Vec<_>>().chunks(5_000) {
        long.add_items(chunk.iter().map(|&n| item(n, size)).collect())
            .await?;
    }
    scenarios.push(
        measure(
            store,
            "get_items(10), 100 items",
            Operation::GetItems,
            ops,
            |_| async { short.get_items(Some(10)).await.map(drop) },
        )
        .await?,
    );
    let long_name = format!("get_items(10), {} items", args.history);
    scenarios.push(
        measure(store, &long_name, Operation::GetItems, ops, |_| async {
            long.get_items(Some(10)).await.map(drop)
        })
        .await?,
    );
    scenarios.push(
        measure(
            store,
            "get_items(None), 100 items",
            Operation::GetItems,
            ops,
            |_| async { short.get_items(None).await.map(drop) },
        )
        .await?,
    );
    scenarios.push(
        measure(
            store,
            "pop_item",
            Operation::PopItem,
            ops.min(args.history),
            |_| async { long.pop_item().await.map(drop) },
        )
        .await?,
    );

    // History transactions (docs/history-transactions.md, "Measured costs"), where the
    // backend has them: an append under a new operation id, the same append retried under an
    // id already applied (answered from the remembered id), and a one-item replace_suffix.
    let tx = store.session(&format!("{prefix}tx"))?;
    let probe = HistoryTransaction::append_items(Vec::new());
    if tx
        .apply_history_transaction("bench-probe", &probe)
        .await
        .is_ok()
    {
        let appends: Vec<HistoryTransaction> = (0..ops)
            .map(|i| HistoryTransaction::append_items(vec![item(i, size)]))
            .collect();
        scenarios.push(
            measure(
                store,
                "append_items (1 item, new id)",
                Operation::ApplyTransaction,
                ops,
                |i| {
                    let (tx, t) = (&tx, &appends[i]);
                    async move {
                        tx.apply_history_transaction(&format!("bench-{i}"), t)
                            .await
                            .map(drop)
                    }
                },
            )
            .await?,
        );
        scenarios.push(
            measure(
                store,
                "append_items retried (applied id)",
                Operation::ApplyTransaction,
                ops,
                |i| {
                    let (tx, t) = (&tx, &appends[i]);
                    async move {
                        tx.apply_history_transaction(&format!("bench-{i}"), t)
                            .await
                            .map(drop)
                    }
                },
            )
            .await?,
        );
        // Each replace swaps the newest item for a new one: its expected suffix is the item
        // the previous replace wrote (the last append's at first).
        let replaces: Vec<HistoryTransaction> = (0..ops)
            .map(|i| {
                let last = if i == 0 { ops - 1 } else { ops + i - 1 };
                HistoryTransaction::replace_suffix(
                    vec![item(last, size)],
                    vec![item(ops + i, size)],
                )
            })
            .collect();
        scenarios.push(
            measure(
                store,
                "replace_suffix (1 -> 1 item)",
                Operation::ApplyTransaction,
                ops,
                |i| {
                    let (tx, t) = (&tx, &replaces[i]);
                    async move {
                        tx.apply_history_transaction(&format!("bench-r{i}"), t)
                            .await
                            .map(drop)
                    }
                },
            )
            .await?,
        );
    }

    for name in ["single", "batch", "short", "long", "tx"] {
        store
            .session(&format!("{prefix}{name}"))?
            .clear_session()
            .await?;
    }

    let rss = peak_rss_kib();
    let w = output_error;
    if args.json {
        for s in &scenarios {
            let line = serde_json::json!({
                "backend": store.backend_name(),
                "scenario": s.name,
                "operation": s.op.as_str(),
                "ops": s.latencies.len(),
                "ops_per_sec": (s.ops_per_sec() * 10.0).round() / 10.0,
                "p50_us": s.percentile(0.5).as_micros() as u64,
                "p99_us": s.percentile(0.99).as_micros() as u64,
                "requests_per_op": s.requests_per_op(),
                "item_bytes": size,
                "peak_rss_kib": rss,
            });
            writeln!(out, "{line}").map_err(w)?;
        }
    } else {
        writeln!(
            out,
            "backend {}, {} ops per scenario, {size}-byte items\n{:<32} {:>10} {:>10} {:>10} {:>9}",
            store.backend_name(),
            ops,
            "scenario",
            "ops/s",
            "p50 us",
            "p99 us",
            "req/op"
        )
        .map_err(w)?;
        for s in &scenarios {
            writeln!(
                out,
                "{:<32} {:>10.0} {:>10} {:>10} {:>9.2}",
                s.name,
                s.ops_per_sec(),
                s.percentile(0.5).as_micros(),
                s.percentile(0.99).as_micros(),
                s.requests_per_op()
            )
            .map_err(w)?;
        }
        if let Some(kib) = rss {
            writeln!(out, "peak RSS {:.1} MiB", kib as f64 / 1024.0).map_err(w)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_items_have_the_sizes_and_shapes_asked_for() {
        let args = TurnArgs {
            concurrency: 1,
            sessions: None,
            duration: 1.0,
            turns: None,
            warmup: 0.0,
            prefill: 0,
            items_per_turn: 3,
            turn_item_bytes: vec![205, 986],
            pop_every: None,
            limit: 20,
            clear_every: None,
            report_every: None,
            session_prefix: None,
            ledger: None,
            keep: false,
        };
        let items = turn_items(&args, "c0t1");
        let sizes: Vec<usize> = items.iter().map(|v| v.to_string().len()).collect();
        assert_eq!(sizes, vec![205, 986, 986]);
        assert_eq!(items[0]["role"], "user");
        assert_eq!(items[1]["type"], "message");
        assert_eq!(items[1]["content"][0]["type"], "output_text");
        assert_eq!(items[1]["content"][0]["annotations"], json!([]));
        assert_eq!(items[2]["role"], "user");
        // Too small a size gives the smallest item, never a panic.
        assert_eq!(turn_item(1, "x", 3)["status"], "completed");
    }

    #[test]
    fn clients_share_no_session_while_there_are_enough() {
        assert_eq!(client_sessions(0, 1, 16).len(), 16);
        assert_eq!(client_sessions(3, 8, 16), vec![3, 11]);
        assert_eq!(client_sessions(63, 64, 64), vec![63]);
        assert_eq!(client_sessions(5, 8, 4), vec![1]);
    }

    #[test]
    fn probe_addresses() {
        let p = RedisProbe::from_url("redis://u:p%40ss@127.0.0.2:6390/2?ttl=3").unwrap();
        assert_eq!(p.addr, "127.0.0.2:6390");
        assert_eq!(p.user.as_deref(), Some("u"));
        assert_eq!(p.password.as_deref(), Some("p@ss"));
        let p = RedisProbe::from_url("redis://:secret@[::1]").unwrap();
        assert_eq!(p.addr, "[::1]:6379");
        assert_eq!(p.user, None);
        assert!(RedisProbe::from_url("rediss://host/").is_none());
        assert!(RedisProbe::from_url("sqlite://x.db").is_none());
    }

    #[test]
    fn histogram_percentiles_are_within_two_percent() {
        let h = Histogram::new();
        for us in 1..=10_000u64 {
            h.record(Duration::from_micros(us));
        }
        let snap = h.snapshot();
        assert_eq!(snap.count(), 10_000);
        for (p, exact) in [(0.5, 5_000.0), (0.99, 9_900.0), (0.999, 9_990.0)] {
            let got = snap.percentile_us(p);
            assert!((got - exact).abs() / exact < 0.02, "p{p}: {got} vs {exact}");
        }
        assert!((snap.mean_us() - 5_000.5).abs() < 0.01);
        // Every bucket's value lies in the bucket; small and huge values do not panic.
        for ns in [0u64, 1, 63, 64, 65, 127, 128, 1_000_003, u64::MAX] {
            let i = Histogram::index(ns);
            assert!(i < HIST_BUCKETS);
            let v = Histogram::value(i);
            assert!((v - ns as f64).abs() <= ns as f64 / 64.0 + 0.5, "{ns}: {v}");
        }
        let later = h.snapshot();
        h.record(Duration::from_micros(7));
        assert_eq!(h.snapshot().since(&later).count(), 1);
        assert_eq!(HistSnapshot::default().percentile_us(0.5), 0.0);
    }

    #[test]
    fn the_tally_bounds_lost_and_extra_items() {
        let mut t = Tally::new(1);
        t.apply('a', 0, 10);
        t.apply('p', 0, 1);
        t.apply('p', 0, 1);
        assert_eq!(t.check(0, 8), (0, 0));
        assert_eq!(t.check(0, 7), (1, 0));
        assert_eq!(t.check(0, 9), (0, 1));
        // Writes whose outcome is unknown widen the range instead of counting as lost or extra.
        t.apply('A', 0, 2);
        t.apply('P', 0, 1);
        assert_eq!(t.check(0, 7), (0, 0));
        assert_eq!(t.check(0, 10), (0, 0));
        assert_eq!(t.check(0, 6), (1, 0));
        assert_eq!(t.check(0, 11), (0, 1));
        t.apply('C', 0, 1);
        assert_eq!(t.check(0, 0), (0, 0));
        assert_eq!(t.check(0, 10), (0, 0));
        t.apply('c', 0, 1);
        assert_eq!(t.check(0, 1), (0, 1));
        t.apply('p', 0, 1); // a pop acknowledged on an empty range stays at zero
        assert_eq!(t.check(0, 0), (0, 0));
        assert_eq!((t.added, t.popped, t.cleared, t.unknown), (10, 3, 1, 3));

        // Intents and outcomes: a kill between them leaves the range open, never a false loss.
        let mut t = Tally::new(1);
        t.apply('A', 0, 2);
        assert_eq!(
            (t.check(0, 0), t.check(0, 2), t.check(0, 3)),
            ((0, 0), (0, 0), (0, 1))
        );
        t.apply('b', 0, 2);
        assert_eq!((t.check(0, 1), t.check(0, 2)), ((1, 0), (0, 0)));
        t.apply('P', 0, 1); // killed here: 1 or 2 items
        assert_eq!((t.check(0, 1), t.check(0, 2)), ((0, 0), (0, 0)));
        t.apply('q', 0, 1);
        assert_eq!((t.check(0, 1), t.check(0, 2)), ((0, 0), (0, 1)));
        t.apply('A', 0, 2);
        t.apply('x', 0, 2); // refused unapplied: the range closes again
        assert_eq!(t.check(0, 3), (0, 2));
        t.apply('C', 0, 1);
        assert_eq!((t.check(0, 0), t.check(0, 1)), ((0, 0), (0, 0)));
        t.apply('k', 0, 1);
        assert_eq!(t.check(0, 1), (0, 1));
        t.apply('P', 0, 1);
        t.apply('e', 0, 1);
        assert_eq!((t.added, t.popped, t.cleared, t.unknown), (2, 1, 1, 0));
    }

    #[test]
    fn the_ledger_reads_back_what_was_recorded_and_skips_a_cut_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger");
        let (l, t, n) = Ledger::open(&path, 2).unwrap();
        assert_eq!((t.high.clone(), n), (vec![0, 0], 0));
        for line in [
            "a 0 2\n", "a 1 2\n", "p 1\n", "A 0 2\n", "P 0\n", "a 1 2\n", "x 1\n",
        ] {
            l.record(line.into());
        }
        drop(l);
        // A kill in the middle of a write leaves a partial last line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"a 1")
            .unwrap();
        let (l, t, n) = Ledger::open(&path, 2).unwrap();
        assert_eq!(n, 6);
        assert_eq!((t.low.clone(), t.high.clone()), (vec![1, 3], vec![4, 3]));
        assert_eq!((t.added, t.popped, t.unknown), (6, 1, 2));
        l.record("c 1\n".into());
        drop(l);
        let t = Ledger::open(&path, 2).unwrap().1;
        assert_eq!((t.low, t.high, t.cleared), (vec![1, 0], vec![4, 0], 1));
        let err = Ledger::open(&path, 1).err().unwrap();
        assert!(err.contains("--sessions"), "{err}");
    }

    #[test]
    fn session_names_take_the_prefix() {
        let mut args = TurnArgs {
            concurrency: 2,
            sessions: Some(3),
            duration: 1.0,
            turns: None,
            warmup: 0.0,
            prefill: 0,
            items_per_turn: 2,
            turn_item_bytes: vec![205],
            pop_every: None,
            limit: 20,
            clear_every: None,
            report_every: None,
            session_prefix: Some("soak:".into()),
            ledger: None,
            keep: false,
        };
        assert_eq!(
            turn_session_names(&args),
            vec!["soak:0", "soak:1", "soak:2"]
        );
        args.session_prefix = None;
        let pid = std::process::id();
        assert_eq!(turn_session_names(&args)[2], format!("bench:{pid}:2"));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut l = Latencies::default();
        for us in 1..=1000u64 {
            l.push(Duration::from_micros(us));
        }
        assert_eq!(l.percentile_us(0.5), 500.0);
        assert_eq!(l.percentile_us(0.99), 990.0);
        assert_eq!(l.percentile_us(0.999), 999.0);
        assert_eq!(Latencies::default().percentile_us(0.5), 0.0);
    }
}
