//! The rules every request passes: the `Host` header names the listen address (against DNS
//! rebinding), the token when there is one (a bearer header or the login cookie), the security
//! headers on every response; and the write rules (allowed at all, same origin, the CSRF
//! header, a confirmation).

use axum::extract::{Request, State as StateOf};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::State;
use crate::Failure;

/// The login cookie's name.
pub(crate) const COOKIE: &str = "agent_session_token";
/// The header every write must carry, holding the page's CSRF value.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// `n` random bytes from the OS, as hex.
pub(crate) fn random_hex(n: usize) -> Result<String, Failure> {
    let mut bytes = vec![0u8; n];
    getrandom::getrandom(&mut bytes).map_err(|e| Failure {
        code: 1,
        message: format!("error: no randomness from the OS: {e}"),
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Equality whose time does not depend on where the texts differ.
pub(crate) fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Whether the request carries the token (always true without one).
pub(crate) fn authorized(state: &State, headers: &HeaderMap) -> bool {
    let Some(token) = &state.token else {
        return true;
    };
    [bearer_token(headers), cookie_token(headers)]
        .into_iter()
        .flatten()
        .any(|given| same(given, token))
}

fn plain(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{text}\n"),
    )
        .into_response()
}

/// The middleware: the Host check and the token, then the security headers on the answer.
pub(crate) async fn guard(
    StateOf(state): StateOf<State>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
    let mut response = match host {
        Some(h) if state.hosts.contains(&h) => {
            let path = request.uri().path();
            let public = path == "/login" || path.starts_with("/assets/");
            if public || authorized(&state, request.headers()) {
                next.run(request).await
            } else if path.starts_with("/api/") || request.method() != Method::GET {
                let mut r = plain(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized: send Authorization: Bearer TOKEN (the --token-file's token), or log in at /login",
                );
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                r
            } else {
                Redirect::to("/login").into_response()
            }
        }
        _ => plain(
            StatusCode::MISDIRECTED_REQUEST,
            "the Host header must name the address this server listens on",
        ),
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Whether a request comes from one of our own pages: no cross-site `Sec-Fetch-Site`, an
/// `Origin` (when sent) naming an accepted host.
pub(crate) fn same_origin(state: &State, headers: &HeaderMap) -> bool {
    let site_ok = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v == "same-origin" || v == "none");
    let origin_ok = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|origin| {
            origin
                .strip_prefix("http://")
                .is_some_and(|h| state.hosts.iter().any(|ok| ok == h))
        });
    site_ok && origin_ok
}

/// The checks of a write: allowed, same origin, the CSRF header, and `confirm` naming the
/// session. `Err` is the answer to send.
pub(crate) fn check_write(
    state: &State,
    headers: &HeaderMap,
    session_id: &str,
    confirm: Option<&str>,
) -> Result<(), Box<Response>> {
    if !state.allow_writes {
        return Err(Box::new(plain(
            StatusCode::FORBIDDEN,
            "read-only: start agent-session serve with --allow-writes to pop or clear",
        )));
    }
    let csrf_ok = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| same(v, &state.csrf));
    if !same_origin(state, headers) || !csrf_ok {
        return Err(Box::new(plain(
            StatusCode::FORBIDDEN,
            "cross-site write refused: writes come from this server's pages (X-CSRF-Token)",
        )));
    }
    if confirm != Some(session_id) {
        return Err(Box::new(plain(
            StatusCode::BAD_REQUEST,
            "unconfirmed: pass confirm=<the session id> to pop or clear",
        )));
    }
    Ok(())
}
