//! Two OS processes on one PostgreSQL session (the shared server, `OAS_TEST_POSTGRES_URL`, in a
//! schema of this run's own, dropped at the end):
//!
//! `two_processes_write_batches_then_pop_each_item_once`:
//!
//! * each process runs 8 writers x 250 items in batches of 1-5 into one session, on its own
//!   pool of 4 connections, both released at once: none fails, 4,000 items, none lost or
//!   duplicated, each batch contiguous, each writer's items in its order, the two processes'
//!   batches interleaved;
//! * then both processes pop that session empty at once (4 tasks each): every item is popped
//!   exactly once over the two, and each process popped some (they did race).
//!
//! A test binary without the libtest harness: run with no child environment it is the parent,
//! which re-executes itself as the children (`OAS_TEST_PG_CHILD=role|url|process`). A child
//! opens its store, says `ready` on stdout and waits for `go` on stdin, so that both start
//! together; a popping child prints what it popped as one JSON line.

mod support;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, ExitCode, Stdio};

use openai_agents_session::{Item, Session, Store};
use serde_json::{json, Value};

const CHILD_ENV: &str = "OAS_TEST_PG_CHILD";
const PROCESSES: u64 = 2;
const WRITERS: u64 = 8;
const ITEMS_PER_WRITER: u64 = 250;
const POPPERS: usize = 4;
const SESSION: &str = "two-processes";

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        runtime.block_on(child(&spec));
        return ExitCode::SUCCESS;
    }
    // One test (the pops pop what the writes wrote). cargo-nextest's custom-harness protocol:
    // `--list --format terse` prints `name: test` lines (none for `--ignored`), then the test
    // runs as `<name> --exact --nocapture`; `cargo test -- <filter>` matches substrings.
    const TEST: &str = "two_processes_write_batches_then_pop_each_item_once";
    let all: Vec<String> = std::env::args().skip(1).collect();
    if all.iter().any(|a| a == "--list") {
        if !all.iter().any(|a| a == "--ignored") {
            println!("{TEST}: test");
        }
        return ExitCode::SUCCESS;
    }
    let exact = all.iter().any(|a| a == "--exact");
    let args: Vec<&String> = all.iter().filter(|a| !a.starts_with('-')).collect();
    let wanted = |a: &&String| {
        if exact {
            TEST == a.as_str()
        } else {
            TEST.contains(a.as_str())
        }
    };
    if !args.is_empty() && !args.iter().any(wanted) {
        println!("0 passed, 0 failed (no test matches {args:?})");
        return ExitCode::SUCCESS;
    }
    runtime.block_on(parent());
    println!("test {TEST} ... ok");
    println!("1 passed, 0 failed");
    ExitCode::SUCCESS
}

fn item(v: Value) -> Item {
    Item::from_value(v).expect("an object")
}

async fn child(spec: &str) {
    let mut parts = spec.splitn(3, '|');
    let (role, url, process) = (
        parts.next().expect("role"),
        parts.next().expect("url"),
        parts
            .next()
            .expect("process")
            .parse::<u64>()
            .expect("number"),
    );
    let store = Store::open(url).await.expect("open");
    // Warm: a connection up and the statement prepared before the start signal.
    store
        .session(SESSION)
        .expect("session")
        .get_items(Some(1))
        .await
        .expect("get_items");
    println!("ready");
    std::io::stdout().flush().expect("stdout");
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).expect("stdin");
    assert_eq!(go.trim(), "go");
    match role {
        "write" => {
            let mut tasks = Vec::new();
            for w in 0..WRITERS {
                let session = store.session(SESSION).expect("session");
                tasks.push(tokio::spawn(async move {
                    let (mut i, mut batch) = (0u64, 0u64);
                    while i < ITEMS_PER_WRITER {
                        let n = (1 + (w + batch + process) % 5).min(ITEMS_PER_WRITER - i);
                        let items: Vec<Item> = (i..i + n)
                            .map(|k| item(json!({"p": process, "w": w, "i": k, "b": batch})))
                            .collect();
                        session.add_items(items).await.expect("add_items");
                        i += n;
                        batch += 1;
                    }
                }));
            }
            for t in tasks {
                t.await.expect("writer task");
            }
        }
        "pop" => {
            let mut tasks = Vec::new();
            for _ in 0..POPPERS {
                let session = store.session(SESSION).expect("session");
                tasks.push(tokio::spawn(async move {
                    let mut got = Vec::new();
                    while let Some(popped) = session.pop_item().await.expect("pop_item") {
                        let v = popped.to_value();
                        got.push(json!([v["p"], v["w"], v["i"]]));
                    }
                    got
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.expect("popper task"));
            }
            println!("{}", Value::Array(all));
        }
        other => panic!("unknown role {other}"),
    }
}

/// Starts one child per process, waits until each is ready, releases them together and
/// returns each one's stdout lines after `ready`.
fn run_together(role: &str, url: &str) -> Vec<Vec<String>> {
    let exe = std::env::current_exe().expect("current exe");
    let mut children: Vec<(Child, BufReader<std::process::ChildStdout>)> = (0..PROCESSES)
        .map(|p| {
            let mut child = Command::new(&exe)
                .env(CHILD_ENV, format!("{role}|{url}|{p}"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn child");
            let out = BufReader::new(child.stdout.take().expect("stdout"));
            (child, out)
        })
        .collect();
    for (_, out) in &mut children {
        let mut line = String::new();
        out.read_line(&mut line).expect("read ready");
        assert_eq!(line.trim(), "ready", "a {role} child did not start");
    }
    for (child, _) in &mut children {
        let stdin = child.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").expect("go");
        stdin.flush().expect("flush");
    }
    children
        .into_iter()
        .map(|(mut child, out)| {
            let lines: Vec<String> = out.lines().map(|l| l.expect("line")).collect();
            let status = child.wait().expect("wait");
            assert!(status.success(), "a {role} child failed: {status}");
            lines
        })
        .collect()
}

async fn parent() {
    let base = support::shared_url("OAS_TEST_POSTGRES_URL");
    let schema = format!("procs_{}", std::process::id());
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}schema={schema}&pool_size=4");
    let store = Store::open(&url)
        .await
        .expect("open (installs the schema once)");
    let session = store.session(SESSION).expect("session");
    session.clear_session().await.expect("clear");

    run_together("write", &url);
    let all = session.get_items(None).await.expect("get_items");
    let total = (PROCESSES * WRITERS * ITEMS_PER_WRITER) as usize;
    assert_eq!(all.len(), total, "items lost or duplicated");
    let values: Vec<Value> = all.iter().map(Item::to_value).collect();
    let mut next: HashMap<(u64, u64), u64> = HashMap::new();
    for v in &values {
        let key = (v["p"].as_u64().unwrap(), v["w"].as_u64().unwrap());
        let want = next.entry(key).or_insert(0);
        assert_eq!(
            v["i"].as_u64().unwrap(),
            *want,
            "writer {key:?} out of order or duplicated"
        );
        *want += 1;
    }
    assert_eq!(next.len(), (PROCESSES * WRITERS) as usize);
    // Contiguous batches: a (process, writer, batch) never reappears after another one.
    let mut seen = HashSet::new();
    let mut last = None;
    let mut switches_between_processes = 0;
    for v in &values {
        let key = (
            v["p"].as_u64().unwrap(),
            v["w"].as_u64().unwrap(),
            v["b"].as_u64().unwrap(),
        );
        if last != Some(key) {
            assert!(seen.insert(key), "batch {key:?} split by another writer");
            if last.is_some_and(|(p, _, _)| p != key.0) {
                switches_between_processes += 1;
            }
            last = Some(key);
        }
    }
    // The two processes' batches interleave: they wrote at the same time.
    assert!(
        switches_between_processes > 2,
        "the processes did not overlap ({switches_between_processes} switches)"
    );
    let info = store
        .session_info(SESSION)
        .await
        .expect("info")
        .expect("live");
    assert_eq!(info.item_count, total as u64);
    eprintln!(
        "two processes: {total} items in {} batches, {switches_between_processes} switches between processes",
        seen.len()
    );

    let outputs = run_together("pop", &url);
    let mut popped: Vec<(u64, u64, u64)> = Vec::new();
    for (p, lines) in outputs.iter().enumerate() {
        let line = lines
            .last()
            .expect("a popping child printed what it popped");
        let got: Vec<(u64, u64, u64)> = serde_json::from_str(line).expect("json");
        assert!(
            !got.is_empty(),
            "process {p} popped nothing: the pops did not race"
        );
        eprintln!("process {p} popped {}", got.len());
        popped.extend(got);
    }
    let unique: HashSet<_> = popped.iter().copied().collect();
    assert_eq!(unique.len(), popped.len(), "an item was popped twice");
    assert_eq!(popped.len(), total, "not every item was popped");
    assert!(session.get_items(None).await.expect("get").is_empty());
    assert!(session.pop_item().await.expect("pop").is_none());

    // Clean up: the schema of this run.
    drop(store);
    let admin = format!("{}?sslmode=disable", base.split('?').next().unwrap());
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .expect("connect to drop the schema");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .expect("drop the schema");
}
