//! What the observability layer (`observe.rs`) costs per storage call when no `tracing`
//! subscriber and no `metrics` recorder is installed: the turn's two calls (`get_items(Some(20))`
//! on a 20-item session, `add_items` of two items) on `memory://`, the backend where the layer's
//! share is largest (no I/O), through a `Store` (the layer and the store's own rules: id check,
//! item size check) and straight on the `MemoryBackend` (neither), interleaved.
//!
//! ```text
//! cargo run --release -p openai-agents-session --features metrics --example observe_overhead [CALLS] [ROUNDS]
//! ```
//!
//! The difference is an upper bound of the layer's cost: it includes the store's rules.

use std::sync::Arc;
use std::time::Instant;

use openai_agents_session::backend::memory::MemoryBackend;
use openai_agents_session::{Backend, BoxFuture, Item, Result, Session, Store, StoreOptions};

const ID: &str = "overhead";

fn turn_items(n: usize) -> Vec<Item> {
    let user = format!(
        r#"{{"role":"user","content":"question {n}: {}"}}"#,
        "x".repeat(160)
    );
    let answer = format!(
        r#"{{"type":"message","role":"assistant","status":"completed","content":[{{"type":"output_text","text":"{}","annotations":[]}}],"id":"msg_{n}"}}"#,
        "y".repeat(880)
    );
    vec![
        Item::from_json_str(&user).expect("a JSON object"),
        Item::from_json_str(&answer).expect("a JSON object"),
    ]
}

/// Nanoseconds per call of `get_items(Some(20))` on a 20-item session, then of `add_items` (the
/// session grows by two items a call; cleared at the start of each round). `get`, `add` and
/// `clear` are the two paths' calls: the `Session`'s or the `Backend`'s.
async fn measure<'a>(
    calls: usize,
    get: impl Fn() -> BoxFuture<'a, Result<Vec<Item>>>,
    add: impl Fn(Vec<Item>) -> BoxFuture<'a, Result<()>>,
    clear: impl Fn() -> BoxFuture<'a, Result<()>>,
) -> (f64, f64) {
    clear().await.expect("memory never fails");
    add((0..10).flat_map(turn_items).collect())
        .await
        .expect("add");
    let items: Vec<Vec<Item>> = (0..calls).map(turn_items).collect();
    let t = Instant::now();
    for _ in 0..calls {
        std::hint::black_box(get().await.expect("get"));
    }
    let get = t.elapsed().as_nanos() as f64 / calls as f64;
    let t = Instant::now();
    for batch in items {
        add(batch).await.expect("add");
    }
    let add = t.elapsed().as_nanos() as f64 / calls as f64;
    (get, add)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let calls: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(7);
    let options = StoreOptions::default();
    let store = Store::from_backend(
        Arc::new(MemoryBackend::new(options.clone())),
        options.clone(),
    );
    let session = store.session(ID).expect("a valid id");
    let backend = MemoryBackend::new(options);
    let (mut sg, mut sa, mut bg, mut ba) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let (g, a) = measure(
            calls,
            || backend.get_items(ID, Some(20)),
            |items| backend.add_items(ID, items),
            || backend.clear_session(ID),
        )
        .await;
        bg.push(g);
        ba.push(a);
        let (g, a) = measure(
            calls,
            || session.get_items(Some(20)),
            |items| session.add_items(items),
            || session.clear_session(),
        )
        .await;
        sg.push(g);
        sa.push(a);
    }
    let (bg, ba, sg, sa) = (median(bg), median(ba), median(sg), median(sa));
    println!(
        "{calls} calls x {rounds} rounds, medians of ns per call (no subscriber, no recorder)"
    );
    println!(
        "get_items(Some(20)): backend {bg:.0} ns, store {sg:.0} ns, difference {:.0} ns",
        sg - bg
    );
    println!(
        "add_items(2 items):  backend {ba:.0} ns, store {sa:.0} ns, difference {:.0} ns",
        sa - ba
    );
    println!(
        "per turn (one of each): {:.0} ns of {:.0} ns = {:.2}%",
        (sg - bg) + (sa - ba),
        sg + sa,
        100.0 * ((sg - bg) + (sa - ba)) / (sg + sa)
    );
}
