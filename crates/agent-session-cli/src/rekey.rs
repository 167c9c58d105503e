//! `keygen`, `rekey` and `info --verify`: the encryption commands (docs/encryption.md).

use std::io::{self, Write};
use std::sync::Arc;

use openai_agents_session::encryption::{EncryptionKey, RecordTally, TallyCounts};
use openai_agents_session::{
    ConflictReason, Error, ErrorKind, HistoryTransaction, ListOptions, Session, Store,
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

#[derive(Debug, Default)]
struct Summary {
    sessions: u64,
    rekeyed: u64,
    records: u64,
    current: u64,
    unreadable: u64,
    corrupt: u64,
    failed: Vec<String>,
    retries: u64,
}

enum Outcome {
    Rekeyed(u64),
    Current,
    Unreadable,
    Corrupt,
}

/// One session: read it whole, then replace it with the same items (re-encoded under the
/// first key) on the condition that it still holds exactly those items; retried when another
/// writer changed it meanwhile, so no concurrent write is lost.
async fn rekey_session(
    store: &Store,
    tally: &RecordTally,
    id: &str,
    run_id: &str,
    summary: &mut Summary,
) -> Result<Outcome, Error> {
    let session = store.session(id)?;
    let mut attempt = 0;
    loop {
        tally.reset();
        let items = session.get_items(None).await?;
        let counts = tally.snapshot();
        if counts.unreadable > 0 {
            return Ok(Outcome::Unreadable);
        }
        if counts.corrupt > 0 {
            return Ok(Outcome::Corrupt);
        }
        if counts.plain == 0 && counts.older_key == 0 {
            return Ok(Outcome::Current);
        }
        let n = items.len() as u64;
        let tx = HistoryTransaction::replace_suffix(items.clone(), items);
        match session
            .apply_history_transaction(&format!("rekey-{run_id}-{attempt}"), &tx)
            .await
        {
            Ok(_) => return Ok(Outcome::Rekeyed(n)),
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

/// `rekey`: every session (or those under `prefix`) re-encrypted under the first key, one at a
/// time. Sessions already under it are skipped, so a rerun after an interrupt resumes.
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
            match rekey_session(store, tally, id, &run_id, &mut summary).await {
                Ok(Outcome::Rekeyed(n)) => {
                    summary.rekeyed += 1;
                    summary.records += n;
                }
                Ok(Outcome::Current) => summary.current += 1,
                Ok(Outcome::Unreadable) => summary.unreadable += 1,
                Ok(Outcome::Corrupt) => summary.corrupt += 1,
                Err(e) if e.kind() == ErrorKind::NotFound => summary.current += 1,
                Err(e) => summary.failed.push(format!("{id:?}: {e}")),
            }
            if let Some(bar) = &bar {
                bar.set_position(summary.sessions);
                bar.set_message(format!(
                    "{} rekeyed ({} records), {} already current",
                    summary.rekeyed, summary.records, summary.current
                ));
            }
        }
        match page.next_cursor {
            Some(cursor) => options.cursor = Some(cursor),
            None => break,
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    // SQLite: checkpoint the WAL (prune does), so that no old record stays in it.
    if store.backend_name() == "sqlite" {
        store.prune().await?;
    }
    let interrupted = interrupt.is_set();
    let secs = started.elapsed().as_secs_f64();
    let line = format!(
        "rekey{}: {} sessions seen in {secs:.1} s: {} rekeyed ({} records, {:.0} records/s), \
         {} already under key {key_id}, {} skipped with unreadable records, {} skipped with \
         corrupt records, {} failed, {} retries after concurrent writes",
        if interrupted {
            " interrupted (run it again to resume)"
        } else {
            ""
        },
        summary.sessions,
        summary.rekeyed,
        summary.records,
        summary.records as f64 / secs.max(1e-3),
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
