//! `agent-session`: read and write openai-agents-session stores from the shell.
//!
//! Exit codes: 0 ok; 2 invalid input, usage or configuration (a malformed key, a session
//! holding encrypted records opened without its key: nothing written); 1 backend or runtime failure;
//! 3 not found; 4 conflict (a history transaction refused: its reason is named; a lease held
//! by another owner; a fenced write whose token is not the live lease's: nothing was changed).
//! Passwords in URLs never appear in any output.

use std::io::{self, BufRead, BufWriter, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod observe;
mod rekey;
mod serve;
use openai_agents_session::{
    Applied, Error, ErrorKind, HistoryTransaction, Item, Lease, ListOptions, Session, SessionInfo,
    Store, StoreSession,
};

/// The store used when neither --url nor AGENT_SESSION_URL is given.
const DEFAULT_URL: &str = "sqlite://agent-sessions.db";

#[derive(Debug, Parser)]
#[command(
    name = "agent-session",
    version,
    about = "Durable conversation memory for AI agents: read and write session stores.",
    after_help = "Store URLs: memory://, sqlite://PATH, sqlite:///ABS/PATH, redis://, rediss://, redis+cluster://,\n\
                  dynamodb://TABLE?region=..., postgres://USER:PASS@HOST:PORT/DB?sslmode=verify-full,\n\
                  with options such as ?ttl=3600.\n\
                  Exit codes: 0 ok, 1 backend failure, 2 invalid input or usage, 3 not found,\n\
                  4 conflict (a history transaction refused, a lease held by another owner, or a\n\
                  fenced write whose token is not the live lease's; nothing was changed)."
)]
struct Cli {
    /// Store URL [default: $AGENT_SESSION_URL, else sqlite://agent-sessions.db]
    #[arg(long, global = true, env = "AGENT_SESSION_URL", hide_env_values = true)]
    url: Option<String>,

    /// Show store operations on stderr: -v one line per operation (its span: backend,
    /// operation, items, bytes, requests, outcome, latency), -vv also debug events. Never item
    /// contents, session ids (a hash), URLs or keys.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// The format of -v output on stderr: text, or json (one object per line).
    #[arg(long, global = true, value_enum, default_value_t = observe::LogFormat::Text)]
    log_format: observe::LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Append items as one atomic batch: JSON objects as arguments, or JSON Lines on stdin.
    /// With --operation-id, an idempotent append: a retry under the same id adds nothing.
    Add {
        /// The session id.
        session: String,
        /// Apply the batch as the history transaction append_items under this id (non-empty,
        /// at most 256 bytes): prints `applied`, or `already applied` when a batch with the
        /// same items was applied under it before; other items under a used id exit 4.
        #[arg(long)]
        operation_id: Option<String>,
        #[command(flatten)]
        fence: FenceArg,
        /// Items as JSON objects; when none are given, one item per line is read from stdin.
        items: Vec<String>,
    },
    /// Apply one history transaction, read as JSON from stdin, under an operation id:
    /// {"type":"append_items","items":[...]} or
    /// {"type":"replace_suffix","expected_suffix":[...],"replacement":[...]}.
    /// Prints `applied` or `already applied` (both exit 0); a conflict exits 4 naming its
    /// reason (operation_reused, suffix_mismatch) and changes nothing.
    Apply {
        /// The session id.
        session: String,
        /// The operation id (non-empty, at most 256 bytes): the same on every retry.
        #[arg(long)]
        operation_id: String,
        #[command(flatten)]
        fence: FenceArg,
    },
    /// Print the history as JSON Lines, oldest first.
    Get {
        /// The session id.
        session: String,
        /// Only the newest N items (still oldest first).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Remove the newest item and print it; print nothing when the session is empty.
    Pop {
        /// The session id.
        session: String,
        #[command(flatten)]
        fence: FenceArg,
    },
    /// Delete a session (succeeds when it does not exist); its lease, if any, stays.
    Clear {
        /// The session id.
        session: String,
        #[command(flatten)]
        fence: FenceArg,
    },
    /// Session leases: one writer at a time per session, with fencing tokens.
    #[command(subcommand)]
    Lease(LeaseCommand),
    /// List live session ids, one per line.
    List {
        /// Only ids starting with this literal text (no wildcards).
        #[arg(long)]
        prefix: Option<String>,
        /// Print each id as a JSON string (safe for ids holding newlines).
        #[arg(long)]
        json: bool,
    },
    /// Print a session's metadata (and its live lease, or null) as one JSON object; exit 3 if it
    /// is missing or expired.
    Info {
        /// The session id.
        session: String,
        /// Decode every record and add a "verify" object: how many records are valid (plain,
        /// under the current key, under older keys), unreadable (no configured key opens them)
        /// and corrupt.
        #[arg(long)]
        verify: bool,
    },
    /// Print a new encryption key: 32 random bytes in standard base64 with padding. Keep it in
    /// an environment variable (encryption_key_env=VAR) or a file (encryption_key_file=PATH).
    Keygen,
    /// Re-encrypt the store in place under the first key of its URL (plain records and records
    /// under older keys), session by session, each through a conditional replace retried when
    /// the session changed meanwhile. Resumable: sessions already under the key are skipped.
    /// Prints a JSON summary on stdout, a progress bar and a summary line on stderr.
    Rekey {
        /// Only sessions whose id starts with this text.
        #[arg(long)]
        prefix: Option<String>,
        /// No progress bar or summary line on stderr.
        #[arg(long)]
        quiet: bool,
    },
    /// Delete expired sessions' data and what interrupted writes left behind; prints what was
    /// removed (`pruned: N expired sessions, M leftovers of interrupted writes`).
    Prune,
    /// Create the store's table and indexes if missing (DynamoDB: on-demand billing, the
    /// sessions index, TTL on `ttl`), or check an existing one's schema.
    Init,
    /// Measure latency, throughput and round trips per operation against the store.
    Bench(bench::BenchArgs),
    /// The session inspector: a web page to browse and read stored conversations, with a JSON
    /// API and live updates (default http://127.0.0.1:8377/; read-only unless --allow-writes).
    Serve(serve::ServeArgs),
    /// Write sessions as JSON Lines ({"session_id": ..., "item": {...}}), each session's items
    /// contiguous and oldest first: the named ones, or all.
    Export {
        /// Sessions to export (all when none are named).
        sessions: Vec<String>,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
        /// No progress bar or summary on stderr.
        #[arg(long)]
        quiet: bool,
    },
    /// Read JSON Lines written by `export` (from FILE, or stdin): the whole input is validated
    /// before anything is written; each session is written as one atomic batch.
    Import {
        /// The input file (stdin when absent).
        file: Option<std::path::PathBuf>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Copy sessions between any two stores (legacy layouts included, e.g.
    /// redis://...?layout=seed), exactly and in order, with the target's TTL.
    Copy {
        /// The source store URL.
        #[arg(long)]
        from: String,
        /// The target store URL.
        #[arg(long)]
        to: String,
        /// Sessions to copy (all when none are named).
        sessions: Vec<String>,
        /// Only sessions whose id starts with this literal text.
        #[arg(long)]
        prefix: Option<String>,
        #[command(flatten)]
        write: WriteArgs,
    },
}

/// `lease acquire`, `lease renew`, `lease release`.
#[derive(Debug, Subcommand)]
enum LeaseCommand {
    /// Acquire the session's lease for OWNER and print it as
    /// {"session_id","owner","token","expires_at"}; the same owner gets its token again with a
    /// later expiry. Held by another owner: exit 4 naming it (after waiting up to --wait).
    Acquire {
        /// The session id (the session is not created).
        session: String,
        /// The holder's label (1 to 256 bytes).
        #[arg(long)]
        owner: String,
        /// Seconds until the lease expires without a renewal (decimals allowed, at most a day).
        #[arg(long, value_name = "SECS")]
        ttl: String,
        /// Poll (with backoff) for up to this many seconds while another owner holds it.
        #[arg(long, value_name = "SECS")]
        wait: Option<String>,
    },
    /// Move the expiry of the live lease of TOKEN to now + ttl and print it; exit 4 (fenced)
    /// when TOKEN is not the live lease's.
    Renew {
        /// The session id.
        session: String,
        /// The fencing token from `lease acquire`.
        #[arg(long)]
        token: u64,
        /// Seconds from now (decimals allowed, at most a day).
        #[arg(long, value_name = "SECS")]
        ttl: String,
    },
    /// End the lease of TOKEN now (a no-op when it ended already); exit 4 (fenced) when a newer
    /// token was granted since.
    Release {
        /// The session id.
        session: String,
        /// The fencing token from `lease acquire`.
        #[arg(long)]
        token: u64,
    },
}

/// `--fencing-token T` of the writes.
#[derive(clap::Args, Debug, Clone, Copy)]
struct FenceArg {
    /// Write only if T is the session's live lease's token (checked atomically with the
    /// write); otherwise exit 4 and change nothing.
    #[arg(long, value_name = "T")]
    fencing_token: Option<u64>,
}

impl FenceArg {
    /// The session handle, fenced when a token was given.
    fn session(self, store: &Store, session: &str) -> Result<StoreSession, Failure> {
        let handle = store.session(session)?;
        Ok(match self.fencing_token {
            Some(token) => handle.fenced(token),
            None => handle,
        })
    }
}

/// How `import` and `copy` write each session into the target.
#[derive(clap::Args, Debug)]
struct WriteArgs {
    /// A session that already exists in the target: error (default; nothing is written),
    /// skip, replace (atomically) or append.
    #[arg(long, default_value = "error")]
    on_existing: String,
    /// Sessions with more item JSON than this many bytes are read page by page and written
    /// through a staged write (invisible until its commit), one chunk in memory at a time.
    #[arg(long, default_value_t = openai_agents_session::transfer::DEFAULT_CHUNK_BYTES)]
    chunk_bytes: usize,
    /// No progress bar or summary on stderr.
    #[arg(long)]
    quiet: bool,
}

/// A failure with its exit code.
struct Failure {
    code: u8,
    message: String,
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        let code = match err.kind() {
            ErrorKind::InvalidInput
            | ErrorKind::InvalidSessionId
            | ErrorKind::TooLarge
            | ErrorKind::Config
            | ErrorKind::EncryptionKeyMissing => 2,
            ErrorKind::NotFound => 3,
            ErrorKind::Conflict | ErrorKind::LeaseHeld | ErrorKind::Fenced => 4,
            _ => 1,
        };
        let message = match (err.kind(), err.conflict_reason()) {
            // `conflict: suffix_mismatch: apply_history_transaction on session "s": ...`
            (ErrorKind::Conflict, reason) => {
                let mut text = format!(
                    "conflict: {}: {}",
                    reason.map_or("unknown", |r| r.name()),
                    err.operation()
                );
                if let Some(id) = err.session_id() {
                    text.push_str(&format!(" on session {id:?}"));
                }
                text.push_str(&format!(": {}", err.message()));
                text
            }
            _ => format!("error: {err}"),
        };
        Failure { code, message }
    }
}

impl From<io::Error> for Failure {
    fn from(err: io::Error) -> Self {
        if err.kind() == io::ErrorKind::BrokenPipe {
            // `agent-session get ... | head` is not a failure.
            return Failure {
                code: 0,
                message: String::new(),
            };
        }
        Failure {
            code: 1,
            message: format!("error: I/O error: {err}"),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    observe::init_logging(cli.verbose, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let interrupt = openai_agents_session::transfer::Interrupt::new();
    let outcome = runtime.block_on(async {
        let command = run(cli, interrupt.clone());
        tokio::pin!(command);
        let interrupted = || Failure {
            code: 130,
            message: "interrupted: sessions already written are complete; the one in flight was not written (`agent-session prune` removes anything it left)".to_owned(),
        };
        tokio::select! {
            outcome = &mut command => return outcome,
            _ = tokio::signal::ctrl_c() => {}
        }
        // The first Ctrl-C asks a copy or import to stop before its next write: it aborts the
        // staged write in flight and waits for what it staged to be deleted. A second Ctrl-C
        // (or a minute) stops waiting; dropping the command then leaves the cleanup to the
        // staged write's destructor and to `prune`.
        interrupt.set();
        tokio::select! {
            _ = &mut command => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
        }
        Err(interrupted())
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !failure.message.is_empty() {
                eprintln!("{}", failure.message);
            }
            if failure.code == 0 {
                return ExitCode::SUCCESS;
            }
            ExitCode::from(failure.code)
        }
    }
}

/// Reads the items of `add`: arguments, or JSON Lines on stdin (blank lines are skipped).
fn read_items(args: &[String]) -> Result<Vec<Item>, Failure> {
    let invalid = |what: String, err: Error| Failure {
        code: 2,
        message: format!("error: {what} is not a JSON object item: {err}; nothing was written"),
    };
    if !args.is_empty() {
        return args
            .iter()
            .enumerate()
            .map(|(i, text)| {
                Item::from_json_str(text).map_err(|e| invalid(format!("argument {}", i + 1), e))
            })
            .collect();
    }
    let mut items = Vec::new();
    for (index, line) in io::stdin().lock().lines().enumerate() {
        let line = line.map_err(|e| Failure {
            code: 2,
            message: format!(
                "error: cannot read line {} of stdin: {e}; nothing was written",
                index + 1
            ),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        items.push(
            Item::from_json_str(&line).map_err(|e| invalid(format!("line {}", index + 1), e))?,
        );
    }
    Ok(items)
}

/// Reads the one transaction of `apply` from stdin (surrounding whitespace allowed).
fn read_transaction(session: &str) -> Result<HistoryTransaction, Failure> {
    let mut text = String::new();
    io::Read::read_to_string(&mut io::stdin().lock(), &mut text).map_err(|e| Failure {
        code: 2,
        message: format!("error: cannot read the transaction from stdin: {e}; nothing was written"),
    })?;
    HistoryTransaction::from_json(&text).map_err(|e| Failure {
        code: 2,
        message: format!("error: {}; nothing was written", e.with_session(session)),
    })
}

/// Checks an operation id before any store is opened: a bad one writes nothing.
fn check_operation_id(session: &str, operation_id: &str) -> Result<(), Failure> {
    openai_agents_session::history::validate_operation_id(operation_id).map_err(|e| Failure {
        code: 2,
        message: format!("error: {}; nothing was written", e.with_session(session)),
    })
}

/// `applied` / `already applied`.
fn applied_word(applied: Applied) -> &'static str {
    match applied {
        Applied::Before => "already applied",
        _ => "applied",
    }
}

fn info_json(info: &SessionInfo) -> serde_json::Value {
    serde_json::json!({
        "session_id": info.session_id,
        "item_count": info.item_count,
        "created_at": info.created_at.to_rfc3339(),
        "updated_at": info.updated_at.to_rfc3339(),
        "expires_at": info.expires_at.map(|t| t.to_rfc3339()),
        "lease": info.lease.as_ref().map(|l| serde_json::json!({
            "owner": l.owner,
            "token": l.token,
            "expires_at": l.expires_at.to_rfc3339(),
        })),
    })
}

/// `{"session_id", "owner", "token", "expires_at"}`: what `lease acquire` and `renew` print.
fn lease_json(session: &str, lease: &Lease) -> serde_json::Value {
    serde_json::json!({
        "session_id": session,
        "owner": lease.owner,
        "token": lease.token,
        "expires_at": lease.expires_at.to_rfc3339(),
    })
}

/// A `--ttl` or `--wait` in seconds (decimals allowed, at most a day).
fn seconds(name: &str, value: &str) -> Result<std::time::Duration, Failure> {
    openai_agents_session::url::parse_duration(name, value).map_err(|e| Failure {
        code: 2,
        message: format!("error: --{name}: {}; nothing was changed", e.message()),
    })
}

/// A progress bar on stderr when it is a terminal (and not --quiet), and the closing summary.
struct Reporter {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
    started: std::time::Instant,
}

impl Reporter {
    fn new(quiet: bool) -> Self {
        use std::io::IsTerminal;
        let bar = (!quiet && io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {pos}/{len} sessions, {msg} [{elapsed_precise}, eta {eta}]",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Reporter {
            bar,
            quiet,
            started: std::time::Instant::now(),
        }
    }

    fn update(&self, p: openai_agents_session::transfer::Progress) {
        if let Some(bar) = &self.bar {
            if let Some(total) = p.sessions_total {
                bar.set_length(total);
            }
            bar.set_position(p.sessions_done);
            let secs = self.started.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(format!(
                "{} items, {:.1} MB, {:.1} MB/s",
                p.items,
                p.bytes as f64 / 1e6,
                p.bytes as f64 / 1e6 / secs
            ));
        }
    }

    fn finish(&self, verb: &str, s: &openai_agents_session::transfer::Summary) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if !self.quiet {
            eprintln!(
                "{verb} {} sessions ({} items, {:.1} MB), skipped {}, in {:.1?}",
                s.sessions,
                s.items,
                s.bytes as f64 / 1e6,
                s.skipped,
                self.started.elapsed()
            );
        }
    }
}

fn on_existing(text: &str) -> Result<openai_agents_session::transfer::OnExisting, Failure> {
    text.parse().map_err(Failure::from)
}

/// Copies stdin into a real temporary file (unique name, created exclusively, so a planted
/// symlink is never followed; removed on drop), because import validates its whole input
/// before writing and then reads it again.
fn spool_stdin() -> Result<tempfile::NamedTempFile, Failure> {
    let mut file = tempfile::Builder::new()
        .prefix("agent-session-import-")
        .suffix(".jsonl")
        .tempfile()?;
    io::copy(&mut io::stdin().lock(), file.as_file_mut())?;
    io::Write::flush(file.as_file_mut())?;
    Ok(file)
}

/// Opens a store, warning on stderr when its TLS certificate is not verified (the library only
/// logs it through `tracing`).
async fn open_store(url: &str) -> Result<Store, Failure> {
    let insecure = url
        .split_once('?')
        .map(|(_, query)| {
            query.split('&').any(|pair| match pair.split_once('=') {
                Some(("tls_insecure", v)) => {
                    openai_agents_session::url::parse_bool("tls_insecure", v).unwrap_or(false)
                }
                _ => false,
            })
        })
        .unwrap_or(false);
    let store = Store::open(url).await?;
    if insecure {
        eprintln!("warning: tls_insecure=true: the Redis server's TLS certificate is NOT verified");
    }
    Ok(store)
}

async fn run(
    cli: Cli,
    interrupt: openai_agents_session::transfer::Interrupt,
) -> Result<(), Failure> {
    use openai_agents_session::transfer;
    // Commands with two stores, or a file to validate, come first.
    match &cli.command {
        Command::Keygen => {
            let mut out = io::stdout().lock();
            return rekey::keygen(&mut out);
        }
        Command::Rekey { prefix, quiet } => {
            let url = cli.url.as_deref().unwrap_or(DEFAULT_URL);
            let (store, tally) = rekey::open_tallied(url).await?;
            let mut out = io::stdout().lock();
            return rekey::rekey(&store, &tally, prefix.clone(), *quiet, &interrupt, &mut out)
                .await;
        }
        Command::Info {
            session,
            verify: true,
        } => {
            let url = cli.url.as_deref().unwrap_or(DEFAULT_URL);
            let (store, tally) = rekey::open_tallied(url).await?;
            let Some(info) = store.session_info(session).await? else {
                return Err(Failure {
                    code: 3,
                    message: format!("not found: {session}"),
                });
            };
            let mut json = info_json(&info);
            json["verify"] = rekey::verify(&store, &tally, session).await?;
            let mut out = io::stdout().lock();
            writeln!(out, "{json}")?;
            return Ok(());
        }
        Command::Copy {
            from,
            to,
            sessions,
            prefix,
            write,
        } => {
            let mode = on_existing(&write.on_existing)?;
            let (from, to) = (open_store(from).await?, open_store(to).await?);
            let reporter = Reporter::new(write.quiet);
            let mut options = transfer::CopyOptions::default()
                .on_existing(mode)
                .chunk_bytes(write.chunk_bytes);
            options.sessions = sessions.clone();
            options.prefix = prefix.clone();
            options.interrupt = interrupt;
            let summary =
                transfer::copy_sessions(&from, &to, &options, &mut |p| reporter.update(p)).await?;
            reporter.finish("copied", &summary);
            return Ok(());
        }
        Command::Import { file, write } => {
            let mode = on_existing(&write.on_existing)?;
            let spooled;
            let path = match file {
                Some(path) => path.clone(),
                None => {
                    spooled = spool_stdin()?;
                    spooled.path().to_path_buf()
                }
            };
            let store = open_store(cli.url.as_deref().unwrap_or(DEFAULT_URL)).await?;
            let reporter = Reporter::new(write.quiet);
            let summary = transfer::import_sessions_interruptible(
                &store,
                &path,
                mode,
                write.chunk_bytes,
                &interrupt,
                &mut |p| reporter.update(p),
            )
            .await?;
            reporter.finish("imported", &summary);
            return Ok(());
        }
        Command::Export {
            sessions,
            output,
            quiet,
        } => {
            let store = open_store(cli.url.as_deref().unwrap_or(DEFAULT_URL)).await?;
            let reporter = Reporter::new(*quiet);
            let mut sink: Box<dyn Write> = match output {
                Some(path) => Box::new(BufWriter::new(std::fs::File::create(path)?)),
                None => Box::new(BufWriter::new(io::stdout().lock())),
            };
            let summary =
                transfer::export_sessions(&store, sessions, &mut sink, &mut |p| reporter.update(p))
                    .await?;
            reporter.finish("exported", &summary);
            return Ok(());
        }
        Command::Serve(args) => {
            return serve::serve(cli.url.as_deref().unwrap_or(DEFAULT_URL), args).await;
        }
        _ => {}
    }
    // Parse input before touching the store: bad input writes nothing and needs no server.
    let items = match &cli.command {
        Command::Add {
            session,
            items,
            operation_id,
            ..
        } => {
            if let Some(id) = operation_id {
                check_operation_id(session, id)?;
            }
            Some(read_items(items)?)
        }
        _ => None,
    };
    // Lease durations too: (ttl, wait).
    let durations = match &cli.command {
        Command::Lease(LeaseCommand::Acquire { ttl, wait, .. }) => Some((
            seconds("ttl", ttl)?,
            wait.as_deref().map(|w| seconds("wait", w)).transpose()?,
        )),
        Command::Lease(LeaseCommand::Renew { ttl, .. }) => Some((seconds("ttl", ttl)?, None)),
        _ => None,
    };
    let transaction = match &cli.command {
        Command::Apply {
            session,
            operation_id,
            ..
        } => {
            check_operation_id(session, operation_id)?;
            Some(read_transaction(session)?)
        }
        _ => None,
    };
    let url = cli.url.as_deref().unwrap_or(DEFAULT_URL);
    let store = open_store(url).await?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match cli.command {
        Command::Add {
            session,
            operation_id,
            fence,
            ..
        } => {
            let session = fence.session(&store, &session)?;
            let items = items.unwrap_or_default();
            match operation_id {
                None => session.add_items(items).await?,
                Some(id) => {
                    let tx = HistoryTransaction::append_items(items);
                    let applied = session.apply_history_transaction(&id, &tx).await?;
                    writeln!(out, "{}", applied_word(applied))?;
                }
            }
        }
        Command::Apply {
            session,
            operation_id,
            fence,
        } => {
            let tx = transaction.ok_or_else(|| Failure {
                code: 1,
                message: "error: the transaction was not read".to_owned(),
            })?;
            let applied = fence
                .session(&store, &session)?
                .apply_history_transaction(&operation_id, &tx)
                .await?;
            writeln!(out, "{}", applied_word(applied))?;
        }
        Command::Get { session, limit } => {
            for item in store.session(&session)?.get_items(limit).await? {
                writeln!(out, "{item}")?;
            }
        }
        Command::Pop { session, fence } => {
            if let Some(item) = fence.session(&store, &session)?.pop_item().await? {
                writeln!(out, "{item}")?;
            }
        }
        Command::Clear { session, fence } => {
            fence.session(&store, &session)?.clear_session().await?
        }
        Command::Lease(lease) => {
            let (ttl, wait) = durations.unwrap_or((std::time::Duration::ZERO, None));
            match lease {
                LeaseCommand::Acquire { session, owner, .. } => {
                    let lease = store.acquire_lease(&session, &owner, ttl, wait).await?;
                    writeln!(out, "{}", lease_json(&session, &lease))?;
                }
                LeaseCommand::Renew { session, token, .. } => {
                    let lease = store.renew_lease(&session, token, ttl).await?;
                    writeln!(out, "{}", lease_json(&session, &lease))?;
                }
                LeaseCommand::Release { session, token } => {
                    store.release_lease(&session, token).await?
                }
            }
        }
        Command::List { prefix, json } => {
            let mut options = ListOptions::default();
            options.prefix = prefix;
            loop {
                let page = store.list_sessions(&options).await?;
                for id in &page.session_ids {
                    if json {
                        writeln!(out, "{}", serde_json::Value::String(id.clone()))?;
                    } else {
                        writeln!(out, "{id}")?;
                    }
                }
                match page.next_cursor {
                    Some(cursor) => options.cursor = Some(cursor),
                    None => break,
                }
            }
        }
        Command::Info { session, .. } => match store.session_info(&session).await? {
            Some(info) => writeln!(out, "{}", info_json(&info))?,
            None => {
                return Err(Failure {
                    code: 3,
                    message: format!("not found: {session}"),
                })
            }
        },
        Command::Prune => {
            // A spinner on stderr when it is a terminal: a prune scans the whole store.
            use std::io::IsTerminal;
            let spinner = io::stderr().is_terminal().then(|| {
                let s = indicatif::ProgressBar::new_spinner();
                s.set_message("pruning expired sessions and leftovers of interrupted writes");
                s.enable_steady_tick(std::time::Duration::from_millis(120));
                s
            });
            let report = store.prune().await;
            if let Some(s) = spinner {
                s.finish_and_clear();
            }
            writeln!(out, "pruned: {}", report?)?;
        }
        Command::Bench(args) => bench::run(&store, url, &args, &mut out).await?,
        Command::Serve(_) => unreachable!("serve returns before the store is opened here"),
        Command::Copy { .. }
        | Command::Import { .. }
        | Command::Export { .. }
        | Command::Keygen
        | Command::Rekey { .. } => {}
        Command::Init => {
            store.init().await?;
            writeln!(out, "ready: {} store", store.backend_name())?;
        }
    }
    Ok(out.flush()?)
}
