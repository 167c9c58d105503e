//! `agent-session serve`: the session inspector. An HTTP server (axum on tokio) with
//! server-rendered pages, a JSON API and server-sent events of new items; its CSS and
//! JavaScript are embedded in the binary.
//!
//! - `mod.rs`: the arguments, the startup rules (loopback by default, a token file for any
//!   other address) and the router.
//! - `auth.rs`: the `Host` check, the bearer token / login cookie, the write protection.
//! - `routes.rs`: the handlers.
//! - `render.rs`: the HTML of the pages, everything escaped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use openai_agents_session::Store;

use crate::Failure;

mod auth;
mod render;
mod routes;

/// Sessions per page of the sessions page and of `/api/sessions`.
pub(crate) const SESSIONS_PER_PAGE: usize = 50;
/// Items per page of the conversation page and the default `limit` of the items API.
pub(crate) const ITEMS_PER_PAGE: usize = 50;
/// The most items one API call returns.
pub(crate) const MAX_ITEMS_PER_CALL: usize = 1000;

/// `agent-session serve` arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
    /// Address to listen on. Anything but a loopback address needs --token-file.
    #[arg(long, default_value = "127.0.0.1:8377")]
    listen: String,
    /// A file holding the access token (its first line): requests then need
    /// `Authorization: Bearer TOKEN`, or the cookie the login page sets.
    #[arg(long, value_name = "PATH")]
    token_file: Option<std::path::PathBuf>,
    /// Offer pop and clear (with a confirmation; cross-site requests are refused).
    #[arg(long)]
    allow_writes: bool,
    /// How often the live view polls the store for new items, in milliseconds.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    poll_ms: u64,
}

/// What every handler shares.
pub(crate) struct AppState {
    pub store: Store,
    pub token: Option<String>,
    pub allow_writes: bool,
    /// The `Host` values accepted (the listen address, and `localhost:PORT` on loopback).
    pub hosts: Vec<String>,
    /// The per-process value every write must carry in `X-CSRF-Token` (pages embed it).
    pub csrf: String,
    pub poll: Duration,
}

pub(crate) type State = Arc<AppState>;

fn usage(message: String) -> Failure {
    Failure { code: 2, message }
}

/// The checks made before the store is opened: a bad address, a missing or empty token file,
/// a non-loopback address without a token exit 2.
pub(crate) fn check(args: &ServeArgs) -> Result<(SocketAddr, Option<String>), Failure> {
    let addr: SocketAddr = args.listen.parse().map_err(|_| {
        usage(format!(
            "error: --listen {:?}: expected IP:PORT, such as 127.0.0.1:8377",
            args.listen
        ))
    })?;
    let token = match &args.token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                usage(format!(
                    "error: --token-file {}: cannot read it: {e}",
                    path.display()
                ))
            })?;
            let token = text.lines().next().unwrap_or("").trim().to_owned();
            if token.len() < 16
                || !token
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b";,\"\\".contains(&b))
            {
                return Err(usage(format!(
                    "error: --token-file {}: the token (its first line) must be at least 16 visible ASCII characters, without ; , \\\" or \\\\",
                    path.display()
                )));
            }
            Some(token)
        }
        None => None,
    };
    if !addr.ip().is_loopback() && token.is_none() {
        return Err(usage(format!(
            "error: --listen {addr} is not a loopback address: anyone on the network could read \
             every session; give --token-file PATH (a file holding an access token), or listen on 127.0.0.1"
        )));
    }
    if args.poll_ms == 0 {
        return Err(usage("error: --poll-ms must be positive".to_owned()));
    }
    Ok((addr, token))
}

fn accepted_hosts(addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    let mut hosts = vec![addr.to_string()];
    if addr.ip().is_loopback() {
        hosts.push(format!("localhost:{port}"));
        hosts.push(format!("127.0.0.1:{port}"));
        hosts.push(format!("[::1]:{port}"));
    }
    if port == 80 {
        hosts.push(addr.ip().to_string());
    }
    hosts.sort();
    hosts.dedup();
    hosts
}

/// The router, for a store and the checked options (the tests build it too, through the
/// binary; nothing else does).
fn router(state: State) -> Router {
    let api = Router::new()
        .route("/api/sessions", get(routes::api_sessions))
        .route("/api/sessions/{id}", get(routes::api_info))
        .route("/api/sessions/{id}/items", get(routes::api_items))
        .route("/api/sessions/{id}/events", get(routes::api_events))
        .route("/api/sessions/{id}/pop", post(routes::api_pop))
        .route("/api/sessions/{id}/clear", post(routes::api_clear));
    Router::new()
        .route("/", get(routes::sessions_page))
        .route("/s/{id}", get(routes::conversation_page))
        .route("/s/{id}/items.html", get(routes::items_fragment))
        .route("/s/{id}/export.jsonl", get(routes::export))
        .route("/login", get(routes::login_page).post(routes::login))
        .route("/assets/app.css", get(routes::css))
        .route("/assets/app.js", get(routes::js))
        .merge(api)
        .fallback(routes::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .with_state(state)
}

/// Runs the server until Ctrl-C (the caller's select).
pub(crate) async fn serve(url: &str, args: &ServeArgs) -> Result<(), Failure> {
    let (addr, token) = check(args)?;
    let store = crate::open_store(url).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Failure {
            code: 1,
            message: format!("error: cannot listen on {addr}: {e}"),
        })?;
    let bound = listener.local_addr().map_err(crate::Failure::from)?;
    let state = Arc::new(AppState {
        store,
        token,
        allow_writes: args.allow_writes,
        hosts: accepted_hosts(bound),
        csrf: auth::random_hex(16)?,
        poll: Duration::from_millis(args.poll_ms),
    });
    let writes = if args.allow_writes {
        "pop and clear allowed"
    } else {
        "read-only"
    };
    eprintln!(
        "agent-session serve: http://{bound}/ ({} store, {writes}{})",
        state.store.backend_name(),
        if state.token.is_some() {
            ", token required"
        } else {
            ""
        }
    );
    axum::serve(listener, router(state))
        .await
        .map_err(|e| Failure {
            code: 1,
            message: format!("error: the server stopped: {e}"),
        })
}
