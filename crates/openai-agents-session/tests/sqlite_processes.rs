//! Several OS processes on one SQLite file:
//!
//! * `four_processes_lose_nothing`: four processes each make 500 single-item `add_items` calls
//!   on one session: none fails, none is lost, each writer's items stay in its order.
//! * `a_stalled_holder_is_fenced_after_takeover`: a lease holder process SIGSTOPped past its
//!   ttl, a second process taking the lease over and writing, the first resumed: its next
//!   fenced write fails `Fenced`, and the history holds only the second's writes after the
//!   takeover (`support/takeover.rs`).
//!
//! A test binary without the libtest harness: run with no environment it is the parent, which
//! re-executes itself as the children (`OAS_TEST_CHILD_WRITER=url|writer`,
//! `OAS_TEST_LEASE_CHILD=role|url|session`).

mod support;

use std::collections::HashMap;
use std::process::{Command, ExitCode};

use openai_agents_session::{Item, Session, Store};
use support::takeover;

const CHILD_ENV: &str = "OAS_TEST_CHILD_WRITER";
const PROCESSES: usize = 4;
const ADDS_PER_PROCESS: u64 = 500;

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        runtime.block_on(child(&spec));
        return ExitCode::SUCCESS;
    }
    if let Ok(spec) = std::env::var(takeover::CHILD_ENV) {
        runtime.block_on(takeover::child(&spec));
        return ExitCode::SUCCESS;
    }
    const TESTS: [&str; 2] = [
        "four_processes_lose_nothing",
        "a_stalled_holder_is_fenced_after_takeover",
    ];
    let all: Vec<String> = std::env::args().skip(1).collect();
    // cargo-nextest's custom-harness protocol: `--list --format terse` prints `name: test`
    // lines (none for `--ignored`), then each test runs as `<name> --exact --nocapture`.
    if all.iter().any(|a| a == "--list") {
        if !all.iter().any(|a| a == "--ignored") {
            for name in TESTS {
                println!("{name}: test");
            }
        }
        return ExitCode::SUCCESS;
    }
    let exact = all.iter().any(|a| a == "--exact");
    // `cargo test -- <filter>` passes arguments; run only the tests named (all without one).
    let args: Vec<&String> = all.iter().filter(|a| !a.starts_with('-')).collect();
    let mut passed = 0;
    for name in TESTS {
        let wanted = |a: &&String| {
            if exact {
                name == a.as_str()
            } else {
                name.contains(a.as_str())
            }
        };
        if !args.is_empty() && !args.iter().any(wanted) {
            continue;
        }
        match name {
            "four_processes_lose_nothing" => runtime.block_on(parent()),
            _ => runtime.block_on(stalled_holder()),
        }
        println!("test {name} ... ok");
        passed += 1;
    }
    println!("{passed} passed, 0 failed");
    ExitCode::SUCCESS
}

async fn child(spec: &str) {
    let (url, writer) = spec.split_once('|').expect("url|writer");
    let store = Store::open(url).await.expect("open");
    let session = store.session("shared").expect("session");
    for n in 0..ADDS_PER_PROCESS {
        let item: Item = format!(r#"{{"writer":{writer},"n":{n}}}"#)
            .parse()
            .expect("item");
        session.add_items(vec![item]).await.expect("add_items");
    }
}

async fn parent() {
    let dir = tempfile::Builder::new()
        .prefix("oas-processes-")
        .tempdir()
        .unwrap();
    let url = format!("sqlite://{}/shared.db", dir.path().display());
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|w| {
            Command::new(&exe)
                .env(CHILD_ENV, format!("{url}|{w}"))
                .spawn()
                .unwrap()
        })
        .collect();
    let failures = children
        .into_iter()
        .map(|mut c| c.wait().unwrap())
        .filter(|status| !status.success())
        .count();
    assert_eq!(failures, 0, "child writer processes failed");
    let store = Store::open(&url).await.unwrap();
    let items = store
        .session("shared")
        .unwrap()
        .get_items(None)
        .await
        .unwrap();
    assert_eq!(
        items.len(),
        PROCESSES * ADDS_PER_PROCESS as usize,
        "items lost"
    );
    let mut next: HashMap<u64, u64> = HashMap::new();
    for item in &items {
        let v = item.to_value();
        let (w, n) = (v["writer"].as_u64().unwrap(), v["n"].as_u64().unwrap());
        let expected = next.entry(w).or_insert(0);
        assert_eq!(n, *expected, "writer {w}'s items in order, none duplicated");
        *expected += 1;
    }
    assert_eq!(next.len(), PROCESSES);
}

async fn stalled_holder() {
    let dir = tempfile::Builder::new()
        .prefix("oas-takeover-")
        .tempdir()
        .unwrap();
    let url = format!("sqlite://{}/shared.db", dir.path().display());
    let exe = std::env::current_exe().unwrap();
    let figures = takeover::run(&url, "leased", |spec| {
        let mut command = Command::new(&exe);
        command.env(takeover::CHILD_ENV, spec);
        command
    })
    .await;
    println!("sqlite takeover: {figures}");
}
