//! The handlers: the sessions page, the conversation page (and its fragments for "load
//! earlier"), the JSON API, the server-sent events of new items, the export download, the
//! login page, the embedded assets, and the two writes.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State as StateOf};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use futures_util::stream::{self, Stream, StreamExt};
use openai_agents_session::{Error, ErrorKind, ListOptions, PageBefore, Session, SessionInfo};

use super::auth::{self, COOKIE};
use super::render::{self, esc, q, seg};
use super::{State, ITEMS_PER_PAGE, MAX_ITEMS_PER_CALL, SESSIONS_PER_PAGE};

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

/// A library error as an answer: bad ids are the client's fault, the rest the store's.
fn failure(err: Error) -> Response {
    let status = match err.kind() {
        ErrorKind::InvalidSessionId | ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("error: {err}\n"),
    )
        .into_response()
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
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

/// A page of items as JSON, each item's text exactly as stored.
fn page_json(page: &PageBefore) -> String {
    let mut out = String::from("{\"items\":[");
    for (n, i) in page.items.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"position\":{},\"item\":{}}}",
            i.position,
            i.item.as_str()
        ));
    }
    out.push_str(&format!(
        "],\"earlier\":{},\"unreadable\":{},\"corrupt\":{}}}",
        page.earlier.map_or("null".to_owned(), |e| e.to_string()),
        page.unreadable,
        page.corrupt
    ));
    out
}

#[derive(serde::Deserialize, Default)]
pub(crate) struct ListQuery {
    prefix: Option<String>,
    cursor: Option<String>,
}

#[derive(serde::Deserialize, Default)]
pub(crate) struct ItemsQuery {
    limit: Option<usize>,
    before: Option<u64>,
}

#[derive(serde::Deserialize, Default)]
pub(crate) struct EventsQuery {
    after: Option<u64>,
}

#[derive(serde::Deserialize, Default)]
pub(crate) struct ConfirmQuery {
    confirm: Option<String>,
}

#[derive(serde::Deserialize)]
pub(crate) struct LoginForm {
    token: String,
}

/// One page of ids and the info of each (one info call per row, at most a page of them, 8 at
/// a time).
async fn listed(
    state: &State,
    query: &ListQuery,
) -> Result<(Vec<(String, Option<SessionInfo>)>, Option<String>, bool), Error> {
    // A prefix search lists by id: a range of the id index, where newest first would filter
    // the whole update-time index.
    let prefix = query.prefix.as_deref().filter(|p| !p.is_empty());
    let mut options = ListOptions::default()
        .page_size(SESSIONS_PER_PAGE)
        .newest_first(prefix.is_none());
    if let Some(p) = prefix {
        options = options.prefix(p);
    }
    if let Some(c) = query.cursor.as_deref().filter(|c| !c.is_empty()) {
        options = options.cursor(c);
    }
    let page = state.store.list_sessions(&options).await?;
    let newest_first = page.newest_first;
    let infos: Vec<Result<Option<SessionInfo>, Error>> = stream::iter(page.session_ids.clone())
        .map(|id| {
            let store = state.store.clone();
            async move { store.session_info(&id).await }
        })
        .buffered(8)
        .collect()
        .await;
    let mut rows = Vec::with_capacity(infos.len());
    for (id, info) in page.session_ids.into_iter().zip(infos) {
        rows.push((id, info?));
    }
    Ok((rows, page.next_cursor, newest_first))
}

fn order_note(backend: &str, newest_first: bool, prefix: bool) -> &'static str {
    match backend {
        _ if newest_first => "Most recently updated first.",
        "sqlite" | "memory" if prefix => "Sorted by session id (a prefix search).",
        "memory" => "Sorted by session id (the backend's order).",
        _ => "In the backend's order (it cannot sort by update time cheaply).",
    }
}

pub(crate) async fn sessions_page(
    StateOf(state): StateOf<State>,
    Query(query): Query<ListQuery>,
) -> Response {
    let (rows, next, newest_first) = match listed(&state, &query).await {
        Ok(found) => found,
        Err(e) => return failure(e),
    };
    let prefix = query.prefix.clone().unwrap_or_default();
    let mut body = format!(
        "<h1>Sessions</h1><form class=\"search\" method=\"get\" action=\"/\">\
         <input type=\"search\" name=\"prefix\" placeholder=\"id prefix\" value=\"{}\" aria-label=\"id prefix\">\
         <button type=\"submit\">search</button></form>\
         <p class=\"note\" id=\"order\">{} {} per page. Store: {}.</p>",
        esc(&prefix),
        order_note(state.store.backend_name(), newest_first, !prefix.is_empty()),
        SESSIONS_PER_PAGE,
        esc(state.store.backend_name())
    );
    if rows.is_empty() {
        body.push_str("<p id=\"empty\">No live sessions");
        if !prefix.is_empty() {
            body.push_str(" with this prefix");
        }
        body.push_str(".</p>");
    } else {
        body.push_str(
            "<table id=\"sessions\"><thead><tr><th>session</th><th>items</th><th>created</th>\
             <th>updated</th><th>expires</th></tr></thead><tbody>",
        );
        for (id, info) in &rows {
            body.push_str(&render::session_row(id, info.as_ref()));
        }
        body.push_str("</tbody></table>");
    }
    if let Some(cursor) = next {
        body.push_str(&format!(
            "<p><a id=\"next\" href=\"/?prefix={}&amp;cursor={}\">next page</a></p>",
            q(&prefix),
            q(&cursor)
        ));
    }
    Html(render::page("Sessions", None, &body)).into_response()
}

pub(crate) async fn api_sessions(
    StateOf(state): StateOf<State>,
    Query(query): Query<ListQuery>,
) -> Response {
    match listed(&state, &query).await {
        Ok((rows, next, newest_first)) => {
            let sessions: Vec<serde_json::Value> = rows
                .iter()
                .map(|(id, info)| match info {
                    Some(info) => info_json(info),
                    None => serde_json::json!({ "session_id": id, "gone": true }),
                })
                .collect();
            let order = if newest_first {
                "newest_first"
            } else {
                "backend"
            };
            let body =
                serde_json::json!({ "sessions": sessions, "next_cursor": next, "order": order });
            json(StatusCode::OK, body.to_string())
        }
        Err(e) => failure(e),
    }
}

pub(crate) async fn api_info(StateOf(state): StateOf<State>, Path(id): Path<String>) -> Response {
    match state.store.session_info(&id).await {
        Ok(Some(info)) => json(StatusCode::OK, info_json(&info).to_string()),
        Ok(None) => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": "not_found", "session_id": id }).to_string(),
        ),
        Err(e) => failure(e),
    }
}

pub(crate) async fn api_items(
    StateOf(state): StateOf<State>,
    Path(id): Path<String>,
    Query(query): Query<ItemsQuery>,
) -> Response {
    let limit = query.limit.unwrap_or(ITEMS_PER_PAGE);
    if limit == 0 || limit > MAX_ITEMS_PER_CALL {
        return (
            StatusCode::BAD_REQUEST,
            format!("limit must be 1 to {MAX_ITEMS_PER_CALL}\n"),
        )
            .into_response();
    }
    match state.store.read_before(&id, query.before, limit).await {
        Ok(page) => json(StatusCode::OK, page_json(&page)),
        Err(e) => failure(e),
    }
}

/// The items part of the conversation page: the "load earlier" control, the note on skipped
/// records, the items.
fn items_section(id: &str, page: &PageBefore) -> String {
    format!(
        "{}{}{}",
        render::earlier_link(id, page),
        render::skipped_note(page),
        render::items_html(page)
    )
}

pub(crate) async fn items_fragment(
    StateOf(state): StateOf<State>,
    Path(id): Path<String>,
    Query(query): Query<ItemsQuery>,
) -> Response {
    match state
        .store
        .read_before(&id, query.before, ITEMS_PER_PAGE)
        .await
    {
        Ok(page) => Html(items_section(&id, &page)).into_response(),
        Err(e) => failure(e),
    }
}

pub(crate) async fn conversation_page(
    StateOf(state): StateOf<State>,
    Path(id): Path<String>,
    Query(query): Query<ItemsQuery>,
) -> Response {
    let (info, page) = match tokio::join!(
        state.store.session_info(&id),
        state.store.read_before(&id, query.before, ITEMS_PER_PAGE)
    ) {
        (Ok(info), Ok(page)) => (info, page),
        (Err(e), _) | (_, Err(e)) => return failure(e),
    };
    let Some(info) = info else {
        let body = format!(
            "<h1>{}</h1><p id=\"missing\">No such session (missing, expired or cleared).</p><p><a href=\"/\">all sessions</a></p>",
            esc(&id)
        );
        return (StatusCode::NOT_FOUND, Html(render::page(&id, None, &body))).into_response();
    };
    let newest = page
        .newest_position()
        .map_or(String::new(), |p| p.to_string());
    let writes = if state.allow_writes {
        format!(
            "<button class=\"write\" data-action=\"/api/sessions/{0}/pop?confirm={1}\" data-confirm=\"Remove the newest item of this session?\">pop newest item</button>\
             <button class=\"write danger\" data-action=\"/api/sessions/{0}/clear?confirm={1}\" data-confirm=\"Delete every item of this session?\">clear session</button>",
            seg(&id),
            q(&id)
        )
    } else {
        "<span class=\"note\">read-only</span>".to_owned()
    };
    let older_view = if query.before.is_some() {
        format!(
            "<p class=\"note\">Showing items before position {}. <a href=\"/s/{}\">newest</a></p>",
            query.before.unwrap_or(0),
            seg(&id)
        )
    } else {
        String::new()
    };
    // Live updates only on the newest page.
    let live = if query.before.is_none() {
        format!(
            " data-events=\"/api/sessions/{}/events\" data-after=\"{newest}\"",
            seg(&id)
        )
    } else {
        String::new()
    };
    let body = format!(
        "<h1 id=\"session-id\">{}</h1>{}<div class=\"actions\"><a class=\"button\" href=\"/s/{}/export.jsonl\" download>download (JSON Lines)</a>{writes}</div>\
         {older_view}<div id=\"conversation\"{live}>{}</div><div id=\"live\" class=\"note\"></div>",
        esc(&id),
        render::info_block(&info, state.store.backend_name()),
        seg(&id),
        items_section(&id, &page)
    );
    let csrf = state.allow_writes.then_some(state.csrf.as_str());
    Html(render::page(&id, csrf, &body)).into_response()
}

/// Server-sent events of new items: every poll interval, the newest page; items above the
/// newest position already sent are sent as an `items` event (`{"html", "newest", "count"}`).
/// A history that shrank below it (a pop, a clear) or moved more than a page sends `reset`.
pub(crate) async fn api_events(
    StateOf(state): StateOf<State>,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
) -> Response {
    if let Err(e) = openai_agents_session::validate_session_id(&id) {
        return failure(e);
    }
    let start = (state.clone(), id, query.after, true);
    let events = stream::unfold(start, |(state, id, after, first)| async move {
        if !first {
            tokio::time::sleep(state.poll).await;
        }
        let event = next_event(&state, &id, after).await;
        let (event, after) = match event {
            Ok((event, newest)) => (event, newest),
            Err(e) => (
                Some(Event::default().event("error").data(e.to_string())),
                after,
            ),
        };
        let event = event.unwrap_or_else(|| Event::default().comment("no change"));
        Some((Ok::<_, Infallible>(event), (state, id, after, false)))
    });
    sse(events)
}

fn sse(events: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Response {
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

async fn next_event(
    state: &State,
    id: &str,
    after: Option<u64>,
) -> Result<(Option<Event>, Option<u64>), Error> {
    let page = state.store.read_before(id, None, ITEMS_PER_PAGE).await?;
    let newest = page.newest_position();
    let Some(seen) = after else {
        // Nothing shown yet: everything is new.
        if page.items.is_empty() {
            return Ok((None, None));
        }
        return Ok((Some(items_event(state, id, page).await), newest));
    };
    if newest.is_none_or(|n| n < seen) {
        return Ok((
            Some(Event::default().event("reset").data("history changed")),
            newest,
        ));
    }
    let fresh: Vec<_> = page
        .items
        .iter()
        .filter(|i| i.position > seen)
        .cloned()
        .collect();
    if fresh.is_empty() {
        return Ok((None, after));
    }
    if fresh.len() == page.items.len() && page.earlier.is_some() {
        // More arrived than one page holds: the page reloads.
        return Ok((
            Some(Event::default().event("reset").data("many new items")),
            newest,
        ));
    }
    let fresh_page = PageBefore::new(fresh, None);
    Ok((Some(items_event(state, id, fresh_page).await), newest))
}

async fn items_event(state: &State, id: &str, page: PageBefore) -> Event {
    let count = state
        .store
        .session_info(id)
        .await
        .ok()
        .flatten()
        .map(|i| i.item_count);
    let data = serde_json::json!({
        "html": render::items_html(&page),
        "newest": page.newest_position(),
        "count": count,
    });
    Event::default().event("items").data(data.to_string())
}

pub(crate) async fn export(StateOf(state): StateOf<State>, Path(id): Path<String>) -> Response {
    let first = match state.store.read_page(&id, None, 1 << 20).await {
        Ok(page) => page,
        Err(e) => return failure(e),
    };
    let id_json = serde_json::Value::String(id.clone()).to_string();
    let lines = move |items: Vec<openai_agents_session::Item>| -> String {
        items
            .iter()
            .map(|i| format!("{{\"session_id\":{id_json},\"item\":{}}}\n", i.as_str()))
            .collect()
    };
    let body = stream::unfold(
        (Some(first), state, id.clone(), lines),
        |(page, state, id, lines)| async move {
            let page = page?;
            let chunk = lines(page.items);
            let next = match page.next {
                Some(after) => match state.store.read_page(&id, Some(after), 1 << 20).await {
                    Ok(p) => Some(p),
                    Err(e) => {
                        return Some((
                            Err(std::io::Error::other(e.to_string())),
                            (None, state, id, lines),
                        ))
                    }
                },
                None => None,
            };
            Some((Ok(chunk), (next, state, id, lines)))
        },
    );
    let name: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let disposition = format!("attachment; filename=\"{name}.jsonl\"");
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

async fn write(
    state: State,
    headers: HeaderMap,
    id: String,
    confirm: ConfirmQuery,
    pop: bool,
) -> Response {
    if let Err(refused) = auth::check_write(&state, &headers, &id, confirm.confirm.as_deref()) {
        return *refused;
    }
    let session = match state.store.session(&id) {
        Ok(s) => s,
        Err(e) => return failure(e),
    };
    if pop {
        match session.pop_item().await {
            Ok(item) => {
                let popped = item.map_or("null".to_owned(), |i| i.as_str().to_owned());
                json(StatusCode::OK, format!("{{\"popped\":{popped}}}"))
            }
            Err(e) => failure(e),
        }
    } else {
        match session.clear_session().await {
            Ok(()) => json(StatusCode::OK, "{\"cleared\":true}".to_owned()),
            Err(e) => failure(e),
        }
    }
}

pub(crate) async fn api_pop(
    StateOf(state): StateOf<State>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(confirm): Query<ConfirmQuery>,
) -> Response {
    write(state, headers, id, confirm, true).await
}

pub(crate) async fn api_clear(
    StateOf(state): StateOf<State>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(confirm): Query<ConfirmQuery>,
) -> Response {
    write(state, headers, id, confirm, false).await
}

pub(crate) async fn login_page(StateOf(state): StateOf<State>) -> Response {
    let body = if state.token.is_some() {
        "<h1>Log in</h1><form class=\"login\" method=\"post\" action=\"/login\">\
         <label>access token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">log in</button></form>\
         <p class=\"note\">The token is the first line of the server's --token-file. It is kept in an HttpOnly cookie.</p>"
    } else {
        "<h1>No login needed</h1><p>This server was started without --token-file. <a href=\"/\">sessions</a></p>"
    };
    Html(render::page("Log in", None, body)).into_response()
}

pub(crate) async fn login(
    StateOf(state): StateOf<State>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(token) = &state.token else {
        return Redirect::to("/").into_response();
    };
    if !auth::same_origin(&state, &headers) {
        return (StatusCode::FORBIDDEN, "cross-site login refused\n").into_response();
    }
    if !auth::same(form.token.trim(), token) {
        let body = "<h1>Log in</h1><p class=\"error\">Wrong token.</p><p><a href=\"/login\">try again</a></p>";
        return (
            StatusCode::UNAUTHORIZED,
            Html(render::page("Log in", None, body)),
        )
            .into_response();
    }
    let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
    let mut response = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

pub(crate) async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        CSS,
    )
        .into_response()
}

pub(crate) async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        JS,
    )
        .into_response()
}

pub(crate) async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(render::page(
            "Not found",
            None,
            "<h1>Not found</h1><p><a href=\"/\">sessions</a></p>",
        )),
    )
        .into_response()
}
