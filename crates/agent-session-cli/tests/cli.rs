//! The `agent-session` contract that scripts rely on: outputs, exit codes, atomic stdin batches.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Env {
    dir: PathBuf,
}

impl Env {
    fn new(name: &str) -> Env {
        let dir = std::env::temp_dir().join(format!("oas-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Env { dir }
    }

    fn url(&self) -> String {
        format!("sqlite://{}/s.db", self.dir.display())
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_agent-session"));
        cmd.current_dir(&self.dir).env_remove("AGENT_SESSION_URL");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd()
            .arg("--url")
            .arg(self.url())
            .args(args)
            .output()
            .unwrap()
    }

    fn run_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .cmd()
            .arg("--url")
            .arg(self.url())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

#[test]
fn add_get_pop_clear_round_trip() {
    let env = Env::new("basic");
    let o = env.run(&[
        "add",
        "s1",
        r#"{"role":"user","content":"hi"}"#,
        r#"{"n": 1e400, "big": 123456789012345678901234567890}"#,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    let o = env.run(&["get", "s1"]);
    assert_eq!(
        stdout(&o),
        "{\"role\":\"user\",\"content\":\"hi\"}\n{\"n\":1e400,\"big\":123456789012345678901234567890}\n"
    );
    let o = env.run(&["get", "s1", "--limit", "1"]);
    assert_eq!(
        stdout(&o),
        "{\"n\":1e400,\"big\":123456789012345678901234567890}\n"
    );
    let o = env.run(&["get", "s1", "--limit", "0"]);
    assert_eq!((code(&o), stdout(&o)), (0, String::new()));
    let o = env.run(&["pop", "s1"]);
    assert_eq!(
        stdout(&o),
        "{\"n\":1e400,\"big\":123456789012345678901234567890}\n"
    );
    env.run(&["pop", "s1"]);
    let o = env.run(&["pop", "s1"]);
    assert_eq!((code(&o), stdout(&o)), (0, String::new()), "pop on empty");
    env.run(&["add", "s1", r#"{"a":1}"#]);
    let o = env.run(&["clear", "s1"]);
    assert_eq!(code(&o), 0);
    assert_eq!(stdout(&env.run(&["get", "s1"])), "");
    let o = env.run(&["clear", "never-existed"]);
    assert_eq!(code(&o), 0, "clear of a missing session succeeds");
}

#[test]
fn stdin_batch_is_atomic_and_bad_line_is_named() {
    let env = Env::new("stdin");
    let o = env.run_stdin(&["add", "s"], "{\"a\":1}\n\n{\"b\":2}\n");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&env.run(&["get", "s"])), "{\"a\":1}\n{\"b\":2}\n");

    let o = env.run_stdin(&["add", "s"], "{\"c\":3}\n{\"d\":4}\n[5]\n{\"e\":6}\n");
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("line 3"), "{}", stderr(&o));
    let o = env.run_stdin(&["add", "s"], "{\"c\":3}\n{\"d\":\n");
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("line 2"), "{}", stderr(&o));
    assert_eq!(
        stdout(&env.run(&["get", "s"])),
        "{\"a\":1}\n{\"b\":2}\n",
        "nothing written"
    );

    let o = env.run(&["add", "s", "{\"ok\":1}", "\"not an object\""]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("argument 2"), "{}", stderr(&o));
    assert_eq!(
        stdout(&env.run(&["get", "s"])),
        "{\"a\":1}\n{\"b\":2}\n",
        "nothing written"
    );
}

#[test]
fn list_prefix_is_literal_and_json_quotes_ids() {
    let env = Env::new("list");
    for id in ["user-1:a", "user-1:b", "user-10:a", "user_1", "line\nbreak"] {
        assert_eq!(code(&env.run(&["add", id, "{\"x\":1}"])), 0);
    }
    let o = env.run(&["list", "--prefix", "user-1:"]);
    assert_eq!(stdout(&o), "user-1:a\nuser-1:b\n");
    let o = env.run(&["list", "--prefix", "user_"]);
    assert_eq!(stdout(&o), "user_1\n", "underscore is literal");
    let o = env.run(&["list", "--prefix", "line", "--json"]);
    assert_eq!(stdout(&o), "\"line\\nbreak\"\n");
    let o = env.run(&["list"]);
    assert_eq!(stdout(&o).lines().count(), 6);
}

#[test]
fn info_prints_json_and_missing_exits_3() {
    let env = Env::new("info");
    env.run(&["add", "s", "{\"x\":1}", "{\"y\":2}"]);
    let o = env.run(&["info", "s"]);
    assert_eq!(code(&o), 0);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "session_id",
            "item_count",
            "created_at",
            "updated_at",
            "expires_at",
            "lease"
        ]
    );
    assert_eq!(v["session_id"], "s");
    assert_eq!(v["item_count"].as_u64(), Some(2));
    assert!(v["expires_at"].is_null());
    assert!(v["lease"].is_null(), "no lease");
    let created = v["created_at"].as_str().unwrap();
    assert_eq!(created.len(), "2026-11-26T12:00:00.000Z".len(), "{created}");
    assert!(
        created.ends_with('Z') && created.as_bytes()[19] == b'.',
        "{created}"
    );

    let o = env.run(&["info", "nope"]);
    assert_eq!(code(&o), 3);
    assert_eq!(stderr(&o).trim(), "not found: nope");
    assert_eq!(stdout(&o), "");

    let o = env
        .cmd()
        .arg("--url")
        .arg(format!("{}?ttl=60", env.url()))
        .args(["info", "s"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(
        v["expires_at"].is_null(),
        "info neither writes nor refreshes"
    );
}

#[test]
fn exit_codes_for_bad_usage_and_urls() {
    let env = Env::new("codes");
    let o = env
        .cmd()
        .args(["--url", "ftp://x", "get", "s"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("\"ftp\""), "{}", stderr(&o));
    let o = env
        .cmd()
        .args(["--url", "memory://?nonsense=1", "get", "s"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("nonsense"), "{}", stderr(&o));
    let o = env
        .cmd()
        .args(["--url", "memory://?ttl=0", "get", "s"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("ttl"));
    let o = env.run(&["frobnicate"]);
    assert_eq!(code(&o), 2, "unknown subcommand is a usage error");
    let o = env.run(&["get", ""]);
    assert_eq!(code(&o), 2, "empty session id");
    assert!(stderr(&o).contains("invalid session id"), "{}", stderr(&o));
    let o = env
        .cmd()
        .args([
            "--url",
            &format!("{}?max_item_bytes=10", env.url()),
            "add",
            "s",
            "{\"content\":\"far too long\"}",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("too large"), "{}", stderr(&o));
    // A directory where the database file should be: a backend failure, exit 1.
    std::fs::create_dir_all(env.dir.join("dir.db")).unwrap();
    let o = env
        .cmd()
        .args(["--url", "sqlite://dir.db", "get", "s"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
}

#[test]
fn passwords_never_appear_in_output() {
    let env = Env::new("secrets");
    for url in [
        "redis://user:hunter2@127.0.0.1:1/0?bogus=1",
        "rediss://:hunter2@127.0.0.1:1",
        "unknown://admin:hunter2@host/",
    ] {
        let o = env
            .cmd()
            .args(["--url", url, "info", "s"])
            .output()
            .unwrap();
        assert_ne!(code(&o), 0);
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert!(!all.contains("hunter2"), "{all}");
    }
    let o = env
        .cmd()
        .env("AGENT_SESSION_URL", "redis://u:hunter2@h/")
        .arg("--help")
        .output()
        .unwrap();
    assert!(!stdout(&o).contains("hunter2"));
}

#[test]
fn default_url_and_env_var() {
    let env = Env::new("default");
    let o = env.cmd().args(["add", "s", "{\"a\":1}"]).output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(Path::new(&env.dir.join("agent-sessions.db")).exists());
    let o = env
        .cmd()
        .env("AGENT_SESSION_URL", env.url())
        .args(["add", "t", "{\"b\":2}"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0);
    let o = env.run(&["list"]);
    assert_eq!(stdout(&o), "t\n", "the env var chose the store");
}

/// The default build speaks every Redis URL form (servers from `scripts/servers.sh`).
#[test]
fn works_with_every_redis_url_form() {
    let env = Env::new("redis");
    for var in [
        "OAS_TEST_REDIS_URL",
        "OAS_TEST_REDIS_ACL_URL",
        "OAS_TEST_REDISS_URL",
        "OAS_TEST_REDIS_CLUSTER_URL",
    ] {
        let url = std::env::var(var).unwrap_or_else(|_| {
            panic!("{var} is not set: run scripts/test.sh, or scripts/servers.sh start and source target/test-servers.env")
        });
        let sep = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{sep}prefix=cli_{}", std::process::id());
        let run = |args: &[&str]| {
            env.cmd()
                .arg("--url")
                .arg(&url)
                .args(args)
                .output()
                .unwrap()
        };
        let o = run(&[
            "add",
            "cli:s1",
            r#"{"role":"user","content":"hi"}"#,
            r#"{"n":1}"#,
        ]);
        assert_eq!(code(&o), 0, "{var}: {}", stderr(&o));
        assert_eq!(
            stdout(&run(&["get", "cli:s1", "--limit", "1"])),
            "{\"n\":1}\n",
            "{var}"
        );
        let info: serde_json::Value =
            serde_json::from_str(stdout(&run(&["info", "cli:s1"])).trim()).unwrap();
        assert_eq!(info["item_count"].as_u64(), Some(2), "{var}");
        assert_eq!(
            stdout(&run(&["list", "--prefix", "cli:"])),
            "cli:s1\n",
            "{var}"
        );
        assert_eq!(stdout(&run(&["pop", "cli:s1"])), "{\"n\":1}\n", "{var}");
        assert_eq!(code(&run(&["clear", "cli:s1"])), 0, "{var}");
        assert_eq!(code(&run(&["info", "cli:s1"])), 3, "{var}");
        // Redis expires sessions by itself; prune says so, and what else it removed.
        let o = run(&["prune"]);
        assert_eq!(code(&o), 0, "{var}: {}", stderr(&o));
        assert_eq!(
            stdout(&o),
            "pruned: 0 expired sessions, 0 leftovers of interrupted writes (Redis deletes expired sessions by itself)\n",
            "{var}"
        );
    }
    let acl = std::env::var("OAS_TEST_REDIS_ACL_URL").unwrap();
    let o = env
        .cmd()
        .args([
            "--url",
            &acl.replace("oas-secret-pw", "hunter2-wrong"),
            "get",
            "s",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("credentials") && !stderr(&o).contains("hunter2"),
        "{}",
        stderr(&o)
    );
    let o = env
        .cmd()
        .args([
            "--url",
            "redis://u:hunter2@127.0.0.1:1/?connect_timeout=1",
            "get",
            "s",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(!stderr(&o).contains("hunter2"));
}

/// export -> import and copy between stores: exact, in order, sessions contiguous; the
/// --on-existing modes; a bad line writes nothing.
#[test]
fn export_import_and_copy() {
    let env = Env::new("transfer");
    let src = env.url();
    let dst = format!("sqlite://{}/dst.db", env.dir.display());
    let items = [
        r#"{"role":"user","content":"h\u00e9llo","n":123456789012345678901234567890}"#,
        r#"{"type":"function_call","arguments":"{\"a\": 1}","call_id":"c1","name":"f"}"#,
    ];
    for id in ["s1", "s2", "other"] {
        let o = env.run(&["add", id, items[0], items[1]]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    let o = env.run(&["export", "--quiet"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let exported = stdout(&o);
    assert_eq!(exported.lines().count(), 6);
    let first: serde_json::Value = serde_json::from_str(exported.lines().next().unwrap()).unwrap();
    assert_eq!(
        first["session_id"], "other",
        "sessions in id order, contiguous"
    );
    assert!(
        exported.contains(
            r#""item":{"role":"user","content":"h\u00e9llo","n":123456789012345678901234567890}"#
        ),
        "{exported}"
    );

    // Import into another store; then again: an error naming the session, nothing written.
    let import = |args: &[&str], input: &str| {
        env.cmd()
            .arg("--url")
            .arg(&dst)
            .arg("import")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map(|mut c| {
                c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
                c.wait_with_output().unwrap()
            })
            .unwrap()
    };
    let o = import(&[], &exported);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("imported 3 sessions (6 items"),
        "{}",
        stderr(&o)
    );
    let get =
        |url: &str, id: &str| stdout(&env.cmd().args(["--url", url, "get", id]).output().unwrap());
    assert_eq!(get(&dst, "s1"), format!("{}\n{}\n", items[0], items[1]));
    let o = import(&["--quiet"], &exported);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    let o = import(&["--quiet", "--on-existing", "append"], &exported);
    assert_eq!(code(&o), 0);
    assert_eq!(get(&dst, "s2").lines().count(), 4);
    let o = import(&["--quiet", "--on-existing", "replace"], &exported);
    assert_eq!(code(&o), 0);
    assert_eq!(get(&dst, "s2").lines().count(), 2);

    // A bad line in the middle: exit 2 naming it, nothing written.
    let mut lines: Vec<&str> = exported.lines().collect();
    lines.insert(3, r#"{"session_id":"new","item":[1,2]}"#);
    let bad = lines.join("\n");
    let fresh = format!("sqlite://{}/fresh.db", env.dir.display());
    let o = env
        .cmd()
        .args(["--url", &fresh, "import", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(|mut c| {
            c.stdin.take().unwrap().write_all(bad.as_bytes()).unwrap();
            c.wait_with_output().unwrap()
        })
        .unwrap();
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("line 4"), "{}", stderr(&o));
    assert_eq!(
        stdout(&env.cmd().args(["--url", &fresh, "list"]).output().unwrap()),
        "",
        "nothing written"
    );

    // copy: default error, skip completes a partial copy, prefix filter.
    let copy_dst = format!("sqlite://{}/copy.db", env.dir.display());
    let o = env
        .cmd()
        .args(["copy", "--from", &src, "--to", &copy_dst, "--quiet", "s1"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = env
        .cmd()
        .args(["copy", "--from", &src, "--to", &copy_dst, "--quiet"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "s1 exists");
    assert!(stderr(&o).contains("\"s1\""), "{}", stderr(&o));
    assert_eq!(
        stdout(
            &env.cmd()
                .args(["--url", &copy_dst, "list"])
                .output()
                .unwrap()
        ),
        "s1\n",
        "nothing more written"
    );
    let o = env
        .cmd()
        .args([
            "copy",
            "--from",
            &src,
            "--to",
            &copy_dst,
            "--on-existing",
            "skip",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0);
    assert!(
        stderr(&o).contains("copied 2 sessions") && stderr(&o).contains("skipped 1"),
        "{}",
        stderr(&o)
    );
    for id in ["s1", "s2", "other"] {
        assert_eq!(get(&copy_dst, id), get(&src, id), "{id} copied exactly");
    }
    let prefixed = format!("sqlite://{}/prefixed.db", env.dir.display());
    let o = env
        .cmd()
        .args([
            "copy", "--from", &src, "--to", &prefixed, "--prefix", "s", "--quiet",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0);
    assert_eq!(
        stdout(
            &env.cmd()
                .args(["--url", &prefixed, "list"])
                .output()
                .unwrap()
        ),
        "s1\ns2\n"
    );
}

/// The official Agents SDK SQLiteSession tables are read through `layout=openai-agents` and
/// copied into our layout.
#[test]
fn copy_from_the_agents_sdk_sqlite_tables() {
    let env = Env::new("sdk-sqlite");
    let path = env.dir.join("sdk.db");
    let conn = rusqlite_free_sqlite(&path);
    assert!(
        conn,
        "could not write the SDK's tables with python3's sqlite3"
    );
    let from = format!("sqlite://{}?layout=openai-agents", path.display());
    let o = env.cmd().args(["--url", &from, "list"]).output().unwrap();
    assert_eq!(stdout(&o), "conv-1\n", "{}", stderr(&o));
    let to = env.url();
    let o = env
        .cmd()
        .args(["copy", "--from", &from, "--to", &to, "--quiet"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let got = stdout(&env.run(&["get", "conv-1"]));
    assert_eq!(got, "{\"role\": \"user\", \"content\": \"h\\u00e9llo\"}\n{\"role\": \"assistant\", \"content\": \"hi\"}\n".replace(": ", ":").replace(", ", ","));
    let o = env
        .cmd()
        .args(["--url", &from, "add", "conv-1", "{\"a\":1}"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "the legacy layout is read-only");
}

/// Writes the Agents SDK SQLiteSession schema and rows as the SDK does (python3's sqlite3 and
/// json.dumps), without the SDK itself.
fn rusqlite_free_sqlite(path: &Path) -> bool {
    let script = r#"
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.executescript('''
CREATE TABLE agent_sessions (session_id TEXT PRIMARY KEY, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE agent_messages (id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, message_data TEXT NOT NULL, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, FOREIGN KEY (session_id) REFERENCES agent_sessions (session_id) ON DELETE CASCADE);
''')
db.execute("INSERT INTO agent_sessions (session_id) VALUES ('conv-1')")
for item in [{"role": "user", "content": "h\u00e9llo"}, {"role": "assistant", "content": "hi"}]:
    db.execute("INSERT INTO agent_messages (session_id, message_data) VALUES (?, ?)", ("conv-1", json.dumps(item)))
db.commit()
"#;
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Data written by the real Python packages (the seed on Redis and DynamoDB Local, the official
/// Agents SDK's RedisSession and SQLiteSession) is copied by `agent-session copy` into our
/// layout, every item equal to what Python reads back.
#[test]
fn copy_from_data_written_by_the_real_python_packages() {
    let need = |var: &str| {
        std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: run scripts/test.sh, or scripts/servers.sh start and source target/test-servers.env"))
    };
    let python = need("OAS_TEST_LEGACY_PYTHON");
    let redis = need("OAS_TEST_REDIS_URL");
    let endpoint = need("OAS_TEST_DYNAMODB_ENDPOINT");
    let env = Env::new("python-legacy");
    let tag = format!("{}", std::process::id());
    let table = format!("seed_table_{tag}");
    let sqlite = env.dir.join("sdk.db");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/write_legacy.py");
    let o = Command::new(&python)
        .arg(&script)
        .args([
            "--tag",
            &tag,
            "--redis-url",
            &redis,
            "--dynamodb-endpoint",
            &endpoint,
            "--dynamodb-table",
            &table,
        ])
        .arg("--sqlite-path")
        .arg(&sqlite)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "the Python writer failed: {}",
        stderr(&o)
    );
    let expected: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let sources = [
        ("seed_redis", format!("{redis}?layout=seed")),
        ("sdk_redis", format!("{redis}?layout=openai-agents")),
        (
            "sdk_sqlite",
            format!("sqlite://{}?layout=openai-agents", sqlite.display()),
        ),
        (
            "seed_dynamodb",
            format!("dynamodb://{table}?region=us-east-1&endpoint={endpoint}&layout=seed"),
        ),
    ];
    let target = env.url();
    for (name, from) in sources {
        let case = &expected[name];
        let id = case["session_id"].as_str().unwrap();
        let o = env
            .cmd()
            .args(["copy", "--from", &from, "--to", &target, "--quiet", id])
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{name}: {}", stderr(&o));
        let got: Vec<serde_json::Value> = stdout(&env.run(&["get", id]))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let want = case["items"].as_array().unwrap();
        assert_eq!(got.len(), 6, "{name}: item count");
        assert_eq!(&got, want, "{name}: items as Python reads them");
    }
}

/// An interrupted copy (SIGINT) leaves every copied session whole; a re-run with `skip`
/// completes it without duplicates.
#[test]
fn interrupted_copy_then_skip_completes() {
    let env = Env::new("sigint");
    let src = env.url();
    let mut lines = String::new();
    for s in 0..3000 {
        for i in 0..4 {
            lines.push_str(&format!(
                "{{\"session_id\":\"s{s:05}\",\"item\":{{\"i\":{i},\"pad\":\"{}\"}}}}\n",
                "z".repeat(300)
            ));
        }
    }
    let mut child = env
        .cmd()
        .args(["--url", &src, "import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    let dst = format!("sqlite://{}/dst.db", env.dir.display());
    let mut copy = env
        .cmd()
        .args(["copy", "--quiet", "--from", &src, "--to", &dst])
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        let listed = stdout(&env.cmd().args(["--url", &dst, "list"]).output().unwrap())
            .lines()
            .count();
        if listed >= 5 || start.elapsed() > std::time::Duration::from_secs(30) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = Command::new("kill")
        .args(["-INT", &copy.id().to_string()])
        .status();
    let status = copy.wait().unwrap();
    let partial = stdout(&env.cmd().args(["--url", &dst, "list"]).output().unwrap());
    for id in partial.lines() {
        let n = stdout(&env.cmd().args(["--url", &dst, "get", id]).output().unwrap())
            .lines()
            .count();
        assert_eq!(n, 4, "session {id} is whole after the interruption");
    }
    let o = env
        .cmd()
        .args([
            "copy",
            "--from",
            &src,
            "--to",
            &dst,
            "--on-existing",
            "skip",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let all = stdout(&env.cmd().args(["--url", &dst, "list"]).output().unwrap());
    assert_eq!(all.lines().count(), 3000, "complete after the re-run");
    let o = env
        .cmd()
        .args(["--url", &dst, "export", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(stdout(&o).lines().count(), 12_000, "no duplicates");
    println!(
        "interrupted copy: {} of 3000 sessions copied before SIGINT ({status}), all whole; re-run with skip completed",
        partial.lines().count()
    );
}

/// `--chunk-bytes` sends sessions through the staged path (copy and import), `replace` swaps
/// the history, and `prune` says what it removed.
#[test]
fn chunked_copy_and_import_and_prune_report() {
    let env = Env::new("chunked");
    let src = env.url();
    let dst = format!("sqlite://{}/dst.db", env.dir.display());
    let items: Vec<String> = (0..200)
        .map(|n| {
            format!(
                r#"{{"role":"user","content":"turn {n} {}"}}"#,
                "z".repeat(200)
            )
        })
        .collect();
    let args: Vec<&str> = ["add", "big"]
        .into_iter()
        .chain(items.iter().map(String::as_str))
        .collect();
    assert_eq!(code(&env.run(&args)), 0);
    let o = env
        .cmd()
        .args(["--url", &dst, "add", "big", r#"{"old":1}"#])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = env
        .cmd()
        .args([
            "copy",
            "--quiet",
            "--from",
            &src,
            "--to",
            &dst,
            "--on-existing",
            "replace",
            "--chunk-bytes",
            "4096",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let got = stdout(
        &env.cmd()
            .args(["--url", &dst, "get", "big"])
            .output()
            .unwrap(),
    );
    assert_eq!(
        got,
        items.iter().map(|i| format!("{i}\n")).collect::<String>()
    );

    let exported = stdout(&env.run(&["export", "--quiet"]));
    let path = env.dir.join("big.jsonl");
    std::fs::write(&path, exported).unwrap();
    let o = env
        .cmd()
        .args([
            "--url",
            &dst,
            "import",
            "--quiet",
            "--on-existing",
            "append",
            "--chunk-bytes",
            "4096",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let got = stdout(
        &env.cmd()
            .args(["--url", &dst, "get", "big"])
            .output()
            .unwrap(),
    );
    assert_eq!(got.lines().count(), 400, "appended in one step");

    let o = env.cmd().args(["--url", &dst, "prune"]).output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "pruned: 0 expired sessions, 0 leftovers of interrupted writes\n"
    );
}

/// Ctrl-C during a streamed copy of one large session: exit 130 with a message, the session
/// absent from the target, and the staging list it was filling deleted on the way out.
#[test]
fn ctrl_c_during_a_streamed_copy_leaves_nothing() {
    let redis = std::env::var("OAS_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("OAS_TEST_REDIS_URL is not set: run scripts/test.sh, or scripts/servers.sh start and source target/test-servers.env")
    });
    let port = redis
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let env = Env::new("ctrl-c");
    let src = env.url();
    let prefix = format!("ctrlc_{}", std::process::id());
    let dst = format!("{redis}?prefix={prefix}");
    let mut lines = String::new();
    for i in 0..3000 {
        lines.push_str(&format!(
            "{{\"session_id\":\"big\",\"item\":{{\"i\":{i},\"pad\":\"{}\"}}}}\n",
            "q".repeat(4000)
        ));
    }
    assert_eq!(code(&env.run_stdin(&["import", "--quiet"], &lines)), 0);
    let staging_keys = || {
        let o = Command::new("redis-cli")
            .args([
                "-p",
                &port,
                "--scan",
                "--pattern",
                &format!("{prefix}:*:stage:*"),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).lines().count()
    };
    let copy = env
        .cmd()
        .args([
            "copy",
            "--quiet",
            "--from",
            &src,
            "--to",
            &dst,
            "--chunk-bytes",
            "4096",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while staging_keys() == 0 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the copy never started staging"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = Command::new("kill")
        .args(["-INT", &copy.id().to_string()])
        .status();
    let o = copy.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
    let info = env
        .cmd()
        .args(["--url", &dst, "info", "big"])
        .output()
        .unwrap();
    assert_eq!(
        code(&info),
        3,
        "the session in flight is absent: {}",
        stdout(&info)
    );
    assert_eq!(
        staging_keys(),
        0,
        "the staging list was deleted on the way out"
    );
}

/// `tls_insecure=true`: the library only logs the warning (through `tracing`); the CLI shows it.
#[test]
fn tls_insecure_warning_is_shown_by_the_cli() {
    let env = Env::new("insecure");
    let tls = std::env::var("OAS_TEST_REDISS_URL").unwrap_or_else(|_| {
        panic!("OAS_TEST_REDISS_URL is not set: run scripts/test.sh, or scripts/servers.sh start and source target/test-servers.env")
    });
    let base = tls.split('?').next().unwrap_or(&tls);
    let o = env
        .cmd()
        .arg("--url")
        .arg(format!("{base}?tls_insecure=true"))
        .args(["get", "insecure-probe"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o)
            .contains("tls_insecure=true: the Redis server's TLS certificate is NOT verified"),
        "{}",
        stderr(&o)
    );
    let o = env
        .cmd()
        .arg("--url")
        .arg(&tls)
        .args(["get", "insecure-probe"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!stderr(&o).contains("NOT verified"), "{}", stderr(&o));
}

/// `import` from stdin spools into a real temporary file: a unique name created exclusively
/// (a symlink planted at the old predictable name is not followed) and removed afterwards.
#[test]
fn import_from_stdin_spools_safely_and_leaves_nothing() {
    let env = Env::new("spool");
    let tmp = env.dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let victim = env.dir.join("victim.txt");
    std::fs::write(&victim, "keep me").unwrap();
    // The name the old spool used for this process would have been predictable; plant links at
    // every such name pattern we can guess.
    for n in 0..4 {
        let _ = std::os::unix::fs::symlink(
            &victim,
            tmp.join(format!("agent-session-import-0-{n}.jsonl")),
        );
    }
    let mut child = env
        .cmd()
        .env("TMPDIR", &tmp)
        .arg("--url")
        .arg(env.url())
        .args(["import", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"session_id\":\"sp\",\"item\":{\"a\":1}}\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .filter(|e| !e.file_type().map(|t| t.is_symlink()).unwrap_or(false))
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "spool files left behind: {left:?}");
    assert_eq!(stdout(&env.run(&["get", "sp"])), "{\"a\":1}\n");
}

/// Smoke run of `bench --workload turns` with tiny parameters: JSON report, the table, the
/// stated settings, no lost items, and no benchmark session left behind.
#[test]
fn bench_turn_workload_smoke() {
    let env = Env::new("bench-turns");
    let o = env.run(&[
        "bench",
        "--workload",
        "turns",
        "--turns",
        "24",
        "--warmup",
        "0",
        "--concurrency",
        "2",
        "--sessions",
        "3",
        "--prefill",
        "7",
        "--pop-every",
        "4",
        "--limit",
        "5",
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(report["workload"], "turns");
    assert_eq!(report["backend"], "sqlite");
    assert_eq!(report["turns"], 24);
    assert_eq!(report["concurrency"], 2);
    assert_eq!(report["sessions"], 3);
    assert_eq!(report["errors"], 0);
    assert_eq!(report["items_lost"], 0);
    assert_eq!(report["items_extra"], 0);
    assert_eq!(report["ops"]["get_items"]["count"], 24);
    assert_eq!(report["ops"]["add_items"]["count"], 24);
    // Every 4th turn of each client: 24 turns split between two clients give 4 to 8 pops.
    let pops = report["ops"]["pop_item"]["count"].as_u64().unwrap();
    assert!((4..=8).contains(&pops), "{pops} pops");
    // One transaction per call, more when SQLite retries a busy one.
    assert!(
        report["ops"]["get_items"]["requests_per_op"]
            .as_f64()
            .unwrap()
            >= 1.0
    );
    assert!(report["ops"]["turn"]["p99_us"].as_f64().unwrap() > 0.0);
    assert!(report["turns_per_sec"].as_f64().unwrap() > 0.0);
    assert!(report["peak_rss_kib"].as_u64().unwrap() > 0);
    assert_eq!(report["turn_item_bytes"], serde_json::json!([205, 986]));
    assert_eq!(report["settings"]["durability"], "WAL, synchronous=normal");
    assert_eq!(report["settings"]["encryption"], "off");
    assert!(report["settings"]["ttl_s"].is_null());

    let o = env.run(&[
        "bench",
        "--workload",
        "turns",
        "--turns",
        "5",
        "--warmup",
        "0",
        "--turn-item-bytes",
        "100,300",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let table = stdout(&o);
    assert!(table.contains("1 clients, 16 sessions"), "{table}");
    assert!(table.contains("get_items"), "{table}");
    assert!(table.contains("[100, 300] B"), "{table}");
    assert!(table.contains("items lost: 0"), "{table}");
    assert_eq!(stdout(&env.run(&["list", "--prefix", "bench:"])), "");
}

/// `bench --workload turns --duration` on `memory://` with more clients than worker threads
/// ends on time. Its turns never wait, and the clients' loops once kept both of tokio's worker
/// threads, so the timer that ends the measured window never fired: the run never ended.
#[test]
fn bench_turns_on_memory_with_many_clients_ends_on_time() {
    let env = Env::new("bench-memory");
    let mut child = env
        .cmd()
        .args([
            "--url",
            "memory://?ttl=3600",
            "bench",
            "--workload",
            "turns",
        ])
        .args([
            "--concurrency",
            "8",
            "--duration",
            "0.5",
            "--warmup",
            "0.2",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            panic!("bench on memory:// with 8 clients still running after 60 s (0.7 s asked for)");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let o = child.wait_with_output().unwrap();
    assert!(status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(report["backend"], "memory");
    assert_eq!(report["concurrency"], 8);
    assert_eq!(report["errors"], 0);
    assert_eq!(report["items_lost"], 0);
    assert!(report["turns"].as_u64().unwrap() > 0, "{report}");
}

// ------------------------------------------------------------ history transactions (13) ---

/// `add --operation-id`: an idempotent append; `add` without it stays quiet.
#[test]
fn add_with_operation_id_is_an_idempotent_append() {
    let env = Env::new("add-op");
    let o = env.run(&[
        "add",
        "s",
        "--operation-id",
        "turn-1",
        r#"{"role":"user","n":1}"#,
    ]);
    assert_eq!(
        (code(&o), stdout(&o)),
        (0, "applied\n".to_owned()),
        "{}",
        stderr(&o)
    );
    // The retry after a timeout: same items (key order and 1/1.0 do not matter), nothing added.
    let o = env.run(&[
        "add",
        "s",
        "--operation-id",
        "turn-1",
        r#"{"n":1.0,"role":"user"}"#,
    ]);
    assert_eq!(
        (code(&o), stdout(&o)),
        (0, "already applied\n".to_owned()),
        "{}",
        stderr(&o)
    );
    // From stdin too, the option after the items' place.
    let o = env.run_stdin(
        &["add", "--operation-id", "turn-1", "s"],
        "{\"role\":\"user\",\"n\":1}\n",
    );
    assert_eq!(
        (code(&o), stdout(&o)),
        (0, "already applied\n".to_owned()),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        stdout(&env.run(&["get", "s"])),
        "{\"role\":\"user\",\"n\":1}\n"
    );
    // Other items under the used id: a conflict, exit 4, the reason named, nothing changed.
    let o = env.run(&[
        "add",
        "s",
        "--operation-id",
        "turn-1",
        r#"{"role":"user","n":2}"#,
    ]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    assert!(
        stderr(&o).starts_with("conflict: operation_reused: "),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("\"turn-1\""), "{}", stderr(&o));
    assert_eq!(
        stdout(&env.run(&["get", "s"])),
        "{\"role\":\"user\",\"n\":1}\n"
    );
    // A new id appends; stdin batches work with an id.
    let o = env.run_stdin(
        &["add", "s", "--operation-id", "turn-2"],
        "{\"a\":1}\n\n{\"b\":2}\n",
    );
    assert_eq!(
        (code(&o), stdout(&o)),
        (0, "applied\n".to_owned()),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        stdout(&env.run(&["get", "s"])),
        "{\"role\":\"user\",\"n\":1}\n{\"a\":1}\n{\"b\":2}\n"
    );
    // No id: the quiet append of before.
    let o = env.run(&["add", "s", r#"{"c":3}"#]);
    assert_eq!((code(&o), stdout(&o)), (0, String::new()));
    // Bad input with an id: exit 2, nothing written, and the id stays unused.
    let o = env.run(&["add", "s", "--operation-id", "turn-3", r#"{"d":4}"#, "[5]"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("argument 2"), "{}", stderr(&o));
    for bad in ["", &"x".repeat(257)] {
        let o = env.run(&["add", "s", "--operation-id", bad, r#"{"d":4}"#]);
        assert_eq!(code(&o), 2, "{}", stderr(&o));
        assert!(stderr(&o).contains("operation id"), "{}", stderr(&o));
        assert!(stderr(&o).contains("nothing was written"), "{}", stderr(&o));
    }
    assert!(stdout(&env.run(&["info", "s"])).contains("\"item_count\":4"));
    let o = env.run(&["add", "s", "--operation-id", "turn-3", r#"{"d":4}"#]);
    assert_eq!(
        (code(&o), stdout(&o)),
        (0, "applied\n".to_owned()),
        "{}",
        stderr(&o)
    );
    // An empty batch records the id and adds nothing.
    let o = env.run_stdin(&["add", "e", "--operation-id", "nothing"], "");
    assert_eq!(
        (code(&o), stdout(&o)),
        (0, "applied\n".to_owned()),
        "{}",
        stderr(&o)
    );
    let o = env.run_stdin(&["add", "e", "--operation-id", "nothing"], "\n");
    assert_eq!(
        (code(&o), stdout(&o)),
        (0, "already applied\n".to_owned()),
        "{}",
        stderr(&o)
    );
    let o = env.run(&["add", "e", "--operation-id", "nothing", r#"{"a":1}"#]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert_eq!(stdout(&env.run(&["get", "e"])), "");
}

fn apply(env: &Env, session: &str, id: &str, tx: &str) -> Output {
    env.run_stdin(&["apply", session, "--operation-id", id], tx)
}

/// `apply`: one transaction from stdin, `applied` / `already applied`; rewind and compaction
/// through replace_suffix.
#[test]
fn apply_reads_one_transaction_from_stdin() {
    let env = Env::new("apply");
    let append = r#"{"type": "append_items", "items": [{"role":"user","content":"a"}, {"role":"assistant","content":"b","n":1}]}"#;
    let o = apply(&env, "s", "op-1", append);
    assert_eq!(
        (code(&o), stdout(&o)),
        (0, "applied\n".to_owned()),
        "{}",
        stderr(&o)
    );
    let o = apply(&env, "s", "op-1", &format!("\n  {append}\n\n"));
    assert_eq!(
        (code(&o), stdout(&o)),
        (0, "already applied\n".to_owned()),
        "{}",
        stderr(&o)
    );
    // `add --operation-id` is the same append_items: the same id and items are the same one.
    let o = env.run(&[
        "add",
        "s",
        "--operation-id",
        "op-1",
        r#"{"content":"a","role":"user"}"#,
        r#"{"n":1.0,"role":"assistant","content":"b"}"#,
    ]);
    assert_eq!(
        (code(&o), stdout(&o)),
        (0, "already applied\n".to_owned()),
        "{}",
        stderr(&o)
    );
    // A safe rewind: exactly the newest item, matched as a JSON value (key order, 1 == 1.0).
    let rewind = r#"{"type":"replace_suffix","expected_suffix":[{"n":1.0,"content":"b","role":"assistant"}],"replacement":[]}"#;
    let o = apply(&env, "s", "rewind-1", rewind);
    assert_eq!(
        (code(&o), stdout(&o)),
        (0, "applied\n".to_owned()),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        stdout(&env.run(&["get", "s"])),
        "{\"role\":\"user\",\"content\":\"a\"}\n"
    );
    let o = apply(&env, "s", "rewind-1", rewind);
    assert_eq!(
        (code(&o), stdout(&o)),
        (0, "already applied\n".to_owned()),
        "{}",
        stderr(&o)
    );
    // An empty expected suffix appends.
    let o = apply(
        &env,
        "s",
        "op-2",
        r#"{"type":"replace_suffix","expected_suffix":[],"replacement":[{"c":3},{"d":4}]}"#,
    );
    assert_eq!(
        (code(&o), stdout(&o)),
        (0, "applied\n".to_owned()),
        "{}",
        stderr(&o)
    );
    // Compaction: the whole history replaced by a summary.
    let compact = r#"{"type":"replace_suffix","expected_suffix":[{"role":"user","content":"a"},{"c":3},{"d":4}],"replacement":[{"summary":"a, c, d"}]}"#;
    let o = apply(&env, "s", "compact-1", compact);
    assert_eq!(
        (code(&o), stdout(&o)),
        (0, "applied\n".to_owned()),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        stdout(&env.run(&["get", "s"])),
        "{\"summary\":\"a, c, d\"}\n"
    );
    // The JavaScript SDK's spelling is accepted.
    let o = apply(
        &env,
        "s",
        "op-3",
        r#"{"type":"replace_suffix","expectedSuffix":[{"summary":"a, c, d"}],"replacement":[{"summary":"all"}]}"#,
    );
    assert_eq!(
        (code(&o), stdout(&o)),
        (0, "applied\n".to_owned()),
        "{}",
        stderr(&o)
    );
    // append_items([]) records the id and adds nothing.
    let o = apply(&env, "s", "empty", r#"{"type":"append_items","items":[]}"#);
    assert_eq!(
        (code(&o), stdout(&o)),
        (0, "applied\n".to_owned()),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&env.run(&["get", "s"])), "{\"summary\":\"all\"}\n");
    // A big integer is compared exactly, and kept as written.
    let big = r#"{"type":"append_items","items":[{"big":18446744073709551617}]}"#;
    assert_eq!(stdout(&apply(&env, "b", "big", big)), "applied\n");
    let near = r#"{"type":"append_items","items":[{"big":18446744073709551616}]}"#;
    assert_eq!(code(&apply(&env, "b", "big", near)), 4);
    assert_eq!(
        stdout(&env.run(&["get", "b"])),
        "{\"big\":18446744073709551617}\n"
    );
}

/// A conflict exits 4 naming its reason and changes nothing; a failed transaction leaves its
/// id unused, so a corrected retry under it applies.
#[test]
fn apply_conflicts_exit_4_and_change_nothing() {
    let env = Env::new("apply-conflict");
    let o = env.run(&["add", "s", r#"{"a": 1, "z": "é"}"#, r#"{"b":2}"#]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let before = stdout(&env.run(&["get", "s"]));
    let info_before = stdout(&env.run(&["info", "s"]));
    // The suffix is not what the caller saw: nothing changes, byte for byte.
    for (expected, why) in [
        (r#"[{"b":3}]"#, "another value"),
        (
            r#"[{"b":2},{"a":1,"z":"é"}]"#,
            "the right items in the wrong order",
        ),
        (
            r#"[{"x":0},{"a":1,"z":"é"},{"b":2}]"#,
            "longer than the history",
        ),
        (r#"[{"b":"2"}]"#, "a string is not a number"),
    ] {
        let tx =
            format!(r#"{{"type":"replace_suffix","expected_suffix":{expected},"replacement":[]}}"#);
        let o = apply(&env, "s", "rewind", &tx);
        assert_eq!(code(&o), 4, "{why}: {}", stderr(&o));
        assert_eq!(stdout(&o), "", "{why}");
        assert!(
            stderr(&o).starts_with("conflict: suffix_mismatch: "),
            "{why}: {}",
            stderr(&o)
        );
        assert!(stderr(&o).contains("nothing was changed"), "{}", stderr(&o));
        assert_eq!(stdout(&env.run(&["get", "s"])), before, "{why}");
    }
    let info: serde_json::Value =
        serde_json::from_str(stdout(&env.run(&["info", "s"])).trim()).unwrap();
    let was: serde_json::Value = serde_json::from_str(info_before.trim()).unwrap();
    assert_eq!(info["updated_at"], was["updated_at"], "not even touched");
    // A rewind of a missing session's suffix is a mismatch too, and creates nothing.
    let o = apply(
        &env,
        "none",
        "r",
        r#"{"type":"replace_suffix","expected_suffix":[{"a":1}],"replacement":[]}"#,
    );
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert_eq!(code(&env.run(&["info", "none"])), 3);
    // The id of the refused transactions was not recorded: the corrected one applies under it.
    let o = apply(
        &env,
        "s",
        "rewind",
        r#"{"type":"replace_suffix","expected_suffix":[{"b":2.0}],"replacement":[]}"#,
    );
    assert_eq!(
        (code(&o), stdout(&o)),
        (0, "applied\n".to_owned()),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&env.run(&["get", "s"])), "{\"a\":1,\"z\":\"é\"}\n");
    // Another transaction under the used id: operation_reused, nothing changed.
    let o = apply(
        &env,
        "s",
        "rewind",
        r#"{"type":"append_items","items":[{"b":2}]}"#,
    );
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("conflict: operation_reused: "),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("\"rewind\""), "{}", stderr(&o));
    assert_eq!(stdout(&env.run(&["get", "s"])), "{\"a\":1,\"z\":\"é\"}\n");
    // The same rewind again (its suffix is gone now) is still "already applied".
    let o = apply(
        &env,
        "s",
        "rewind",
        r#"{"type":"replace_suffix","expected_suffix":[{"b":2}],"replacement":[]}"#,
    );
    assert_eq!(
        (code(&o), stdout(&o)),
        (0, "already applied\n".to_owned()),
        "{}",
        stderr(&o)
    );
    // Clearing the session forgets its ids.
    assert_eq!(code(&env.run(&["clear", "s"])), 0);
    let o = apply(
        &env,
        "s",
        "rewind",
        r#"{"type":"append_items","items":[{"b":2}]}"#,
    );
    assert_eq!(
        (code(&o), stdout(&o)),
        (0, "applied\n".to_owned()),
        "{}",
        stderr(&o)
    );
}

/// Invalid transactions and ids exit 2, name the problem and write nothing (not even the
/// store file); the id stays unused.
#[test]
fn apply_invalid_input_exits_2_and_writes_nothing() {
    let env = Env::new("apply-invalid");
    let db = env.dir.join("s.db");
    for (tx, needle) in [
        ("", "not JSON"),
        ("not json", "not JSON"),
        (
            r#"{"type":"append_items","items":[]} {"type":"append_items","items":[]}"#,
            "not JSON",
        ),
        ("[]", "object"),
        (r#"{"items":[]}"#, "\"type\""),
        (r#"{"type":"drop_table"}"#, "unknown transaction type"),
        (r#"{"type":"append_items"}"#, "\"items\""),
        (r#"{"type":"append_items","items":{"a":1}}"#, "array"),
        (
            r#"{"type":"append_items","items":[{"a":1},"text"]}"#,
            "items[1]",
        ),
        (r#"{"type":"append_items","items":[],"extra":1}"#, "extra"),
        (
            r#"{"type":"replace_suffix","replacement":[]}"#,
            "expected_suffix",
        ),
        (
            r#"{"type":"replace_suffix","expected_suffix":[]}"#,
            "replacement",
        ),
        (
            r#"{"type":"replace_suffix","expected_suffix":[],"replacement":[7]}"#,
            "replacement[0]",
        ),
        (
            r#"{"type":"replace_suffix","expected_suffix":[],"expectedSuffix":[],"replacement":[]}"#,
            "not both",
        ),
    ] {
        let o = apply(&env, "s", "op", tx);
        assert_eq!(code(&o), 2, "{tx}: {}", stderr(&o));
        assert_eq!(stdout(&o), "", "{tx}");
        assert!(stderr(&o).contains(needle), "{tx}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("nothing was written"),
            "{tx}: {}",
            stderr(&o)
        );
        assert!(!db.exists(), "{tx}: the store was not even opened");
    }
    let good = r#"{"type":"append_items","items":[{"a":1}]}"#;
    for id in ["", &"é".repeat(129)] {
        let o = apply(&env, "s", id, good);
        assert_eq!(code(&o), 2, "{}", stderr(&o));
        assert!(stderr(&o).contains("operation id"), "{}", stderr(&o));
        assert!(!db.exists());
    }
    // No --operation-id: a usage error.
    let o = env.run_stdin(&["apply", "s"], good);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("--operation-id"), "{}", stderr(&o));
    // An item over max_item_bytes: exit 2, nothing written.
    let o =
        env.cmd()
            .args(["--url", &format!("{}?max_item_bytes=10", env.url())])
            .args(["apply", "s", "--operation-id", "op"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                child.stdin.take().unwrap().write_all(
                    br#"{"type":"append_items","items":[{"content":"far too long"}]}"#,
                )?;
                child.wait_with_output()
            })
            .unwrap();
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("too large"), "{}", stderr(&o));
    assert_eq!(stdout(&env.run(&["get", "s"])), "");
    // An id longer in characters than 256 but 256 bytes at most is fine; "op" is still unused.
    let o = apply(&env, "s", &"é".repeat(128), good);
    assert_eq!(
        (code(&o), stdout(&o)),
        (0, "applied\n".to_owned()),
        "{}",
        stderr(&o)
    );
    let o = apply(&env, "s", "op", good);
    assert_eq!(
        (code(&o), stdout(&o)),
        (0, "applied\n".to_owned()),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&env.run(&["get", "s"])), "{\"a\":1}\n{\"a\":1}\n");
}

/// Concurrent `apply` processes with one id: exactly one prints `applied`.
#[test]
fn concurrent_applies_of_one_id_apply_once() {
    let env = Env::new("apply-race");
    let tx = r#"{"type":"append_items","items":[{"turn":1}]}"#;
    let children: Vec<_> = (0..8)
        .map(|_| {
            let mut child = env
                .cmd()
                .arg("--url")
                .arg(format!("{}?busy_timeout_ms=30000", env.url()))
                .args(["apply", "s", "--operation-id", "once"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(tx.as_bytes())
                .unwrap();
            child
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for o in &outputs {
        assert_eq!(code(o), 0, "{}", stderr(o));
    }
    let now = outputs.iter().filter(|o| stdout(o) == "applied\n").count();
    let before = outputs
        .iter()
        .filter(|o| stdout(o) == "already applied\n")
        .count();
    assert_eq!((now, before), (1, 7));
    assert_eq!(stdout(&env.run(&["get", "s"])), "{\"turn\":1}\n");
}

/// The same commands on Redis (standalone and Cluster) and DynamoDB Local (servers from
/// `scripts/servers.sh`).
#[test]
fn history_transactions_on_redis_and_dynamodb() {
    let env = Env::new("apply-servers");
    let need = |var: &str| {
        std::env::var(var).unwrap_or_else(|_| {
            panic!("{var} is not set: run scripts/test.sh, or scripts/servers.sh start and source target/test-servers.env")
        })
    };
    let with = |url: String, option: String| {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}{option}")
    };
    let pid = std::process::id();
    for (name, url) in [
        (
            "redis",
            with(need("OAS_TEST_REDIS_URL"), format!("prefix=cli_tx_{pid}")),
        ),
        (
            "cluster",
            with(
                need("OAS_TEST_REDIS_CLUSTER_URL"),
                format!("prefix=cli_tx_{pid}"),
            ),
        ),
        ("dynamodb", need("OAS_TEST_DYNAMODB_URL")),
    ] {
        let run = |args: &[&str], stdin: &str| {
            let mut child = env
                .cmd()
                .arg("--url")
                .arg(&url)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(stdin.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        };
        if name == "dynamodb" {
            let o = run(&["init"], "");
            assert_eq!(code(&o), 0, "{name}: {}", stderr(&o));
        }
        let s = format!("cli-tx-{pid}");
        assert_eq!(code(&run(&["clear", &s], "")), 0, "{name}");
        let o = run(
            &[
                "add",
                &s,
                "--operation-id",
                "t1",
                r#"{"role":"user","n":1}"#,
            ],
            "",
        );
        assert_eq!(
            (code(&o), stdout(&o)),
            (0, "applied\n".to_owned()),
            "{name}: {}",
            stderr(&o)
        );
        let o = run(
            &[
                "add",
                &s,
                "--operation-id",
                "t1",
                r#"{"n":1.0,"role":"user"}"#,
            ],
            "",
        );
        assert_eq!(
            (code(&o), stdout(&o)),
            (0, "already applied\n".to_owned()),
            "{name}: {}",
            stderr(&o)
        );
        let o = run(&["add", &s, "--operation-id", "t1", r#"{"n":2}"#], "");
        assert_eq!(code(&o), 4, "{name}: {}", stderr(&o));
        assert!(
            stderr(&o).starts_with("conflict: operation_reused: "),
            "{name}: {}",
            stderr(&o)
        );
        let append = r#"{"type":"append_items","items":[{"c":3},{"d":4}]}"#;
        let o = run(&["apply", &s, "--operation-id", "t2"], append);
        assert_eq!(
            (code(&o), stdout(&o)),
            (0, "applied\n".to_owned()),
            "{name}: {}",
            stderr(&o)
        );
        let o = run(&["apply", &s, "--operation-id", "t2"], append);
        assert_eq!(
            (code(&o), stdout(&o)),
            (0, "already applied\n".to_owned()),
            "{name}: {}",
            stderr(&o)
        );
        let mismatch = r#"{"type":"replace_suffix","expected_suffix":[{"d":5}],"replacement":[]}"#;
        let o = run(&["apply", &s, "--operation-id", "t3"], mismatch);
        assert_eq!(code(&o), 4, "{name}: {}", stderr(&o));
        assert!(
            stderr(&o).starts_with("conflict: suffix_mismatch: "),
            "{name}: {}",
            stderr(&o)
        );
        let rewind = r#"{"type":"replace_suffix","expected_suffix":[{"d":4.0}],"replacement":[]}"#;
        let o = run(&["apply", &s, "--operation-id", "t3"], rewind);
        assert_eq!(
            (code(&o), stdout(&o)),
            (0, "applied\n".to_owned()),
            "{name}: {}",
            stderr(&o)
        );
        let compact = r#"{"type":"replace_suffix","expected_suffix":[{"role":"user","n":1},{"c":3}],"replacement":[{"summary":"s"}]}"#;
        let o = run(&["apply", &s, "--operation-id", "t4"], compact);
        assert_eq!(
            (code(&o), stdout(&o)),
            (0, "applied\n".to_owned()),
            "{name}: {}",
            stderr(&o)
        );
        assert_eq!(
            stdout(&run(&["get", &s], "")),
            "{\"summary\":\"s\"}\n",
            "{name}"
        );
        assert_eq!(code(&run(&["clear", &s], "")), 0, "{name}");
    }
}

/// `lease acquire/renew/release` and `--fencing-token` on one store URL: the printed JSON, the
/// same-owner rule, exit 4 for a held lease and a fenced write (nothing changed), `info`
/// showing the lease, waiting for an expiry, and bad durations exiting 2.
fn lease_commands_on(env: &Env, url: &str, session: &str) {
    let run =
        |args: &[&str]| -> Output { env.cmd().arg("--url").arg(url).args(args).output().unwrap() };
    let run_stdin = |args: &[&str], stdin: &str| -> Output {
        let mut child = env
            .cmd()
            .arg("--url")
            .arg(url)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let json = |o: &Output| -> serde_json::Value {
        assert_eq!(code(o), 0, "{url}: {}", stderr(o));
        serde_json::from_str(stdout(o).trim()).unwrap()
    };
    let _ = run(&["clear", session]);
    let lease = json(&run(&[
        "lease", "acquire", session, "--owner", "worker-1", "--ttl", "30",
    ]));
    let keys: Vec<&String> = lease.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["session_id", "owner", "token", "expires_at"],
        "{url}"
    );
    assert_eq!(lease["session_id"], session);
    assert_eq!(lease["owner"], "worker-1");
    let token = lease["token"].as_u64().unwrap();
    assert!(token > 0);
    let expires = lease["expires_at"].as_str().unwrap();
    assert!(
        expires.len() == 24 && expires.ends_with('Z') && expires.as_bytes()[10] == b'T',
        "RFC 3339 as info prints times: {expires}"
    );
    // Acquiring does not create the session.
    assert_eq!(code(&run(&["info", session])), 3, "{url}");
    // Another owner: exit 4 naming the holder and its expiry.
    let held = run(&[
        "lease", "acquire", session, "--owner", "worker-2", "--ttl", "30",
    ]);
    assert_eq!(code(&held), 4, "{url}: {}", stderr(&held));
    assert!(
        stderr(&held).contains("lease held") && stderr(&held).contains("worker-1"),
        "{}",
        stderr(&held)
    );
    assert!(stdout(&held).is_empty());
    // The same owner: the same token, a later expiry.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let again = json(&run(&[
        "lease", "acquire", session, "--owner", "worker-1", "--ttl", "30",
    ]));
    assert_eq!(again["token"].as_u64(), Some(token));
    assert!(again["expires_at"].as_str().unwrap() > expires);
    // Fenced writes with the token work; with another one they exit 4 and change nothing.
    let t = token.to_string();
    let stale = (token - 1).to_string();
    let o = run(&[
        "add",
        session,
        "--fencing-token",
        &t,
        r#"{"n":0}"#,
        r#"{"n":1}"#,
    ]);
    assert_eq!(code(&o), 0, "{url}: {}", stderr(&o));
    let o = run(&["pop", session, "--fencing-token", &t]);
    assert_eq!(stdout(&o), "{\"n\":1}\n", "{url}: {}", stderr(&o));
    let tx = r#"{"type":"append_items","items":[{"n":2}]}"#;
    let o = run_stdin(
        &[
            "apply",
            session,
            "--operation-id",
            "op-1",
            "--fencing-token",
            &t,
        ],
        tx,
    );
    assert_eq!(stdout(&o), "applied\n", "{url}: {}", stderr(&o));
    let o = run(&[
        "add",
        session,
        "--operation-id",
        "op-2",
        "--fencing-token",
        &t,
        r#"{"n":3}"#,
    ]);
    assert_eq!(stdout(&o), "applied\n", "{url}: {}", stderr(&o));
    let before = stdout(&run(&["get", session]));
    assert_eq!(before, "{\"n\":0}\n{\"n\":2}\n{\"n\":3}\n");
    for args in [
        vec!["add", session, "--fencing-token", &stale, r#"{"n":9}"#],
        vec!["pop", session, "--fencing-token", &stale],
        vec!["clear", session, "--fencing-token", &stale],
    ] {
        let o = run(&args);
        assert_eq!(code(&o), 4, "{url}: {args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("fenced"), "{}", stderr(&o));
        assert!(stdout(&o).is_empty(), "{args:?}");
    }
    let o = run_stdin(
        &[
            "apply",
            session,
            "--operation-id",
            "op-3",
            "--fencing-token",
            &stale,
        ],
        tx,
    );
    assert_eq!(code(&o), 4, "{url}: {}", stderr(&o));
    assert_eq!(stdout(&run(&["get", session])), before, "nothing changed");
    // info shows the live lease.
    let info = json(&run(&["info", session]));
    assert_eq!(info["item_count"], 3);
    assert_eq!(info["lease"]["owner"], "worker-1");
    assert_eq!(info["lease"]["token"].as_u64(), Some(token));
    assert!(info["lease"]["expires_at"].as_str().unwrap().ends_with('Z'));
    // Renew prints the lease; a fenced clear keeps it.
    let renewed = json(&run(&[
        "lease", "renew", session, "--token", &t, "--ttl", "60",
    ]));
    assert_eq!(renewed["token"].as_u64(), Some(token));
    assert_eq!(code(&run(&["clear", session, "--fencing-token", &t])), 0);
    assert_eq!(code(&run(&["info", session])), 3, "cleared");
    // Release; again (a no-op); a stale renew exits 4.
    assert_eq!(code(&run(&["lease", "release", session, "--token", &t])), 0);
    assert_eq!(code(&run(&["lease", "release", session, "--token", &t])), 0);
    let o = run(&["lease", "renew", session, "--token", &t, "--ttl", "5"]);
    assert_eq!(code(&o), 4, "{url}: {}", stderr(&o));
    // Waiting: a lease of 1 s, then another owner waiting up to 10 s gets it after expiry.
    let short = json(&run(&[
        "lease", "acquire", session, "--owner", "brief", "--ttl", "1",
    ]));
    let started = std::time::Instant::now();
    let waited = json(&run(&[
        "lease", "acquire", session, "--owner", "patient", "--ttl", "30", "--wait", "10",
    ]));
    let elapsed = started.elapsed();
    assert!(
        elapsed >= std::time::Duration::from_millis(500)
            && elapsed < std::time::Duration::from_secs(8),
        "{elapsed:?}"
    );
    assert!(waited["token"].as_u64() > short["token"].as_u64());
    assert_eq!(waited["owner"], "patient");
    let old = short["token"].to_string();
    let o = run(&["add", session, "--fencing-token", &old, r#"{"late":1}"#]);
    assert_eq!(code(&o), 4, "the old holder is fenced: {}", stderr(&o));
    // A wait too short: exit 4 after about the wait.
    let o = run(&[
        "lease", "acquire", session, "--owner", "hasty", "--ttl", "30", "--wait", "0.3",
    ]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).contains("patient"), "{}", stderr(&o));
    // Bad durations and tokens: exit 2.
    for args in [
        vec!["lease", "acquire", session, "--owner", "o", "--ttl", "0"],
        vec!["lease", "acquire", session, "--owner", "o", "--ttl", "x"],
        vec![
            "lease", "acquire", session, "--owner", "o", "--ttl", "5", "--wait", "-1",
        ],
        vec!["lease", "renew", session, "--token", "-3", "--ttl", "5"],
        vec!["add", session, "--fencing-token", "x", r#"{"a":1}"#],
        vec!["lease", "acquire", session, "--owner", "", "--ttl", "5"],
    ] {
        assert_eq!(code(&run(&args)), 2, "{url}: {args:?}");
    }
    let waited_token = waited["token"].to_string();
    assert_eq!(
        code(&run(&[
            "lease",
            "release",
            session,
            "--token",
            &waited_token
        ])),
        0
    );
}

#[test]
fn lease_commands_and_fencing_tokens() {
    let env = Env::new("lease");
    lease_commands_on(&env, &env.url(), "leased");
    let redis = std::env::var("OAS_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("OAS_TEST_REDIS_URL is not set: run scripts/test.sh, or scripts/servers.sh start and source target/test-servers.env")
    });
    let sep = if redis.contains('?') { '&' } else { '?' };
    let redis = format!("{redis}{sep}prefix=cli_lease_{}", std::process::id());
    lease_commands_on(&env, &redis, "leased");
}

/// The default build opens PostgreSQL URLs, plain and over TLS (`sslmode=verify-full`):
/// init, add, get, info, list, pop, clear, prune, copy from SQLite; the password never shows.
#[test]
fn works_with_postgres_plain_and_tls() {
    let env = Env::new("postgres");
    for var in ["OAS_TEST_POSTGRES_URL", "OAS_TEST_POSTGRES_TLS_URL"] {
        let url = std::env::var(var).unwrap_or_else(|_| {
            panic!("{var} is not set: run scripts/test.sh, or scripts/servers.sh start and source target/test-servers.env")
        });
        let url = format!("{url}&schema=cli_{}_{}", std::process::id(), var.len());
        let run = |args: &[&str]| {
            env.cmd()
                .arg("--url")
                .arg(&url)
                .args(args)
                .output()
                .unwrap()
        };
        let o = run(&["init"]);
        assert_eq!(code(&o), 0, "{var}: {}", stderr(&o));
        let o = run(&[
            "add",
            "cli:s1",
            r#"{"role":"user","content":"hi"}"#,
            r#"{"n":1}"#,
        ]);
        assert_eq!(code(&o), 0, "{var}: {}", stderr(&o));
        assert_eq!(
            stdout(&run(&["get", "cli:s1", "--limit", "1"])),
            "{\"n\":1}\n",
            "{var}"
        );
        let info: serde_json::Value =
            serde_json::from_str(stdout(&run(&["info", "cli:s1"])).trim()).unwrap();
        assert_eq!(info["item_count"].as_u64(), Some(2), "{var}");
        assert_eq!(
            stdout(&run(&["list", "--prefix", "cli:"])),
            "cli:s1\n",
            "{var}"
        );
        assert_eq!(stdout(&run(&["pop", "cli:s1"])), "{\"n\":1}\n", "{var}");
        assert_eq!(code(&run(&["clear", "cli:s1"])), 0, "{var}");
        assert_eq!(code(&run(&["info", "cli:s1"])), 3, "{var}");
        assert_eq!(code(&run(&["prune"])), 0, "{var}");
        // copy from SQLite into PostgreSQL.
        assert_eq!(code(&env.run(&["clear", "from-sqlite"])), 0);
        let o = env.run(&["add", "from-sqlite", r#"{"k":"é","n":1e400}"#]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let o = env
            .cmd()
            .args(["copy", "--from", &env.url(), "--to", &url])
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{var}: {}", stderr(&o));
        assert_eq!(
            stdout(&run(&["get", "from-sqlite"])),
            "{\"k\":\"é\",\"n\":1e400}\n",
            "{var}"
        );
        // A wrong password: exit 1 or 2, the password never in the output.
        let wrong = url.replace("oas-pg-secret", "wrong-secret-pw");
        let o = env
            .cmd()
            .args(["--url", &wrong, "get", "x"])
            .output()
            .unwrap();
        assert_ne!(code(&o), 0);
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert!(
            !all.contains("wrong-secret-pw") && !all.contains("oas-pg-secret"),
            "{all}"
        );
        assert!(all.contains("password"), "{all}");
    }
}

/// keygen, rekey (encrypting a plain store, rotating to a new key, rerun as a no-op, no write
/// lost while it runs), info --verify, and the exit codes of missing and malformed keys; no key
/// ever appears in any output.
#[test]
fn keygen_rekey_verify_and_key_errors() {
    let env = Env::new("rekey");
    let keygen = env.cmd().arg("keygen").output().unwrap();
    assert_eq!(code(&keygen), 0);
    let k1 = stdout(&keygen).trim().to_owned();
    assert_eq!(k1.len(), 44, "32 bytes, standard base64 with padding: {k1}");
    assert!(k1.ends_with('='));
    let k2 = stdout(&env.cmd().arg("keygen").output().unwrap())
        .trim()
        .to_owned();
    assert_ne!(k1, k2);
    for i in 0..30 {
        let out = env.run(&[
            "add",
            &format!("s{i}"),
            r#"{"role":"user","content":"MARKER-313"}"#,
        ]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let keyed = |keys: &str, args: &[&str]| {
        env.cmd()
            .env("OAS_CLI_KEYS", keys)
            .arg("--url")
            .arg(format!("{}?encryption_key_env=OAS_CLI_KEYS", env.url()))
            .args(args)
            .output()
            .unwrap()
    };
    // A writer adds to s0 while the rekey runs: none of its items is lost.
    let writer = {
        let url = env.url();
        let bin = env!("CARGO_BIN_EXE_agent-session");
        let (dir, k1) = (env.dir.clone(), k1.clone());
        std::thread::spawn(move || {
            for n in 0..15 {
                let out = Command::new(bin)
                    .current_dir(&dir)
                    .env("OAS_CLI_KEYS", &k1)
                    .arg("--url")
                    .arg(format!("{url}?encryption_key_env=OAS_CLI_KEYS"))
                    .args(["add", "s0", &format!(r#"{{"during":{n}}}"#)])
                    .output()
                    .unwrap();
                assert_eq!(out.status.code(), Some(0));
            }
        })
    };
    let rekey = keyed(&k1, &["rekey"]);
    writer.join().unwrap();
    assert_eq!(code(&rekey), 0, "{}", stderr(&rekey));
    let summary: serde_json::Value = serde_json::from_str(stdout(&rekey).trim()).unwrap();
    assert_eq!(summary["sessions"], 30);
    assert_eq!(summary["failed"], serde_json::json!([]));
    let s0 = keyed(&k1, &["get", "s0"]);
    assert_eq!(
        stdout(&s0).lines().count(),
        16,
        "no write lost: {}",
        stdout(&s0)
    );
    // A rerun encrypts what the writer added plain... (it wrote encrypted: nothing to do).
    let again = keyed(&k1, &["rekey", "--quiet"]);
    let again: serde_json::Value = serde_json::from_str(stdout(&again).trim()).unwrap();
    assert_eq!(again["rekeyed"], 0);
    assert_eq!(again["already_current"], 30);
    let db = std::fs::read(env.dir.join("s.db")).unwrap();
    assert!(
        !db.windows(10).any(|w| w == b"MARKER-313"),
        "plaintext left after rekey"
    );

    // Without a key: exit 2, the error says the session holds encrypted records.
    let plain = env.run(&["get", "s1"]);
    assert_eq!(code(&plain), 2);
    assert!(
        stderr(&plain).contains("encrypted records"),
        "{}",
        stderr(&plain)
    );
    // A wrong key: reads skip, pop exits 1 (unreadable) and removes nothing.
    let wrong = keyed(&k2, &["get", "s1"]);
    assert_eq!((code(&wrong), stdout(&wrong).trim()), (0, ""));
    let pop = keyed(&k2, &["pop", "s1"]);
    assert_eq!(code(&pop), 1, "{}", stderr(&pop));
    let verify = keyed(&k2, &["info", "--verify", "s1"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&verify).trim()).unwrap();
    assert_eq!(v["verify"]["unreadable"], 1);
    // Rotation: the new key first; rekey moves every record under it.
    let both = format!("{k2},{k1}");
    let rotate = keyed(&both, &["rekey", "--quiet"]);
    assert_eq!(code(&rotate), 0, "{}", stderr(&rotate));
    let verify = keyed(&both, &["info", "--verify", "s1"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&verify).trim()).unwrap();
    assert_eq!(
        (
            v["verify"]["current_key"].clone(),
            v["verify"]["older_keys"].clone()
        ),
        (1.into(), 0.into())
    );
    assert_eq!(stdout(&keyed(&k2, &["get", "s1"])).lines().count(), 1);
    // A malformed key: exit 2, naming the variable, never the key.
    let bad = keyed("not-a-key", &["get", "s1"]);
    assert_eq!(code(&bad), 2);
    assert!(stderr(&bad).contains("OAS_CLI_KEYS") && !stderr(&bad).contains("not-a-key"));
    for out in [&rekey, &verify, &bad, &plain, &pop] {
        for key in [&k1, &k2] {
            assert!(!stdout(out).contains(key.as_str()) && !stderr(out).contains(key.as_str()));
        }
    }
}
