//! Copy and export/import across every pair of backends that persist (memory excluded):
//! SQLite, Redis, Redis Cluster and DynamoDB Local, compared exactly, with the five Agents SDK
//! item shapes, numbers as written and a 10 MB item.
#![cfg(all(feature = "redis", feature = "dynamodb", feature = "conformance"))]

mod support;

use openai_agents_session::conformance::{agents_sdk_items, random_text};
use openai_agents_session::transfer::{
    copy_sessions, export_sessions, import_sessions, CopyOptions,
};
use openai_agents_session::{Item, Session, Store};
use support::shared_url;

fn backends(tag: &str) -> Vec<(&'static str, String)> {
    let dir = support::temp_dir("transfer");
    let pid = std::process::id();
    vec![
        ("sqlite", format!("sqlite://{}/t.db", dir.display())),
        (
            "redis",
            format!(
                "{}?prefix=xfer_{tag}_{pid}",
                shared_url("OAS_TEST_REDIS_URL")
            ),
        ),
        (
            "cluster",
            format!(
                "{}?prefix=xfer_{tag}_{pid}",
                shared_url("OAS_TEST_REDIS_CLUSTER_URL")
            ),
        ),
        (
            "dynamodb",
            format!(
                "dynamodb://xfer_{tag}_{pid}?region=us-east-1&endpoint={}&create_table=true",
                shared_url("OAS_TEST_DYNAMODB_ENDPOINT")
            ),
        ),
    ]
}

fn conversation(big: bool) -> Vec<Item> {
    let mut items = agents_sdk_items();
    items.push(
        r#"{"n":123456789012345678901234567890,"f":1.0,"e":1e400,"s":"h\u00e9llo \ud83d\ude00"}"#
            .parse()
            .unwrap(),
    );
    if big {
        items.push(Item::from_value(serde_json::json!({"type": "function_call_output", "call_id": "big", "output": random_text(10 * 1024 * 1024, 9)})).unwrap());
    }
    items
}

async fn seed(store: &Store) -> Vec<(String, Vec<Item>)> {
    let sessions = vec![
        ("user-1:chat".to_owned(), conversation(false)),
        ("user-2:{x}".to_owned(), conversation(true)),
    ];
    for (id, items) in &sessions {
        let s = store.session(id).unwrap();
        s.clear_session().await.unwrap();
        s.add_items(items.clone()).await.unwrap();
    }
    sessions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_between_every_pair_of_backends() {
    let sources = backends("src");
    let targets = backends("dst");
    for (src_name, src_url) in &sources {
        let from = Store::open(src_url).await.unwrap();
        let sessions = seed(&from).await;
        let ids: Vec<String> = sessions.iter().map(|(id, _)| id.clone()).collect();
        for (dst_name, dst_url) in &targets {
            let to = Store::open(dst_url).await.unwrap();
            for id in &ids {
                to.session(id).unwrap().clear_session().await.unwrap();
            }
            let summary = copy_sessions(
                &from,
                &to,
                &CopyOptions::default().sessions(ids.clone()),
                &mut |_| {},
            )
            .await
            .unwrap();
            assert_eq!(summary.sessions, 2, "{src_name} -> {dst_name}");
            for (id, items) in &sessions {
                let got = to.session(id).unwrap().get_items(None).await.unwrap();
                assert!(
                    got == *items,
                    "{src_name} -> {dst_name}: session {id} differs"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_on_every_backend() {
    for (name, url) in backends("jsonl") {
        let store = Store::open(&url).await.unwrap();
        let sessions = seed(&store).await;
        let ids: Vec<String> = sessions.iter().map(|(id, _)| id.clone()).collect();
        let mut out = Vec::new();
        export_sessions(&store, &ids, &mut out, &mut |_| {})
            .await
            .unwrap();
        let path = support::temp_dir("jsonl").join("export.jsonl");
        std::fs::write(&path, &out).unwrap();
        for id in &ids {
            store.session(id).unwrap().clear_session().await.unwrap();
        }
        let summary = import_sessions(&store, &path, Default::default(), &mut |_| {})
            .await
            .unwrap();
        assert_eq!(summary.sessions, 2, "{name}");
        for (id, items) in &sessions {
            let got = store.session(id).unwrap().get_items(None).await.unwrap();
            assert!(
                got == *items,
                "{name}: session {id} differs after export and import"
            );
        }
    }
}
