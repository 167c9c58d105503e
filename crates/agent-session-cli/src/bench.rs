//! `agent-session bench`: latency, throughput and round trips per operation against any store.
//!
//! Every scenario writes sessions under `bench:<pid>:` and clears them afterwards.

use std::time::{Duration, Instant};

use openai_agents_session::{Error, Item, Operation, Session, Store};

/// Options of the benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Operations per scenario.
    #[arg(long, default_value_t = 1000)]
    pub ops: usize,
    /// The long history `get_items(Some(10))` is measured on (against a 100-item one).
    #[arg(long, default_value_t = 100_000)]
    pub history: usize,
    /// Bytes of text in each item.
    #[arg(long, default_value_t = 512)]
    pub item_bytes: usize,
    /// Print one JSON object per scenario instead of a table.
    #[arg(long)]
    pub json: bool,
}

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

/// Runs every scenario and prints the results.
pub async fn run(
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

    for name in ["single", "batch", "short", "long"] {
        store
            .session(&format!("{prefix}{name}"))?
            .clear_session()
            .await?;
    }

    let rss = peak_rss_kib();
    let w = |e: std::io::Error| {
        Error::new(
            openai_agents_session::ErrorKind::Backend,
            Operation::Open,
            "cannot write output",
        )
        .with_source(e)
    };
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
