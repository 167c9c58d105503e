//! `AgentsSession` through the Agents SDK's own code: its `memory::Session` default methods, its
//! `rewind_session_items` and `wait_for_session_cleanup`, its compaction hooks and its run loop
//! (`Runner` with the SDK's scripted `FakeModel`), on memory, SQLite and Redis (the shared test
//! server: `OAS_TEST_REDIS_URL`).

use std::sync::Arc;

use openai_agents_sdk::items::InputItem;
use openai_agents_sdk::memory::{
    fingerprint_input_item, rewind_session_items, wait_for_session_cleanup, Session,
    SessionRunContext, SessionSettings,
};
use openai_agents_sdk::run_context::RunContext;
use openai_agents_sdk::testing::{assistant_message, FakeModel};
use openai_agents_sdk::{Agent, AgentsError, RunOptions, Runner};
use openai_agents_session::{ErrorKind, Session as _, Store};
use openai_agents_session_sdk::{store_error, AgentsSession};
use serde_json::{json, Value};

/// A session id no other test (or engineer) uses.
fn unique(name: &str) -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("sdk-test:{}:{nanos}:{name}", std::process::id())
}

fn redis_url() -> String {
    match std::env::var("OAS_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "OAS_TEST_REDIS_URL is not set: this test needs the shared test servers. Run \
             `scripts/test.sh`, or `scripts/servers.sh start && source target/test-servers.env` first."
        ),
    }
}

/// The stores every case runs on; the temporary directory lives as long as the stores.
async fn stores() -> (tempfile::TempDir, Vec<(&'static str, Store)>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = format!("sqlite://{}/sdk.db", dir.path().display());
    let stores = vec![
        ("memory", Store::open("memory://").await.expect("memory")),
        ("sqlite", Store::open(&sqlite).await.expect("sqlite")),
        ("redis", Store::open(&redis_url()).await.expect("redis")),
    ];
    (dir, stores)
}

fn session(store: &Store, name: &str) -> Arc<AgentsSession> {
    Arc::new(AgentsSession::from_store(store, &unique(name)).expect("session"))
}

fn texts(items: &[InputItem]) -> Vec<String> {
    items
        .iter()
        .map(|i| i.text_content().unwrap_or_default())
        .collect()
}

fn users(words: &[&str]) -> Vec<InputItem> {
    words.iter().map(|w| InputItem::user(*w)).collect()
}

#[tokio::test]
async fn the_four_operations_keep_the_contract_through_the_sdk_trait() {
    let (_dir, stores) = stores().await;
    for (backend, store) in &stores {
        let s = session(store, "ops");
        assert!(s.get_items(None).await.unwrap().is_empty(), "{backend}");
        s.add_items(users(&["a", "b", "c", "d"])).await.unwrap();
        s.add_items(vec![]).await.unwrap(); // an empty batch is a no-op
        assert_eq!(
            texts(&s.get_items(None).await.unwrap()),
            ["a", "b", "c", "d"],
            "{backend}"
        );
        assert_eq!(
            texts(&s.get_items(Some(2)).await.unwrap()),
            ["c", "d"],
            "{backend}"
        );
        assert!(s.get_items(Some(0)).await.unwrap().is_empty(), "{backend}");
        assert_eq!(s.get_items(Some(99)).await.unwrap().len(), 4, "{backend}");
        let popped = s.pop_item().await.unwrap().expect("an item");
        assert_eq!(popped.text_content().as_deref(), Some("d"), "{backend}");
        s.clear_session().await.unwrap();
        assert!(s.get_items(None).await.unwrap().is_empty(), "{backend}");
        assert!(s.pop_item().await.unwrap().is_none(), "{backend}");
        s.clear_session().await.unwrap(); // clearing a missing session succeeds
        assert_eq!(Session::session_id(s.as_ref()), s.inner().session_id());
    }
}

#[tokio::test]
async fn items_come_back_exactly_as_given() {
    let (_dir, stores) = stores().await;
    // The SDK holds an item as a serde_json Value (preserve_order and arbitrary_precision are
    // on, through our crate): what it hands us is stored as that Value's text, byte for byte,
    // and comes back as an equal Value.
    let text = r#"{"zeta":1,"alpha":[1.50,-0,1e400,12345678901234567890123],"type":"message","role":"user","content":"é \u2028 😀","nested":{"b":{},"a":[]}}"#;
    for (backend, store) in &stores {
        let s = session(store, "exact");
        let given = InputItem(serde_json::from_str::<Value>(text).unwrap());
        let given_text = serde_json::to_string(&given.0).unwrap();
        s.add_items(vec![given.clone()]).await.unwrap();
        let back = s.get_items(None).await.unwrap();
        assert_eq!(back, vec![given], "{backend}");
        assert_eq!(
            serde_json::to_string(&back[0].0).unwrap(),
            given_text,
            "{backend}"
        );
        let stored = s.inner().get_items(None).await.unwrap();
        assert_eq!(stored[0].as_str(), given_text, "{backend}");
        // Key order, the number spellings and the big integer survive.
        let keys: Vec<&String> = back[0].0.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["zeta", "alpha", "type", "role", "content", "nested"],
            "{backend}"
        );
        assert!(
            given_text.contains("[1.50,-0,1e+400,12345678901234567890123]"),
            "{given_text}"
        );
        s.clear_session().await.unwrap();
    }
}

#[tokio::test]
async fn a_batch_with_a_bad_item_writes_nothing_and_the_error_is_ours() {
    let (_dir, stores) = stores().await;
    for (backend, store) in &stores {
        let s = session(store, "bad");
        s.add_items(users(&["kept"])).await.unwrap();
        let err = s
            .add_items(vec![
                InputItem::user("fine"),
                InputItem(json!("not an object")),
            ])
            .await
            .unwrap_err();
        assert!(matches!(err, AgentsError::Io(_)), "{backend}: {err:?}");
        let ours = store_error(&err).expect("our error inside");
        assert_eq!(ours.kind(), ErrorKind::InvalidInput, "{backend}");
        assert_eq!(ours.session_id(), Some(s.inner().session_id()), "{backend}");
        assert_eq!(
            texts(&s.get_items(None).await.unwrap()),
            ["kept"],
            "{backend}"
        );
        assert!(store_error(&AgentsError::other("not ours")).is_none());
        s.clear_session().await.unwrap();
    }
}

#[tokio::test]
async fn the_sdk_default_methods_reach_our_store() {
    let (_dir, stores) = stores().await;
    let run = RunContext::new(());
    for (backend, store) in &stores {
        let s = session(store, "defaults");
        let ctx = SessionRunContext::new(&run);
        s.add_items_with_context(ctx, users(&["a", "b", "c"]))
            .await
            .unwrap();
        assert_eq!(
            texts(&s.get_items_with_context(ctx, Some(2)).await.unwrap()),
            ["b", "c"],
            "{backend}"
        );
        let popped = s.pop_item_with_context(ctx).await.unwrap().unwrap();
        assert_eq!(popped.text_content().as_deref(), Some("c"), "{backend}");

        // The default validated pop: an accepted item is removed and returned...
        let ok = s
            .pop_item_validated(Box::new(|_| Ok(())))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ok.text_content().as_deref(), Some("b"), "{backend}");
        // ...a rejected one is an error; the default pops first, so (as the SDK documents for
        // every store but Python's native SQLite) the rejected item is gone too.
        let rejected = s
            .pop_item_validated_with_context(ctx, Box::new(|_| Err(AgentsError::user("no"))))
            .await
            .unwrap_err();
        assert!(
            matches!(rejected, AgentsError::UserError { .. }),
            "{backend}"
        );
        assert!(s.get_items(None).await.unwrap().is_empty(), "{backend}");

        s.clear_session_with_context(ctx).await.unwrap();
        assert!(!s.manages_history_remotely() && !s.ignores_item_ids_for_matching());
        assert!(!s.wants_model_exchange());
        let usage = s.on_run_completed(&Default::default()).await.unwrap();
        assert_eq!(usage.requests, 0);
    }
}

#[tokio::test]
async fn session_settings_limit_the_reads() {
    let store = Store::open("memory://").await.unwrap();
    let s = AgentsSession::from_store(&store, &unique("settings"))
        .unwrap()
        .with_settings(SessionSettings::with_limit(2));
    assert_eq!(s.session_settings(), Some(SessionSettings::with_limit(2)));
    s.add_items(users(&["a", "b", "c"])).await.unwrap();
    assert_eq!(texts(&s.get_items(None).await.unwrap()), ["b", "c"]);
    assert_eq!(texts(&s.get_items(Some(3)).await.unwrap()), ["a", "b", "c"]);
    assert!(s.get_items(Some(0)).await.unwrap().is_empty());
}

#[tokio::test]
async fn rewind_session_items_removes_the_retry_owned_suffix_only() {
    let (_dir, stores) = stores().await;
    for (backend, store) in &stores {
        let s = session(store, "rewind");
        s.add_items(users(&["history", "retry-1", "retry-2"]))
            .await
            .unwrap();

        // A tail that does not match is left alone.
        rewind_session_items(s.as_ref(), &users(&["retry-2", "retry-1"]), None, None).await;
        assert_eq!(s.get_items(None).await.unwrap().len(), 3, "{backend}");
        rewind_session_items(s.as_ref(), &users(&["other"]), None, None).await;
        assert_eq!(s.get_items(None).await.unwrap().len(), 3, "{backend}");

        // The exact suffix is popped, and the cleanup check finds it gone.
        let retry = users(&["retry-1", "retry-2"]);
        rewind_session_items(s.as_ref(), &retry, None, None).await;
        assert_eq!(
            texts(&s.get_items(None).await.unwrap()),
            ["history"],
            "{backend}"
        );
        let targets: Vec<String> = retry
            .iter()
            .filter_map(|i| fingerprint_input_item(i, false))
            .collect();
        let t = std::time::Instant::now();
        wait_for_session_cleanup(s.as_ref(), &targets, 3, false, None).await;
        assert!(
            t.elapsed() < std::time::Duration::from_millis(100),
            "{backend}: no retry needed"
        );

        // With the run's context, through the *_with_context defaults.
        let run = RunContext::new(());
        s.add_items(users(&["again"])).await.unwrap();
        rewind_session_items(
            s.as_ref(),
            &users(&["again"]),
            None,
            Some(SessionRunContext::new(&run)),
        )
        .await;
        assert_eq!(
            texts(&s.get_items(None).await.unwrap()),
            ["history"],
            "{backend}"
        );
        s.clear_session().await.unwrap();
    }
}

#[tokio::test]
async fn compaction_replaces_exactly_the_snapshot_suffix_or_nothing() {
    let (_dir, stores) = stores().await;
    for (backend, store) in &stores {
        let s = session(store, "compaction");
        s.add_items(users(&["a", "b", "c"])).await.unwrap();
        let snap = s.compaction_snapshot(2).await.unwrap().expect("supported");
        assert_eq!(texts(&snap.items), ["b", "c"], "{backend}");
        assert_eq!(snap.handles.len(), 2);
        assert!(!snap.complete, "{backend}");
        assert!(
            s.compaction_snapshot(3).await.unwrap().unwrap().complete,
            "{backend}"
        );

        // A write after the snapshot: the suffix is no longer the tail, nothing changes.
        s.add_items(users(&["d"])).await.unwrap();
        let stale = s
            .replace_compaction_suffix(&snap.handles, users(&["summary"]))
            .await
            .unwrap();
        assert!(!stale, "{backend}");
        assert_eq!(
            texts(&s.get_items(None).await.unwrap()),
            ["a", "b", "c", "d"],
            "{backend}"
        );

        let snap = s.compaction_snapshot(2).await.unwrap().unwrap();
        assert!(s
            .replace_compaction_suffix(&snap.handles, users(&["summary"]))
            .await
            .unwrap());
        assert_eq!(
            texts(&s.get_items(None).await.unwrap()),
            ["a", "b", "summary"],
            "{backend}"
        );

        // The whole history at once, never empty in between.
        assert!(
            s.replace_history_atomically(users(&["only"]))
                .await
                .unwrap(),
            "{backend}"
        );
        assert_eq!(
            texts(&s.get_items(None).await.unwrap()),
            ["only"],
            "{backend}"
        );
        s.clear_session().await.unwrap();
    }
}

#[tokio::test]
async fn concurrent_writers_through_the_sdk_trait_lose_nothing() {
    let (_dir, stores) = stores().await;
    for (backend, store) in &stores {
        let s = session(store, "concurrent");
        let tasks: Vec<_> = (0..8)
            .map(|w| {
                let s = s.clone();
                tokio::spawn(async move {
                    for t in 0..10 {
                        s.add_items(users(&[&format!("w{w}t{t}a"), &format!("w{w}t{t}b")]))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let all = texts(&s.get_items(None).await.unwrap());
        assert_eq!(all.len(), 160, "{backend}");
        // Each batch contiguous.
        for pair in all.chunks(2) {
            assert_eq!(
                pair[0].trim_end_matches('a'),
                pair[1].trim_end_matches('b'),
                "{backend}"
            );
        }
        s.clear_session().await.unwrap();
    }
}

#[tokio::test]
async fn the_runner_keeps_its_history_in_our_store() {
    openai_agents_sdk::tracing::set_tracing_disabled(true);
    let (_dir, stores) = stores().await;
    for (backend, store) in &stores {
        let id = unique("runner");
        let model = Arc::new(FakeModel::new());
        model.add_turn(vec![assistant_message("Hello! How can I help?")]);
        model.add_turn(vec![assistant_message("Your order ships today.")]);
        let agent = Agent::<()>::new("Assistant").with_model_instance(model.clone());

        let session = Arc::new(AgentsSession::from_store(store, &id).unwrap());
        let first = Runner::run_with_options(&agent, "Hi", RunOptions::new(()).session(session))
            .await
            .unwrap();
        assert_eq!(
            first.final_output_text().as_deref(),
            Some("Hello! How can I help?")
        );

        // A new handle (a restart): the second run is sent the first run's history.
        let session = Arc::new(AgentsSession::from_store(store, &id).unwrap());
        let second = Runner::run_with_options(
            &agent,
            "Where is my order?",
            RunOptions::new(()).session(session.clone()),
        )
        .await
        .unwrap();
        assert_eq!(
            second.final_output_text().as_deref(),
            Some("Your order ships today.")
        );
        let sent = texts(&model.calls().last().expect("two calls").input);
        assert_eq!(
            sent,
            ["Hi", "Hello! How can I help?", "Where is my order?"],
            "{backend}"
        );

        // Our store holds the four items, as our own API reads them.
        let ours = store.session(&id).unwrap();
        let stored = ours.get_items(None).await.unwrap();
        assert_eq!(stored.len(), 4, "{backend}");
        assert_eq!(stored[0].to_value()["role"], "user");
        assert_eq!(stored[3].to_value()["role"], "assistant");
        ours.clear_session().await.unwrap();
    }
}
