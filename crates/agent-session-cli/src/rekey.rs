//! `keygen`, `rekey` and `info --verify`: the encryption commands (docs/encryption.md).

use std::io::{self, Write};
use std::sync::Arc;

use openai_agents_session::encryption::{EncryptionKey, RecordTally, TallyCounts};
use openai_agents_session::{
    ConflictReason, Error, ErrorKind, HistoryTransaction, Item, ListOptions, Session, Store,
};

use crate::Failure;

/// How often one session's conditional replace is tried while other writers change it.
const REKEY_ATTEMPTS: u32 = 8;

/// `agent-session keygen`: a new key, standard base64 with padding, on stdout.
pub(crate) fn keygen(out: &mut impl Write) -> Result<(), Failure> {
    let key = EncryptionKey::generate()?;
    writeln!(out, "{}", key.to_base64().as_str())?;
    Ok(())
}

/// Opens `url` with a record tally: every record the codec decodes is counted.
pub(crate) async fn open_tallied(url: &str) -> Result<(Store, Arc<RecordTally>), Failure> {
    let tally = Arc::new(RecordTally::default());
    let t = Arc::clone(&tally);
    let store = Store::open_with(url, move |o| Ok(o.with_record_tally(t))).await?;
    Ok((store, tally))
}

fn counts_json(c: &TallyCounts) -> serde_json::Value {
    serde_json::json!({
        "records": c.records(),
        "valid": c.plain + c.current_key + c.older_key,
        "plain": c.plain,
        "current_key": c.current_key,
        "older_keys": c.older_key,
        "unreadable": c.unreadable,
        "corrupt": c.corrupt,
    })
}

/// `info --verify SESSION`: decodes every record of the session and reports what they are.
pub(crate) async fn verify(
    store: &Store,
    tally: &RecordTally,
    session: &str,
) -> Result<serde_json::Value, Failure> {
    tally.reset();
    store.session(session)?.get_items(None).await?;
    let counts = tally.snapshot();
    let mut report = counts_json(&counts);
    report["key_id"] = store
        .options()
        .encryption
        .current_key_id()
        .map(|k| k.to_string())
        .into();
    Ok(report)
}

/// What one `rekey` run did (its JSON summary).
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub(crate) sessions: u64,
    pub(crate) rekeyed: u64,
    pub(crate) records: u64,
    /// JSON bytes of the items re-encrypted.
    pub(crate) bytes: u64,
    pub(crate) current: u64,
    pub(crate) unreadable: u64,
    pub(crate) corrupt: u64,
    pub(crate) failed: Vec<String>,
    pub(crate) retries: u64,
    pub(crate) interrupted: bool,
}

enum Outcome {
    /// Rekeyed this many records of this many JSON bytes.
    Rekeyed(u64, u64),
    Current,
    Unreadable,
    Corrupt,
}

/// Item bytes of one page `rekey` reads a session in.
const PAGE_BYTES: usize = 4 << 20;

/// Called after a session was read and before its conditional replace (session id, attempt):
/// the tests' way to land a concurrent write exactly there.
pub(crate) type BeforeReplace<'h> =
    &'h (dyn Fn(&str, u32) -> futures_util::future::BoxFuture<'static, ()> + Sync);

/// One session, streamed: its records are read page by page (at most [`PAGE_BYTES`] of items
/// per request); pages whose records are all under the first key are dropped as they come,
/// and only the items from the first page holding a plain or older-key record to the end are
/// kept. Those are then replaced by the same items (re-encoded under the first key) on the
/// condition that the session's newest items still are exactly those: a history transaction
/// whose expected suffix is that tail. When another writer changed the session meanwhile the
/// replace fails and the session is read and tried again, so no concurrent write is lost.
async fn rekey_session(
    store: &Store,
    tally: &RecordTally,
    id: &str,
    run_id: &str,
    summary: &mut Summary,
    before_replace: Option<BeforeReplace<'_>>,
) -> Result<Outcome, Error> {
    let session = store.session(id)?;
    let mut attempt = 0;
    loop {
        let mut tail: Vec<Item> = Vec::new();
        let mut after = None;
        loop {
            tally.reset();
            let page = store.read_page(id, after, PAGE_BYTES).await?;
            let counts = tally.snapshot();
            if counts.unreadable > 0 || counts.key_missing > 0 {
                return Ok(Outcome::Unreadable);
            }
            if counts.corrupt > 0 {
                return Ok(Outcome::Corrupt);
            }
            // Keep from the first page that needs rekeying on; drop current pages before it.
            if !tail.is_empty() || counts.plain > 0 || counts.older_key > 0 {
                tail.extend(page.items);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        if tail.is_empty() {
            return Ok(Outcome::Current);
        }
        if let Some(hook) = before_replace {
            hook(id, attempt).await;
        }
        let n = tail.len() as u64;
        let bytes: u64 = tail.iter().map(|i| i.len_bytes() as u64).sum();
        let tx = HistoryTransaction::replace_suffix(tail.clone(), tail);
        match session
            .apply_history_transaction(&format!("rekey-{run_id}-{attempt}"), &tx)
            .await
        {
            Ok(_) => return Ok(Outcome::Rekeyed(n, bytes)),
            Err(e)
                if e.kind() == ErrorKind::Conflict
                    && e.conflict_reason() == Some(ConflictReason::SuffixMismatch)
                    && attempt + 1 < REKEY_ATTEMPTS =>
            {
                summary.retries += 1;
                attempt += 1;
                // The session changed meanwhile: read it again.
            }
            Err(e) => return Err(e),
        }
    }
}

/// Every session (or those under `prefix`) re-encrypted under the first key, one at a time,
/// listed page by page. Sessions already under it are skipped, so a rerun after an interrupt
/// resumes. `progress` is told after each session.
pub(crate) async fn run_rekey(
    store: &Store,
    tally: &RecordTally,
    prefix: Option<String>,
    interrupt: &openai_agents_session::transfer::Interrupt,
    before_replace: Option<BeforeReplace<'_>>,
    mut progress: impl FnMut(&Summary),
) -> Result<Summary, Error> {
    let run_id = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let mut summary = Summary::default();
    let mut options = ListOptions::default();
    options.prefix = prefix;
    'pages: loop {
        let page = store.list_sessions(&options).await?;
        for id in &page.session_ids {
            if interrupt.is_set() {
                break 'pages;
            }
            summary.sessions += 1;
            match rekey_session(store, tally, id, &run_id, &mut summary, before_replace).await {
                Ok(Outcome::Rekeyed(n, bytes)) => {
                    summary.rekeyed += 1;
                    summary.records += n;
                    summary.bytes += bytes;
                }
                Ok(Outcome::Current) => summary.current += 1,
                Ok(Outcome::Unreadable) => summary.unreadable += 1,
                Ok(Outcome::Corrupt) => summary.corrupt += 1,
                Err(e) if e.kind() == ErrorKind::NotFound => summary.current += 1,
                Err(e) => summary.failed.push(format!("{id:?}: {e}")),
            }
            progress(&summary);
        }
        match page.next_cursor {
            Some(cursor) => options.cursor = Some(cursor),
            None => break,
        }
    }
    // SQLite: checkpoint the WAL (prune does), so that no old record stays in it.
    if store.backend_name() == "sqlite" {
        store.prune().await?;
    }
    summary.interrupted = interrupt.is_set();
    Ok(summary)
}

/// `rekey`: [`run_rekey`] with a progress bar, a summary line on stderr and a JSON summary on
/// stdout.
pub(crate) async fn rekey(
    store: &Store,
    tally: &RecordTally,
    prefix: Option<String>,
    quiet: bool,
    interrupt: &openai_agents_session::transfer::Interrupt,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let Some(key_id) = store.options().encryption.current_key_id() else {
        return Err(Failure {
            code: 2,
            message: "error: rekey needs a key: add encryption_key_env=VAR or \
                      encryption_key_file=PATH to the URL"
                .into(),
        });
    };
    use std::io::IsTerminal;
    let bar = (!quiet && io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos} sessions, {msg} [{elapsed_precise}, {per_sec}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar
    });
    let started = std::time::Instant::now();
    let summary = run_rekey(store, tally, prefix, interrupt, None, |s| {
        if let Some(bar) = &bar {
            bar.set_position(s.sessions);
            bar.set_message(format!(
                "{} rekeyed ({} records), {} already current",
                s.rekeyed, s.records, s.current
            ));
        }
    })
    .await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let interrupted = summary.interrupted;
    let secs = started.elapsed().as_secs_f64();
    let line = format!(
        "rekey{}: {} sessions seen in {secs:.1} s: {} rekeyed ({} records, {:.0} records/s, \
         {:.1} MB/s of items), {} already under key {key_id}, {} skipped with unreadable \
         records, {} skipped with corrupt records, {} failed, {} retries after concurrent writes",
        if interrupted {
            " interrupted (run it again to resume)"
        } else {
            ""
        },
        summary.sessions,
        summary.rekeyed,
        summary.records,
        summary.records as f64 / secs.max(1e-3),
        summary.bytes as f64 / 1e6 / secs.max(1e-3),
        summary.current,
        summary.unreadable,
        summary.corrupt,
        summary.failed.len(),
        summary.retries,
    );
    if !quiet {
        eprintln!("{line}");
    }
    writeln!(
        out,
        "{}",
        serde_json::json!({
            "sessions": summary.sessions,
            "rekeyed": summary.rekeyed,
            "records": summary.records,
            "bytes": summary.bytes,
            "seconds": secs,
            "already_current": summary.current,
            "skipped_unreadable": summary.unreadable,
            "skipped_corrupt": summary.corrupt,
            "failed": summary.failed,
            "retries": summary.retries,
            "interrupted": interrupted,
            "key_id": key_id.to_string(),
        })
    )?;
    if !summary.failed.is_empty() {
        return Err(Failure {
            code: 1,
            message: format!(
                "error: rekey failed for {} sessions: {}",
                summary.failed.len(),
                summary.failed.join("; ")
            ),
        });
    }
    if interrupted {
        return Err(Failure {
            code: 130,
            message: String::new(),
        });
    }
    Ok(())
}

/// `rekey` against the real servers (scripts/servers.sh; target/test-servers.env): a write
/// landing between a session's read and its replace forces the retry and is kept; an
/// interrupted run resumes; afterwards nothing is left under the old key and nothing is lost.
#[cfg(test)]
mod tests {
    use super::*;
    use openai_agents_session::encryption::Encryption;
    use openai_agents_session::transfer::Interrupt;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn server(var: &str) -> String {
        std::env::var(var).unwrap_or_else(|_| {
            panic!("{var} is not set: run scripts/test.sh, or scripts/servers.sh start and source target/test-servers.env")
        })
    }

    /// Every backend: (name, URL, a temp dir the URL points into).
    fn stores(tag: &str) -> Vec<(&'static str, String, Option<tempfile::TempDir>)> {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = format!("sqlite://{}/rekey.db", dir.path().display());
        let pid = std::process::id();
        let with = |url: String, extra: &str| {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}{extra}")
        };
        vec![
            ("memory", format!("memory://rekey-{tag}-{pid}"), None),
            ("sqlite", sqlite, Some(dir)),
            (
                "redis",
                with(
                    server("OAS_TEST_REDIS_URL"),
                    &format!("prefix=rekey_{tag}_{pid}"),
                ),
                None,
            ),
            ("postgres", server("OAS_TEST_POSTGRES_URL"), None),
            (
                "dynamodb",
                with(
                    server("OAS_TEST_DYNAMODB_URL")
                        .replace("oas_test", &format!("rekey_{tag}_{pid}")),
                    "create_table=true",
                ),
                None,
            ),
        ]
    }

    fn item(v: serde_json::Value) -> Item {
        Item::from_value(v).unwrap()
    }

    async fn open(url: &str, keys: &[&EncryptionKey]) -> (Store, Arc<RecordTally>) {
        let keys: Vec<EncryptionKey> = keys
            .iter()
            .map(|k| EncryptionKey::from_base64(&k.to_base64()).unwrap())
            .collect();
        let tally = Arc::new(RecordTally::default());
        let t = Arc::clone(&tally);
        let store = Store::open_with(url, move |o| {
            Ok(o.with_encryption(Encryption::new(keys))?
                .with_record_tally(t))
        })
        .await
        .unwrap();
        (store, tally)
    }

    /// Writes `sessions` sessions of 3 items under `old`, returns their ids.
    async fn fill(url: &str, old: &EncryptionKey, prefix: &str, sessions: usize) -> Vec<String> {
        let (store, _) = open(url, &[old]).await;
        let mut ids = Vec::new();
        for s in 0..sessions {
            let id = format!("{prefix}{s:03}");
            let items = (0..3)
                .map(|n| item(serde_json::json!({"s": s, "n": n})))
                .collect();
            store.session(&id).unwrap().add_items(items).await.unwrap();
            ids.push(id);
        }
        ids
    }

    /// With only the new key, every session reads whole (an old-key record would be skipped
    /// as unreadable), and the tally of a store holding both keys sees none under the old.
    async fn assert_all_under(
        url: &str,
        new: &EncryptionKey,
        old: &EncryptionKey,
        ids: &[String],
        extra: &str,
    ) {
        let (store, tally) = open(url, &[new, old]).await;
        let (only_new, _) = open(url, &[new]).await;
        for id in ids {
            tally.reset();
            let items = store.session(id).unwrap().get_items(None).await.unwrap();
            let counts = tally.snapshot();
            assert_eq!(
                (counts.older_key, counts.plain, counts.unreadable),
                (0, 0, 0),
                "{id}: {counts:?}"
            );
            let want = if id == extra { 4 } else { 3 };
            assert_eq!(items.len(), want, "{id}: nothing lost");
            assert_eq!(
                only_new.session(id).unwrap().get_items(None).await.unwrap(),
                items
            );
        }
    }

    async fn cleanup(url: &str, key: &EncryptionKey, ids: &[String]) {
        let (store, _) = open(url, &[key]).await;
        for id in ids {
            store.session(id).unwrap().clear_session().await.unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_concurrent_write_forces_a_retry_and_is_kept_on_every_backend() {
        for (name, url, _dir) in stores("retry") {
            let (old, new) = (
                EncryptionKey::generate().unwrap(),
                EncryptionKey::generate().unwrap(),
            );
            let prefix = format!("rekey-retry-{}-{name}-", std::process::id());
            let ids = fill(&url, &old, &prefix, 3).await;
            let (store, tally) = open(&url, &[&new, &old]).await;
            let target = ids[1].clone();
            let writer = store.clone();
            let hook =
                move |id: &str, attempt: u32| -> futures_util::future::BoxFuture<'static, ()> {
                    let (writer, hit) = (writer.clone(), id == target && attempt == 0);
                    let id = id.to_owned();
                    Box::pin(async move {
                        if hit {
                            let during = vec![item(serde_json::json!({"during": "rekey"}))];
                            writer
                                .session(&id)
                                .unwrap()
                                .add_items(during)
                                .await
                                .unwrap();
                        }
                    })
                };
            let summary = run_rekey(
                &store,
                &tally,
                Some(prefix.clone()),
                &Interrupt::new(),
                Some(&hook),
                |_| {},
            )
            .await
            .unwrap();
            assert!(
                summary.retries >= 1,
                "{name}: the retry path ran: {summary:?}"
            );
            assert_eq!(
                (summary.sessions, summary.rekeyed, summary.failed.len()),
                (3, 3, 0),
                "{name}: {summary:?}"
            );
            assert_eq!(
                summary.records,
                3 + 4 + 3,
                "{name}: the retried session holds the write"
            );
            assert_all_under(&url, &new, &old, &ids, &ids[1]).await;
            let during = store
                .session(&ids[1])
                .unwrap()
                .get_items(None)
                .await
                .unwrap();
            assert_eq!(
                during.last().unwrap().as_str(),
                r#"{"during":"rekey"}"#,
                "{name}"
            );
            cleanup(&url, &new, &ids).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_interrupted_rekey_resumes_and_completes_on_every_backend() {
        for (name, url, _dir) in stores("resume") {
            let (old, new) = (
                EncryptionKey::generate().unwrap(),
                EncryptionKey::generate().unwrap(),
            );
            let prefix = format!("rekey-resume-{}-{name}-", std::process::id());
            let ids = fill(&url, &old, &prefix, 10).await;
            let (store, tally) = open(&url, &[&new, &old]).await;
            // Interrupted while the fourth session is in flight (as Ctrl-C does).
            let interrupt = Interrupt::new();
            let (seen, flag) = (Arc::new(AtomicU32::new(0)), interrupt.clone());
            let hook = move |_: &str, _: u32| -> futures_util::future::BoxFuture<'static, ()> {
                if seen.fetch_add(1, Ordering::SeqCst) == 3 {
                    flag.set();
                }
                Box::pin(async {})
            };
            let first = run_rekey(
                &store,
                &tally,
                Some(prefix.clone()),
                &interrupt,
                Some(&hook),
                |_| {},
            )
            .await
            .unwrap();
            assert!(first.interrupted, "{name}: {first:?}");
            assert_eq!(
                first.rekeyed, 4,
                "{name}: the session in flight completes: {first:?}"
            );
            let again = run_rekey(
                &store,
                &tally,
                Some(prefix.clone()),
                &Interrupt::new(),
                None,
                |_| {},
            )
            .await
            .unwrap();
            assert!(!again.interrupted);
            assert_eq!(
                (again.sessions, again.rekeyed, again.current),
                (10, 6, 4),
                "{name}: {again:?}"
            );
            assert_all_under(&url, &new, &old, &ids, "").await;
            // A third run has nothing to do.
            let third = run_rekey(
                &store,
                &tally,
                Some(prefix.clone()),
                &Interrupt::new(),
                None,
                |_| {},
            )
            .await
            .unwrap();
            assert_eq!((third.rekeyed, third.current), (0, 10), "{name}");
            cleanup(&url, &new, &ids).await;
        }
    }
}
