//! SQLite-specific behaviour: the layout version, pruning, options, transactions per operation.
//! (Several OS processes writing one session: `tests/sqlite_processes.rs`.)
#![cfg(feature = "sqlite")]

use openai_agents_session::{ErrorKind, Item, Operation, Session, Store};

/// Removed when dropped, also when the test fails.
fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("oas-sqlite-{name}-"))
        .tempdir()
        .unwrap()
}

#[tokio::test]
async fn newer_layout_version_is_a_clear_error() {
    let dir = temp_dir("layout");
    let path = dir.path().join("s.db");
    let url = format!("sqlite://{}", path.display());
    Store::open(&url).await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE oas_meta SET value = '99' WHERE key = 'layout_version'",
        [],
    )
    .unwrap();
    drop(conn);
    let err = Store::open(&url).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedFormat);
    assert_eq!(err.operation(), Operation::Open);
    assert!(err.to_string().contains("99"), "{err}");
}

#[tokio::test]
async fn prune_deletes_expired_rows_only() {
    let dir = temp_dir("prune");
    let path = dir.path().join("s.db");
    let base = format!("sqlite://{}", path.display());
    let short = Store::open(&format!("{base}?ttl=1")).await.unwrap();
    let forever = Store::open(&base).await.unwrap();
    short
        .session("old")
        .unwrap()
        .add_items(vec![r#"{"a":1}"#.parse().unwrap()])
        .await
        .unwrap();
    forever
        .session("keep")
        .unwrap()
        .add_items(vec![r#"{"b":2}"#.parse().unwrap()])
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(forever.prune().await.unwrap().expired_sessions, 1);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM oas_items", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        rows, 1,
        "the expired session's rows are gone, the other's stay"
    );
    assert_eq!(forever.prune().await.unwrap().expired_sessions, 0);
    // Orphaned rows (a hand edit deleted a session row but not its items) go too.
    conn.execute("DELETE FROM oas_sessions WHERE session_id = 'keep'", [])
        .unwrap();
    let report = forever.prune().await.unwrap();
    assert_eq!(
        (report.expired_sessions, report.leftovers),
        (0, 1),
        "{report}"
    );
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM oas_items", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0, "the orphaned row is gone");
}

#[tokio::test]
async fn options_are_checked() {
    let dir = temp_dir("options");
    let base = format!("sqlite://{}/s.db", dir.path().display());
    for ok in [
        "synchronous=full",
        "synchronous=NORMAL",
        "busy_timeout_ms=100",
    ] {
        Store::open(&format!("{base}?{ok}")).await.unwrap();
    }
    for (bad, kind) in [
        ("synchronous=off", ErrorKind::InvalidInput),
        ("busy_timeout_ms=0", ErrorKind::InvalidInput),
        ("journal=delete", ErrorKind::Config),
    ] {
        let err = Store::open(&format!("{base}?{bad}")).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{bad}: {err}");
        assert!(
            err.to_string().contains(bad.split('=').next().unwrap()),
            "{err}"
        );
    }
    let err = Store::open("sqlite://").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[tokio::test]
async fn relative_and_percent_encoded_paths() {
    let dir = temp_dir("paths");
    let nested = dir.path().join("my dir");
    std::fs::create_dir_all(&nested).unwrap();
    let url = format!("sqlite://{}/my%20dir/s.db", dir.path().display());
    let store = Store::open(&url).await.unwrap();
    store
        .session("x")
        .unwrap()
        .add_items(vec![r#"{"a":1}"#.parse().unwrap()])
        .await
        .unwrap();
    assert!(nested.join("s.db").exists());
}

#[tokio::test]
async fn each_operation_is_one_transaction() {
    let dir = temp_dir("requests");
    let store = Store::open(&format!("sqlite://{}/s.db", dir.path().display()))
        .await
        .unwrap();
    let s = store.session("s").unwrap();
    let items: Vec<Item> = (0..100)
        .map(|n| format!(r#"{{"n":{n}}}"#).parse().unwrap())
        .collect();
    s.add_items(items).await.unwrap();
    s.get_items(Some(10)).await.unwrap();
    s.get_items(None).await.unwrap();
    s.pop_item().await.unwrap();
    s.clear_session().await.unwrap();
    let stats = store.stats();
    for op in [
        Operation::AddItems,
        Operation::PopItem,
        Operation::ClearSession,
    ] {
        assert_eq!(stats.requests(op), stats.calls(op), "{op}");
    }
    // get_items(Some(10)) is one read transaction on the caller's thread; the whole history
    // (100 items, known from that read to be over the 64 rows a read may take there) one on
    // the blocking pool.
    assert_eq!(stats.requests(Operation::GetItems), 2);
}

/// Lease rows: one per session in `oas_leases`, untouched by clear and by the session's expiry,
/// deleted by prune a day after their lease ended; the next token still grows (the clock).
#[tokio::test]
async fn lease_rows_outlive_sessions_and_are_pruned_a_day_after() {
    use std::time::Duration;
    let dir = temp_dir("leases");
    let path = dir.path().join("s.db");
    let store = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let ttl = Duration::from_secs(60);
    let first = store.acquire_lease("s", "a", ttl, None).await.unwrap();
    let s = store.session("s").unwrap().fenced(first.token);
    s.add_items(vec![r#"{"a":1}"#.parse().unwrap()])
        .await
        .unwrap();
    s.clear_session().await.unwrap();
    store.release_lease("s", first.token).await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let row = |conn: &rusqlite::Connection| -> Option<(String, i64)> {
        conn.query_row(
            "SELECT owner, token FROM oas_leases WHERE session_id = 's'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok()
    };
    assert_eq!(row(&conn), Some(("a".into(), first.token as i64)));
    let sessions: i64 = conn
        .query_row("SELECT count(*) FROM oas_sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sessions, 0, "the lease row is not a session row");
    store.prune().await.unwrap();
    assert!(row(&conn).is_some(), "kept for a day after the release");
    conn.execute(
        "UPDATE oas_leases SET expires_at = expires_at - 86400001 WHERE session_id = 's'",
        [],
    )
    .unwrap();
    store.prune().await.unwrap();
    assert_eq!(row(&conn), None, "pruned a day after the lease ended");
    let next = store.acquire_lease("s", "b", ttl, None).await.unwrap();
    assert!(next.token > first.token, "{} > {}", next.token, first.token);
    // Each lease operation is one transaction.
    store.renew_lease("s", next.token, ttl).await.unwrap();
    store.lease_info("s").await.unwrap();
    store.release_lease("s", next.token).await.unwrap();
    let stats = store.stats();
    for op in [
        Operation::AcquireLease,
        Operation::RenewLease,
        Operation::ReleaseLease,
        Operation::LeaseInfo,
    ] {
        assert_eq!(stats.requests(op), stats.calls(op), "{op}");
    }
}

/// Commits in the WAL file since its last reset: frames whose header carries a database size
/// (commit frames) and the WAL header's salts (older frames of an earlier cycle do not).
fn wal_commits(wal: &std::path::Path) -> usize {
    let bytes = std::fs::read(wal).unwrap();
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    let page_size = be(8) as usize;
    let (salt1, salt2) = (be(16), be(20));
    let mut at = 32;
    let mut commits = 0;
    while at + 24 + page_size <= bytes.len() {
        if be(at + 8) != salt1 || be(at + 12) != salt2 {
            break;
        }
        if be(at + 4) != 0 {
            commits += 1;
        }
        at += 24 + page_size;
    }
    commits
}

/// Group commit: appends that queue while a commit is under way share the next transaction
/// (one fsync with `synchronous=full`), yet each batch stays atomic and contiguous, and a
/// batch that fails (here, a trigger refusing one session's rows) fails alone: its caller gets
/// the error, no row of it is written, and every other caller's batch is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_a_commit_and_keep_their_own_results() {
    let dir = temp_dir("group");
    let path = dir.path().join("s.db");
    let store = Store::open(&format!("sqlite://{}?synchronous=full", path.display()))
        .await
        .unwrap();
    store
        .session("warm")
        .unwrap()
        .add_items(vec![r#"{"warm":true}"#.parse().unwrap()])
        .await
        .unwrap();
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker
        .execute_batch(
            "CREATE TRIGGER poison BEFORE INSERT ON oas_items
             WHEN (SELECT session_id FROM oas_sessions WHERE id = NEW.session) = 'poison'
             BEGIN SELECT RAISE(ABORT, 'poisoned'); END;",
        )
        .unwrap();
    let wal = dir.path().join("s.db-wal");
    let commits_before = wal_commits(&wal);
    // Holding the write lock makes the appends queue up behind the writer's first transaction.
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut tasks = Vec::new();
    for client in 0..48usize {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            // Four clients per session: batches of one session interleave.
            let id = if client == 17 {
                "poison".to_owned()
            } else {
                format!("s{}", client % 12)
            };
            let batch: Vec<Item> = (0..3)
                .map(|n| format!(r#"{{"client":{client},"n":{n}}}"#).parse().unwrap())
                .collect();
            (
                id.clone(),
                client,
                store.session(&id).unwrap().add_items(batch).await,
            )
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    blocker.execute_batch("COMMIT").unwrap();
    let mut ok = 0;
    for task in tasks {
        let (id, client, result) = task.await.unwrap();
        if id == "poison" {
            let err = result.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
            assert_eq!(err.operation(), Operation::AddItems);
            assert_eq!(err.session_id(), Some("poison"));
        } else {
            result.unwrap_or_else(|e| panic!("client {client}: {e}"));
            ok += 1;
        }
    }
    assert_eq!(ok, 47);
    let commits = wal_commits(&wal) - commits_before;
    assert!(
        commits <= 8,
        "48 queued appends took {commits} commits: they were not grouped"
    );
    assert!(store
        .session("poison")
        .unwrap()
        .get_items(None)
        .await
        .unwrap()
        .is_empty());
    for s in 0..12 {
        let items = store
            .session(&format!("s{s}"))
            .unwrap()
            .get_items(None)
            .await
            .unwrap();
        let rows: Vec<serde_json::Value> = items
            .iter()
            .map(|i| serde_json::from_str(i.as_str()).unwrap())
            .collect();
        let expected = if s == 17 % 12 { 9 } else { 12 };
        assert_eq!(rows.len(), expected, "session s{s}");
        for batch in rows.chunks(3) {
            let client = &batch[0]["client"];
            for (n, row) in batch.iter().enumerate() {
                assert_eq!(&row["client"], client, "batches interleaved in s{s}");
                assert_eq!(row["n"], n, "batch out of order in s{s}");
            }
        }
    }
}
