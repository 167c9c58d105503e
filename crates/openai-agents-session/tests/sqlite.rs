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
