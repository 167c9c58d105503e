//! The DynamoDB backend against DynamoDB Local (started by `scripts/servers.sh`): the
//! conformance kit, request counts, large items and batches, concurrency, legacy layout,
//! bad input.
#![cfg(all(feature = "dynamodb", feature = "conformance"))]

mod support;

use std::collections::{HashMap, HashSet};

use openai_agents_session::conformance::{run, Capabilities, UrlFactory};
use openai_agents_session::{Error, ErrorKind, Item, Operation, Session, Store};
use serde_json::json;
use support::shared_url;

fn endpoint() -> String {
    shared_url("OAS_TEST_DYNAMODB_ENDPOINT")
}

fn table_url(name: &str, extra: &str) -> String {
    format!(
        "dynamodb://{name}_{}?region=us-east-1&endpoint={}&create_table=true{extra}",
        std::process::id(),
        endpoint()
    )
}

fn item(v: serde_json::Value) -> Item {
    Item::from_value(v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance() {
    let report = run(&UrlFactory::new(table_url("kit", ""), Capabilities::all())).await;
    report.assert_passed();
    assert_eq!(report.unsupported().count(), 0, "{report}");
}
