//! The conformance kit against the backends that need no server: `memory` and `sqlite`.

use openai_agents_session::conformance::{run, Capabilities, UrlFactory};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_private() {
    // A private memory store is fresh on every open: not persistent.
    let factory = UrlFactory::new("memory://", Capabilities::all().persistent(false));
    let report = run(&factory).await;
    report.assert_passed();
    let unsupported: Vec<_> = report.unsupported().map(|c| c.name).collect();
    assert_eq!(unsupported, ["persistence_across_reopen"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_named() {
    let factory = UrlFactory::new("memory://conformance-named", Capabilities::all());
    let report = run(&factory).await;
    report.assert_passed();
    assert_eq!(report.unsupported().count(), 0);
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_file() {
    let dir = tempfile::Builder::new()
        .prefix("oas-conformance-")
        .tempdir()
        .unwrap();
    let factory = UrlFactory::new(
        format!("sqlite://{}/kit.db", dir.path().display()),
        Capabilities::all(),
    );
    let report = run(&factory).await;
    report.assert_passed();
    assert_eq!(report.unsupported().count(), 0);
}

/// The key of the encrypted kit runs (a fixed test key: base64 of 32 bytes 0x2a).
pub const KIT_KEY_ENV: &str = "OAS_TEST_KIT_ENCRYPTION_KEYS";

fn set_kit_keys() {
    // Two keys, newest first: the kit writes under the first, and the second is a retired key.
    std::env::set_var(
        KIT_KEY_ENV,
        "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=,AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_encrypted() {
    set_kit_keys();
    let factory = UrlFactory::new(
        format!("memory://conformance-encrypted?encryption_key_env={KIT_KEY_ENV}"),
        Capabilities::all(),
    );
    let report = run(&factory).await;
    report.assert_passed();
    assert_eq!(report.unsupported().count(), 0);
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_encrypted() {
    set_kit_keys();
    let dir = tempfile::Builder::new()
        .prefix("oas-conformance-enc-")
        .tempdir()
        .unwrap();
    let factory = UrlFactory::new(
        format!(
            "sqlite://{}/kit.db?encryption_key_env={KIT_KEY_ENV}",
            dir.path().display()
        ),
        Capabilities::all(),
    );
    let report = run(&factory).await;
    report.assert_passed();
    assert_eq!(report.unsupported().count(), 0);
}

/// A third-party-style backend with the classic bug (`get_items(Some(n))` returns the *oldest*
/// n): the kit must catch it, so it cannot be a kit that passes anything.
mod broken {
    use openai_agents_session::{
        Backend, BoxFuture, Item, ListOptions, PruneReport, RequestStats, Result, Session,
        SessionInfo, SessionPage, Store, StoreOptions,
    };

    #[derive(Debug)]
    pub struct OldestFirst {
        pub inner: Store,
        pub stats: RequestStats,
    }

    impl Backend for OldestFirst {
        fn name(&self) -> &'static str {
            "oldest-first"
        }
        fn get_items<'a>(
            &'a self,
            id: &'a str,
            limit: Option<usize>,
        ) -> BoxFuture<'a, Result<Vec<Item>>> {
            Box::pin(async move {
                let mut all = self.inner.session(id)?.get_items(None).await?;
                all.truncate(limit.unwrap_or(usize::MAX));
                Ok(all)
            })
        }
        fn add_items<'a>(&'a self, id: &'a str, items: Vec<Item>) -> BoxFuture<'a, Result<()>> {
            Box::pin(async move { self.inner.session(id)?.add_items(items).await })
        }
        fn pop_item<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Item>>> {
            Box::pin(async move { self.inner.session(id)?.pop_item().await })
        }
        fn clear_session<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
            Box::pin(async move { self.inner.session(id)?.clear_session().await })
        }
        fn session_info<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<SessionInfo>>> {
            Box::pin(self.inner.session_info(id))
        }
        fn list_sessions<'a>(
            &'a self,
            options: &'a ListOptions,
        ) -> BoxFuture<'a, Result<SessionPage>> {
            Box::pin(self.inner.list_sessions(options))
        }
        fn prune(&self) -> BoxFuture<'_, Result<PruneReport>> {
            Box::pin(self.inner.prune())
        }
        fn stats(&self) -> &RequestStats {
            &self.stats
        }
    }

    pub fn store(inner: Store) -> Store {
        Store::from_backend(
            std::sync::Arc::new(OldestFirst {
                inner,
                stats: RequestStats::default(),
            }),
            StoreOptions::default(),
        )
    }
}

struct BrokenFactory;

impl openai_agents_session::conformance::StoreFactory for BrokenFactory {
    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
    }
    fn open(
        &self,
        _options: openai_agents_session::conformance::FactoryOptions,
    ) -> openai_agents_session::BoxFuture<
        '_,
        openai_agents_session::Result<openai_agents_session::Store>,
    > {
        Box::pin(async {
            Ok(broken::store(
                openai_agents_session::Store::open("memory://").await?,
            ))
        })
    }
}

#[tokio::test]
async fn kit_catches_a_backend_returning_the_oldest_items() {
    let report = openai_agents_session::conformance::run_matching(&BrokenFactory, |name| {
        name.starts_with("limit_") || name.starts_with("ttl_") || name == "pop_returns_newest_first"
    })
    .await;
    let failed: Vec<&str> = report.failed().map(|c| c.name).collect();
    assert_eq!(
        failed,
        ["limit_one_returns_newest", "limit_n_minus_one"],
        "{report}"
    );
    assert!(report
        .passed()
        .any(|c| c.name == "pop_returns_newest_first"));
    // Without the ttl capability the TTL cases are reported unsupported, by name.
    let unsupported: Vec<&str> = report.unsupported().map(|c| c.name).collect();
    assert_eq!(unsupported.len(), 4, "{unsupported:?}");
    assert!(unsupported.iter().all(|n| n.starts_with("ttl_")));
}

/// A third-party backend that implements only the required methods: `Store::read_before`
/// falls back to reading the whole session, and the kit's read_before cases still hold.
mod minimal {
    use openai_agents_session::{
        Backend, BoxFuture, Item, ListOptions, PruneReport, RawRecords, RequestStats, Result,
        SessionInfo, SessionPage, Store,
    };

    #[derive(Debug)]
    pub struct Minimal(pub Store);

    impl Backend for Minimal {
        fn name(&self) -> &'static str {
            "minimal"
        }
        fn get_items<'a>(
            &'a self,
            id: &'a str,
            limit: Option<usize>,
        ) -> BoxFuture<'a, Result<Vec<Item>>> {
            Box::pin(async move {
                use openai_agents_session::Session;
                self.0.session(id)?.get_items(limit).await
            })
        }
        fn add_items<'a>(&'a self, id: &'a str, items: Vec<Item>) -> BoxFuture<'a, Result<()>> {
            Box::pin(async move {
                use openai_agents_session::Session;
                self.0.session(id)?.add_items(items).await
            })
        }
        fn pop_item<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Item>>> {
            Box::pin(async move {
                use openai_agents_session::Session;
                self.0.session(id)?.pop_item().await
            })
        }
        fn clear_session<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
            Box::pin(async move {
                use openai_agents_session::Session;
                self.0.session(id)?.clear_session().await
            })
        }
        fn session_info<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<SessionInfo>>> {
            Box::pin(self.0.session_info(id))
        }
        fn list_sessions<'a>(
            &'a self,
            options: &'a ListOptions,
        ) -> BoxFuture<'a, Result<SessionPage>> {
            Box::pin(self.0.list_sessions(options))
        }
        fn prune(&self) -> BoxFuture<'_, Result<PruneReport>> {
            Box::pin(self.0.prune())
        }
        fn stats(&self) -> &RequestStats {
            self.0.stats()
        }
        fn raw_records(&self) -> Option<&dyn RawRecords> {
            self.0.raw_records()
        }
    }
}

#[tokio::test]
async fn read_before_falls_back_for_backends_without_it() {
    use openai_agents_session::conformance::{FactoryOptions, StoreFactory};
    use openai_agents_session::{BoxFuture, Result, Store, StoreOptions};
    struct Factory;
    impl StoreFactory for Factory {
        fn capabilities(&self) -> Capabilities {
            // The fallback cannot report unreadable counts: get_items skips them silently.
            Capabilities::all().persistent(false).raw_records(false)
        }
        fn open(&self, _options: FactoryOptions) -> BoxFuture<'_, Result<Store>> {
            Box::pin(async {
                let inner = Store::open("memory://read-before-fallback").await?;
                Ok(Store::from_backend(
                    std::sync::Arc::new(minimal::Minimal(inner)),
                    StoreOptions::default(),
                ))
            })
        }
    }
    let report = openai_agents_session::conformance::run_matching(&Factory, |name| {
        name.starts_with("read_before_")
    })
    .await;
    report.assert_passed();
    assert_eq!(report.passed().count(), 3);
}
