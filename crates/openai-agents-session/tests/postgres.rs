//! The PostgreSQL backend against a real server: the conformance kit plain and over TLS
//! (`sslmode=verify-full`) on the shared server from `scripts/servers.sh`, round trips counted
//! at the socket, concurrency, bad input, and faults on servers the tests start themselves.
#![cfg(all(feature = "postgres", feature = "conformance"))]

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openai_agents_session::conformance::{run, Capabilities, UrlFactory};
use openai_agents_session::{ErrorKind, Item, ListOptions, Session, Store};
use serde_json::json;
use support::shared_url;

fn item(v: serde_json::Value) -> Item {
    Item::from_value(v).unwrap()
}

fn unique(name: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{name}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn with_option(url: &str, option: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{option}")
}

/// The shared server's URL with a schema of this test's own.
fn url_in_schema(var: &str, schema: &str) -> String {
    with_option(&shared_url(var), &format!("schema={schema}"))
}

async fn kit(url: String) {
    let report = run(&UrlFactory::new(url, Capabilities::all())).await;
    report.assert_passed();
    assert_eq!(report.unsupported().count(), 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_plain() {
    kit(url_in_schema("OAS_TEST_POSTGRES_URL", &unique("kit_plain"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_tls_verify_full() {
    let url = shared_url("OAS_TEST_POSTGRES_TLS_URL");
    assert!(url.contains("sslmode=verify-full"), "{url}");
    kit(with_option(&url, &format!("schema={}", unique("kit_tls")))).await;
}
