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

/// Every backend's URL, with the SQLite file's directory, removed when the last use is done.
struct Backends {
    _dir: support::TestDir,
    list: Vec<(&'static str, String)>,
}

/// Iterates the URLs while holding the directory.
struct BackendsIter {
    _dir: support::TestDir,
    list: std::vec::IntoIter<(&'static str, String)>,
}

impl Iterator for BackendsIter {
    type Item = (&'static str, String);
    fn next(&mut self) -> Option<Self::Item> {
        self.list.next()
    }
}

impl IntoIterator for Backends {
    type Item = (&'static str, String);
    type IntoIter = BackendsIter;
    fn into_iter(self) -> BackendsIter {
        BackendsIter {
            _dir: self._dir,
            list: self.list.into_iter(),
        }
    }
}

impl<'a> IntoIterator for &'a Backends {
    type Item = &'a (&'static str, String);
    type IntoIter = std::slice::Iter<'a, (&'static str, String)>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

fn backends(tag: &str) -> Backends {
    let dir = support::temp_dir("transfer");
    let pid = std::process::id();
    let list = vec![
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
    ];
    Backends { _dir: dir, list }
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
        let jsonl_dir = support::temp_dir("jsonl");
        let path = jsonl_dir.join("export.jsonl");
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

/// A session much larger than the chunk: many items and a 10 MB one.
fn long_conversation() -> Vec<Item> {
    let mut items = conversation(true);
    for n in 0..400 {
        items.push(
            Item::from_value(serde_json::json!({"role": "user", "content": format!("turn {n} {}", "x".repeat(300))}))
                .unwrap(),
        );
    }
    items
}

/// With a 64 KB chunk every session here streams: pages from the source, a staged write in
/// the target; copies are exact, and `append` / `replace` land in one step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_copy_between_every_pair_with_append_and_replace() {
    use openai_agents_session::transfer::OnExisting;
    let items = long_conversation();
    let old: Vec<Item> = (0..5)
        .map(|n| Item::from_value(serde_json::json!({ "old": n })).unwrap())
        .collect();
    let id = "stream:{big}";
    for (src_name, src_url) in backends("ssrc") {
        let from = Store::open(&src_url).await.unwrap();
        let source = from.session(id).unwrap();
        source.clear_session().await.unwrap();
        source.add_items(items.clone()).await.unwrap();
        for (dst_name, dst_url) in backends("sdst") {
            let to = Store::open(&dst_url).await.unwrap();
            let target = to.session(id).unwrap();
            for mode in [OnExisting::Error, OnExisting::Append, OnExisting::Replace] {
                target.clear_session().await.unwrap();
                if mode != OnExisting::Error {
                    target.add_items(old.clone()).await.unwrap();
                }
                let options = CopyOptions::default()
                    .sessions(vec![id.to_owned()])
                    .on_existing(mode)
                    .chunk_bytes(64 * 1024);
                let mut partial_reports = 0;
                let summary = copy_sessions(&from, &to, &options, &mut |p| {
                    partial_reports += u64::from(p.sessions_done == 0);
                })
                .await
                .unwrap();
                assert_eq!(
                    summary.items,
                    items.len() as u64,
                    "{src_name} -> {dst_name} {mode:?}"
                );
                assert!(
                    partial_reports >= 2,
                    "progress inside the session: {partial_reports}"
                );
                let want: Vec<Item> = match mode {
                    OnExisting::Append => old.iter().chain(items.iter()).cloned().collect(),
                    _ => items.clone(),
                };
                let got = target.get_items(None).await.unwrap();
                assert!(
                    got == want,
                    "{src_name} -> {dst_name} {mode:?}: history differs ({} items)",
                    got.len()
                );
                let info = to.session_info(id).await.unwrap().unwrap();
                assert_eq!(
                    info.item_count,
                    want.len() as u64,
                    "{src_name} -> {dst_name} {mode:?}"
                );
            }
        }
    }
}

/// A reader polling the target while `--on-existing replace` streams a large session in sees
/// the old history or the new one, never an empty or mixed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_is_atomic_for_concurrent_readers() {
    use openai_agents_session::transfer::OnExisting;
    let items: Vec<Item> = (0..3000)
        .map(|n| Item::from_value(serde_json::json!({"new": n, "pad": "y".repeat(100)})).unwrap())
        .collect();
    let old: Vec<Item> = (0..50)
        .map(|n| Item::from_value(serde_json::json!({ "old": n })).unwrap())
        .collect();
    let dir = support::temp_dir("atomic-src");
    let from = Store::open(&format!("sqlite://{}/src.db", dir.display()))
        .await
        .unwrap();
    from.session("s")
        .unwrap()
        .add_items(items.clone())
        .await
        .unwrap();
    for (name, url) in backends("atomic") {
        if name == "cluster" {
            continue; // the same scripts as standalone Redis
        }
        let to = Store::open(&url).await.unwrap();
        let target = to.session("s").unwrap();
        target.clear_session().await.unwrap();
        target.add_items(old.clone()).await.unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (target, done, old, items) =
                (target.clone(), done.clone(), old.clone(), items.clone());
            tokio::spawn(async move {
                let (mut reads, mut saw_new) = (0u64, false);
                loop {
                    let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                    let got = target.get_items(None).await.unwrap();
                    reads += 1;
                    if got == items {
                        saw_new = true;
                    } else {
                        assert!(
                            !saw_new && got == old,
                            "a reader saw {} items, neither history",
                            got.len()
                        );
                    }
                    if finished {
                        return (reads, saw_new);
                    }
                }
            })
        };
        let options = CopyOptions::default()
            .on_existing(OnExisting::Replace)
            .chunk_bytes(16 * 1024);
        copy_sessions(&from, &to, &options, &mut |_| {})
            .await
            .unwrap();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let (reads, saw_new) = reader.await.unwrap();
        assert!(saw_new, "{name}: the new history is visible after the copy");
        assert!(
            reads >= 2,
            "{name}: the reader ran during the copy ({reads} reads)"
        );
        println!(
            "{name}: {reads} reads during a streamed replace, each the old or the new history"
        );
    }
}

/// Import streams too: a session past the chunk goes through the staged write, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_import_on_every_backend() {
    use openai_agents_session::transfer::{import_sessions_chunked, OnExisting};
    let items = long_conversation();
    let dir = support::temp_dir("stream-import");
    let path = dir.join("in.jsonl");
    let mut text = String::new();
    for item in &items {
        text.push_str(&format!(
            "{{\"session_id\":\"imp:{{1}}\",\"item\":{item}}}\n"
        ));
    }
    text.push_str("{\"session_id\":\"imp:small\",\"item\":{\"a\":1}}\n");
    std::fs::write(&path, text).unwrap();
    for (name, url) in backends("simp") {
        let store = Store::open(&url).await.unwrap();
        for id in ["imp:{1}", "imp:small"] {
            store.session(id).unwrap().clear_session().await.unwrap();
        }
        let summary =
            import_sessions_chunked(&store, &path, OnExisting::Error, 32 * 1024, &mut |_| {})
                .await
                .unwrap();
        assert_eq!(
            (summary.sessions, summary.items),
            (2, items.len() as u64 + 1),
            "{name}"
        );
        let got = store
            .session("imp:{1}")
            .unwrap()
            .get_items(None)
            .await
            .unwrap();
        assert!(got == items, "{name}: the streamed session differs");
        let small = store
            .session("imp:small")
            .unwrap()
            .get_items(None)
            .await
            .unwrap();
        assert_eq!(small.len(), 1, "{name}");
    }
}

/// A staged write that never commits (a crashed copy: no destructor ran) stays invisible, and
/// `prune` removes what it left and says so, on every backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_staged_write_is_invisible_and_pruned() {
    use openai_agents_session::StageMode;
    for (name, url) in backends("crash") {
        let sep = if url.contains('?') { '&' } else { '?' };
        let store = Store::open(&format!("{url}{sep}stale_batch_secs=1"))
            .await
            .unwrap();
        let s = store.session("crashed").unwrap();
        s.clear_session().await.unwrap();
        s.add_items(conversation(false)).await.unwrap();
        for mode in [StageMode::Append, StageMode::Replace] {
            let mut staged = store.stage("crashed", mode, Some(100)).await.unwrap();
            staged
                .append(long_conversation()[..50].to_vec())
                .await
                .unwrap();
            std::mem::forget(staged); // as if the process died here
        }
        assert!(
            s.get_items(None).await.unwrap() == conversation(false),
            "{name}: untouched"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        let report = store.prune().await.unwrap();
        assert!(
            report.leftovers >= 2,
            "{name}: prune reports the leftovers: {report}"
        );
        println!("{name}: prune after a crashed staged write: {report}");
        assert!(
            s.get_items(None).await.unwrap() == conversation(false),
            "{name}: untouched after prune"
        );
        s.add_items(conversation(false)[..1].to_vec())
            .await
            .unwrap();
        assert_eq!(
            s.get_items(None).await.unwrap().len(),
            conversation(false).len() + 1,
            "{name}"
        );
        let again = store.prune().await.unwrap();
        assert_eq!(
            again.leftovers, 0,
            "{name}: nothing left the second time: {again}"
        );
    }
}
