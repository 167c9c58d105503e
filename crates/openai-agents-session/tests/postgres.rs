//! The PostgreSQL backend against a real server: the conformance kit plain and over TLS
//! (`sslmode=verify-full`) on the shared server from `scripts/servers.sh`, round trips counted
//! at the socket, concurrency, bad input, and faults on servers the tests start themselves.
#![cfg(all(feature = "postgres", feature = "conformance"))]

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openai_agents_session::conformance::{run, Capabilities, UrlFactory};
use openai_agents_session::{ErrorKind, Item, ListOptions, Session, Store};
use serde_json::json;
use support::shared_url;

fn item(v: serde_json::Value) -> Item {
    Item::from_value(v).unwrap()
}

fn unique(name: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{name}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn with_option(url: &str, option: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{option}")
}

/// The shared server's URL with a schema of this test's own.
fn url_in_schema(var: &str, schema: &str) -> String {
    with_option(&shared_url(var), &format!("schema={schema}"))
}

async fn kit(url: String) {
    let report = run(&UrlFactory::new(url, Capabilities::all())).await;
    report.assert_passed();
    assert_eq!(report.unsupported().count(), 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_plain() {
    kit(url_in_schema("OAS_TEST_POSTGRES_URL", &unique("kit_plain"))).await;
}

/// The kit with encryption on: every record an envelope the client decodes (pops take their
/// two round trips), the same guarantees.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_encrypted() {
    support::set_kit_keys();
    let url = url_in_schema("OAS_TEST_POSTGRES_URL", &unique("kit_enc"));
    kit(with_option(
        &url,
        &format!("encryption_key_env={}", support::KIT_KEY_ENV),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_tls_verify_full() {
    let url = shared_url("OAS_TEST_POSTGRES_TLS_URL");
    assert!(url.contains("sslmode=verify-full"), "{url}");
    kit(with_option(&url, &format!("schema={}", unique("kit_tls")))).await;
}

// ------------------------------------------------------------------ servers of a test's own ---

/// A PostgreSQL cluster of this test's own (`scripts/postgres-instance.sh`): a temporary
/// directory under /tmp, a free port, stopped by PID and removed when dropped.
struct OwnPostgres {
    dir: PathBuf,
    port: u16,
}

fn instance_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres-instance.sh")
}

fn script(args: &[&str]) -> String {
    let out = std::process::Command::new("bash")
        .arg(instance_script())
        .args(args)
        .output()
        .expect("run postgres-instance.sh");
    assert!(
        out.status.success(),
        "postgres-instance.sh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl OwnPostgres {
    fn start(name: &str) -> OwnPostgres {
        let dir = PathBuf::from(format!("/tmp/oas-pg-test-{}", unique(name)));
        let port = support::free_port();
        script(&["init", dir.to_str().unwrap(), &port.to_string()]);
        OwnPostgres { dir, port }
    }

    fn url(&self, options: &str) -> String {
        format!(
            "postgres://oas_test:oas-pg-secret@127.0.0.1:{}/oas_test?sslmode=disable&{options}",
            self.port
        )
    }

    fn pid(&self) -> Option<i32> {
        script(&["pid", self.dir.to_str().unwrap()]).parse().ok()
    }

    /// The postmaster and every backend it started.
    fn processes(&self) -> Vec<i32> {
        let Some(pm) = self.pid() else {
            return Vec::new();
        };
        let mut pids = vec![pm];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // pid (comm) state ppid ...
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if ppid == Some(pm) {
                pids.push(pid);
            }
        }
        pids
    }

    fn signal(&self, pids: &[i32], signal: &str) {
        for pid in pids {
            let _ = std::process::Command::new("kill")
                .args([signal, &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }

    fn kill(&self) {
        // The postmaster is stopped first, so that it forks no backend (a pool reconnecting)
        // between the listing and the kill: such a backend would outlive "the whole server",
        // go on committing into the old shared memory while the restarted server recovers,
        // and its acknowledged writes would be lost to the test, not to a real crash.
        if let Some(pm) = self.pid() {
            self.signal(&[pm], "-STOP");
        }
        let pids = self.processes();
        self.signal(&pids, "-KILL");
        let t0 = Instant::now();
        while pids
            .iter()
            .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
            && t0.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn restart(&self) {
        script(&["start", self.dir.to_str().unwrap()]);
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let pids = self.processes();
        self.signal(&pids, "-CONT");
        let _ = std::process::Command::new("bash")
            .arg(instance_script())
            .args(["stop", self.dir.to_str().unwrap()])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A plain client for the tests' own statements (as the test role).
async fn admin(url: &str) -> tokio_postgres::Client {
    let base = url.split('?').next().unwrap();
    let (client, conn) =
        tokio_postgres::connect(&format!("{base}?sslmode=disable"), tokio_postgres::NoTls)
            .await
            .expect("admin connection");
    tokio::spawn(conn);
    client
}

// ------------------------------------------------------------ round trips, at the socket ---

/// A TCP proxy counting the round trips clients start: frontend Sync ('S') and simple Query
/// ('Q') messages after the startup message.
struct SyncCounter {
    port: u16,
    syncs: Arc<AtomicU64>,
}

impl SyncCounter {
    fn start(target: u16) -> SyncCounter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let syncs = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&syncs);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let counter = Arc::clone(&counter);
                std::thread::spawn(move || count_frontend(client, server, counter));
                std::thread::spawn(move || {
                    let (mut from, mut to) = (s2, c2);
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        SyncCounter { port, syncs }
    }

    fn count(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }
}

fn count_frontend(mut from: TcpStream, mut to: TcpStream, counter: Arc<AtomicU64>) {
    let mut pending: Vec<u8> = Vec::new();
    let mut started = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        loop {
            let header = if started { 5 } else { 4 };
            if pending.len() < header {
                break;
            }
            let at = if started { 1 } else { 0 };
            let len = u32::from_be_bytes(pending[at..at + 4].try_into().unwrap()) as usize;
            let total = at + len;
            if pending.len() < total {
                break;
            }
            if started && matches!(pending[0], b'S' | b'Q') {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            started = true;
            pending.drain(..total);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// Each operation is one round trip after warm-up (counted at the socket as Sync messages),
/// and one request in the store's stats; the pool adds none per checkout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_round_trip_per_operation() {
    let shared = shared_url("OAS_TEST_POSTGRES_URL");
    let port: u16 = shared
        .rsplit_once('@')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|hp| hp.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
        .expect("port in OAS_TEST_POSTGRES_URL");
    let proxy = SyncCounter::start(port);
    let schema = unique("rt");
    let url = format!(
        "postgres://oas_test:oas-pg-secret@127.0.0.1:{}/oas_test?sslmode=disable&schema={schema}&pool_size=1&ttl=60",
        proxy.port
    );
    let store = Store::open(&url).await.unwrap();
    let session = store.session("rt").unwrap();
    let items = || vec![item(json!({"role": "user", "n": 1})), item(json!({"n": 2}))];
    let tx = openai_agents_session::history::HistoryTransaction::append_items(items());
    let replace = |from: Vec<Item>| {
        openai_agents_session::history::HistoryTransaction::replace_suffix(
            from,
            vec![item(json!({"r": 1}))],
        )
    };
    // Warm-up: every statement prepared once on the one connection.
    let warm = async {
        session.add_items(items()).await.unwrap();
        session.get_items(Some(1)).await.unwrap();
        session.get_items(None).await.unwrap();
        session.pop_item().await.unwrap();
        store.session_info("rt").await.unwrap();
        store
            .list_sessions(&ListOptions::default().prefix("r"))
            .await
            .unwrap();
        session
            .apply_history_transaction("warm", &tx)
            .await
            .unwrap();
        session
            .apply_history_transaction("warm2", &replace(vec![item(json!({"n": 2}))]))
            .await
            .unwrap();
        let lease = store
            .acquire_lease("rt", "me", Duration::from_secs(5), None)
            .await
            .unwrap();
        store
            .renew_lease("rt", lease.token, Duration::from_secs(5))
            .await
            .unwrap();
        store.lease_info("rt").await.unwrap();
        let fenced = session.fenced(lease.token);
        fenced.add_items(items()).await.unwrap();
        store.release_lease("rt", lease.token).await.unwrap();
        session.clear_session().await.unwrap();
        store.prune().await.unwrap();
    };
    warm.await;
    let mut costs: Vec<(&str, u64, u64)> = Vec::new();
    macro_rules! cost {
        ($name:expr, $e:expr) => {{
            let (s0, r0) = (proxy.count(), store.stats().total_requests());
            let v = $e;
            costs.push((
                $name,
                proxy.count() - s0,
                store.stats().total_requests() - r0,
            ));
            v
        }};
    }
    cost!("add_items", session.add_items(items()).await.unwrap());
    cost!(
        "get_items(Some(1))",
        session.get_items(Some(1)).await.unwrap()
    );
    cost!("get_items(None)", session.get_items(None).await.unwrap());
    cost!("pop_item", session.pop_item().await.unwrap());
    cost!("session_info", store.session_info("rt").await.unwrap());
    cost!(
        "list_sessions",
        store
            .list_sessions(&ListOptions::default().prefix("r"))
            .await
            .unwrap()
    );
    cost!(
        "apply append_items",
        session.apply_history_transaction("a1", &tx).await.unwrap()
    );
    cost!(
        "apply replace_suffix",
        session
            .apply_history_transaction("a2", &replace(vec![item(json!({"n": 2}))]))
            .await
            .unwrap()
    );
    let lease = cost!(
        "acquire_lease",
        store
            .acquire_lease("rt", "me", Duration::from_secs(5), None)
            .await
            .unwrap()
    );
    cost!(
        "renew_lease",
        store
            .renew_lease("rt", lease.token, Duration::from_secs(5))
            .await
            .unwrap()
    );
    cost!("lease_info", store.lease_info("rt").await.unwrap());
    let fenced = session.fenced(lease.token);
    cost!("fenced add_items", fenced.add_items(items()).await.unwrap());
    cost!("fenced pop_item", fenced.pop_item().await.unwrap());
    cost!(
        "release_lease",
        store.release_lease("rt", lease.token).await.unwrap()
    );
    cost!("clear_session", session.clear_session().await.unwrap());
    cost!("prune", store.prune().await.unwrap());
    for (name, syncs, requests) in &costs {
        eprintln!("round trips: {name}: {syncs} at the socket, {requests} counted");
        assert_eq!(*syncs, 1, "{name}: {syncs} round trips at the socket");
        assert_eq!(*requests, 1, "{name}: {requests} requests counted");
    }
}

/// `get_items(Some(n))` reads through the (session, seq) index: the plan of its statement
/// inside the function is an index scan, whatever the history's length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_items_come_from_the_index() {
    let schema = unique("idx");
    let url = url_in_schema("OAS_TEST_POSTGRES_URL", &schema);
    let store = Store::open(&url).await.unwrap();
    let session = store.session("long").unwrap();
    let mut staged = store
        .stage("long", openai_agents_session::StageMode::Append, None)
        .await
        .unwrap();
    for chunk in 0..100 {
        let batch: Vec<Item> = (0..1000)
            .map(|i| item(json!({"i": chunk * 1000 + i})))
            .collect();
        staged.append(batch).await.unwrap();
    }
    staged.commit().await.unwrap();
    let db = admin(&url).await;
    db.batch_execute(&format!("ANALYZE \"{schema}\".oas_items"))
        .await
        .unwrap();
    let t0 = Instant::now();
    let newest = session.get_items(Some(20)).await.unwrap();
    let long = t0.elapsed();
    assert_eq!(newest.len(), 20);
    assert_eq!(newest[19].to_value()["i"], json!(99_999));
    let plan = db
        .query(
            &format!(
                "EXPLAIN SELECT seq, record FROM \"{schema}\".oas_items WHERE session = 1 AND seq < 9223372036854775807 ORDER BY seq DESC LIMIT 20"
            ),
            &[],
        )
        .await
        .unwrap();
    let plan: Vec<String> = plan.iter().map(|r| r.get::<_, String>(0)).collect();
    assert!(
        plan.iter().any(|l| l.contains("Index Scan Backward")),
        "{plan:#?}"
    );
    eprintln!("get_items(Some(20)) on 100,000 items: {long:?}");
}

// ------------------------------------------------------------------------- concurrency ---

/// 32 writers x 500 items in batches of 1-5 into one session across 8 connections: nothing
/// lost, nothing duplicated, each batch contiguous, each writer's items in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_nothing() {
    let url = with_option(
        &url_in_schema("OAS_TEST_POSTGRES_URL", &unique("conc")),
        "pool_size=8",
    );
    let store = Store::open(&url).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..32u64 {
        let session = store.session("shared").unwrap();
        tasks.push(tokio::spawn(async move {
            let (mut i, mut batch) = (0u64, 0u64);
            while i < 500 {
                let n = (1 + (w + batch) % 5).min(500 - i);
                let items: Vec<Item> = (i..i + n)
                    .map(|k| item(json!({"w": w, "i": k, "b": batch})))
                    .collect();
                session.add_items(items).await.unwrap();
                i += n;
                batch += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = store
        .session("shared")
        .unwrap()
        .get_items(None)
        .await
        .unwrap();
    assert_eq!(all.len(), 32 * 500, "items lost or duplicated");
    let values: Vec<serde_json::Value> = all.iter().map(Item::to_value).collect();
    let mut next: HashMap<u64, u64> = HashMap::new();
    for v in &values {
        let (w, i) = (v["w"].as_u64().unwrap(), v["i"].as_u64().unwrap());
        let want = next.entry(w).or_insert(0);
        assert_eq!(i, *want, "writer {w} out of order or duplicated");
        *want += 1;
    }
    // Contiguous batches: a (writer, batch) pair never reappears after another pair.
    let mut seen = std::collections::HashSet::new();
    let mut last = None;
    for v in &values {
        let key = (v["w"].as_u64().unwrap(), v["b"].as_u64().unwrap());
        if last != Some(key) {
            assert!(seen.insert(key), "batch {key:?} split by another writer");
            last = Some(key);
        }
    }
    let info = store.session_info("shared").await.unwrap().unwrap();
    assert_eq!(info.item_count, 16_000);
}

/// 16 poppers on 2,000 items: each item popped at most once, all of them popped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pops_return_each_item_at_most_once() {
    let url = with_option(
        &url_in_schema("OAS_TEST_POSTGRES_URL", &unique("pops")),
        "pool_size=8",
    );
    let store = Store::open(&url).await.unwrap();
    let session = store.session("pops").unwrap();
    for chunk in 0..4 {
        let batch: Vec<Item> = (0..500)
            .map(|i| item(json!({"i": chunk * 500 + i})))
            .collect();
        session.add_items(batch).await.unwrap();
    }
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let session = store.session("pops").unwrap();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(item) = session.pop_item().await.unwrap() {
                got.push(item.to_value()["i"].as_u64().unwrap());
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (0..2000).collect::<Vec<u64>>());
}

// ------------------------------------------------------------------------------ bad input ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_certificates_hosts_options_and_tables_are_named() {
    let url = shared_url("OAS_TEST_POSTGRES_URL");
    // Wrong password: a Config error naming the credentials, never the password.
    let wrong = url.replace("oas-pg-secret", "not-the-password");
    let err = Store::open(&wrong).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("password"), "{err}");
    assert!(!err.to_string().contains("not-the-password"), "{err}");
    // A password given as an option is accepted, and hidden as userinfo is.
    let as_option = url
        .replace(":oas-pg-secret@", "@")
        .replace("sslmode=disable", "sslmode=disable&password=oas-pg-secret");
    Store::open(&with_option(
        &as_option,
        &format!("schema={}", unique("pwopt")),
    ))
    .await
    .unwrap();
    let err = Store::open(&with_option(&as_option, "bogus=1"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"bogus\""), "{err}");
    assert!(!err.to_string().contains("oas-pg-secret"), "{err}");
    // The wrong CA: verify-full fails naming TLS.
    let tls = shared_url("OAS_TEST_POSTGRES_TLS_URL");
    let ca = shared_url("OAS_TEST_POSTGRES_CA");
    let other = shared_url("OAS_TEST_POSTGRES_OTHER_CA");
    let err = Store::open(&tls.replace(&ca, &other)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("TLS"), "{err}");
    // verify-full checks the host name: the certificate is for localhost and 127.0.0.1 only.
    let err = Store::open(&tls.replace("@localhost:", "@127.0.0.2:"))
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Config | ErrorKind::Connection),
        "{err}"
    );
    // A missing CA file.
    let err = Store::open(&tls.replace(&ca, "/nonexistent/ca.pem"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("sslrootcert"), "{err}");
    // An unreachable host: a Connection error within connect_timeout.
    let t0 = Instant::now();
    let err = Store::open("postgres://u:p@127.0.0.1:1/db?sslmode=disable&connect_timeout=1")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    // Unknown options and bad values are named.
    for (option, needle) in [
        ("frob=1", "frob"),
        ("sslmode=sometimes", "sslmode"),
        ("schema=a-b", "schema"),
    ] {
        let err = Store::open(&with_option(&url, option)).await.unwrap_err();
        assert!(err.to_string().contains(needle), "{option}: {err}");
    }
    // A table of the wrong shape.
    let schema = unique("shape");
    let db = admin(&url).await;
    db.batch_execute(&format!(
        "CREATE SCHEMA \"{schema}\"; CREATE TABLE \"{schema}\".oas_sessions (id integer, name text)"
    ))
    .await
    .unwrap();
    let err = Store::open(&with_option(&url, &format!("schema={schema}")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(
        err.to_string().contains("oas_sessions") && err.to_string().contains("wrong shape"),
        "{err}"
    );
    // A newer schema version than this build knows.
    let schema = unique("newer");
    let store_url = with_option(&url, &format!("schema={schema}"));
    Store::open(&store_url).await.unwrap();
    db.batch_execute(&format!(
        "INSERT INTO \"{schema}\".oas_schema_version (version) VALUES (99)"
    ))
    .await
    .unwrap();
    let err = Store::open(&store_url).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedFormat, "{err}");
    assert!(err.to_string().contains("99"), "{err}");
}

/// Ids with LIKE's wildcards list by their literal prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_by_literal_prefix() {
    let url = url_in_schema("OAS_TEST_POSTGRES_URL", &unique("list"));
    let store = Store::open(&url).await.unwrap();
    for id in ["a%b", "a%bc", "axb", "a_b", "aab", "a\u{0}b", "é1"] {
        store
            .session(id)
            .unwrap()
            .add_items(vec![item(json!({"x": 1}))])
            .await
            .unwrap();
    }
    for (prefix, want) in [
        ("a%", vec!["a%b", "a%bc"]),
        ("a_", vec!["a_b"]),
        ("a\u{0}", vec!["a\u{0}b"]),
        ("é", vec!["é1"]),
    ] {
        assert_eq!(
            store.list_all_sessions(Some(prefix)).await.unwrap(),
            want,
            "{prefix:?}"
        );
    }
}

// ---------------------------------------------------------------------------------- faults ---

fn typed_outage(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Connection | ErrorKind::OutcomeUnknown | ErrorKind::Timeout
    )
}

/// SIGKILL of the whole server mid-load, then a restart: typed errors during the outage,
/// success again within 5 s of the server answering, no partial batch, nothing acknowledged
/// lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn survives_kill_and_restart() {
    let server = OwnPostgres::start("kill");
    let url = server.url("connect_timeout=1&response_timeout=2&pool_size=4");
    let store = Store::open(&url).await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let session = store.session("load").unwrap();
        let stop = Arc::clone(&stop);
        writers.push(tokio::spawn(async move {
            let (mut acked, mut unknown, mut errors) = (Vec::new(), Vec::new(), Vec::new());
            let mut b = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let batch: Vec<Item> = (0..3)
                    .map(|i| item(json!({"w": w, "b": b, "i": i})))
                    .collect();
                match session.add_items(batch).await {
                    Ok(()) => acked.push(b),
                    Err(e) if e.kind() == ErrorKind::OutcomeUnknown => unknown.push(b),
                    Err(e) => {
                        assert!(
                            typed_outage(e.kind()),
                            "untyped error during the outage: {e}"
                        );
                        errors.push(b);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                b += 1;
            }
            (w, acked, unknown, errors)
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.restart();
    let answering = Instant::now();
    // Success again within 5 s of the server answering.
    let probe = store.session("probe").unwrap();
    let recovered = loop {
        match probe.add_items(vec![item(json!({"p": 1}))]).await {
            Ok(()) => break answering.elapsed(),
            Err(e) => {
                assert!(typed_outage(e.kind()), "{e}");
                assert!(
                    answering.elapsed() < Duration::from_secs(5),
                    "not recovered: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let all = store
        .session("load")
        .unwrap()
        .get_items(None)
        .await
        .unwrap();
    let mut batches: HashMap<(u64, u64), u64> = HashMap::new();
    for v in all.iter().map(Item::to_value) {
        *batches
            .entry((v["w"].as_u64().unwrap(), v["b"].as_u64().unwrap()))
            .or_insert(0) += 1;
    }
    let (mut acked_total, mut unknown_total, mut failed_total) = (0, 0, 0);
    for t in writers {
        let (w, acked, unknown, errors) = t.await.unwrap();
        for b in &acked {
            assert_eq!(
                batches.get(&(w, *b)),
                Some(&3),
                "acknowledged batch ({w}, {b}) lost"
            );
        }
        for b in &errors {
            assert_eq!(
                batches.get(&(w, *b)),
                None,
                "a failed batch ({w}, {b}) was written"
            );
        }
        acked_total += acked.len();
        unknown_total += unknown.len();
        failed_total += errors.len();
    }
    assert!(
        batches.values().all(|n| *n == 3),
        "a partial batch: {batches:?}"
    );
    eprintln!(
        "kill -9 mid-load: {acked_total} batches acknowledged (all present), {unknown_total} outcome unknown, \
         {failed_total} failed cleanly; writes succeed again {recovered:?} after the server answers"
    );
}

/// pg_terminate_backend of our idle connections: the next calls reconnect transparently; a
/// write in flight on a terminated connection is OutcomeUnknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terminated_connections_reconnect_and_in_flight_writes_are_unknown() {
    let server = OwnPostgres::start("term");
    let app = unique("term");
    let url = server.url(&format!("application_name={app}&pool_size=4"));
    let store = Store::open(&url).await.unwrap();
    let session = store.session("t").unwrap();
    // Fill the pool with connections.
    let mut warm = Vec::new();
    for i in 0..8 {
        let s = store.session("t").unwrap();
        warm.push(tokio::spawn(async move {
            s.add_items(vec![item(json!({"warm": i}))]).await.unwrap();
        }));
    }
    for w in warm {
        w.await.unwrap();
    }
    let db = admin(&server.url("")).await;
    let terminate = format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{app}'"
    );
    let n: i64 = db.query_one(&terminate, &[]).await.unwrap().get(0);
    assert!(n >= 1, "no connection of ours to terminate");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Transparent: reads and writes go on fresh connections.
    session
        .add_items(vec![item(json!({"after": 1}))])
        .await
        .unwrap();
    assert_eq!(session.get_items(None).await.unwrap().len(), 9);
    let n2: i64 = db.query_one(&terminate, &[]).await.unwrap().get(0);
    assert!(n2 >= 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(session.get_items(Some(1)).await.unwrap().len(), 1);
    // A write in flight: held behind a row lock, then its connection terminated.
    let mut locker = admin(&server.url("")).await;
    let tx = locker.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM public.oas_sessions WHERE session_id = $1 FOR UPDATE",
        &[&"t".as_bytes()],
    )
    .await
    .unwrap();
    let writer = store.session("t").unwrap();
    let write =
        tokio::spawn(async move { writer.add_items(vec![item(json!({"in_flight": 1}))]).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed: i64 = db
        .query_one(
            &format!("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{app}' AND wait_event_type = 'Lock'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    let err = write.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    tx.rollback().await.unwrap();
    // And the store goes on.
    session
        .add_items(vec![item(json!({"later": 1}))])
        .await
        .unwrap();
}

/// A stopped server (SIGSTOP): reads fail with Timeout and writes with OutcomeUnknown within
/// response_timeout; after SIGCONT the store works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_server_is_a_typed_timeout() {
    let server = OwnPostgres::start("stop");
    let store = Store::open(&server.url("response_timeout=1&connect_timeout=1"))
        .await
        .unwrap();
    let session = store.session("s").unwrap();
    // Two connections in the pool, each with its statements prepared.
    let other = store.session("s").unwrap();
    let (a, b) = tokio::join!(
        session.add_items(vec![item(json!({"a": 1}))]),
        other.add_items(vec![item(json!({"a": 2}))])
    );
    a.unwrap();
    b.unwrap();
    let pids = server.processes();
    server.signal(&pids, "-STOP");
    let t0 = Instant::now();
    // A write sent on a live connection that gets no answer: OutcomeUnknown.
    let err = session
        .add_items(vec![item(json!({"b": 1}))])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    // A read: Timeout.
    let read = session.get_items(None).await.unwrap_err();
    assert_eq!(read.kind(), ErrorKind::Timeout, "{read}");
    let elapsed = t0.elapsed();
    assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");
    server.signal(&pids, "-CONT");
    let t1 = Instant::now();
    loop {
        match session.get_items(None).await {
            Ok(items) => {
                assert!(!items.is_empty());
                break;
            }
            Err(e) => {
                assert!(typed_outage(e.kind()), "{e}");
                assert!(t1.elapsed() < Duration::from_secs(10), "{e}");
            }
        }
    }
    eprintln!(
        "SIGSTOP: read Timeout and write {:?} within {elapsed:?}",
        err.kind()
    );
}

// ------------------------------------------------------------------------------ migration ---

/// The tables `SQLAlchemySession` creates on PostgreSQL (its DDL, as SQLAlchemy emits it),
/// written as it writes (`json.dumps` with `ensure_ascii`): read in `created_at, id` order
/// through `layout=openai-agents`, equal as JSON, and copied into the native layout in one
/// `copy_sessions`. (The Python suite does the same with the real SQLAlchemySession.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_sdk_sqlalchemy_tables_copy_in_one_command() {
    let url = shared_url("OAS_TEST_POSTGRES_URL");
    let schema = unique("sa");
    let db = admin(&url).await;
    db.batch_execute(&format!(
        "CREATE SCHEMA \"{schema}\";
         SET search_path TO \"{schema}\";
         CREATE TABLE my_sessions (session_id VARCHAR NOT NULL,
             created_at TIMESTAMP WITHOUT TIME ZONE DEFAULT CURRENT_TIMESTAMP NOT NULL,
             updated_at TIMESTAMP WITHOUT TIME ZONE DEFAULT CURRENT_TIMESTAMP NOT NULL,
             PRIMARY KEY (session_id));
         CREATE TABLE my_messages (id SERIAL NOT NULL, session_id VARCHAR NOT NULL,
             message_data TEXT NOT NULL,
             created_at TIMESTAMP WITHOUT TIME ZONE DEFAULT CURRENT_TIMESTAMP NOT NULL,
             PRIMARY KEY (id),
             FOREIGN KEY(session_id) REFERENCES my_sessions (session_id) ON DELETE CASCADE);
         CREATE INDEX idx_my_messages_session_time ON my_messages (session_id, created_at);
         INSERT INTO my_sessions (session_id) VALUES ('u:1'), ('u:2'), ('other');
         INSERT INTO my_messages (session_id, message_data, created_at) VALUES
           ('u:1', '{{\"role\": \"user\", \"content\": \"caf\\u00e9 \\ud83d\\ude00\"}}', '2026-01-01 00:00:01'),
           ('u:1', '{{\"role\": \"assistant\", \"n\": 2}}', '2026-01-01 00:00:01'),
           ('u:1', 'not json', '2026-01-01 00:00:02'),
           ('u:1', '{{\"late\": true}}', '2026-01-01 00:00:03'),
           ('u:2', '{{\"x\": 1}}', '2026-01-01 00:00:00');"
    ))
    .await
    .unwrap();
    let legacy_url = with_option(
        &url,
        &format!("schema={schema}&layout=openai-agents&sessions_table=my_sessions&messages_table=my_messages"),
    );
    let legacy = Store::open(&legacy_url).await.unwrap();
    let got: Vec<serde_json::Value> = legacy
        .session("u:1")
        .unwrap()
        .get_items(None)
        .await
        .unwrap()
        .iter()
        .map(Item::to_value)
        .collect();
    assert_eq!(
        got,
        vec![
            json!({"role": "user", "content": "café 😀"}),
            json!({"role": "assistant", "n": 2}),
            json!({"late": true}),
        ]
    );
    let newest = legacy
        .session("u:1")
        .unwrap()
        .get_items(Some(1))
        .await
        .unwrap();
    assert_eq!(newest[0].to_value(), json!({"late": true}));
    assert_eq!(
        legacy.list_all_sessions(Some("u:")).await.unwrap(),
        vec!["u:1", "u:2"]
    );
    assert_eq!(
        legacy
            .session_info("u:1")
            .await
            .unwrap()
            .unwrap()
            .item_count,
        4
    );
    let err = legacy
        .session("u:1")
        .unwrap()
        .add_items(vec![item(json!({"a": 1}))])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("read-only"), "{err}");
    // Missing tables are named.
    let err = Store::open(&with_option(
        &url,
        &format!("schema={schema}&layout=openai-agents"),
    ))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("agent_sessions"), "{err}");
    // Upgrade in one copy.
    let target = Store::open(&with_option(&url, &format!("schema={schema}_native")))
        .await
        .unwrap();
    let summary = openai_agents_session::transfer::copy_sessions(
        &legacy,
        &target,
        &openai_agents_session::transfer::CopyOptions::default(),
        &mut |_| {},
    )
    .await
    .unwrap();
    eprintln!("copied: {summary:?}");
    let copied: Vec<serde_json::Value> = target
        .session("u:1")
        .unwrap()
        .get_items(None)
        .await
        .unwrap()
        .iter()
        .map(Item::to_value)
        .collect();
    assert_eq!(copied, got);
    let listed = target.list_all_sessions(Some("u:")).await.unwrap();
    assert_eq!(listed, vec!["u:1", "u:2"]);
}
