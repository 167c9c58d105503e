//! What the CLI shows of the library's spans (`-v`, `-vv`, `--log-format json`) and the
//! in-process metrics recorder of `bench --metrics`.
//!
//! The spans are the library's (`openai_agents_session::observe`): they carry no item
//! contents, no session ids (a hash), no URLs and no keys, so printing them is safe. Only the
//! targets of this workspace are shown: dependencies (the AWS SDK, drivers) may log requests.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use serde_json::{json, Value};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The format of the lines `-v` writes on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event and closed span.
    Text,
    /// One JSON object per line (the span's fields under `span`).
    Json,
}

/// Installs the stderr subscriber: nothing without `-v` (unless JSON was asked for: warnings
/// then); `-v`: INFO, one line per store operation when its span closes; `-vv`: DEBUG, spans
/// also when they open, and the library's debug events (retries, cleanups).
pub fn init_logging(verbose: u8, format: LogFormat) {
    let level = match (verbose, format) {
        (0, LogFormat::Text) => return,
        (0, LogFormat::Json) => LevelFilter::WARN,
        (1, _) => LevelFilter::INFO,
        _ => LevelFilter::DEBUG,
    };
    let spans = if verbose >= 2 {
        FmtSpan::NEW | FmtSpan::CLOSE
    } else {
        FmtSpan::CLOSE
    };
    let targets = Targets::new()
        .with_target("openai_agents_session", level)
        .with_target("agent_session", level)
        .with_default(LevelFilter::WARN.min(level));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_span_events(spans);
    let registry = tracing_subscriber::registry().with(targets);
    // A second initialisation (tests calling `run` twice) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => registry.with(fmt).try_init(),
        LogFormat::Json => registry.with(fmt.json().flatten_event(true)).try_init(),
    };
}

/// Histogram buckets: 20 per decade from 100 ns to 1,000 s (values are seconds), so memory
/// stays the same however long a run lasts; quantiles are a bucket's upper bound (within 12%).
const PER_DECADE: f64 = 20.0;
const SMALLEST: f64 = 1e-7;
const BUCKETS: usize = 200;

#[derive(Default)]
struct Count(AtomicU64);

impl metrics::CounterFn for Count {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Level(AtomicU64);

impl metrics::GaugeFn for Level {
    fn increment(&self, value: f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }
    fn decrement(&self, value: f64) {
        self.increment(-value);
    }
    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
}

struct Buckets {
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
    max_bits: AtomicU64,
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
            max_bits: AtomicU64::new(0),
        }
    }
}

impl metrics::HistogramFn for Buckets {
    fn record(&self, value: f64) {
        let value = if value.is_finite() {
            value.max(0.0)
        } else {
            0.0
        };
        let index = if value <= SMALLEST {
            0
        } else {
            ((value / SMALLEST).log10() * PER_DECADE) as usize
        };
        self.counts[index.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add((value * 1e9) as u64, Ordering::Relaxed);
        // Non-negative floats order as their bits do.
        self.max_bits.fetch_max(value.to_bits(), Ordering::Relaxed);
    }
}

impl Buckets {
    fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The upper bound of the bucket holding quantile `q` (capped by the largest value).
    fn quantile(&self, q: f64) -> f64 {
        let total = self.count();
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        let max = f64::from_bits(self.max_bits.load(Ordering::Relaxed));
        for (i, c) in self.counts.iter().enumerate() {
            seen += c.load(Ordering::Relaxed);
            if seen >= rank {
                return (SMALLEST * 10f64.powf((i + 1) as f64 / PER_DECADE)).min(max);
            }
        }
        max
    }
}

#[derive(Clone)]
enum Entry {
    Counter(Arc<Count>),
    Gauge(Arc<Level>),
    Histogram(Arc<Buckets>),
}

/// The in-process recorder of `bench --metrics`: counters, gauges and bucketed histograms,
/// keyed by name and labels, read once at the end.
#[derive(Clone, Default)]
pub struct MetricsRecorder {
    entries: Arc<Mutex<HashMap<Key, Entry>>>,
}

/// One metric as `sorted` lists it: name, labels (key, value), its recorded entry.
type Row = (String, Vec<(String, String)>, Entry);

impl MetricsRecorder {
    /// Installs a recorder as the global one and returns a handle to read it; `None` if another
    /// recorder was installed first.
    pub fn install() -> Option<MetricsRecorder> {
        let recorder = MetricsRecorder::default();
        metrics::set_global_recorder(recorder.clone()).ok()?;
        Some(recorder)
    }

    fn entry(&self, key: &Key, make: impl FnOnce() -> Entry) -> Entry {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = entries.get(key) {
            return entry.clone();
        }
        let entry = make();
        entries.insert(key.clone(), entry.clone());
        entry
    }

    fn sorted(&self) -> Vec<Row> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = entries
            .iter()
            .map(|(key, entry)| {
                let labels = key
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                (key.name().to_owned(), labels, entry.clone())
            })
            .collect();
        all.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        all
    }

    /// Every metric as Prometheus-style text lines; histograms as count, mean, p50, p99, max
    /// in microseconds.
    pub fn render_text(&self) -> String {
        let mut out = String::from("metrics (in-process recorder):\n");
        for (name, labels, entry) in self.sorted() {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            let _ = write!(out, "  {name}{{{}}} ", labels.join(","));
            let _ = match entry {
                Entry::Counter(c) => writeln!(out, "{}", c.0.load(Ordering::Relaxed)),
                Entry::Gauge(g) => writeln!(out, "{}", f64::from_bits(g.0.load(Ordering::Relaxed))),
                Entry::Histogram(h) => {
                    let count = h.count();
                    let us = |s: f64| s * 1e6;
                    let mean =
                        h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e3 / count.max(1) as f64;
                    writeln!(
                        out,
                        "count={count} mean={mean:.1}us p50={:.1}us p99={:.1}us max={:.1}us",
                        us(h.quantile(0.5)),
                        us(h.quantile(0.99)),
                        us(f64::from_bits(h.max_bits.load(Ordering::Relaxed))),
                    )
                }
            };
        }
        out
    }

    /// Every metric as JSON: `{"metrics": [{"name", "labels", "type", ...}]}`.
    pub fn render_json(&self) -> Value {
        let metrics: Vec<Value> = self
            .sorted()
            .into_iter()
            .map(|(name, labels, entry)| {
                let labels: serde_json::Map<String, Value> = labels
                    .into_iter()
                    .map(|(k, v)| (k, Value::from(v)))
                    .collect();
                match entry {
                    Entry::Counter(c) => json!({"name": name, "labels": labels, "type": "counter",
                        "value": c.0.load(Ordering::Relaxed)}),
                    Entry::Gauge(g) => json!({"name": name, "labels": labels, "type": "gauge",
                        "value": f64::from_bits(g.0.load(Ordering::Relaxed))}),
                    Entry::Histogram(h) => {
                        json!({"name": name, "labels": labels, "type": "histogram",
                        "count": h.count(),
                        "sum": h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
                        "p50": h.quantile(0.5), "p99": h.quantile(0.99),
                        "max": f64::from_bits(h.max_bits.load(Ordering::Relaxed))})
                    }
                }
            })
            .collect();
        json!({ "metrics": metrics })
    }
}

impl Recorder for MetricsRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        match self.entry(key, || Entry::Counter(Arc::default())) {
            Entry::Counter(c) => Counter::from_arc(c),
            _ => Counter::noop(),
        }
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        match self.entry(key, || Entry::Gauge(Arc::default())) {
            Entry::Gauge(g) => Gauge::from_arc(g),
            _ => Gauge::noop(),
        }
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        match self.entry(key, || Entry::Histogram(Arc::default())) {
            Entry::Histogram(h) => Histogram::from_arc(h),
            _ => Histogram::noop(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::HistogramFn;

    #[test]
    fn quantiles_come_from_the_buckets() {
        let h = Buckets::default();
        for us in 1..=100 {
            h.record(us as f64 * 1e-6);
        }
        assert_eq!(h.count(), 100);
        let p50 = h.quantile(0.5);
        assert!((50e-6..=50e-6 * 1.13).contains(&p50), "{p50}");
        assert_eq!(h.quantile(1.0), 100e-6);
    }

    #[test]
    fn counters_are_kept_by_name_and_labels() {
        let recorder = MetricsRecorder::default();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("c", "op" => "a").increment(2);
            metrics::counter!("c", "op" => "a").increment(3);
            metrics::counter!("c", "op" => "b").increment(1);
            metrics::histogram!("h").record(0.001);
        });
        let json = recorder.render_json();
        let m = json["metrics"].as_array().unwrap();
        assert_eq!(m[0]["value"], 5);
        assert_eq!(m[1]["labels"]["op"], "b");
        assert_eq!(m[2]["count"], 1);
        let text = recorder.render_text();
        assert!(text.contains(r#"c{op="a"} 5"#), "{text}");
    }
}
