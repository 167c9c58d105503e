//! Property tests (proptest) on every backend: memory (plain and encrypted), SQLite, Redis
//! standalone and Cluster, DynamoDB Local and PostgreSQL, each with the same three properties
//! and the same model, written here:
//!
//! 1. `model`: random sequences of `add_items` (batches of random size), `get_items` (`None`,
//!    `Some(0)`, `Some(n)`), `pop_item`, `clear_session`, history transactions (appends,
//!    conditional replaces with exact, respelled, altered and random suffixes, retries under
//!    the same operation id), two writers or two poppers at once, over a few sessions, agree
//!    with a `Vec`-based model (not our memory backend);
//! 2. `isolation`: random session ids (any UTF-8, `:` `/` `#`, braces, glob characters, `%`,
//!    `_`, NUL, empty, over-long, and ids built from each other: `{id}:items`, `id*`, ...)
//!    never see each other's items, list only by literal prefix, and invalid ids are refused;
//! 3. `round_trip`: objects of random JSON (deep nesting, unicode with astral characters and
//!    every escape, numbers like `1e400`, `-0`, `1.0`, `12345678901234567890123`) come back
//!    byte for byte from `get_items`, `get_items(Some(n))` and `pop_item`.
//!
//! Case counts: a CI default per backend (each backend about 20 s or less on 2 cores), or
//! `OAS_PROPTEST_CASES` for every property of the backends run (docs/testing.md has the longer
//! run and its figures). `OAS_PROPTEST_SEED` fixes the random seed (printed by every run).
//! Every case uses fresh session ids (a per-run token and the case number) and clears them
//! when it ends, passed or failed, so shrinking replays each candidate on a clean state
//! against the real servers. A missing server's URL fails, never skips (`support::shared_url`).

mod support;

#[path = "properties/json.rs"]
mod json;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use openai_agents_session::{
    Applied, ConflictReason, ErrorKind, HistoryTransaction, Item, Session, Store,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};

use json::Json;

// ---------------------------------------------------------------------------------------------
// Running a property against a store.

/// A store under test and what makes its session ids unique to this run.
struct Target {
    name: &'static str,
    store: Store,
    runtime: tokio::runtime::Runtime,
    /// In every session id of the run: other runs and other engineers share the servers.
    token: String,
    cases: u32,
    case_no: AtomicU64,
}

fn run_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("pt{}x{}", std::process::id(), nanos % 1_000_000_000_000)
}

fn seed() -> u64 {
    match std::env::var("OAS_PROPTEST_SEED") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("OAS_PROPTEST_SEED must be a u64, got {s:?}")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(7, |d| d.as_nanos() as u64),
    }
}

/// `OAS_PROPTEST_CASES` when set (every property, every backend run), else the backend's CI
/// default.
fn cases(ci_default: u32) -> u32 {
    match std::env::var("OAS_PROPTEST_CASES") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("OAS_PROPTEST_CASES must be a number, got {s:?}")),
        Err(_) => ci_default,
    }
}

impl Target {
    fn open(name: &'static str, url: &str, ci_cases: u32) -> Target {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let store = runtime
            .block_on(Store::open(url))
            .unwrap_or_else(|e| panic!("{name}: cannot open the store: {e}"));
        Target {
            name,
            store,
            runtime,
            token: run_token(),
            cases: cases(ci_cases),
            case_no: AtomicU64::new(0),
        }
    }

    /// A fresh namespace for one case (shrinking runs many: each gets its own).
    fn case_token(&self) -> String {
        format!(
            "{}c{}",
            self.token,
            self.case_no.fetch_add(1, Ordering::SeqCst)
        )
    }

    /// Runs one property for `self.cases` cases, shrinking a failure to a minimal case.
    fn check<S, F, Fut>(&self, property: &str, strategy: S, body: F)
    where
        S: Strategy,
        S::Value: Clone + std::fmt::Debug,
        F: Fn(Case, S::Value) -> Fut,
        Fut: Future<Output = Result<(), TestCaseError>>,
    {
        let seed = seed();
        let config = Config {
            cases: self.cases,
            failure_persistence: None,
            rng_seed: RngSeed::Fixed(seed),
            // Shrinking replays cases against a real server: bounded, so a failing CI run ends.
            max_shrink_time: 300_000,
            max_shrink_iters: 4096,
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        let started = Instant::now();
        let result = runner.run(&strategy, |value| {
            self.runtime.block_on(async {
                let case = Case {
                    token: self.case_token(),
                    used: Default::default(),
                };
                let used = case.used.clone();
                let outcome = body(case, value).await;
                // Clean up what the case wrote, passed or failed, so that the servers' other
                // users see nothing of it (replays have fresh ids anyway).
                let used = std::mem::take(&mut *used.lock().expect("ids"));
                let cleaned = self.clear(&used).await;
                outcome?;
                cleaned.map_err(TestCaseError::fail)
            })
        });
        let elapsed = started.elapsed();
        eprintln!(
            "property {property} on {}: {} cases in {:.1} s (seed {seed}; OAS_PROPTEST_SEED={seed} replays it)",
            self.name,
            self.cases,
            elapsed.as_secs_f64()
        );
        match result {
            Ok(()) => {}
            Err(TestError::Fail(why, minimal)) => panic!(
                "property {property} fails on {} (OAS_PROPTEST_SEED={seed}): {why}\nminimal case: {minimal:#?}",
                self.name
            ),
            Err(TestError::Abort(why)) => {
                panic!("property {property} aborted on {}: {why}", self.name)
            }
        }
    }

    async fn clear(&self, ids: &[String]) -> Result<(), String> {
        for id in ids {
            if let Ok(session) = self.store.session(id) {
                session
                    .clear_session()
                    .await
                    .map_err(|e| format!("cleanup of {id:?}: {e}"))?;
            }
        }
        Ok(())
    }

    fn all(&self) {
        self.check("model", ops_strategy(), |case, ops| {
            model_case(&self.store, case, ops)
        });
        self.check("isolation", ids_strategy(), |case, spec| {
            isolation_case(&self.store, case, spec)
        });
        self.check("round_trip", round_trip_strategy(), |case, items| {
            round_trip_case(&self.store, case, items)
        });
    }
}

/// One case: its token (in each of its session ids) and the ids it used, cleared when it ends.
struct Case {
    token: String,
    used: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Case {
    fn uses(&self, ids: &[String]) {
        self.used.lock().expect("ids").extend(ids.iter().cloned());
    }
}

/// The case's failure (its sessions are cleared by [`Target::check`] all the same).
macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(TestCaseError::fail(format!($($why)+)));
        }
    };
}

fn fail(context: &str, e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(format!("{context}: {e}"))
}

fn item_of(json: &Json) -> Item {
    let text = json.compact();
    Item::from_json_str(&text).unwrap_or_else(|e| panic!("generated item refused: {e}: {text}"))
}

fn texts(items: &[Item]) -> Vec<&str> {
    items.iter().map(Item::as_str).collect()
}

// ---------------------------------------------------------------------------------------------
// Property 1: operations against a Vec model.

/// How a `replace_suffix` builds its expected suffix from the history at the time it runs.
#[derive(Debug, Clone)]
enum Suffix {
    /// The newest `k` items as stored (more than there are: a mismatch).
    Exact(usize),
    /// The newest `k`, respelled: keys reversed, numbers respelled (equal as JSON values).
    Respelled(usize),
    /// The newest `k` with the oldest of them altered.
    Altered(usize),
    /// The newest `k` with every number's text changed a little (`1e400` -> `1`, `12` ->
    /// `121`): a different value, which a comparison that loses digits or exponents takes for
    /// the same.
    Nudged(usize),
    /// Items of its own.
    Other(Vec<Json>),
}

#[derive(Debug, Clone)]
enum TxSpec {
    Append(Vec<Json>),
    Replace(Suffix, Vec<Json>),
}

#[derive(Debug, Clone)]
enum Op {
    Add(usize, Vec<Json>),
    Get(usize, Option<usize>),
    Pop(usize),
    Clear(usize),
    Info(usize),
    /// A transaction under operation id number `op` of the pool.
    Tx(usize, usize, TxSpec),
    /// The `n`-th transaction sent so far (modulo), sent again as it was.
    Retry(usize),
    /// Two batches at once: both land whole and contiguous, in either order.
    AddTwice(usize, Vec<Json>, Vec<Json>),
    /// Two pops at once: the two newest items, each returned once.
    PopTwice(usize),
}

/// Operation ids: retries reuse them, and a few need care in a store's key or SQL.
const OP_IDS: &[&str] = &["turn-1", "op:2", "{op}", "*?[%_]", "\u{f6}-\u{1D11E}"];

const SESSIONS: usize = 3;

fn batch(max: usize) -> impl Strategy<Value = Vec<Json>> {
    proptest::collection::vec(json::model_item(), 0..=max)
}

fn ops_strategy() -> impl Strategy<Value = Vec<Op>> {
    let s = 0..SESSIONS;
    let suffix = prop_oneof![
        3 => (0usize..5).prop_map(Suffix::Exact),
        2 => (1usize..4).prop_map(Suffix::Respelled),
        1 => (1usize..4).prop_map(Suffix::Altered),
        2 => (1usize..4).prop_map(Suffix::Nudged),
        1 => batch(2).prop_map(Suffix::Other),
    ];
    let tx = prop_oneof![
        1 => batch(3).prop_map(TxSpec::Append),
        3 => (suffix, batch(3)).prop_map(|(s, r)| TxSpec::Replace(s, r)),
    ];
    let limit = prop_oneof![Just(None), Just(Some(0)), (1usize..12).prop_map(Some),];
    let op = prop_oneof![
        6 => (s.clone(), batch(6)).prop_map(|(s, b)| Op::Add(s, b)),
        4 => (s.clone(), limit).prop_map(|(s, l)| Op::Get(s, l)),
        3 => s.clone().prop_map(Op::Pop),
        1 => s.clone().prop_map(Op::Clear),
        1 => s.clone().prop_map(Op::Info),
        4 => (s.clone(), 0..OP_IDS.len(), tx).prop_map(|(s, o, t)| Op::Tx(s, o, t)),
        2 => any::<usize>().prop_map(Op::Retry),
        1 => (s.clone(), batch(3), batch(3)).prop_map(|(s, a, b)| Op::AddTwice(s, a, b)),
        1 => s.prop_map(Op::PopTwice),
    ];
    proptest::collection::vec(op, 1..40)
}

/// The model of one session: its items as trees (the text is their compact spelling) and the
/// operation ids it remembers, with the transaction each was used for.
#[derive(Default)]
struct ModelSession {
    items: Vec<Json>,
    ids: HashMap<String, Tx>,
}

/// A transaction as the model remembers it.
#[derive(Debug, Clone)]
struct Tx {
    append: bool,
    expected: Vec<Json>,
    added: Vec<Json>,
}

impl Tx {
    fn same(&self, other: &Tx) -> bool {
        let list_eq = |a: &[Json], b: &[Json]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| json::value_eq(x, y))
        };
        self.append == other.append
            && list_eq(&self.expected, &other.expected)
            && list_eq(&self.added, &other.added)
    }
}

/// A transaction as it was sent: the session, the operation id, the model's trees and the
/// library's items (spelled as they were).
#[derive(Clone)]
struct Sent {
    session: usize,
    op_id: String,
    tx: Tx,
    expected: Vec<Item>,
    added: Vec<Item>,
}

#[derive(Debug, PartialEq)]
enum TxOutcome {
    Now,
    Before,
    Reused,
    Mismatch,
}

impl ModelSession {
    fn apply(&mut self, op_id: &str, tx: &Tx) -> TxOutcome {
        if let Some(prev) = self.ids.get(op_id) {
            return if prev.same(tx) {
                TxOutcome::Before
            } else {
                TxOutcome::Reused
            };
        }
        let k = tx.expected.len();
        if !tx.append {
            if k > self.items.len() {
                return TxOutcome::Mismatch;
            }
            let tail = &self.items[self.items.len() - k..];
            if !tail
                .iter()
                .zip(&tx.expected)
                .all(|(a, b)| json::value_eq(a, b))
            {
                return TxOutcome::Mismatch;
            }
            self.items.truncate(self.items.len() - k);
        }
        self.items.extend(tx.added.iter().cloned());
        self.ids.insert(op_id.to_owned(), tx.clone());
        TxOutcome::Now
    }

    fn newest(&self, limit: Option<usize>) -> Vec<String> {
        let n = limit.unwrap_or(usize::MAX).min(self.items.len());
        self.items[self.items.len() - n..]
            .iter()
            .map(Json::compact)
            .collect()
    }
}

async fn model_case(store: &Store, case: Case, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let token = &case.token;
    const SUFFIXES: [&str; SESSIONS] = ["", ":{a}*", "/%_\0\u{1F600}"];
    let ids: Vec<String> = (0..SESSIONS)
        .map(|i| format!("{token}-{i}{}", SUFFIXES[i]))
        .collect();
    case.uses(&ids);
    let sessions: Vec<_> = ids
        .iter()
        .map(|id| store.session(id).expect("valid id"))
        .collect();
    let mut model: Vec<ModelSession> = (0..SESSIONS).map(|_| ModelSession::default()).collect();
    // Every transaction sent, to be sent again as it was.
    let mut sent: Vec<Sent> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let at = |what: &str| format!("step {step} ({what})");
        match op {
            Op::Add(s, batch) => {
                let items: Vec<Item> = batch.iter().map(item_of).collect();
                sessions[*s]
                    .add_items(items)
                    .await
                    .map_err(|e| fail(&at("add_items"), e))?;
                model[*s].items.extend(batch.iter().cloned());
            }
            Op::Get(s, limit) => {
                let got = sessions[*s]
                    .get_items(*limit)
                    .await
                    .map_err(|e| fail(&at("get_items"), e))?;
                let want = model[*s].newest(*limit);
                ensure!(
                    texts(&got) == want,
                    "{}: get_items({limit:?}) on session {s} returned {:?}, the model has {want:?}",
                    at("get_items"),
                    texts(&got)
                );
            }
            Op::Pop(s) => {
                let got = sessions[*s]
                    .pop_item()
                    .await
                    .map_err(|e| fail(&at("pop_item"), e))?;
                let want = model[*s].items.pop().map(|j| j.compact());
                ensure!(
                    got.as_ref().map(Item::as_str) == want.as_deref(),
                    "{}: pop_item on session {s} returned {got:?}, the model {want:?}",
                    at("pop_item")
                );
            }
            Op::Clear(s) => {
                sessions[*s]
                    .clear_session()
                    .await
                    .map_err(|e| fail(&at("clear_session"), e))?;
                model[*s] = ModelSession::default();
            }
            Op::Info(s) => {
                let info = store
                    .session_info(&ids[*s])
                    .await
                    .map_err(|e| fail(&at("session_info"), e))?;
                let count = info.as_ref().map_or(0, |i| i.item_count);
                ensure!(
                    count == model[*s].items.len() as u64,
                    "{}: session {s} has {count} items by session_info, the model {}",
                    at("session_info"),
                    model[*s].items.len()
                );
            }
            Op::Tx(s, o, spec) => {
                let history = &model[*s].items;
                let newest = |k: usize| history[history.len().saturating_sub(k)..].to_vec();
                // The spelled items the library gets; the trees the model compares.
                let (tx, spelled_expected) = match spec {
                    TxSpec::Append(added) => (
                        Tx {
                            append: true,
                            expected: vec![],
                            added: added.clone(),
                        },
                        vec![],
                    ),
                    TxSpec::Replace(suffix, added) => {
                        let (expected, spelled): (Vec<Json>, Vec<Item>) = match suffix {
                            Suffix::Exact(k) => {
                                let mut e = newest(*k);
                                if *k > history.len() {
                                    // Longer than the history: a mismatch, whatever it holds.
                                    e.insert(0, Json::Obj(vec![]));
                                }
                                let s = e.iter().map(item_of).collect();
                                (e, s)
                            }
                            Suffix::Respelled(k) => {
                                let e = newest(*k);
                                let s = e
                                    .iter()
                                    .map(|j| {
                                        Item::from_json_str(&j.respelled()).expect("respelled item")
                                    })
                                    .collect();
                                (e, s)
                            }
                            Suffix::Altered(k) => {
                                let mut e = newest(*k);
                                if let Some(first) = e.first_mut() {
                                    *first = Json::Obj(vec![(
                                        vec![json::Piece {
                                            written: "altered".into(),
                                            decoded: "altered".into(),
                                        }],
                                        first.clone(),
                                    )]);
                                }
                                let s = e.iter().map(item_of).collect();
                                (e, s)
                            }
                            Suffix::Nudged(k) => {
                                let e: Vec<Json> = newest(*k).iter().map(Json::nudged).collect();
                                let s = e.iter().map(item_of).collect();
                                (e, s)
                            }
                            Suffix::Other(items) => {
                                (items.clone(), items.iter().map(item_of).collect())
                            }
                        };
                        (
                            Tx {
                                append: false,
                                expected,
                                added: added.clone(),
                            },
                            spelled,
                        )
                    }
                };
                let added: Vec<Item> = tx.added.iter().map(item_of).collect();
                sent.push(Sent {
                    session: *s,
                    op_id: OP_IDS[*o].to_owned(),
                    tx: tx.clone(),
                    expected: spelled_expected.clone(),
                    added: added.clone(),
                });
                apply_and_compare(
                    &sessions[*s],
                    &mut model[*s],
                    OP_IDS[*o],
                    &tx,
                    spelled_expected,
                    added,
                    &at("apply_history_transaction"),
                )
                .await?;
            }
            Op::Retry(n) => {
                if sent.is_empty() {
                    continue;
                }
                let Sent {
                    session: s,
                    op_id,
                    tx,
                    expected,
                    added,
                } = sent[n % sent.len()].clone();
                apply_and_compare(
                    &sessions[s],
                    &mut model[s],
                    &op_id,
                    &tx,
                    expected,
                    added,
                    &at("retried apply_history_transaction"),
                )
                .await?;
            }
            Op::AddTwice(s, a, b) => {
                let (ia, ib): (Vec<Item>, Vec<Item>) = (
                    a.iter().map(item_of).collect(),
                    b.iter().map(item_of).collect(),
                );
                let session = &sessions[*s];
                let (ra, rb) = tokio::join!(session.add_items(ia), session.add_items(ib));
                ra.map_err(|e| fail(&at("add_items (first of two)"), e))?;
                rb.map_err(|e| fail(&at("add_items (second of two)"), e))?;
                let n = a.len() + b.len();
                let got = if n == 0 {
                    vec![]
                } else {
                    session
                        .get_items(Some(n))
                        .await
                        .map_err(|e| fail(&at("get_items after two writers"), e))?
                };
                let spell = |l: &[Json]| l.iter().map(Json::compact).collect::<Vec<_>>();
                let ab: Vec<String> = [spell(a), spell(b)].concat();
                let ba: Vec<String> = [spell(b), spell(a)].concat();
                let got_texts: Vec<String> = got.iter().map(|i| i.as_str().to_owned()).collect();
                ensure!(
                    got_texts == ab || got_texts == ba,
                    "{}: two writers on session {s}: the newest {n} are {got_texts:?}, expected the batches whole in either order: {ab:?}",
                    at("add_items twice")
                );
                if got_texts == ab {
                    model[*s].items.extend(a.iter().cloned());
                    model[*s].items.extend(b.iter().cloned());
                } else {
                    model[*s].items.extend(b.iter().cloned());
                    model[*s].items.extend(a.iter().cloned());
                }
            }
            Op::PopTwice(s) => {
                let session = &sessions[*s];
                let (ra, rb) = tokio::join!(session.pop_item(), session.pop_item());
                let pa = ra.map_err(|e| fail(&at("pop_item (first of two)"), e))?;
                let pb = rb.map_err(|e| fail(&at("pop_item (second of two)"), e))?;
                let want: Vec<String> = {
                    let m = &mut model[*s].items;
                    let mut w: Vec<String> = Vec::new();
                    for _ in 0..2 {
                        if let Some(j) = m.pop() {
                            w.push(j.compact());
                        }
                    }
                    w
                };
                let mut got: Vec<String> = [pa, pb]
                    .into_iter()
                    .flatten()
                    .map(|i| i.as_str().to_owned())
                    .collect();
                let mut sorted_want = want.clone();
                got.sort();
                sorted_want.sort();
                ensure!(
                    got == sorted_want,
                    "{}: two pops on session {s} returned {got:?}, the two newest are {want:?}",
                    at("pop_item twice")
                );
            }
        }
    }
    // The end state of every session, in full.
    for (s, session) in sessions.iter().enumerate() {
        let got = session
            .get_items(None)
            .await
            .map_err(|e| fail("final get_items", e))?;
        let want = model[s].newest(None);
        ensure!(
            texts(&got) == want,
            "at the end, session {s} holds {:?}, the model {want:?}",
            texts(&got)
        );
    }
    Ok(())
}

async fn apply_and_compare(
    session: &openai_agents_session::StoreSession,
    model: &mut ModelSession,
    op_id: &str,
    tx: &Tx,
    spelled_expected: Vec<Item>,
    added: Vec<Item>,
    at: &str,
) -> Result<(), TestCaseError> {
    let library = if tx.append {
        HistoryTransaction::append_items(added)
    } else {
        HistoryTransaction::replace_suffix(spelled_expected, added)
    };
    let got = match session.apply_history_transaction(op_id, &library).await {
        Ok(Applied::Now) => TxOutcome::Now,
        Ok(Applied::Before) => TxOutcome::Before,
        Ok(other) => return Err(fail(at, format!("unknown outcome {other:?}"))),
        Err(e) if e.kind() == ErrorKind::Conflict => match e.conflict_reason() {
            Some(ConflictReason::OperationReused) => TxOutcome::Reused,
            Some(ConflictReason::SuffixMismatch) => TxOutcome::Mismatch,
            _ => return Err(fail(at, e)),
        },
        Err(e) => return Err(fail(at, e)),
    };
    let want = model.apply(op_id, tx);
    ensure!(
        got == want,
        "{at}: operation {op_id:?} with {tx:?} was {got:?} by the store, {want:?} by the model"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Property 2: session ids never see each other's items.

/// Pieces of session ids: what keys, globs, SQL patterns and paths give a meaning to.
const ID_PIECES: &[&str] = &[
    ":",
    "/",
    "#",
    "{",
    "}",
    "{}",
    "*",
    "?",
    "[",
    "]",
    "[a-z]",
    "%",
    "_",
    "\\",
    "\0",
    " ",
    "\n",
    "..",
    "%25",
    "%7B",
    "%7D",
    "\u{e9}",
    "e\u{301}",
    "\u{1F600}",
    "\u{10FFFF}",
    "'",
    "\"",
    "a",
    "Z",
    "0",
    ":items",
    ":meta",
    ":lease",
    "}:items",
    "m",
    "o#",
    "m#lease",
];

/// How an id is made: free text around the case's token, or from another id of the case.
#[derive(Debug, Clone)]
enum IdSpec {
    /// `before`, the token, `after`.
    Free(Vec<String>, Vec<String>),
    /// `template` applied to id number `n` (modulo) of those made before it.
    From(usize, usize),
    /// Not a valid id: empty, or over 1024 bytes.
    Invalid(bool),
}

/// Ids built from an id: where stores put ids into keys, patterns and prefixes.
const TEMPLATES: &[(&str, &str)] = &[
    ("{", "}:items"),
    ("{", "}:meta"),
    ("{", "}:lease"),
    ("{", "}:stage:1-1-1"),
    ("", "*"),
    ("", "?"),
    ("", "%"),
    ("", "_"),
    ("", "\\"),
    ("", "\0"),
    ("", ":"),
    ("", "/x"),
    ("", "#m"),
    ("x", ""),
    ("{", "}"),
];

fn id_strategy() -> impl Strategy<Value = IdSpec> {
    let pieces = || {
        proptest::collection::vec(
            prop_oneof![
                3 => proptest::sample::select(ID_PIECES).prop_map(str::to_owned),
                1 => any::<char>().prop_map(|c| c.to_string()),
            ],
            0..4,
        )
    };
    prop_oneof![
        4 => (pieces(), pieces()).prop_map(|(a, b)| IdSpec::Free(a, b)),
        3 => (any::<usize>(), 0..TEMPLATES.len()).prop_map(|(n, t)| IdSpec::From(n, t)),
        1 => any::<bool>().prop_map(IdSpec::Invalid),
    ]
}

/// What a case does with its ids: per id, a batch (1..4 items) and whether it is popped once,
/// cleared, or left; the order in which the ids write.
#[derive(Debug, Clone)]
struct IdsCase {
    ids: Vec<IdSpec>,
    actions: Vec<(usize, u8)>,
}

fn ids_strategy() -> impl Strategy<Value = IdsCase> {
    (
        proptest::collection::vec(id_strategy(), 2..7),
        proptest::collection::vec((any::<usize>(), 0u8..6), 4..16),
    )
        .prop_map(|(ids, actions)| IdsCase { ids, actions })
}

fn build_ids(token: &str, specs: &[IdSpec]) -> Vec<Option<String>> {
    let mut out: Vec<Option<String>> = Vec::new();
    for spec in specs {
        let id = match spec {
            IdSpec::Free(a, b) => Some(format!("{}{token}{}", a.concat(), b.concat())),
            IdSpec::From(n, t) => {
                let made: Vec<&String> = out
                    .iter()
                    .flatten()
                    .filter(|id| !id.is_empty() && id.len() <= 1024)
                    .collect();
                if made.is_empty() {
                    Some(format!("{token}{}", TEMPLATES[*t].1))
                } else {
                    let base = made[n % made.len()];
                    Some(format!("{}{base}{}", TEMPLATES[*t].0, TEMPLATES[*t].1))
                }
            }
            IdSpec::Invalid(empty) => {
                if *empty {
                    Some(String::new())
                } else {
                    Some(format!("{token}{}", "\u{1F600}".repeat(260)))
                }
            }
        };
        out.push(id);
    }
    out
}

async fn isolation_case(store: &Store, ctx: Case, case: IdsCase) -> Result<(), TestCaseError> {
    let built = build_ids(&ctx.token, &case.ids);
    // Distinct valid ids; invalid ones must be refused before any I/O.
    let mut ids: Vec<String> = Vec::new();
    for id in built.into_iter().flatten() {
        let valid = !id.is_empty() && id.len() <= 1024;
        match store.session(&id) {
            Ok(_) if valid => {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            Ok(_) => {
                return Err(fail(
                    "session",
                    format!("the invalid id {id:?} was accepted"),
                ))
            }
            Err(e) if !valid => {
                ensure!(
                    e.kind() == ErrorKind::InvalidSessionId,
                    "the invalid id {id:?} failed with {e}, not InvalidSessionId"
                );
            }
            Err(e) => return Err(fail(&format!("session {id:?}"), e)),
        }
    }
    ctx.uses(&ids);
    if ids.is_empty() {
        return Ok(());
    }
    let mut model: Vec<Vec<String>> = vec![Vec::new(); ids.len()];
    let mut written = 0u32;
    for (step, (which, action)) in case.actions.iter().enumerate() {
        let n = which % ids.len();
        let session = store.session(&ids[n]).expect("valid id");
        match action {
            0..=2 => {
                // Items that name their session, so a leak says where it came from.
                let batch: Vec<String> = (0..=*action)
                    .map(|k| {
                        written += 1;
                        serde_json::json!({"owner": ids[n], "k": k, "w": written}).to_string()
                    })
                    .collect();
                let items = batch
                    .iter()
                    .map(|t| Item::from_json_str(t).unwrap())
                    .collect();
                session
                    .add_items(items)
                    .await
                    .map_err(|e| fail(&format!("step {step}: add_items on {:?}", ids[n]), e))?;
                model[n].extend(batch);
            }
            3 => {
                let got = session
                    .pop_item()
                    .await
                    .map_err(|e| fail(&format!("step {step}: pop_item on {:?}", ids[n]), e))?;
                let want = model[n].pop();
                ensure!(
                    got.as_ref().map(Item::as_str) == want.as_deref(),
                    "step {step}: pop_item on {:?} returned {got:?}, expected {want:?}",
                    ids[n]
                );
            }
            4 => {
                session
                    .clear_session()
                    .await
                    .map_err(|e| fail(&format!("step {step}: clear on {:?}", ids[n]), e))?;
                model[n].clear();
            }
            _ => {
                let got = session
                    .get_items(Some(2))
                    .await
                    .map_err(|e| fail(&format!("step {step}: get_items on {:?}", ids[n]), e))?;
                let want = &model[n][model[n].len().saturating_sub(2)..];
                ensure!(
                    texts(&got) == want,
                    "step {step}: get_items(2) on {:?} returned {:?}, expected {want:?}",
                    ids[n],
                    texts(&got)
                );
            }
        }
    }
    for (n, id) in ids.iter().enumerate() {
        let session = store.session(id).expect("valid id");
        let got = session
            .get_items(None)
            .await
            .map_err(|e| fail(&format!("get_items on {id:?}"), e))?;
        ensure!(
            texts(&got) == model[n],
            "session {id:?} holds {:?}, expected {:?} (ids of the case: {ids:?})",
            texts(&got),
            model[n]
        );
        let info = store
            .session_info(id)
            .await
            .map_err(|e| fail(&format!("session_info on {id:?}"), e))?;
        let count = info.as_ref().map_or(0, |i| i.item_count);
        ensure!(
            count == model[n].len() as u64,
            "session_info of {id:?} counts {count} items, expected {}",
            model[n].len()
        );
        // Listing by this id as a literal prefix: exactly the case's non-empty ids starting
        // with it (others' sessions on a shared server are ignored; sessions emptied by pops
        // may be listed or not).
        let listed = store
            .list_all_sessions(Some(id))
            .await
            .map_err(|e| fail(&format!("list_sessions with prefix {id:?}"), e))?;
        for other in &listed {
            ensure!(
                other.starts_with(id.as_str()),
                "listing by prefix {id:?} gave {other:?}"
            );
        }
        for (m, other) in ids.iter().enumerate() {
            if other.starts_with(id.as_str()) && !model[m].is_empty() {
                ensure!(
                    listed.contains(other),
                    "listing by prefix {id:?} left out {other:?} ({} items); listed: {listed:?}",
                    model[m].len()
                );
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Property 3: items of random JSON round-trip byte for byte.

fn round_trip_strategy() -> impl Strategy<Value = Vec<(Json, u64)>> {
    let item = prop_oneof![
        6 => json::object(4, 4),
        1 => json::deep(126),
    ];
    proptest::collection::vec((item, any::<u64>()), 1..6)
}

async fn round_trip_case(
    store: &Store,
    case: Case,
    items: Vec<(Json, u64)>,
) -> Result<(), TestCaseError> {
    let id = format!("{}-rt", case.token);
    case.uses(std::slice::from_ref(&id));
    let session = store.session(&id).expect("valid id");
    let mut compact: Vec<String> = Vec::new();
    let mut batch: Vec<Item> = Vec::new();
    for (tree, bits) in &items {
        let want = tree.compact();
        // Whitespace outside strings is all that may change; the rest stays as written.
        let spaced = tree.spaced(*bits);
        let item = Item::from_json_str(&spaced)
            .map_err(|e| fail(&format!("Item::from_json_str({spaced:?})"), e))?;
        ensure!(
            item.as_str() == want,
            "Item::from_json_str({spaced:?}) kept {:?}, expected {want:?}",
            item.as_str()
        );
        compact.push(want);
        batch.push(item);
    }
    // One batch, then one more item alone (a second write path for the same text).
    let last = batch.pop().expect("at least one item");
    session
        .add_items(batch)
        .await
        .map_err(|e| fail("add_items", e))?;
    session
        .add_items(vec![last])
        .await
        .map_err(|e| fail("add_items", e))?;
    let all = session
        .get_items(None)
        .await
        .map_err(|e| fail("get_items(None)", e))?;
    ensure!(
        texts(&all) == compact,
        "get_items(None) returned {:?}, stored {compact:?}",
        texts(&all)
    );
    let newest = session
        .get_items(Some(2))
        .await
        .map_err(|e| fail("get_items(Some(2))", e))?;
    ensure!(
        texts(&newest) == compact[compact.len().saturating_sub(2)..],
        "get_items(Some(2)) returned {:?}",
        texts(&newest)
    );
    let popped = session.pop_item().await.map_err(|e| fail("pop_item", e))?;
    ensure!(
        popped.as_ref().map(Item::as_str) == compact.last().map(String::as_str),
        "pop_item returned {popped:?}, expected {:?}",
        compact.last()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The backends. CI defaults are set so that each backend's three properties take about 20 s or
// less on 2 cores (docs/testing.md has the measured times and the longer run).

#[test]
fn memory() {
    Target::open("memory", "memory://", 256).all();
}

/// Encryption on the cheapest backend: every record an envelope sealed per session.
#[test]
fn memory_encrypted() {
    support::set_kit_keys();
    Target::open(
        "memory (encrypted)",
        &format!("memory://?encryption_key_env={}", support::KIT_KEY_ENV),
        128,
    )
    .all();
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite() {
    let dir = support::temp_dir("properties");
    Target::open(
        "sqlite",
        &format!("sqlite://{}/props.db", dir.display()),
        64,
    )
    .all();
}

/// The default prefix, as most users have it (the seed layout's migration checks are on).
#[cfg(feature = "redis")]
#[test]
fn redis_standalone() {
    Target::open("redis", &support::shared_url("OAS_TEST_REDIS_URL"), 96).all();
}

#[cfg(feature = "redis")]
#[test]
fn redis_cluster() {
    Target::open(
        "redis-cluster",
        &support::shared_url("OAS_TEST_REDIS_CLUSTER_URL"),
        64,
    )
    .all();
}

#[cfg(feature = "dynamodb")]
#[test]
fn dynamodb() {
    let url = format!(
        "dynamodb://props_{}?region=us-east-1&endpoint={}&create_table=true",
        std::process::id(),
        support::shared_url("OAS_TEST_DYNAMODB_ENDPOINT")
    );
    Target::open("dynamodb", &url, 24).all();
}

#[cfg(feature = "postgres")]
#[test]
fn postgres() {
    let url = support::shared_url("OAS_TEST_POSTGRES_URL");
    let sep = if url.contains('?') { '&' } else { '?' };
    let schema = format!("props_{}", run_token());
    Target::open("postgres", &format!("{url}{sep}schema={schema}"), 64).all();
}
