//! Rules the `Store` keeps for every backend, checked on a third-party backend that has no
//! paging and no staged writes (it wraps the memory backend and implements only the required
//! methods), so the store's fallbacks are what runs.

use std::sync::Arc;

use openai_agents_session::backend::memory::MemoryBackend;
use openai_agents_session::{
    Backend, BoxFuture, ErrorKind, Item, ListOptions, Operation, PruneReport, RequestStats, Result,
    Session, SessionInfo, SessionPage, StageMode, Store, StoreOptions,
};

#[derive(Debug)]
struct Plain(MemoryBackend);

impl Backend for Plain {
    fn name(&self) -> &'static str {
        "plain"
    }
    fn get_items<'a>(
        &'a self,
        session_id: &'a str,
        limit: Option<usize>,
    ) -> BoxFuture<'a, Result<Vec<Item>>> {
        self.0.get_items(session_id, limit)
    }
    fn add_items<'a>(&'a self, session_id: &'a str, items: Vec<Item>) -> BoxFuture<'a, Result<()>> {
        self.0.add_items(session_id, items)
    }
    fn pop_item<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<Option<Item>>> {
        self.0.pop_item(session_id)
    }
    fn clear_session<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<()>> {
        self.0.clear_session(session_id)
    }
    fn session_info<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionInfo>>> {
        self.0.session_info(session_id)
    }
    fn list_sessions<'a>(&'a self, options: &'a ListOptions) -> BoxFuture<'a, Result<SessionPage>> {
        self.0.list_sessions(options)
    }
    fn prune(&self) -> BoxFuture<'_, Result<PruneReport>> {
        self.0.prune()
    }
    fn stats(&self) -> &RequestStats {
        self.0.stats()
    }
}

fn plain_store(options: StoreOptions) -> Store {
    Store::from_backend(
        Arc::new(Plain(MemoryBackend::new(options.clone()))),
        options,
    )
}

fn items(n: usize) -> Vec<Item> {
    (0..n)
        .map(|i| format!(r#"{{"n":{i}}}"#).parse().unwrap())
        .collect()
}

#[tokio::test]
async fn a_fallback_page_read_is_one_call_and_one_request() {
    let store = plain_store(StoreOptions::default());
    store
        .session("s")
        .unwrap()
        .add_items(items(3))
        .await
        .unwrap();
    let op = Operation::GetItems;
    let (c0, r0) = (store.stats().calls(op), store.stats().requests(op));
    let page = store.read_page("s", None, 1 << 20).await.unwrap();
    assert_eq!(page.items.len(), 3);
    let (c1, r1) = (store.stats().calls(op), store.stats().requests(op));
    assert_eq!((c1 - c0, r1 - r0), (1, 1), "one call, one request");
}

#[tokio::test]
async fn a_staged_commit_is_one_add_items_call() {
    for mode in [StageMode::Append, StageMode::Replace] {
        let store = plain_store(StoreOptions::default());
        store
            .session("s")
            .unwrap()
            .add_items(items(1))
            .await
            .unwrap();
        let calls = store.stats().calls(Operation::AddItems);
        let mut staged = store.stage("s", mode, None).await.unwrap();
        staged.append(items(2)).await.unwrap();
        staged.append(items(2)).await.unwrap();
        assert_eq!(staged.commit().await.unwrap(), 4);
        assert_eq!(
            store.stats().calls(Operation::AddItems) - calls,
            1,
            "{mode:?}: the commit counts one AddItems call"
        );
        let expected = if mode == StageMode::Append { 5 } else { 4 };
        assert_eq!(
            store
                .session("s")
                .unwrap()
                .get_items(None)
                .await
                .unwrap()
                .len(),
            expected
        );
    }
}

#[tokio::test]
async fn an_aborted_staged_write_leaves_nothing() {
    let store = plain_store(StoreOptions::default());
    let mut staged = store.stage("s", StageMode::Append, None).await.unwrap();
    staged.append(items(2)).await.unwrap();
    staged.abort().await.unwrap();
    assert!(store
        .session("s")
        .unwrap()
        .get_items(None)
        .await
        .unwrap()
        .is_empty());
    assert!(store.session_info("s").await.unwrap().is_none());
}

#[tokio::test]
async fn one_size_check_one_message_on_every_write_path() {
    let options = StoreOptions::default().with_max_item_bytes(10).unwrap();
    let store = plain_store(options.clone());
    let big: Item = r#"{"text":"far too long"}"#.parse().unwrap();
    let batch = vec![items(1).remove(0), big.clone()];
    let direct = store
        .session("s")
        .unwrap()
        .add_items(batch.clone())
        .await
        .unwrap_err();
    let mut staged = store.stage("s", StageMode::Append, None).await.unwrap();
    let staged_err = staged.append(batch).await.unwrap_err();
    let expected = format!(
        "item 1 is {} bytes, over max_item_bytes 10; nothing was written",
        big.len_bytes()
    );
    for err in [&direct, &staged_err] {
        assert_eq!(err.kind(), ErrorKind::TooLarge);
        assert_eq!(err.operation(), Operation::AddItems);
        assert_eq!(err.message(), expected);
    }
    // Through the native staged writer (memory) too.
    let native = Store::open("memory://?max_item_bytes=10").await.unwrap();
    let mut staged = native.stage("s", StageMode::Append, None).await.unwrap();
    let err = staged
        .append(vec![items(1).remove(0), big.clone()])
        .await
        .unwrap_err();
    assert_eq!(err.message(), expected);
    assert!(store
        .session("s")
        .unwrap()
        .get_items(None)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_registered_scheme_opens_by_url() {
    openai_agents_session::open::register_scheme("plain-test", |url, options| {
        Box::pin(async move {
            url.reject_unknown_options()?;
            Ok(plain_store(options))
        })
    })
    .unwrap();
    let store = Store::open("plain-test://?ttl=5").await.unwrap();
    assert_eq!(store.options().ttl, Some(5));
    store
        .session("x")
        .unwrap()
        .add_items(items(1))
        .await
        .unwrap();
    let err = Store::open("plain-test://?nope=1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("nope"), "{err}");
    let unknown = Store::open("nosuch://x").await.unwrap_err();
    assert!(unknown.to_string().contains("plain-test"), "{unknown}");
}
