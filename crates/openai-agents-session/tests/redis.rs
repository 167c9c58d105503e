//! The Redis backend against real servers: the conformance kit on standalone, ACL, TLS and
//! cluster (shared servers from `scripts/servers.sh`), round trips counted at the socket,
//! concurrency, legacy layouts, bad input, and faults on servers the tests start themselves.
#![cfg(all(feature = "redis", feature = "conformance"))]

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use openai_agents_session::conformance::{run, Capabilities, UrlFactory};
use openai_agents_session::{Error, ErrorKind, Item, Operation, Session, Store};
use serde_json::json;
use support::{command_calls, shared_url, CountingProxy, OwnCluster, OwnRedis};

fn item(v: serde_json::Value) -> Item {
    Item::from_value(v).unwrap()
}

fn unique(name: &str) -> String {
    format!(
        "{name}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    )
}

async fn kit(url: String) {
    let report = run(&UrlFactory::new(url, Capabilities::all())).await;
    report.assert_passed();
    assert_eq!(report.unsupported().count(), 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_standalone() {
    kit(shared_url("OAS_TEST_REDIS_URL")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_acl_user() {
    kit(format!(
        "{}?prefix=acl_kit",
        shared_url("OAS_TEST_REDIS_ACL_URL")
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_tls() {
    let url = shared_url("OAS_TEST_REDISS_URL");
    let sep = if url.contains('?') { '&' } else { '?' };
    kit(format!("{url}{sep}prefix=tls_kit")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_cluster() {
    kit(format!(
        "{}?prefix=cluster_kit",
        shared_url("OAS_TEST_REDIS_CLUSTER_URL")
    ))
    .await;
}

/// The kit with encryption on, standalone and Cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_standalone_encrypted() {
    support::set_kit_keys();
    kit(format!(
        "{}?prefix=enc_kit&encryption_key_env={}",
        shared_url("OAS_TEST_REDIS_URL"),
        support::KIT_KEY_ENV
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_cluster_encrypted() {
    support::set_kit_keys();
    kit(format!(
        "{}?prefix=enc_cluster_kit&encryption_key_env={}",
        shared_url("OAS_TEST_REDIS_CLUSTER_URL"),
        support::KIT_KEY_ENV
    ))
    .await;
}

/// Encrypted, no stored byte holds the items' text: every key's DUMP is searched for a marker.
/// An encrypted get_items(20) reads about 20 records, not the whole list (the GET script counts
/// envelopes): one EVALSHA whose reply is about 20 records long.
#[tokio::test]
async fn encrypted_redis_holds_no_plaintext_and_reads_stay_cheap() {
    let server = OwnRedis::start("encrypted-dump");
    support::set_kit_keys();
    let url = format!(
        "{}?encryption_key_env={}",
        server.url(),
        support::KIT_KEY_ENV
    );
    let store = Store::open(&url).await.unwrap();
    let s = store.session("secret-chat").unwrap();
    let items: Vec<Item> = (0..500)
        .map(|n| item(json!({"role": "user", "content": format!("MARKER-7731 number {n}")})))
        .collect();
    s.add_items(items.clone()).await.unwrap();
    assert_eq!(s.get_items(None).await.unwrap(), items);
    let keys = server.cli(&["--scan"]);
    let mut dumped = 0;
    for key in keys.lines().filter(|k| !k.is_empty()) {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &server.port.to_string(), "--no-raw", "DUMP", key])
            .output()
            .unwrap();
        assert!(
            !out.stdout.windows(11).any(|w| w == b"MARKER-7731"),
            "{key}"
        );
        let raw = std::process::Command::new("redis-cli")
            .args(["-p", &server.port.to_string(), "LRANGE", key, "0", "-1"])
            .output()
            .unwrap();
        assert!(
            !raw.stdout.windows(11).any(|w| w == b"MARKER-7731"),
            "{key}"
        );
        dumped += 1;
    }
    assert!(dumped >= 2, "the session's keys were dumped: {keys}");
    // Through a proxy that counts the answer's bytes: 20 of 500 records, not the list.
    let proxy = CountingProxy::start(server.port);
    let via = Store::open(&format!(
        "{}?encryption_key_env={}",
        proxy.url(),
        support::KIT_KEY_ENV
    ))
    .await
    .unwrap();
    let session = via.session("secret-chat").unwrap();
    session.get_items(Some(1)).await.unwrap(); // warm-up: connection and script load
    let (bytes, requests) = (
        proxy.answer_bytes(),
        via.stats().requests(Operation::GetItems),
    );
    assert_eq!(
        session.get_items(Some(20)).await.unwrap(),
        items[480..].to_vec()
    );
    let all: usize = items.iter().map(s_len).sum();
    let read = (proxy.answer_bytes() - bytes) as usize;
    assert_eq!(via.stats().requests(Operation::GetItems) - requests, 1);
    assert!(read < all / 10, "get_items(20) read {read} bytes of {all}");
}

fn s_len(item: &Item) -> usize {
    item.len_bytes() + 39
}

/// Each of get/add/pop/clear/info is one request/response exchange after warm-up, counted as
/// RESP commands crossing a proxy, and as exactly one top-level EVALSHA in INFO commandstats;
/// `get_items` is one round trip of two pipelined commands: the HEAD script and a plain LRANGE.
#[tokio::test]
async fn one_round_trip_per_operation() {
    let server = OwnRedis::start("round-trips");
    let proxy = CountingProxy::start(server.port);
    let store = Store::open(&format!("{}?ttl=60", proxy.url()))
        .await
        .unwrap();
    let session = store.session("rt").unwrap();
    // Warm-up: connection handshake, and the scripts loaded once (NOSCRIPT then EVAL).
    session
        .add_items(vec![item(json!({"warm": 1}))])
        .await
        .unwrap();
    session.get_items(None).await.unwrap();
    session.pop_item().await.unwrap();
    store.session_info("rt").await.unwrap();
    store.read_page("rt", None, 1 << 20).await.unwrap();
    session.clear_session().await.unwrap();
    let ttl = Duration::from_secs(60);
    let warm = store.acquire_lease("rt", "warm", ttl, None).await.unwrap();
    store.renew_lease("rt", warm.token, ttl).await.unwrap();
    store.lease_info("rt").await.unwrap();
    store.release_lease("rt", warm.token).await.unwrap();

    let mut figures = Vec::new();
    let three = || {
        vec![
            item(json!({"a": 1})),
            item(json!({"b": 2})),
            item(json!({"c": 3})),
        ]
    };
    exchanges(
        &proxy,
        &server,
        &mut figures,
        "add_items(3)",
        session.add_items(three()),
    )
    .await;
    pipelined(&proxy, &server, &mut figures, "get_items(None)", async {
        session.get_items(None).await.map(drop)
    })
    .await;
    pipelined(&proxy, &server, &mut figures, "get_items(Some(2))", async {
        session.get_items(Some(2)).await.map(drop)
    })
    .await;
    exchanges(
        &proxy,
        &server,
        &mut figures,
        "read_page (a whole page)",
        async {
            let page = store.read_page("rt", None, 1 << 20).await?;
            assert_eq!((page.items.len(), page.next), (3, None));
            Ok(())
        },
    )
    .await;
    exchanges(&proxy, &server, &mut figures, "pop_item", async {
        session.pop_item().await.map(drop)
    })
    .await;
    exchanges(&proxy, &server, &mut figures, "session_info", async {
        store.session_info("rt").await.map(drop)
    })
    .await;
    exchanges(
        &proxy,
        &server,
        &mut figures,
        "clear_session",
        session.clear_session(),
    )
    .await;
    exchanges(&proxy, &server, &mut figures, "pop_item (empty)", async {
        session.pop_item().await.map(drop)
    })
    .await;
    pipelined(
        &proxy,
        &server,
        &mut figures,
        "get_items (missing)",
        async { session.get_items(Some(5)).await.map(drop) },
    )
    .await;
    exchanges(
        &proxy,
        &server,
        &mut figures,
        "read_page (missing)",
        async { store.read_page("rt", None, 1 << 20).await.map(drop) },
    )
    .await;
    // Leases: one script each; a fenced write is one script, as an unfenced one.
    let lease = std::sync::Mutex::new(None);
    exchanges(&proxy, &server, &mut figures, "acquire_lease", async {
        *lease.lock().unwrap() = Some(store.acquire_lease("rt", "w", ttl, None).await?);
        Ok(())
    })
    .await;
    let token = lease.lock().unwrap().as_ref().unwrap().token;
    exchanges(
        &proxy,
        &server,
        &mut figures,
        "acquire_lease (held)",
        async {
            let err = store.acquire_lease("rt", "x", ttl, None).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::LeaseHeld);
            Ok(())
        },
    )
    .await;
    exchanges(&proxy, &server, &mut figures, "renew_lease", async {
        store.renew_lease("rt", token, ttl).await.map(drop)
    })
    .await;
    exchanges(&proxy, &server, &mut figures, "lease_info", async {
        store.lease_info("rt").await.map(drop)
    })
    .await;
    let fenced = session.fenced(token);
    exchanges(
        &proxy,
        &server,
        &mut figures,
        "fenced add_items(3)",
        fenced.add_items(three()),
    )
    .await;
    exchanges(&proxy, &server, &mut figures, "fenced pop_item", async {
        fenced.pop_item().await.map(drop)
    })
    .await;
    exchanges(
        &proxy,
        &server,
        &mut figures,
        "fenced add_items refused",
        async {
            let err = session
                .fenced(token + 1)
                .add_items(three())
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Fenced);
            Ok(())
        },
    )
    .await;
    exchanges(
        &proxy,
        &server,
        &mut figures,
        "fenced clear_session",
        fenced.clear_session(),
    )
    .await;
    exchanges(&proxy, &server, &mut figures, "release_lease", async {
        store.release_lease("rt", token).await
    })
    .await;
    println!("round trips per operation:\n  {}", figures.join("\n  "));
}

/// A get: one round trip (the pipeline is written at once), its two commands the HEAD
/// script's EVALSHA and one LRANGE.
async fn pipelined(
    proxy: &CountingProxy,
    server: &OwnRedis,
    figures: &mut Vec<String>,
    name: &str,
    op: impl std::future::Future<Output = Result<(), Error>>,
) {
    // HMGET, PTTL, LRANGE and (the seed's prefix, standalone) TYPE of the seed key, written
    // together: one round trip, no script.
    let before = command_calls(server.port);
    exchanges_of(proxy, server, figures, name, 4, 0, op).await;
    let after = command_calls(server.port);
    let diff =
        |cmd: &str| after.get(cmd).copied().unwrap_or(0) - before.get(cmd).copied().unwrap_or(0);
    assert_eq!(
        (diff("hmget"), diff("pttl"), diff("lrange"), diff("type")),
        (1, 1, 1, 1),
        "{name}: the plain read"
    );
}

async fn exchanges(
    proxy: &CountingProxy,
    server: &OwnRedis,
    figures: &mut Vec<String>,
    name: &str,
    op: impl std::future::Future<Output = Result<(), Error>>,
) {
    exchanges_of(proxy, server, figures, name, 1, 1, op).await
}

async fn exchanges_of(
    proxy: &CountingProxy,
    server: &OwnRedis,
    figures: &mut Vec<String>,
    name: &str,
    commands: u64,
    scripts: u64,
    op: impl std::future::Future<Output = Result<(), Error>>,
) {
    let before_proxy = proxy.commands();
    let before = command_calls(server.port);
    op.await.unwrap();
    let sent = proxy.commands() - before_proxy;
    let after = command_calls(server.port);
    let diff =
        |cmd: &str| after.get(cmd).copied().unwrap_or(0) - before.get(cmd).copied().unwrap_or(0);
    let (evalsha, eval) = (diff("evalsha"), diff("eval"));
    figures.push(format!(
        "{name}: {sent} command(s) on the socket, {evalsha} EVALSHA"
    ));
    assert_eq!(sent, commands, "{name}: commands sent");
    assert_eq!((evalsha, eval), (scripts, 0), "{name}: EVALSHA calls");
}

/// 32 writers x 500 items in batches of 1-5 into one session through 4 connections: nothing
/// lost or duplicated, every batch contiguous; then concurrent pops return each item once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_across_connections() {
    let url = format!(
        "{}?prefix={}",
        shared_url("OAS_TEST_REDIS_URL"),
        unique("conc")
    );
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(Store::open(&url).await.unwrap());
    }
    let id = "shared";
    let mut tasks = Vec::new();
    for w in 0..32u64 {
        let session = stores[(w % 4) as usize].session(id).unwrap();
        tasks.push(tokio::spawn(async move {
            let mut written = 0u64;
            let mut batch_no = 0u64;
            while written < 500 {
                let len = (1 + (w + batch_no) % 5).min(500 - written);
                let batch = (0..len)
                    .map(|i| item(json!({"w": w, "b": batch_no, "i": i, "len": len})))
                    .collect();
                session.add_items(batch).await?;
                written += len;
                batch_no += 1;
            }
            Ok::<_, Error>(batch_no)
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let all = stores[0]
        .session(id)
        .unwrap()
        .get_items(None)
        .await
        .unwrap();
    assert_eq!(all.len(), 32 * 500, "items lost or duplicated");
    let mut pos = 0;
    let mut next_batch: HashMap<u64, u64> = HashMap::new();
    let mut seen = HashSet::new();
    while pos < all.len() {
        let v = all[pos].to_value();
        let (w, b, len) = (
            v["w"].as_u64().unwrap(),
            v["b"].as_u64().unwrap(),
            v["len"].as_u64().unwrap(),
        );
        assert_eq!(
            next_batch.get(&w).copied().unwrap_or(0),
            b,
            "writer {w} batches in order"
        );
        next_batch.insert(w, b + 1);
        for k in 0..len {
            let x = all[pos + k as usize].to_value();
            assert_eq!(
                (x["w"].as_u64(), x["b"].as_u64(), x["i"].as_u64()),
                (Some(w), Some(b), Some(k)),
                "batch contiguous"
            );
            assert!(seen.insert((w, b, k)));
        }
        pos += len as usize;
    }
    // Concurrent pops, 4 connections: each item at most once.
    let mut pops = Vec::new();
    for t in 0..16 {
        let session = stores[t % 4].session(id).unwrap();
        pops.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..100 {
                match session.pop_item().await? {
                    Some(i) => got.push(i.into_string()),
                    None => break,
                }
            }
            Ok::<_, Error>(got)
        }));
    }
    let mut popped = Vec::new();
    for p in pops {
        popped.extend(p.await.unwrap().unwrap());
    }
    let unique_pops: HashSet<&String> = popped.iter().collect();
    assert_eq!(unique_pops.len(), popped.len(), "an item was popped twice");
    let remaining = stores[0]
        .session(id)
        .unwrap()
        .get_items(None)
        .await
        .unwrap();
    assert_eq!(remaining.len() + popped.len(), 32 * 500);
    stores[0]
        .session(id)
        .unwrap()
        .clear_session()
        .await
        .unwrap();
}

/// A key of another type where the session's keys go: a typed error before any side effect.
#[tokio::test]
async fn wrong_key_type_is_a_typed_error_and_changes_nothing() {
    let server = OwnRedis::start("wrongtype");
    let store = Store::open(&server.url()).await.unwrap();
    let s = store.session("victim").unwrap();
    s.add_items(vec![item(json!({"keep": 1}))]).await.unwrap();
    // Replace the item list with a string.
    let items_key = "openai_agents_session:{victim}:items";
    server.cli(&["del", items_key]);
    server.cli(&["set", items_key, "not a list"]);
    for result in [
        s.add_items(vec![item(json!({"x": 1}))]).await.map(drop),
        s.get_items(None).await.map(drop),
        s.pop_item().await.map(drop),
        s.clear_session().await,
    ] {
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
        assert!(err.to_string().contains("another type"), "{err}");
    }
    assert_eq!(
        server.cli(&["get", items_key]).trim(),
        "not a list",
        "data untouched"
    );
    assert_eq!(
        server
            .cli(&["hget", "openai_agents_session:{victim}:meta", "v"])
            .trim(),
        "1"
    );
}

/// Pops of encrypted records take two steps (the client decodes the record, then removes it
/// if the tail is unchanged). 48 poppers on one session all retrying at once used to invalidate
/// each other until one gave up ("kept changing", 1 run in 6 of the conformance kit's 16); with
/// the random pause between conflicts every pop ends, and every item is popped exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn encrypted_pops_under_heavy_contention_all_end() {
    support::set_kit_keys();
    let url = format!(
        "{}?prefix=enc_contention&encryption_key_env={}",
        shared_url("OAS_TEST_REDIS_URL"),
        support::KIT_KEY_ENV
    );
    let store = Store::open(&url).await.unwrap();
    let session = store.session(&unique("contended")).unwrap();
    const ITEMS: usize = 480;
    session
        .add_items((0..ITEMS).map(|n| item(json!({ "n": n }))).collect())
        .await
        .unwrap();
    let tasks: Vec<_> = (0..48)
        .map(|_| {
            let session = session.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(item) = session.pop_item().await? {
                    got.push(item);
                }
                Ok::<_, Error>(got)
            })
        })
        .collect();
    let mut popped = HashSet::new();
    for task in tasks {
        for item in task.await.unwrap().unwrap() {
            assert!(
                popped.insert(item.as_str().to_owned()),
                "popped twice: {item}"
            );
        }
    }
    assert_eq!(popped.len(), ITEMS);
    assert!(session.get_items(None).await.unwrap().is_empty());
}

/// `get_items` reads with plain commands (HMGET, PTTL, LRANGE) and no script while the session
/// is live and its expiry not due; the HEAD script runs only for what needs it: a refresh that
/// is due, an expiry to set, seed history to migrate. Each answer is the same either way.
#[tokio::test]
async fn reads_take_the_script_only_when_it_has_work() {
    let server = OwnRedis::start("plainreads");
    let store = Store::open(&format!("{}?ttl=60", server.url()))
        .await
        .unwrap();
    let scripts = || {
        command_calls(server.port)
            .get("evalsha")
            .copied()
            .unwrap_or(0)
    };
    let meta = "openai_agents_session:{plain}:meta";
    let s = store.session("plain").unwrap();
    s.add_items(vec![item(json!({"n": 1})), item(json!({"n": 2}))])
        .await
        .unwrap();

    let before = scripts();
    assert_eq!(
        s.get_items(Some(1)).await.unwrap(),
        vec![item(json!({"n": 2}))]
    );
    assert_eq!(s.get_items(None).await.unwrap().len(), 2);
    assert_eq!(scripts(), before, "a live session is read without a script");
    let missing = store.session("never-written").unwrap();
    assert!(missing.get_items(None).await.unwrap().is_empty());
    assert_eq!(scripts(), before, "nor a missing one");

    // Due for a refresh (expires in 10 s of a 60 s TTL): the script refreshes it.
    server.cli(&["pexpire", meta, "10000"]);
    let at: i64 = server.cli_int(&["hget", meta, "expires_at"]);
    server.cli(&["hset", meta, "expires_at", &(at - 50_000).to_string()]);
    assert_eq!(s.get_items(None).await.unwrap().len(), 2);
    assert_eq!(scripts(), before + 1, "a due refresh runs HEAD");
    assert!(server.cli_int(&["pttl", meta]) > 59_000, "refreshed");
    assert!(server.cli_int(&["hget", meta, "expires_at"]) >= at);

    // Written without a TTL, read by a store with one: HEAD sets the expiry.
    let plain = Store::open(&server.url()).await.unwrap();
    plain
        .session("no-ttl")
        .unwrap()
        .add_items(vec![item(json!({"x": 1}))])
        .await
        .unwrap();
    let mid = scripts();
    assert_eq!(
        plain
            .session("no-ttl")
            .unwrap()
            .get_items(None)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(scripts(), mid, "no TTL, none wanted: no script");
    assert_eq!(
        store
            .session("no-ttl")
            .unwrap()
            .get_items(None)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(scripts(), mid + 1);
    assert!(server.cli_int(&["pttl", "openai_agents_session:{no-ttl}:meta"]) > 59_000);

    // Seed history (the seed's prefix, standalone): HEAD migrates it on the first read.
    server.cli(&[
        "rpush",
        "openai_agents_session:seeded",
        r#"{"role": "user", "content": "old"}"#,
    ]);
    let seeded = store.session("seeded").unwrap();
    let got = seeded.get_items(None).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].as_str(), r#"{"role":"user","content":"old"}"#);
    assert_eq!(
        server.cli_int(&["exists", "openai_agents_session:seeded"]),
        0,
        "moved"
    );
    let after_migration = scripts();
    assert_eq!(seeded.get_items(None).await.unwrap(), got);
    assert_eq!(scripts(), after_migration, "then read without a script");

    // A newer layout's metadata: the script's typed error, nothing changed.
    server.cli(&["hset", meta, "v", "2"]);
    let err = s.get_items(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedFormat, "{err}");
    assert_eq!(server.cli(&["hget", meta, "v"]).trim(), "2");
}

/// The fast paths of ADD and HEAD (`docs/storage/redis.md`, "ADD") write what the general
/// paths write: every append moves both keys' expiry and `expires_at` to now + ttl exactly, an
/// append to a session whose list was emptied gives the new list the expiry too, `updated_at`
/// only grows, a store without a TTL removes the expiry (the general path), and metadata of
/// another type fails before any side effect.
#[tokio::test]
async fn appends_set_the_expiry_and_metadata_exactly() {
    let server = OwnRedis::start("fastpath");
    let with_ttl = Store::open(&format!("{}?ttl=60", server.url()))
        .await
        .unwrap();
    let (meta, items) = (
        "openai_agents_session:{fast}:meta",
        "openai_agents_session:{fast}:items",
    );
    let server_ms = || -> i64 {
        let t = server.cli(&["time"]);
        let mut parts = t.split_whitespace().map(|p| p.parse::<i64>().unwrap());
        let (secs, micros) = (parts.next().unwrap(), parts.next().unwrap());
        secs * 1000 + micros / 1000
    };
    let s = with_ttl.session("fast").unwrap();
    s.add_items(vec![item(json!({"n": 0}))]).await.unwrap(); // new session: general path
    let mut updated = server.cli_int(&["hget", meta, "updated_at"]);
    for n in 1..=3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = server_ms();
        s.add_items(vec![item(json!({"n": n})), item(json!({"n": n}))])
            .await
            .unwrap();
        let after = server_ms();
        let expires = server.cli_int(&["hget", meta, "expires_at"]);
        assert!(
            (before + 60_000..=after + 60_000).contains(&expires),
            "expires_at {expires} not now + ttl ({before}..{after})"
        );
        for key in [meta, items] {
            let pttl = server.cli_int(&["pttl", key]);
            assert!((59_000..=60_000).contains(&pttl), "{key}: pttl {pttl}");
        }
        let next = server.cli_int(&["hget", meta, "updated_at"]);
        assert!(next > updated, "updated_at {next} after {updated}");
        updated = next;
    }
    // Two appends within one millisecond still advance updated_at.
    let (a, b) = tokio::join!(
        s.add_items(vec![item(json!({"same": 1}))]),
        s.add_items(vec![item(json!({"same": 2}))])
    );
    a.unwrap();
    b.unwrap();
    assert!(server.cli_int(&["hget", meta, "updated_at"]) >= updated + 2);
    assert_eq!(s.get_items(None).await.unwrap().len(), 9);

    // Emptied by pops: the list key is gone, the session is not; the next append's list gets
    // the expiry.
    while s.pop_item().await.unwrap().is_some() {}
    assert_eq!(server.cli_int(&["exists", items]), 0);
    s.add_items(vec![item(json!({"again": 1}))]).await.unwrap();
    assert!((59_000..=60_000).contains(&server.cli_int(&["pttl", items])));

    // A store without a TTL takes the general path and removes the expiry.
    let without = Store::open(&server.url()).await.unwrap();
    let plain = without.session("fast").unwrap();
    plain
        .add_items(vec![item(json!({"plain": 1}))])
        .await
        .unwrap();
    assert_eq!(server.cli_int(&["pttl", meta]), -1);
    assert_eq!(server.cli_int(&["pttl", items]), -1);
    assert_eq!(server.cli(&["hexists", meta, "expires_at"]).trim(), "0");
    plain
        .add_items(vec![item(json!({"plain": 2}))])
        .await
        .unwrap(); // fast, no TTL
    assert_eq!(server.cli_int(&["pttl", items]), -1);
    assert_eq!(plain.get_items(None).await.unwrap().len(), 3);
    // And the TTL comes back with the next append through a store that has one.
    s.add_items(vec![item(json!({"ttl": "back"}))])
        .await
        .unwrap();
    assert!((59_000..=60_000).contains(&server.cli_int(&["pttl", meta])));
    assert!((59_000..=60_000).contains(&server.cli_int(&["pttl", items])));

    // Metadata of another type: a typed error, the list untouched.
    let len = server.cli_int(&["llen", items]);
    server.cli(&["del", meta]);
    server.cli(&["set", meta, "not a hash"]);
    for result in [
        s.add_items(vec![item(json!({"x": 1}))]).await.map(drop),
        s.get_items(None).await.map(drop),
    ] {
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
        assert!(err.to_string().contains("another type"), "{err}");
    }
    assert_eq!(server.cli_int(&["llen", items]), len);
}

/// Seed data (Python `json.dumps` text in one list per session) and the official SDK's layout,
/// written with redis-cli, read exactly through `layout=`; writes there are invalid input.
#[tokio::test]
async fn legacy_layouts_read_exactly() {
    let server = OwnRedis::start("legacy");
    let seed_items = [
        r#"{"role": "user", "content": "h\u00e9llo \ud83d\ude0a"}"#,
        r#"{"type": "function_call", "arguments": "{\"a\": 1}", "call_id": "c1", "name": "f", "n": 12345678901234567890123}"#,
    ];
    for text in seed_items {
        server.cli(&["rpush", "openai_agents_session:user-123", text]);
    }
    server.cli(&["expire", "openai_agents_session:user-123", "1000"]);
    let official = [
        r#"{"role":"user","content":"h\u00e9llo"}"#,
        r#"{"role":"assistant","content":"hi"}"#,
    ];
    server.cli(&[
        "hset",
        "agents:session:sdk-1",
        "session_id",
        "sdk-1",
        "created_at",
        "1700000000",
        "updated_at",
        "1700000100",
    ]);
    for text in official {
        server.cli(&["rpush", "agents:session:sdk-1:messages", text]);
    }

    let seed = Store::open(&format!("{}?layout=seed", server.url()))
        .await
        .unwrap();
    let got = seed
        .session("user-123")
        .unwrap()
        .get_items(None)
        .await
        .unwrap();
    let want: Vec<Item> = seed_items.iter().map(|t| t.parse().unwrap()).collect();
    assert_eq!(got, want);
    assert_eq!(
        got[0].as_str(),
        r#"{"role":"user","content":"h\u00e9llo \ud83d\ude0a"}"#,
        "escapes kept as written"
    );
    assert_eq!(
        seed.session("user-123")
            .unwrap()
            .get_items(Some(1))
            .await
            .unwrap(),
        want[1..].to_vec()
    );
    assert_eq!(
        seed.list_all_sessions(None).await.unwrap(),
        vec!["user-123".to_owned()]
    );
    let info = seed.session_info("user-123").await.unwrap().unwrap();
    assert_eq!(info.item_count, 2);
    assert!(info.expires_at.is_some());
    let err = seed
        .session("user-123")
        .unwrap()
        .add_items(vec![item(json!({"a": 1}))])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("read-only"), "{err}");

    let sdk = Store::open(&format!("{}?layout=openai-agents", server.url()))
        .await
        .unwrap();
    let got = sdk.session("sdk-1").unwrap().get_items(None).await.unwrap();
    assert_eq!(got.iter().map(Item::as_str).collect::<Vec<_>>(), official);
    assert_eq!(
        sdk.list_all_sessions(None).await.unwrap(),
        vec!["sdk-1".to_owned()]
    );
    let info = sdk.session_info("sdk-1").await.unwrap().unwrap();
    assert_eq!(
        (
            info.item_count,
            info.created_at.as_millis(),
            info.updated_at.as_millis()
        ),
        (2, 1_700_000_000_000, 1_700_000_100_000)
    );
    assert_eq!(
        sdk.session("sdk-1")
            .unwrap()
            .pop_item()
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );

    // The native layout migrates the seed's list in place, atomically, on first access.
    let native = Store::open(&server.url()).await.unwrap();
    let s = native.session("user-123").unwrap();
    assert_eq!(
        s.get_items(None).await.unwrap(),
        want,
        "seed history is migrated, not lost"
    );
    assert_eq!(
        server
            .cli(&["exists", "openai_agents_session:user-123"])
            .trim(),
        "0",
        "the seed key is gone"
    );
    s.add_items(vec![item(json!({"after": "upgrade"}))])
        .await
        .unwrap();
    assert_eq!(s.get_items(None).await.unwrap().len(), 3);
}

/// In a cluster the seed key is in another slot: a typed LegacyData error names the migration.
#[tokio::test]
async fn cluster_reports_seed_history_instead_of_hiding_it() {
    let url = shared_url("OAS_TEST_REDIS_CLUSTER_URL");
    let id = unique("seed-in-cluster");
    let seed_key = format!("openai_agents_session:{id}");
    let port = url
        .trim_start_matches("redis+cluster://")
        .split(',')
        .next()
        .and_then(|h| h.rsplit(':').next())
        .and_then(|p| p.trim_end_matches('/').parse::<u16>().ok())
        .unwrap();
    let out = std::process::Command::new("redis-cli")
        .args([
            "-c",
            "-p",
            &port.to_string(),
            "rpush",
            &seed_key,
            r#"{"role": "user", "content": "old"}"#,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let store = Store::open(&url).await.unwrap();
    let s = store.session(&id).unwrap();
    for err in [
        s.get_items(None).await.unwrap_err(),
        s.add_items(vec![item(json!({"new": 1}))])
            .await
            .unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::LegacyData, "{err}");
        assert!(err.to_string().contains("agent-session copy"), "{err}");
    }
    let seed = Store::open(&format!("{url}?layout=seed")).await.unwrap();
    assert_eq!(
        seed.session(&id)
            .unwrap()
            .get_items(None)
            .await
            .unwrap()
            .len(),
        1
    );
    std::process::Command::new("redis-cli")
        .args(["-c", "-p", &port.to_string(), "del", &seed_key])
        .output()
        .unwrap();
}

#[tokio::test]
async fn bad_credentials_certificates_hosts_and_options_are_named() {
    let acl = shared_url("OAS_TEST_REDIS_ACL_URL");
    let wrong = acl.replace("oas-secret-pw", "wrong-pw-hunter2");
    let err = Store::open(&wrong).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("credentials"), "{err}");
    assert!(
        !err.to_string().contains("hunter2") && !format!("{err:?}").contains("hunter2"),
        "{err:?}"
    );

    let tls = shared_url("OAS_TEST_REDISS_URL");
    let dir = support::temp_dir("ca");
    let other_ca = support::unrelated_ca(&dir);
    let base = tls.split('?').next().unwrap();
    let err = Store::open(&format!("{base}?tls_ca_file={}", other_ca.display()))
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Connection | ErrorKind::Config),
        "{err}"
    );
    let shown = format!("{err}: {:?}", std::error::Error::source(&err));
    assert!(
        shown.to_lowercase().contains("certificate")
            || shown.contains("tls")
            || shown.contains("TLS"),
        "{shown}"
    );
    let err = Store::open(&format!("{base}?tls_ca_file=/nonexistent/ca.pem"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("tls_ca_file"), "{err}");
    // System roots do not know the test CA.
    assert!(Store::open(base).await.is_err());

    let port = support::free_port();
    let start = Instant::now();
    let err = Store::open(&format!(
        "redis://user:hunter2@127.0.0.1:{port}/?connect_timeout=1"
    ))
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    assert!(!err.to_string().contains("hunter2"));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "unreachable host fails fast"
    );

    for (url, needle) in [
        ("redis://127.0.0.1:1/?bogus=1", "bogus"),
        ("redis://127.0.0.1:1/?connect_timeout=0", "connect_timeout"),
        (
            "redis://127.0.0.1:1/?response_timeout=abc",
            "response_timeout",
        ),
        ("redis://127.0.0.1:1/?layout=v9", "layout"),
        ("redis://127.0.0.1:1/?tls_insecure=true", "rediss"),
        ("redis://:pw-hunter2@h1:1,h2:2/", "cluster"),
    ] {
        let err = Store::open(url).await.unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Config | ErrorKind::InvalidInput),
            "{url}: {err}"
        );
        assert!(err.to_string().contains(needle), "{url}: {err}");
        assert!(!err.to_string().contains("hunter2"));
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// SIGKILL and restart mid-load: typed errors during the outage, success again within 5 s of
/// the server answering, no partial batch, every acknowledged item present exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_kill_and_restart() {
    let mut server = OwnRedis::start("kill");
    let store = Store::open(&format!(
        "{}?response_timeout=2&connect_timeout=1",
        server.url()
    ))
    .await
    .unwrap();
    let session = store.session("load").unwrap();
    let writer = {
        let session = session.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut errors: HashMap<ErrorKind, u64> = HashMap::new();
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < Duration::from_secs(8) {
                let batch = (0..3).map(|i| item(json!({"n": n, "i": i}))).collect();
                match session.add_items(batch).await {
                    Ok(()) => acked.push(n),
                    Err(e) => {
                        assert!(
                            matches!(
                                e.kind(),
                                ErrorKind::Connection
                                    | ErrorKind::OutcomeUnknown
                                    | ErrorKind::Timeout
                            ),
                            "{e}"
                        );
                        *errors.entry(e.kind()).or_default() += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                n += 1;
            }
            (acked, errors)
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.spawn();
    let answered = Instant::now();
    let mut recovered = None;
    while answered.elapsed() < Duration::from_secs(10) {
        if session.get_items(Some(1)).await.is_ok() {
            recovered = Some(answered.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered = recovered.expect("no recovery within 10 s");
    assert!(
        recovered < Duration::from_secs(5),
        "recovered after {recovered:?}"
    );
    let (acked, errors) = writer.await.unwrap();
    assert!(!errors.is_empty(), "the outage produced no errors");
    let all = session.get_items(None).await.unwrap();
    // Batches are atomic and contiguous: the history is whole batches of 3, none twice.
    assert_eq!(all.len() % 3, 0, "a partial batch is visible");
    let mut batches: HashMap<u64, Vec<u64>> = HashMap::new();
    for chunk in all.chunks(3) {
        let fields: Vec<(u64, u64)> = chunk
            .iter()
            .map(|it| {
                let v = it.to_value();
                (v["n"].as_u64().unwrap(), v["i"].as_u64().unwrap())
            })
            .collect();
        let n = fields[0].0;
        assert_eq!(
            fields,
            vec![(n, 0), (n, 1), (n, 2)],
            "batch {n} partial or interleaved"
        );
        assert!(
            batches.insert(n, vec![0, 1, 2]).is_none(),
            "batch {n} stored twice"
        );
    }
    for n in &acked {
        assert!(batches.contains_key(n), "acknowledged batch {n} lost");
    }
    println!(
        "kill/restart: {} batches acknowledged, {} stored, errors during the outage {:?}, recovered {:?} after the server answered",
        acked.len(),
        batches.len(),
        errors,
        recovered
    );
}

/// SIGSTOP: a typed timeout within response_timeout + 2 s; recovery after SIGCONT.
#[tokio::test]
async fn hung_server_times_out_then_recovers() {
    let server = OwnRedis::start("stop");
    let store = Store::open(&format!("{}?response_timeout=1", server.url()))
        .await
        .unwrap();
    let s = store.session("hang").unwrap();
    s.add_items(vec![item(json!({"a": 1}))]).await.unwrap();
    server.signal("STOP");
    let start = Instant::now();
    let err = s.get_items(None).await.unwrap_err();
    let read_took = start.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.is_retryable());
    let start = Instant::now();
    let err = s.add_items(vec![item(json!({"b": 2}))]).await.unwrap_err();
    let write_took = start.elapsed();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    assert!(!err.is_retryable());
    assert!(
        read_took < Duration::from_secs(3) && write_took < Duration::from_secs(3),
        "{read_took:?} {write_took:?}"
    );
    server.signal("CONT");
    let start = Instant::now();
    let mut ok = false;
    while start.elapsed() < Duration::from_secs(5) {
        if s.get_items(None).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "no recovery after SIGCONT");
    println!("SIGSTOP: read timed out after {read_took:?}, write after {write_took:?} (response_timeout 1 s); recovered {:?} after SIGCONT", start.elapsed());
}

/// CLIENT PAUSE 1000 WRITE: operations wait and then complete.
#[tokio::test]
async fn client_pause_delays_but_completes() {
    let server = OwnRedis::start("pause");
    let store = Store::open(&server.url()).await.unwrap();
    let s = store.session("paused").unwrap();
    s.add_items(vec![item(json!({"a": 1}))]).await.unwrap();
    server.cli(&["client", "pause", "1000", "WRITE"]);
    let start = Instant::now();
    s.add_items(vec![item(json!({"b": 2}))]).await.unwrap();
    let took = start.elapsed();
    assert_eq!(s.get_items(None).await.unwrap().len(), 2);
    assert!(
        took >= Duration::from_millis(500),
        "the write waited for the pause: {took:?}"
    );
    println!("CLIENT PAUSE 1000 WRITE: the write completed after {took:?}");
}

/// One cluster master stopped (`cluster-require-full-coverage no`): sessions in its slots fail
/// with typed errors, the others keep working, and all recover after it restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_master_down_fails_only_its_slots() {
    let mut cluster = OwnCluster::start("cluster-fault");
    let store = Store::open(&format!(
        "{}?response_timeout=1&connect_timeout=1",
        cluster.url()
    ))
    .await
    .unwrap();
    let ids: Vec<String> = (0..30).map(|n| format!("user-{n}")).collect();
    for id in &ids {
        store
            .session(id)
            .unwrap()
            .add_items(vec![item(json!({"id": id}))])
            .await
            .unwrap();
    }
    cluster.nodes[1].kill();
    let mut ok = 0;
    let mut failed = HashMap::new();
    let start = Instant::now();
    for id in &ids {
        match store
            .session(id)
            .unwrap()
            .add_items(vec![item(json!({"more": id}))])
            .await
        {
            Ok(()) => ok += 1,
            Err(e) => {
                assert!(
                    matches!(
                        e.kind(),
                        ErrorKind::Connection | ErrorKind::Timeout | ErrorKind::OutcomeUnknown
                    ),
                    "{e}"
                );
                *failed.entry(e.kind()).or_insert(0) += 1;
            }
        }
    }
    let outage_took = start.elapsed();
    assert!(ok > 0, "the other masters kept working");
    assert!(!failed.is_empty(), "the stopped master's slots failed");
    cluster.nodes[1].spawn();
    let restarted = Instant::now();
    let mut all_ok = false;
    while restarted.elapsed() < Duration::from_secs(20) {
        let mut good = 0;
        for id in &ids {
            if store.session(id).unwrap().get_items(None).await.is_ok() {
                good += 1;
            }
        }
        if good == ids.len() {
            all_ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        all_ok,
        "not every session recovered after the master restarted"
    );
    println!(
        "cluster master down: {ok} of {} sessions kept working, failures {failed:?} (30 writes took {outage_took:?}); all recovered {:?} after restart",
        ids.len(),
        restarted.elapsed()
    );
}

/// A connection the caller owns: the store uses it and never closes it.
#[tokio::test]
async fn caller_owned_connection_is_shared_and_never_closed() {
    use openai_agents_session::backend::redis::{redis, RedisBackend, RedisConnection};
    use openai_agents_session::StoreOptions;
    let server = OwnRedis::start("owned");
    let client = redis::Client::open(server.url()).unwrap();
    let mut manager = client.get_connection_manager().await.unwrap();
    {
        let store = RedisBackend::store_from_connection(
            RedisConnection::Single(manager.clone()),
            Some("owned_app"),
            StoreOptions::default(),
        );
        let handles: Vec<_> = (0..1000)
            .map(|n| store.session(&format!("s{n}")).unwrap())
            .collect();
        handles[7]
            .add_items(vec![item(json!({"via": "owned"}))])
            .await
            .unwrap();
        assert_eq!(handles[7].get_items(None).await.unwrap().len(), 1);
    }
    // The store is gone; the caller's connection still works, and saw our keys.
    let exists: i64 = redis::cmd("EXISTS")
        .arg("owned_app:{s7}:items")
        .query_async(&mut manager)
        .await
        .unwrap();
    assert_eq!(exists, 1);
    let clients = server.cli(&["client", "list"]);
    assert_eq!(
        clients
            .lines()
            .filter(|l| !l.contains("cmd=client"))
            .count(),
        1,
        "one connection for 1000 sessions:\n{clients}"
    );
}

/// `tls_insecure=true` skips verification (and warns); without a CA the handshake fails.
#[tokio::test]
async fn tls_insecure_skips_verification() {
    let url = shared_url("OAS_TEST_REDISS_URL");
    let base = url.split('?').next().unwrap();
    let store = Store::open(&format!(
        "{base}?tls_insecure=true&prefix=insecure_{}",
        std::process::id()
    ))
    .await
    .unwrap();
    let s = store.session("x").unwrap();
    s.add_items(vec![item(json!({"tls": "insecure"}))])
        .await
        .unwrap();
    assert_eq!(s.get_items(None).await.unwrap().len(), 1);
    s.clear_session().await.unwrap();
}

/// `redis://host:port/DB` selects the database: the same session in db 3 and db 0 is isolated.
#[tokio::test]
async fn database_number_in_the_url() {
    let base = shared_url("OAS_TEST_REDIS_URL");
    let base = base.trim_end_matches('/');
    let prefix = format!("dbsel_{}", std::process::id());
    let db3 = Store::open(&format!("{base}/3?prefix={prefix}"))
        .await
        .unwrap();
    let db0 = Store::open(&format!("{base}/0?prefix={prefix}"))
        .await
        .unwrap();
    db3.session("same")
        .unwrap()
        .add_items(vec![item(json!({"db": 3}))])
        .await
        .unwrap();
    assert!(db0
        .session("same")
        .unwrap()
        .get_items(None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        db3.session("same")
            .unwrap()
            .get_items(None)
            .await
            .unwrap()
            .len(),
        1
    );
    db3.session("same").unwrap().clear_session().await.unwrap();
}

/// Issue 1/10, item 1: a store idle across a SIGKILL and restart writes on its first try: the
/// closed connection is replaced before anything is written to it, and nothing acknowledged is
/// lost (append-only with fsync always).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_store_writes_after_a_restart_without_error() {
    let mut server = OwnRedis::start("idle-restart");
    let store = Store::open(&format!(
        "{}?response_timeout=2&connect_timeout=1",
        server.url()
    ))
    .await
    .unwrap();
    let s = store.session("idle").unwrap();
    s.add_items(vec![item(json!({"before": 1}))]).await.unwrap();
    for round in 0..3 {
        server.kill();
        server.spawn();
        // The idle gap: the store learns of the close only from the socket.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let start = Instant::now();
        s.add_items(vec![item(json!({"after": round}))])
            .await
            .unwrap_or_else(|e| panic!("round {round}: first write after the restart: {e}"));
        println!(
            "restart {round}: first write after an idle restart took {:?}",
            start.elapsed()
        );
    }
    let all = s.get_items(None).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|i| i.as_str().to_owned())
            .collect::<Vec<_>>(),
        vec![
            r#"{"before":1}"#,
            r#"{"after":0}"#,
            r#"{"after":1}"#,
            r#"{"after":2}"#
        ]
    );
    // A read right after a restart works too.
    server.kill();
    server.spawn();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.get_items(Some(1)).await.unwrap().len(), 1);
}

/// The same on a cluster: every master restarted while the store is idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_cluster_store_writes_after_a_restart_without_error() {
    let mut cluster = OwnCluster::start("idle-cluster");
    let store = Store::open(&format!(
        "{}?response_timeout=2&connect_timeout=1",
        cluster.url()
    ))
    .await
    .unwrap();
    let ids: Vec<String> = (0..12).map(|n| format!("idle-{n}")).collect();
    for id in &ids {
        store
            .session(id)
            .unwrap()
            .add_items(vec![item(json!({"n": 0}))])
            .await
            .unwrap();
    }
    for node in cluster.nodes.iter_mut() {
        node.kill();
        node.spawn();
    }
    let start = Instant::now();
    while !cluster
        .nodes
        .iter()
        .all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok"))
    {
        assert!(start.elapsed() < Duration::from_secs(30), "cluster not ok");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for id in &ids {
        let s = store.session(id).unwrap();
        s.add_items(vec![item(json!({"n": 1}))])
            .await
            .unwrap_or_else(|e| panic!("{id}: first write after the restart: {e}"));
        assert_eq!(s.get_items(None).await.unwrap().len(), 2, "{id}");
    }
}

/// A write that reached a live connection whose answer was lost stays `OutcomeUnknown` (caused
/// by the lost connection), and is not sent again: the proxy cuts the connection after the
/// request went through, so the server applied it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_answer_was_lost_is_outcome_unknown_and_not_resent() {
    use openai_agents_session::FailureCause;
    let server = OwnRedis::start("lost-answer");
    let proxy = support::CutAfterRequestProxy::start(server.port);
    let store = Store::open(&format!(
        "redis://127.0.0.1:{}/?response_timeout=2&connect_timeout=1",
        proxy.port
    ))
    .await
    .unwrap();
    let s = store.session("lost").unwrap();
    s.add_items(vec![item(json!({"a": 1}))]).await.unwrap();
    proxy.cut_next_answer();
    let err = s.add_items(vec![item(json!({"b": 2}))]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    assert_eq!(err.cause(), Some(FailureCause::Connection), "{err}");
    // It was applied exactly once by the server, never twice.
    let direct = Store::open(&server.url()).await.unwrap();
    let items = direct
        .session("lost")
        .unwrap()
        .get_items(None)
        .await
        .unwrap();
    assert_eq!(items.len(), 2, "{items:?}");
    // A read whose answer is lost is sent again once, and succeeds.
    proxy.cut_next_answer();
    assert_eq!(s.get_items(None).await.unwrap().len(), 2);
}

/// Issue 1/10, item 4: against a SIGSTOPped server a write fails within response_timeout (no
/// connect was needed), as an `OutcomeUnknown` caused by the timeout, and a read as a
/// `Timeout`; after a restart, the reconnect's time is added once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_fails_within_the_response_timeout() {
    use openai_agents_session::FailureCause;
    let server = OwnRedis::start("bound");
    let store = Store::open(&format!(
        "{}?response_timeout=1&connect_timeout=1",
        server.url()
    ))
    .await
    .unwrap();
    let s = store.session("bound").unwrap();
    s.add_items(vec![item(json!({"a": 1}))]).await.unwrap();
    server.signal("STOP");
    let start = Instant::now();
    let err = s.add_items(vec![item(json!({"b": 2}))]).await.unwrap_err();
    let write_took = start.elapsed();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    assert_eq!(err.cause(), Some(FailureCause::Timeout), "{err}");
    let start = Instant::now();
    let err = s.get_items(None).await.unwrap_err();
    let read_took = start.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    server.signal("CONT");
    let slack = Duration::from_millis(300);
    assert!(
        write_took < Duration::from_secs(1) + slack,
        "write {write_took:?}"
    );
    assert!(
        read_took < Duration::from_secs(1) + slack,
        "read {read_took:?}"
    );
    println!("SIGSTOP with response_timeout=1: write failed after {write_took:?}, read after {read_took:?}");
}

/// Issue 4/10: a server killed (SIGKILL, AOF fsync always) in the middle of history
/// transactions: after the restart each operation is fully applied or not at all, and a retry
/// under the same id applies it exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_apply_then_retries_apply_exactly_once() {
    use openai_agents_session::{Applied, HistoryTransaction};
    let mut server = OwnRedis::start("kill-apply");
    let store = Store::open(&format!(
        "{}?response_timeout=1&connect_timeout=1",
        server.url()
    ))
    .await
    .unwrap();
    let s = store.session("applies").unwrap();
    let batch = |n: u64| {
        HistoryTransaction::append_items((0..3).map(|i| item(json!({"n": n, "i": i}))).collect())
    };
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            let mut attempted = 0u64;
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(3) {
                let _ = s
                    .apply_history_transaction(&format!("op-{attempted}"), &batch(attempted))
                    .await;
                attempted += 1;
            }
            attempted
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.spawn();
    let attempted = writer.await.unwrap();
    let (mut now, mut before) = (0, 0);
    for n in 0..attempted {
        let mut tries = 0;
        loop {
            match s
                .apply_history_transaction(&format!("op-{n}"), &batch(n))
                .await
            {
                Ok(Applied::Now) => now += 1,
                Ok(_) => before += 1,
                Err(e) if tries < 50 && e.kind() != ErrorKind::Conflict => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(e) => panic!("op-{n}: {e}"),
            }
            break;
        }
    }
    let all = s.get_items(None).await.unwrap();
    assert_eq!(
        all.len() as u64,
        attempted * 3,
        "every operation exactly once, whole"
    );
    let mut seen = HashMap::new();
    for chunk in all.chunks(3) {
        let n = chunk[0].to_value()["n"].as_u64().unwrap();
        for (i, it) in chunk.iter().enumerate() {
            let v = it.to_value();
            assert_eq!(
                (v["n"].as_u64().unwrap(), v["i"].as_u64().unwrap()),
                (n, i as u64)
            );
        }
        assert!(seen.insert(n, ()).is_none(), "op-{n} applied twice");
    }
    println!("kill mid-apply: {attempted} operations attempted; retries applied {now} now and found {before} applied before");
}

/// The child side of `a_stalled_holder_is_fenced_after_takeover`: does nothing unless the
/// parent test runs this binary with `OAS_TEST_LEASE_CHILD` set.
#[tokio::test]
async fn lease_takeover_child() {
    if let Ok(spec) = std::env::var(support::takeover::CHILD_ENV) {
        support::takeover::child(&spec).await;
    }
}

/// Across processes on Redis: a lease holder process SIGSTOPped past its ttl, a second process
/// taking over and writing, the first resumed: its next fenced write fails `Fenced` and the
/// history holds only the second's writes after the takeover (`support/takeover.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_holder_is_fenced_after_takeover() {
    let server = OwnRedis::start("takeover");
    let exe = std::env::current_exe().unwrap();
    let figures = support::takeover::run(&server.url(), "leased", |spec| {
        let mut command = std::process::Command::new(&exe);
        command
            .args(["lease_takeover_child", "--exact", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(support::takeover::CHILD_ENV, spec);
        command
    })
    .await;
    println!("redis takeover: {figures}");
    // The lease hash is the only key besides the session's two, and it is not listed.
    let store = Store::open(&server.url()).await.unwrap();
    assert_eq!(store.list_all_sessions(None).await.unwrap(), ["leased"]);
    let mut keys: Vec<String> = server.cli(&["--scan"]).lines().map(str::to_owned).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "openai_agents_session:{leased}:items",
            "openai_agents_session:{leased}:lease",
            "openai_agents_session:{leased}:meta",
        ]
    );
    let ttl: i64 = server
        .cli(&["pttl", "openai_agents_session:{leased}:lease"])
        .trim()
        .parse()
        .unwrap();
    assert!(
        ttl > 86_400_000 && ttl <= 86_400_000 + 31_000,
        "the lease hash expires a day after its lease: {ttl} ms"
    );
}

/// The case of the property tests' `{id}:items` ids (tests/properties.rs): under the default prefix, the
/// seed layout's key of a session named `{chat}:items` is `chat`'s own item list. Reading that
/// session moved `chat`'s items into it on a standalone server (and a clear deleted them); on a
/// Cluster it failed with `LegacyData`. Each id now keeps to its own items.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_shaped_like_our_keys_never_take_another_sessions_items() {
    for url in [
        shared_url("OAS_TEST_REDIS_URL"),
        shared_url("OAS_TEST_REDIS_CLUSTER_URL"),
    ] {
        // The default prefix: the seed layout's checks are on only there.
        let store = Store::open(&url).await.unwrap();
        let base = unique("shape");
        let owner = store.session(&base).unwrap();
        let items = vec![item(json!({"n": 1})), item(json!({"n": 2}))];
        owner.add_items(items.clone()).await.unwrap();
        for suffix in [":items", ":meta", ":lease", ":stage:1-1-1"] {
            let other = store.session(&format!("{{{base}}}{suffix}")).unwrap();
            assert_eq!(
                other.get_items(None).await.unwrap(),
                vec![],
                "{url} {suffix}"
            );
            assert!(store
                .session_info(other.session_id())
                .await
                .unwrap()
                .is_none());
            other
                .add_items(vec![item(json!({"other": suffix}))])
                .await
                .unwrap();
            assert_eq!(
                other.pop_item().await.unwrap().unwrap(),
                item(json!({"other": suffix}))
            );
            other.clear_session().await.unwrap();
            assert_eq!(
                owner.get_items(None).await.unwrap(),
                items,
                "{url} {suffix}"
            );
        }
        owner.clear_session().await.unwrap();
    }
}
