//! `agent-session serve` over HTTP, on SQLite and Redis: every route's status and content,
//! paging both ways, the token rules, the `Host` check, the read-only default, cross-site
//! writes refused, ids with `/`, `%`, spaces, unicode and NUL.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use openai_agents_session::{Item, Session, Store};

const ODD_IDS: &[&str] = &[
    "a/b",
    "50%/c d",
    "ünï/😀",
    "nul\u{0}id",
    "<script>x</script>",
];

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(url: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_agent-session"))
            .args([
                "--url",
                url,
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--poll-ms",
                "100",
            ])
            .args(extra)
            .env_remove("AGENT_SESSION_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        Server { child, addr }
    }

    fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], "")
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
        let mut all: Vec<(String, String)> = Vec::new();
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            all.push(("Host".into(), self.addr.clone()));
        }
        all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        http(&self.addr, method, path, &all, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

fn http(addr: &str, method: &str, path: &str, headers: &[(String, String)], body: &str) -> Resp {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    parse(&raw)
}

fn parse(raw: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(raw);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

fn enc(id: &str) -> String {
    let mut out = String::new();
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn item(v: serde_json::Value) -> Item {
    Item::from_value(v).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A conversation with a function call, payloads that must stay text, and an unknown type.
fn conversation() -> Vec<Item> {
    vec![
        item(
            serde_json::json!({"role": "user", "content": "What's the weather in Paris? <script>window.pwned=1</script>"}),
        ),
        item(
            serde_json::json!({"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Need the weather tool."}]}),
        ),
        item(
            serde_json::json!({"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}),
        ),
        item(
            serde_json::json!({"type": "function_call_output", "call_id": "call_1", "output": "{\"temp_c\":18}"}),
        ),
        item(
            serde_json::json!({"role": "assistant", "type": "message", "content": [{"type": "output_text", "text": "It is 18 °C. <img src=x onerror=\"window.pwned=2\">"}]}),
        ),
        item(serde_json::json!({"type": "web_search_call", "id": "ws_1", "status": "completed"})),
    ]
}

/// The store URLs under test: a temporary SQLite file, and Redis under a key prefix of this
/// test's own.
fn urls(dir: &std::path::Path, name: &str) -> Vec<String> {
    let redis = std::env::var("OAS_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "OAS_TEST_REDIS_URL is not set: run scripts/test.sh, or source target/test-servers.env"
        )
    });
    let sep = if redis.contains('?') { '&' } else { '?' };
    vec![
        format!("sqlite://{}/{name}.db", dir.display()),
        format!(
            "{redis}{sep}prefix=serve-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ),
    ]
}

fn seed(url: &str, id: &str, items: Vec<Item>) {
    runtime().block_on(async {
        let store = Store::open(url).await.unwrap();
        store.session(id).unwrap().add_items(items).await.unwrap();
    });
}

fn numbered(range: std::ops::Range<u64>) -> Vec<Item> {
    range
        .map(|n| item(serde_json::json!({"role": "user", "content": format!("message {n}")})))
        .collect()
}

#[test]
fn every_route_on_sqlite_and_redis() {
    let dir = tempfile::tempdir().unwrap();
    for url in urls(dir.path(), "routes") {
        let backend = url.split(':').next().unwrap().to_owned();
        seed(&url, "chat-1", conversation());
        for id in ODD_IDS {
            seed(&url, id, numbered(0..3));
        }
        let server = Server::start(&url, &[]);

        // The sessions page: every id, escaped, linked percent-encoded; the order said.
        let page = server.get("/");
        assert_eq!(page.status, 200, "{backend}: {page:?}");
        let csp = page.header("content-security-policy").unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(page.body.contains("href=\"/s/chat%2D1\""), "{}", page.body);
        assert!(page.body.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(!page.body.contains("<script>x"));
        assert!(page.body.contains("id=\"order\""));
        if backend == "sqlite" {
            assert!(
                page.body.contains("Most recently updated first."),
                "{}",
                page.body
            );
            assert_eq!(server.get("/api/sessions").json()["order"], "newest_first");
        } else {
            assert!(
                page.body.contains("the backend&#39;s order")
                    || page.body.contains("the backend's order")
            );
        }
        for id in ODD_IDS {
            assert!(
                page.body.contains(&format!("href=\"/s/{}\"", enc(id))),
                "{backend} {id:?}"
            );
        }
        let searched = server.get("/?prefix=a%2F");
        assert!(searched.body.contains("/s/a%2Fb") && !searched.body.contains("chat%2D1"));

        // The conversation page: in order, the call paired with its output, payloads as text.
        let conv = server.get("/s/chat-1");
        assert_eq!(conv.status, 200);
        let body = &conv.body;
        let at = |needle: &str| {
            body.find(needle)
                .unwrap_or_else(|| panic!("{needle} in {body}"))
        };
        assert!(at("What&#39;s the weather") < at("Need the weather tool."));
        assert!(at("get_weather") < at("&quot;temp_c&quot;: 18"));
        assert!(at("&quot;temp_c&quot;: 18") < at("It is 18 °C."));
        assert!(
            body.contains("&quot;city&quot;: &quot;Paris&quot;"),
            "arguments pretty-printed"
        );
        let call = &body[at("data-type=\"function_call\"")..at("It is 18 °C.")];
        assert!(
            call.contains("data-type=\"function_call_output\""),
            "output inside its call"
        );
        assert!(body.contains("&lt;script&gt;window.pwned=1&lt;/script&gt;"));
        assert!(body.contains("&lt;img src=x onerror=&quot;window.pwned=2&quot;&gt;"));
        assert!(!body.contains("<script>window") && !body.contains("<img src=x"));
        assert!(body.contains("web_search_call"), "unknown types as JSON");
        assert!(body.contains("raw JSON"));
        assert!(body.contains("read-only"));
        assert!(
            !body.contains("csrf-token"),
            "no write token on a read-only server"
        );

        // Ids with `/`, `%`, spaces, unicode and NUL round-trip through every route.
        for id in ODD_IDS {
            let path = format!("/s/{}", enc(id));
            let page = server.get(&path);
            assert_eq!(page.status, 200, "{backend} {id:?}: {page:?}");
            assert!(page.body.contains("message 2"));
            let info = server.get(&format!("/api/sessions/{}", enc(id)));
            assert_eq!(info.json()["session_id"], *id);
            assert_eq!(info.json()["item_count"], 3);
            let items = server.get(&format!("/api/sessions/{}/items", enc(id)));
            assert_eq!(items.json()["items"].as_array().unwrap().len(), 3);
            let export = server.get(&format!("/s/{}/export.jsonl", enc(id)));
            assert_eq!(export.status, 200);
            let first: serde_json::Value =
                serde_json::from_str(export.body.lines().next().unwrap()).unwrap();
            assert_eq!(first["session_id"], *id);
        }

        // The API: info, missing, items exactly as stored.
        let info = server.get("/api/sessions/chat-1").json();
        assert_eq!(info["item_count"], 6);
        assert!(info["created_at"].is_string() && info.get("lease").is_some());
        assert_eq!(server.get("/api/sessions/nope").status, 404);
        assert_eq!(server.get("/s/nope").status, 404);
        assert_eq!(server.get("/no/such/route").status, 404);
        let items = server.get("/api/sessions/chat-1/items?limit=2");
        assert!(
            items.body.contains(conversation()[5].as_str()),
            "items exactly as stored"
        );
        assert_eq!(items.json()["items"][0]["item"]["role"], "assistant");
        assert_eq!(server.get("/api/sessions/chat-1/items?limit=0").status, 400);
        assert_eq!(server.get("/api/sessions/chat-1/items?limit=x").status, 400);

        // Export: the whole session as `export` writes it, as a download.
        let export = server.get("/s/chat-1/export.jsonl");
        assert!(export
            .header("content-disposition")
            .unwrap()
            .starts_with("attachment"));
        assert_eq!(export.body.lines().count(), 6);

        // Assets are served, the JS as a file.
        let js = server.get("/assets/app.js");
        assert_eq!(js.status, 200);
        assert!(js
            .header("content-type")
            .unwrap()
            .starts_with("text/javascript"));
        assert_eq!(server.get("/assets/app.css").status, 200);

        // The Host check (DNS rebinding): another name is refused.
        let port = server.addr.rsplit(':').next().unwrap().to_owned();
        let evil = format!("evil.example:{port}");
        let refused = server.request("GET", "/", &[("Host", &evil)], "");
        assert_eq!(refused.status, 421);
        assert!(!refused.body.contains("chat-1"));
        let localhost = format!("localhost:{port}");
        assert_eq!(
            server
                .request("GET", "/", &[("Host", &localhost)], "")
                .status,
            200
        );

        // Read-only by default: writes are refused and change nothing.
        let pop = server.request("POST", "/api/sessions/chat-1/pop?confirm=chat-1", &[], "");
        assert_eq!(pop.status, 403);
        assert!(pop.body.contains("--allow-writes"));
        assert_eq!(server.get("/api/sessions/chat-1").json()["item_count"], 6);
    }
}

#[test]
fn paging_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    for url in urls(dir.path(), "paging") {
        seed(&url, "long", numbered(0..120));
        for n in 0..60 {
            seed(&url, &format!("many/{n:03}"), numbered(0..1));
        }
        let server = Server::start(&url, &[]);

        // Items: the newest page, then earlier pages to the start, in order, no repeats.
        let mut before: Option<u64> = None;
        let mut all: Vec<String> = Vec::new();
        loop {
            let path = match before {
                Some(b) => format!("/api/sessions/long/items?limit=50&before={b}"),
                None => "/api/sessions/long/items?limit=50".to_owned(),
            };
            let page = server.get(&path).json();
            let texts: Vec<String> = page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["item"]["content"].as_str().unwrap().to_owned())
                .collect();
            all.splice(0..0, texts);
            match page["earlier"].as_u64() {
                Some(e) => before = Some(e),
                None => break,
            }
        }
        let want: Vec<String> = (0..120).map(|n| format!("message {n}")).collect();
        assert_eq!(all, want);

        // The conversation page shows the newest 50 and links to the earlier ones.
        let page = server.get("/s/long");
        assert!(page.body.contains("message 119") && page.body.contains("message 70"));
        assert!(!page.body.contains("message 69<"));
        let link = page.body.split("data-fragment=\"").nth(1).unwrap();
        let fragment_path = link.split('"').next().unwrap().replace("&amp;", "&");
        let fragment = server.get(&fragment_path);
        assert_eq!(fragment.status, 200);
        assert!(fragment.body.contains("message 69") && fragment.body.contains("message 20"));
        assert!(!fragment.body.contains("message 70<"));
        let older = server.get(&fragment_path.replace("/items.html", ""));
        assert_eq!(older.status, 200);
        assert!(older.body.contains("message 69") && older.body.contains(">newest<"));

        // Sessions: pages of 50 through the list cursor, no duplicates, forward to the end.
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/sessions?prefix=many%2F&cursor={}", enc(c)),
                None => "/api/sessions?prefix=many%2F".to_owned(),
            };
            let page = server.get(&path).json();
            for s in page["sessions"].as_array().unwrap() {
                assert_eq!(s["item_count"], 1);
                seen.push(s["session_id"].as_str().unwrap().to_owned());
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
            assert!(seen.len() <= 60);
        }
        seen.sort();
        let want: Vec<String> = (0..60).map(|n| format!("many/{n:03}")).collect();
        assert_eq!(seen, want);
        // The HTML page links to its next page.
        let first = server.get("/?prefix=many%2F");
        assert!(first.body.contains("id=\"next\""));
        assert_eq!(first.body.matches("<tr><td class=\"id\">").count(), 50);
    }
}

/// Reads server-sent events until `want` appears in one (or the deadline passes).
fn wait_for_event(addr: &str, path: &str, want: &str, during: impl FnOnce()) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    let mut seen = Vec::new();
    let mut during = Some(during);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 8192];
    while Instant::now() < deadline {
        if let Ok(n) = stream.read(&mut buf) {
            seen.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&seen).into_owned();
        if text.contains("text/event-stream") {
            if let Some(f) = during.take() {
                f();
            }
        }
        if text.contains(want) {
            return text;
        }
    }
    panic!("no {want:?} in {}", String::from_utf8_lossy(&seen));
}

#[test]
fn live_events_and_writes() {
    let dir = tempfile::tempdir().unwrap();
    for url in urls(dir.path(), "live") {
        seed(&url, "chat/live", conversation());
        let server = Server::start(&url, &["--allow-writes"]);
        let newest = server.get("/api/sessions/chat%2Flive/items?limit=1").json()["items"][0]
            ["position"]
            .as_u64()
            .unwrap();

        // An item added while the events stream is open arrives as an `items` event.
        let events = format!("/api/sessions/chat%2Flive/events?after={newest}");
        let text = wait_for_event(&server.addr, &events, "arrived live", || {
            seed(
                &url,
                "chat/live",
                vec![item(
                    serde_json::json!({"role": "user", "content": "arrived live <b>"}),
                )],
            );
        });
        assert!(text.contains("event: items"), "{text}");
        assert!(
            text.contains("arrived live &lt;b&gt;"),
            "escaped in the event: {text}"
        );

        // Writes: the page carries the CSRF value; without it, or from another site, refused.
        let page = server.get("/s/chat%2Flive");
        assert!(page.body.contains("pop newest item"));
        let csrf = page
            .body
            .split("name=\"csrf-token\" content=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .to_owned();
        let pop = "/api/sessions/chat%2Flive/pop?confirm=chat%2Flive";
        assert_eq!(
            server.request("POST", pop, &[], "").status,
            403,
            "no CSRF header"
        );
        let cross = server.request(
            "POST",
            pop,
            &[
                ("X-CSRF-Token", &csrf),
                ("Origin", "http://evil.example"),
                ("Sec-Fetch-Site", "cross-site"),
            ],
            "",
        );
        assert_eq!(cross.status, 403, "a cross-site write");
        assert_eq!(
            server
                .request("POST", pop, &[("X-CSRF-Token", "0000")], "")
                .status,
            403
        );
        let unconfirmed = server.request(
            "POST",
            "/api/sessions/chat%2Flive/pop",
            &[("X-CSRF-Token", &csrf)],
            "",
        );
        assert_eq!(unconfirmed.status, 400);
        assert_eq!(
            server.get("/api/sessions/chat%2Flive").json()["item_count"],
            7
        );
        let origin = format!("http://{}", server.addr);
        let popped = server.request(
            "POST",
            pop,
            &[
                ("X-CSRF-Token", &csrf),
                ("Origin", &origin),
                ("Sec-Fetch-Site", "same-origin"),
            ],
            "",
        );
        assert_eq!(popped.status, 200, "{popped:?}");
        assert_eq!(popped.json()["popped"]["content"], "arrived live <b>");
        // A pop below the position a viewer has seen resets its view.
        let reset = wait_for_event(
            &server.addr,
            &format!("/api/sessions/chat%2Flive/events?after={}", newest + 1),
            "event: reset",
            || {},
        );
        assert!(reset.contains("reset"));
        let cleared = server.request(
            "POST",
            "/api/sessions/chat%2Flive/clear?confirm=chat%2Flive",
            &[("X-CSRF-Token", &csrf)],
            "",
        );
        assert_eq!(cleared.status, 200);
        assert_eq!(server.get("/api/sessions/chat%2Flive").status, 404);
    }
}

#[test]
fn token_rules() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/token.db", dir.path().display());
    seed(&url, "secret-chat", numbered(0..2));

    // A non-loopback address without a token file exits 2 with a message, before listening.
    let out = Command::new(env!("CARGO_BIN_EXE_agent-session"))
        .args(["--url", &url, "serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--token-file") && err.contains("loopback"),
        "{err}"
    );
    let short = dir.path().join("short");
    std::fs::write(&short, "abc\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_agent-session"))
        .args([
            "--url",
            &url,
            "serve",
            "--token-file",
            short.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let token = "s3cret-token-0123456789abcdef";
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let server = Server::start(&url, &["--token-file", file.to_str().unwrap()]);
    // Without the token: pages go to the login page, the API says 401.
    let page = server.get("/");
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), Some("/login"));
    assert!(!page.body.contains("secret-chat"));
    assert_eq!(server.get("/api/sessions").status, 401);
    assert_eq!(server.get("/s/secret-chat/export.jsonl").status, 303);
    assert_eq!(server.get("/api/sessions/secret-chat/events").status, 401);
    let wrong = format!("Bearer {}x", token);
    assert_eq!(
        server
            .request("GET", "/api/sessions", &[("Authorization", &wrong)], "")
            .status,
        401
    );
    // A bearer header.
    let bearer = format!("Bearer {token}");
    let ok = server.request("GET", "/api/sessions", &[("Authorization", &bearer)], "");
    assert_eq!(ok.status, 200);
    assert!(ok.body.contains("secret-chat"));
    // The login page sets an HttpOnly cookie once; the token never appears in a page.
    let login = server.get("/login");
    assert_eq!(login.status, 200);
    assert!(login.body.contains("type=\"password\"") && !login.body.contains(token));
    let form = "application/x-www-form-urlencoded";
    let bad = server.request("POST", "/login", &[("Content-Type", form)], "token=nope");
    assert_eq!(bad.status, 401);
    assert!(bad.header("set-cookie").is_none());
    let good = server.request(
        "POST",
        "/login",
        &[("Content-Type", form)],
        &format!("token={token}"),
    );
    assert_eq!(good.status, 303);
    let cookie = good.header("set-cookie").unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    let with_cookie = server.request("GET", "/", &[("Cookie", &pair)], "");
    assert_eq!(with_cookie.status, 200);
    assert!(with_cookie.body.contains("secret-chat"));
    assert!(
        !with_cookie.body.contains(token),
        "the token never appears in a page"
    );
    let conv = server.request("GET", "/s/secret-chat", &[("Cookie", &pair)], "");
    assert!(conv.body.contains("message 1") && !conv.body.contains(token));
    // The Host check still comes first.
    let port = server.addr.rsplit(':').next().unwrap().to_owned();
    let evil = format!("rebound.example:{port}");
    assert_eq!(
        server
            .request(
                "GET",
                "/",
                &[("Host", &evil), ("Authorization", &bearer)],
                ""
            )
            .status,
        421
    );
}

#[test]
fn passwords_never_appear_in_a_page() {
    // The ACL user's URL carries a password: no page or API answer may show it.
    let url = std::env::var("OAS_TEST_REDIS_ACL_URL").unwrap_or_else(|_| {
        panic!("OAS_TEST_REDIS_ACL_URL is not set: run scripts/test.sh, or source target/test-servers.env")
    });
    let userinfo = url
        .split("//")
        .nth(1)
        .and_then(|r| r.split('@').next())
        .unwrap();
    let password = userinfo.split(':').nth(1).unwrap().to_owned();
    assert!(password.len() >= 4, "the ACL URL has a password");
    let sep = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{sep}prefix=serve-pw-{}", std::process::id());
    seed(&url, "s", numbered(0..1));
    let server = Server::start(&url, &[]);
    for path in [
        "/",
        "/s/s",
        "/api/sessions",
        "/api/sessions/s",
        "/api/sessions/s/items",
    ] {
        let r = server.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert!(!r.body.contains(&password), "{path} shows the password");
    }
}
