//! The spans and metrics of `observe.rs`: one span per storage operation with its fields, the
//! error kind on failure, no item contents, session ids or keys anywhere, and the metrics
//! counters moving as the operations do.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use openai_agents_session::observe::{self, session_hash};
use openai_agents_session::{
    ErrorKind, HistoryTransaction, Item, ListOptions, Session, StageMode, Store,
};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// One closed span: its name and its fields as text.
#[derive(Debug, Clone)]
struct Captured {
    name: String,
    fields: BTreeMap<String, String>,
}

impl Captured {
    fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }
}

#[derive(Default, Clone)]
struct Capture {
    open: Arc<Mutex<BTreeMap<u64, Captured>>>,
    closed: Arc<Mutex<Vec<Captured>>>,
    events: Arc<Mutex<Vec<String>>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>> Layer<S>
    for Capture
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        self.open.lock().unwrap().insert(
            id.into_u64(),
            Captured {
                name: attrs.metadata().name().to_owned(),
                fields,
            },
        );
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some(span) = self.open.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut span.fields));
        }
    }
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.events.lock().unwrap().push(format!("{fields:?}"));
    }
    fn on_close(&self, id: Id, _: Context<'_, S>) {
        if let Some(span) = self.open.lock().unwrap().remove(&id.into_u64()) {
            self.closed.lock().unwrap().push(span);
        }
    }
}

impl Capture {
    /// Installs the capture for the current thread (the tests run on a current-thread runtime).
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::registry().with(self.clone());
        tracing::subscriber::set_default(subscriber)
    }

    fn take(&self) -> Vec<Captured> {
        std::mem::take(&mut *self.closed.lock().unwrap())
    }

    fn everything(&self) -> String {
        format!(
            "{:?}{:?}{:?}",
            self.closed.lock().unwrap(),
            self.open.lock().unwrap(),
            self.events.lock().unwrap()
        )
    }
}

fn items(texts: &[&str]) -> Vec<Item> {
    texts.iter().map(|t| t.parse().unwrap()).collect()
}

fn sqlite_url(dir: &tempfile::TempDir, query: &str) -> String {
    format!("sqlite://{}/observe.db{query}", dir.path().display())
}

fn only<'a>(spans: &'a [Captured], op: &str) -> &'a Captured {
    let found: Vec<_> = spans
        .iter()
        .filter(|s| s.get("db.operation.name") == Some(op))
        .collect();
    assert_eq!(found.len(), 1, "one {op} span in {spans:#?}");
    found[0]
}

#[tokio::test(flavor = "current_thread")]
async fn every_operation_has_a_span_with_its_fields() {
    let capture = Capture::default();
    let _guard = capture.install();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&sqlite_url(&dir, "")).await.unwrap();
    let session = store.session("user-42:chat").unwrap();
    let batch = items(&[r#"{"role":"user","content":"hi"}"#, r#"{"n":1}"#]);
    let bytes: usize = batch.iter().map(Item::len_bytes).sum();
    session.add_items(batch).await.unwrap();
    let spans = capture.take();
    let add = only(&spans, "add_items");
    assert_eq!(add.name, "session_store");
    assert_eq!(add.get("db.system.name"), Some("sqlite"));
    assert_eq!(add.get("otel.name"), Some("add_items"));
    assert_eq!(add.get("otel.kind"), Some("client"));
    assert_eq!(add.get("oas.backend"), Some("sqlite"));
    assert_eq!(add.get("oas.items"), Some("2"));
    assert_eq!(add.get("oas.bytes"), Some(bytes.to_string().as_str()));
    assert_eq!(add.get("oas.requests"), Some("1"), "one transaction");
    assert_eq!(add.get("oas.outcome"), Some("ok"));
    assert_eq!(add.get("error.type"), None);
    assert!(add.get("oas.latency_us").is_some());
    assert_eq!(
        add.get("oas.session.hash"),
        Some(session_hash("user-42:chat").as_str())
    );

    let got = session.get_items(Some(1)).await.unwrap();
    let popped = session.pop_item().await.unwrap().unwrap();
    assert_eq!(got[0], popped);
    store.session_info("user-42:chat").await.unwrap();
    store.list_sessions(&ListOptions::default()).await.unwrap();
    session.read_before(None, 5).await.unwrap();
    store
        .read_page("user-42:chat", None, 1 << 20)
        .await
        .unwrap();
    let mut staged = store
        .stage("user-42:chat", StageMode::Append, None)
        .await
        .unwrap();
    staged.append(items(&[r#"{"s":1}"#])).await.unwrap();
    staged.commit().await.unwrap();
    let tx = HistoryTransaction::append_items(items(&[r#"{"t":1}"#]));
    session
        .apply_history_transaction("op-1", &tx)
        .await
        .unwrap();
    let lease = store
        .acquire_lease("user-42:chat", "worker", Duration::from_secs(5), None)
        .await
        .unwrap();
    store.lease_info("user-42:chat").await.unwrap();
    session
        .fenced(lease.token)
        .add_items(items(&[r#"{"f":1}"#]))
        .await
        .unwrap();
    store
        .release_lease("user-42:chat", lease.token)
        .await
        .unwrap();
    store.prune().await.unwrap();
    session.clear_session().await.unwrap();
    let spans = capture.take();

    let get = only(&spans, "get_items");
    assert_eq!(get.get("oas.items"), Some("1"));
    assert_eq!(get.get("db.response.returned_rows"), Some("1"));
    assert_eq!(get.get("oas.bytes"), Some("7"));
    assert_eq!(get.get("oas.requests"), Some("1"));
    let pop = only(&spans, "pop_item");
    assert_eq!(
        (pop.get("oas.items"), pop.get("oas.bytes")),
        (Some("1"), Some("7"))
    );
    for op in [
        "session_info",
        "list_sessions",
        "read_before",
        "read_page",
        "stage",
        "staged_append",
        "staged_commit",
        "apply_history_transaction",
        "acquire_lease",
        "lease_info",
        "release_lease",
        "prune",
        "clear_session",
    ] {
        let span = only(&spans, op);
        assert_eq!(span.get("oas.outcome"), Some("ok"), "{op}");
        assert_eq!(span.get("db.system.name"), Some("sqlite"), "{op}");
    }
    let list = only(&spans, "list_sessions");
    assert_eq!(list.get("db.response.returned_rows"), Some("1"));
    assert_eq!(list.get("oas.session.hash"), None, "no one session");
    assert_eq!(only(&spans, "read_before").get("oas.items"), Some("1"));
    assert_eq!(only(&spans, "staged_append").get("oas.items"), Some("1"));
    let tx = only(&spans, "apply_history_transaction");
    assert_eq!(
        (tx.get("oas.items"), tx.get("oas.bytes")),
        (Some("1"), Some("7"))
    );
    let fenced: Vec<_> = spans
        .iter()
        .filter(|s| s.get("oas.fenced") == Some("true"))
        .collect();
    assert_eq!(fenced.len(), 1, "{spans:#?}");
    assert_eq!(fenced[0].get("db.operation.name"), Some("add_items"));
    assert_eq!(fenced[0].get("oas.items"), Some("1"));
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_operation_names_its_error_kind() {
    let capture = Capture::default();
    let _guard = capture.install();
    let store = Store::open("memory://").await.unwrap();
    let session = store.session("fenced").unwrap();
    let lease = store
        .acquire_lease("fenced", "a", Duration::from_secs(5), None)
        .await
        .unwrap();
    let err = session
        .fenced(lease.token + 1)
        .add_items(items(&[r#"{"a":1}"#]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fenced);
    let spans = capture.take();
    let failed: Vec<_> = spans
        .iter()
        .filter(|s| s.get("error.type").is_some())
        .collect();
    assert_eq!(failed.len(), 1, "{spans:#?}");
    let span = failed[0];
    assert_eq!(span.get("db.system.name"), Some("memory"));
    assert_eq!(span.get("db.operation.name"), Some("add_items"));
    assert_eq!(span.get("error.type"), Some("fenced"));
    assert_eq!(span.get("oas.outcome"), Some("fenced"));
    assert_eq!(span.get("otel.status_code"), Some("ERROR"));

    // A connection that fails: a closed port, typed `connection` (or `timeout`) in the span.
    #[cfg(feature = "redis")]
    {
        let result = Store::open("redis://u:hunter2-pw@127.0.0.1:1/?connect_timeout=1").await;
        if let Ok(store) = result {
            let _ = store.session("s").unwrap().get_items(None).await;
        }
        assert!(!capture.everything().contains("hunter2"));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn spans_and_events_hold_no_contents_ids_or_keys() {
    use openai_agents_session::encryption::EncryptionKey;
    let capture = Capture::default();
    let _guard = capture.install();
    let dir = tempfile::tempdir().unwrap();
    let key = EncryptionKey::generate().unwrap();
    let key_text = key.to_base64();
    let var = format!("OAS_OBSERVE_KEY_{}", std::process::id());
    std::env::set_var(&var, &key_text);
    let url = sqlite_url(&dir, &format!("?encryption_key_env={var}"));
    let store = Store::open(&url).await.unwrap();
    let id = "secret-session-id-4711";
    let session = store.session(id).unwrap();
    session
        .add_items(items(&[r#"{"content":"item-contents-0815"}"#]))
        .await
        .unwrap();
    session.get_items(None).await.unwrap();
    session.pop_item().await.unwrap();
    let tx = HistoryTransaction::append_items(items(&[r#"{"content":"item-contents-0815"}"#]));
    session
        .apply_history_transaction("op-secret-9", &tx)
        .await
        .unwrap();
    store
        .acquire_lease(id, "owner-name-1234", Duration::from_secs(5), None)
        .await
        .unwrap();
    store.list_all_sessions(None).await.unwrap();
    // An error too: a store without the key meets the encrypted record.
    let keyless = Store::open(&sqlite_url(&dir, "")).await.unwrap();
    let err = keyless
        .session(id)
        .unwrap()
        .get_items(None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EncryptionKeyMissing);
    let everything = capture.everything();
    assert!(
        everything.contains("encryption_key_missing"),
        "{everything}"
    );
    for secret in [
        "item-contents-0815",
        id,
        "op-secret-9",
        "owner-name-1234",
        key_text.as_str(),
        &var,
        dir.path().to_str().unwrap(),
    ] {
        assert!(!everything.contains(secret), "{secret} in {everything}");
    }
    std::env::remove_var(&var);
}

/// A recorder for one thread (`metrics::with_local_recorder`): counters and histogram counts.
#[derive(Default)]
struct Counts {
    values: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
}

struct Add(Arc<AtomicU64>);

impl metrics::CounterFn for Add {
    fn increment(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    fn absolute(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }
}

impl metrics::HistogramFn for Add {
    fn record(&self, value: f64) {
        assert!((0.0..60.0).contains(&value), "{value} s");
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl Counts {
    fn slot(&self, key: &Key) -> Arc<AtomicU64> {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        self.values.lock().unwrap().entry(name).or_default().clone()
    }

    fn get(&self, name: &str) -> u64 {
        self.values
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |v| v.load(Ordering::Relaxed))
    }
}

impl Recorder for Counts {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(Add(self.slot(key))))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Arc::new(Add(self.slot(key))))
    }
}

#[test]
fn metrics_count_operations_outcomes_and_bytes() {
    let counts = Counts::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    metrics::with_local_recorder(&counts, || {
        runtime.block_on(async {
            let store = Store::open(&sqlite_url(&dir, "")).await.unwrap();
            let session = store.session("m").unwrap();
            session
                .add_items(items(&[r#"{"a":1}"#, r#"{"b":22}"#]))
                .await
                .unwrap();
            session.add_items(items(&[r#"{"c":3}"#])).await.unwrap();
            assert_eq!(session.get_items(None).await.unwrap().len(), 3);
            session.get_items(Some(0)).await.unwrap(); // answered without storage: not counted
            session.pop_item().await.unwrap();
            let lease = store
                .acquire_lease("m", "a", Duration::from_secs(5), None)
                .await
                .unwrap();
            let err = session
                .fenced(lease.token + 7)
                .pop_item()
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Fenced);
        })
    });
    let l = |op: &str, outcome: &str| {
        format!(
            "{}{{backend=sqlite,operation={op},outcome={outcome}}}",
            observe::OPERATIONS
        )
    };
    assert_eq!(counts.get(&l("add_items", "ok")), 2);
    assert_eq!(counts.get(&l("get_items", "ok")), 1);
    assert_eq!(counts.get(&l("pop_item", "ok")), 1);
    assert_eq!(counts.get(&l("acquire_lease", "ok")), 1);
    assert_eq!(counts.get(&l("pop_item", "fenced")), 1);
    let d = |op: &str, outcome: &str| {
        format!(
            "{}{{backend=sqlite,operation={op},outcome={outcome}}}",
            observe::DURATION
        )
    };
    assert_eq!(counts.get(&d("add_items", "ok")), 2, "one latency per call");
    assert_eq!(counts.get(&d("pop_item", "fenced")), 1);
    let b = |name: &str, op: &str| format!("{name}{{backend=sqlite,operation={op}}}");
    assert_eq!(
        counts.get(&b(observe::BYTES_WRITTEN, "add_items")),
        7 + 8 + 7
    );
    assert_eq!(counts.get(&b(observe::ITEMS_WRITTEN, "add_items")), 3);
    assert_eq!(counts.get(&b(observe::BYTES_READ, "get_items")), 7 + 8 + 7);
    assert_eq!(counts.get(&b(observe::ITEMS_READ, "get_items")), 3);
    assert_eq!(counts.get(&b(observe::BYTES_READ, "pop_item")), 7);
    assert!(
        counts
            .values
            .lock()
            .unwrap()
            .keys()
            .all(|k| !k.contains("=m,") && !k.contains("=m}")),
        "no session id in a label"
    );
}
