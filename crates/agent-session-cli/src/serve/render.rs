//! The HTML of the pages. Every text that comes from the store (ids, item content, names,
//! arguments) goes through [`esc`]; images are shown only from `data:` URLs, so a page fetches
//! nothing remote; item types this page does not know are shown as formatted JSON.

use std::collections::HashMap;
use std::fmt::Write as _;

use openai_agents_session::{PageBefore, PositionedItem, SessionInfo, Timestamp};
use serde_json::Value;

/// HTML-escapes text for element content and quoted attribute values.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\0' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A session id as one path segment (`/`, `%`, spaces, unicode and NUL percent-encoded).
pub(crate) fn seg(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A query parameter value.
pub(crate) fn q(value: &str) -> String {
    seg(value)
}

fn time(t: Timestamp) -> String {
    format!("<time datetime=\"{0}\">{0}</time>", esc(&t.to_rfc3339()))
}

fn opt_time(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "never".to_owned(), time)
}

/// The page around `body`.
pub(crate) fn page(title: &str, csrf: Option<&str>, body: &str) -> String {
    let meta = csrf.map_or(String::new(), |c| {
        format!("<meta name=\"csrf-token\" content=\"{}\">", esc(c))
    });
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{meta}\
         <title>{} · agent-session</title>\
         <link rel=\"stylesheet\" href=\"/assets/app.css\">\
         <script src=\"/assets/app.js\" defer></script></head>\
         <body><header><a class=\"brand\" href=\"/\">agent-session</a></header><main>{body}</main></body></html>\n",
        esc(title)
    )
}

/// One row of the sessions table.
pub(crate) fn session_row(id: &str, info: Option<&SessionInfo>) -> String {
    let link = format!("<a href=\"/s/{}\">{}</a>", seg(id), esc(id));
    match info {
        Some(i) => format!(
            "<tr><td class=\"id\">{link}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            i.item_count,
            time(i.created_at),
            time(i.updated_at),
            opt_time(i.expires_at)
        ),
        None => format!(
            "<tr><td class=\"id\">{link}</td><td colspan=\"4\">gone (expired or cleared since it was listed)</td></tr>"
        ),
    }
}

/// The session's facts at the top of the conversation page.
pub(crate) fn info_block(info: &SessionInfo, backend: &str) -> String {
    let lease = match &info.lease {
        Some(l) => format!(
            "{} (token {}, until {})",
            esc(&l.owner),
            l.token,
            time(l.expires_at)
        ),
        None => "none".to_owned(),
    };
    format!(
        "<dl class=\"info\"><dt>items</dt><dd id=\"item-count\">{}</dd><dt>created</dt><dd>{}</dd>\
         <dt>updated</dt><dd>{}</dd><dt>expires</dt><dd>{}</dd><dt>lease</dt><dd>{lease}</dd>\
         <dt>store</dt><dd>{}</dd></dl>",
        info.item_count,
        time(info.created_at),
        time(info.updated_at),
        opt_time(info.expires_at),
        esc(backend)
    )
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// A JSON text shown pretty-printed when it parses (function arguments and outputs are JSON
/// inside a string), else as it is.
fn pretty_text(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ (Value::Object(_) | Value::Array(_))) => pretty(&v),
        _ => text.to_owned(),
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// The text and images of a message's `content` (a string, or a list of parts).
fn content_html(content: Option<&Value>) -> String {
    match content {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => format!("<div class=\"text\">{}</div>", esc(s)),
        Some(Value::Array(parts)) => parts.iter().map(part_html).collect(),
        Some(other) => format!("<pre class=\"json\">{}</pre>", esc(&pretty(other))),
    }
}

fn part_html(part: &Value) -> String {
    let kind = str_of(part, "type").unwrap_or("");
    if let Some(text) = str_of(part, "text") {
        return format!("<div class=\"text\">{}</div>", esc(text));
    }
    if let Some(refusal) = str_of(part, "refusal") {
        return format!(
            "<div class=\"text refusal\">refused: {}</div>",
            esc(refusal)
        );
    }
    if kind.contains("image") {
        let url = str_of(part, "image_url")
            .or_else(|| part.get("image_url").and_then(|u| str_of(u, "url")))
            .unwrap_or("");
        return if url.starts_with("data:image/") {
            format!("<img class=\"image\" alt=\"image\" src=\"{}\">", esc(url))
        } else if url.is_empty() {
            "<div class=\"note\">[image without a URL]</div>".to_owned()
        } else {
            format!(
                "<div class=\"note\">[image not loaded: only data: URLs are shown] {}</div>",
                esc(url)
            )
        };
    }
    format!("<pre class=\"json\">{}</pre>", esc(&pretty(part)))
}

fn raw_toggle(item: &PositionedItem, value: &Value) -> String {
    let _ = item;
    format!(
        "<details class=\"raw\"><summary>raw JSON</summary><pre>{}</pre></details>",
        esc(&pretty(value))
    )
}

fn output_html(value: &Value) -> String {
    match value.get("output") {
        Some(Value::String(s)) => format!("<pre class=\"output\">{}</pre>", esc(&pretty_text(s))),
        Some(Value::Array(_)) => content_html(value.get("output")),
        Some(other) => format!("<pre class=\"output\">{}</pre>", esc(&pretty(other))),
        None => String::new(),
    }
}

/// One function call output's block (inside its call's block when the call is on the page).
fn output_block(item: &PositionedItem, value: &Value) -> String {
    format!(
        "<div class=\"item call-output\" data-type=\"function_call_output\" data-position=\"{}\" data-call-id=\"{}\">\
         <div class=\"label\">output</div>{}{}</div>",
        item.position,
        esc(str_of(value, "call_id").unwrap_or("")),
        output_html(value),
        raw_toggle(item, value)
    )
}

/// The items of a page, oldest first; each `function_call_output` is rendered inside the block
/// of its `function_call` (matched by `call_id`) when that call is on the same page.
pub(crate) fn items_html(page: &PageBefore) -> String {
    let parsed: Vec<(&PositionedItem, Value)> =
        page.items.iter().map(|i| (i, i.item.to_value())).collect();
    let kind = |v: &Value| str_of(v, "type").unwrap_or("").to_owned();
    let calls: HashMap<String, usize> = parsed
        .iter()
        .enumerate()
        .filter(|(_, (_, v))| kind(v) == "function_call")
        .filter_map(|(n, (_, v))| str_of(v, "call_id").map(|c| (c.to_owned(), n)))
        .collect();
    // Outputs by the index of their call.
    let mut outputs: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut paired = vec![false; parsed.len()];
    for (n, (_, v)) in parsed.iter().enumerate() {
        if kind(v) == "function_call_output" {
            if let Some(&call) = str_of(v, "call_id").and_then(|c| calls.get(c)) {
                if call < n {
                    outputs.entry(call).or_default().push(n);
                    paired[n] = true;
                }
            }
        }
    }
    let mut html = String::new();
    for (n, (item, value)) in parsed.iter().enumerate() {
        if paired[n] {
            continue;
        }
        let inner: String = outputs
            .get(&n)
            .map(|outs| {
                outs.iter()
                    .map(|&o| output_block(parsed[o].0, &parsed[o].1))
                    .collect()
            })
            .unwrap_or_default();
        html.push_str(&item_html(item, value, &inner));
    }
    html
}

fn item_html(item: &PositionedItem, value: &Value, outputs: &str) -> String {
    let kind = str_of(value, "type").unwrap_or("");
    let role = str_of(value, "role");
    let pos = item.position;
    let raw = raw_toggle(item, value);
    match (kind, role) {
        ("message" | "", Some(role)) => {
            let role_class = match role {
                "user" | "assistant" | "system" | "developer" => role,
                _ => "other",
            };
            format!(
                "<div class=\"item message {role_class}\" data-type=\"message\" data-role=\"{}\" data-position=\"{pos}\">\
                 <div class=\"label\">{}</div>{}{raw}</div>",
                esc(role),
                esc(role),
                content_html(value.get("content"))
            )
        }
        ("reasoning", _) => {
            let summary: Vec<&str> = value
                .get("summary")
                .and_then(Value::as_array)
                .map(|parts| parts.iter().filter_map(|p| str_of(p, "text")).collect())
                .unwrap_or_default();
            let text = if summary.is_empty() {
                "(no summary)".to_owned()
            } else {
                summary.join("\n\n")
            };
            format!(
                "<details class=\"item reasoning\" data-type=\"reasoning\" data-position=\"{pos}\">\
                 <summary><span class=\"label\">reasoning</span> <span class=\"text\">{}</span></summary>{raw}</details>",
                esc(&text)
            )
        }
        ("function_call", _) => {
            let name = str_of(value, "name").unwrap_or("?");
            let label = match name.strip_prefix("transfer_to_") {
                Some(agent) => format!("handoff → {}", esc(agent)),
                None => format!("call <code>{}</code>", esc(name)),
            };
            let class = if name.starts_with("transfer_to_") {
                "handoff"
            } else {
                ""
            };
            format!(
                "<div class=\"item call {class}\" data-type=\"function_call\" data-position=\"{pos}\" data-call-id=\"{}\">\
                 <div class=\"label\">{label}</div><pre class=\"arguments\">{}</pre>{raw}\
                 <div class=\"outputs\">{outputs}</div></div>",
                esc(str_of(value, "call_id").unwrap_or("")),
                esc(&pretty_text(str_of(value, "arguments").unwrap_or("")))
            )
        }
        ("function_call_output", _) => output_block(item, value),
        _ => {
            let label = if kind.is_empty() {
                "item".to_owned()
            } else {
                esc(kind)
            };
            format!(
                "<div class=\"item other\" data-type=\"{}\" data-position=\"{pos}\">\
                 <div class=\"label\">{label}</div><pre class=\"json\">{}</pre></div>",
                esc(kind),
                esc(&pretty(value))
            )
        }
    }
}

/// The note about records that could not be shown, if any.
pub(crate) fn skipped_note(page: &PageBefore) -> String {
    let mut note = String::new();
    if page.unreadable > 0 {
        let _ = write!(
            note,
            "<div class=\"unreadable\">{} unreadable record{} here (encrypted with a key this server was not given, or written by a newer version): not shown, not deleted.</div>",
            page.unreadable,
            if page.unreadable == 1 { "" } else { "s" }
        );
    }
    if page.corrupt > 0 {
        let _ = write!(
            note,
            "<div class=\"unreadable\">{} corrupt record{} skipped.</div>",
            page.corrupt,
            if page.corrupt == 1 { "" } else { "s" }
        );
    }
    note
}

/// The "load earlier" control of a page: a link (which the script turns into an in-place load).
pub(crate) fn earlier_link(id: &str, page: &PageBefore) -> String {
    match page.earlier {
        Some(before) => format!(
            "<a class=\"earlier\" id=\"earlier\" href=\"/s/{0}?before={before}\" data-fragment=\"/s/{0}/items.html?before={before}\">load earlier</a>",
            seg(id)
        ),
        None => "<div class=\"start\" id=\"earlier\">start of the conversation</div>".to_owned(),
    }
}
