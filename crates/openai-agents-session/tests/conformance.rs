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
    let dir = std::env::temp_dir().join(format!("oas-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let factory = UrlFactory::new(
        format!("sqlite://{}/kit.db", dir.display()),
        Capabilities::all(),
    );
    let report = run(&factory).await;
    std::fs::remove_dir_all(&dir).ok();
    report.assert_passed();
    assert_eq!(report.unsupported().count(), 0);
}
