//! `-v` / `-vv` / `--log-format json` and `bench --metrics`: the spans on stderr, the metrics
//! after a run, and no password (userinfo, query option, percent-encoded), encryption key,
//! item content or session id in any of it, against the real servers of `scripts/servers.sh`.

use std::path::PathBuf;
use std::process::{Command, Output};

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("oas-cli-obs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_agent-session"));
        cmd.current_dir(&self.0).env_remove("AGENT_SESSION_URL");
        cmd
    }

    fn run(&self, url: &str, args: &[&str]) -> Output {
        self.cmd()
            .arg("--url")
            .arg(url)
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(o: &Output) -> (String, String) {
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "stdout: {out}\nstderr: {err}");
    (out, err)
}

fn server_url(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run scripts/test.sh, or scripts/servers.sh start and source target/test-servers.env")
    })
}

#[test]
fn verbose_shows_one_span_per_operation_in_text_and_json() {
    let dir = Dir::new("verbose");
    let url = format!("sqlite://{}/s.db", dir.0.display());
    let (_, quiet) = ok(&dir.run(&url, &["add", "s", r#"{"a":1}"#]));
    assert_eq!(quiet, "", "nothing on stderr without -v");

    let (_, err) = ok(&dir.run(&url, &["-v", "add", "s", r#"{"a":1}"#, r#"{"b":2}"#]));
    let line = err
        .lines()
        .find(|l| l.contains(r#"db.operation.name="add_items""#))
        .unwrap_or_else(|| panic!("no add_items span in {err}"));
    for field in [
        r#"db.system.name="sqlite""#,
        r#"oas.outcome="ok""#,
        "oas.items=2",
        "oas.bytes=14",
        "oas.requests=1",
        "oas.latency_us=",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }

    let (_, err) = ok(&dir.run(&url, &["-vv", "get", "s"]));
    assert!(
        err.lines()
            .any(|l| l.contains("get_items") && l.ends_with(" new")),
        "-vv shows spans opening too: {err}"
    );

    let (out, err) = ok(&dir.run(
        &url,
        &["-v", "--log-format", "json", "get", "s", "--limit", "2"],
    ));
    assert_eq!(out, "{\"a\":1}\n{\"b\":2}\n", "stdout keeps the items only");
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}")))
        .collect();
    let get = lines
        .iter()
        .find(|l| l["span"]["db.operation.name"] == "get_items")
        .unwrap_or_else(|| panic!("no get_items span in {err}"));
    assert_eq!(get["span"]["db.system.name"], "sqlite");
    assert_eq!(get["span"]["oas.items"], 2);
    assert_eq!(get["span"]["db.response.returned_rows"], 2);
    assert_eq!(get["span"]["oas.outcome"], "ok");

    // A failure: the span names its error kind (a fenced write with a stale token).
    let o = dir.run(
        &url,
        &["-v", "add", "s", "--fencing-token", "99", r#"{"c":3}"#],
    );
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains(r#"error.type="fenced""#)
                && l.contains(r#"otel.status_code="ERROR""#)),
        "{err}"
    );
}

#[test]
fn bench_metrics_prints_the_counters_of_the_run() {
    let dir = Dir::new("bench");
    let args = [
        "bench",
        "--workload",
        "turns",
        "--turns",
        "40",
        "--warmup",
        "0",
        "--metrics",
    ];
    let (out, _) = ok(&dir.run("memory://", &args));
    assert!(
        out.contains(
            r#"agent_session_operations_total{backend="memory",operation="add_items",outcome="ok"} 40"#
        ),
        "{out}"
    );
    assert!(
        out.contains(r#"agent_session_operation_duration_seconds{backend="memory",operation="get_items",outcome="ok"} count="#),
        "{out}"
    );
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let (out, _) = ok(&dir.run("memory://", &json_args));
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let metrics = last["metrics"].as_array().unwrap();
    let find = |name: &str, op: &str| {
        metrics
            .iter()
            .find(|m| m["name"] == name && m["labels"]["operation"] == op)
            .unwrap_or_else(|| panic!("no {name} {op} in {last}"))
    };
    assert_eq!(
        find("agent_session_operations_total", "add_items")["value"],
        40
    );
    assert_eq!(
        find("agent_session_items_written_total", "add_items")["value"],
        80
    );
    // 40 turns of a 205 B and a 986 B item.
    assert_eq!(
        find("agent_session_bytes_written_total", "add_items")["value"],
        40 * (205 + 986)
    );
    let get = find("agent_session_operation_duration_seconds", "get_items");
    assert!(get["count"].as_u64().unwrap() >= 40, "{get}");
    assert!(get["p50"].as_f64().unwrap() > 0.0, "{get}");
}

/// Every secret of a store URL and of its encryption key, in each form a user writes it.
struct Secrets {
    /// The password as written and percent-encoded.
    passwords: Vec<String>,
    key: String,
}

impl Secrets {
    fn check(&self, label: &str, out: &str, err: &str, items_and_ids: &[&str]) {
        for secret in self.passwords.iter().chain([&self.key]) {
            assert!(
                !out.contains(secret.as_str()),
                "{label}: {secret} on stdout: {out}"
            );
            assert!(
                !err.contains(secret.as_str()),
                "{label}: {secret} on stderr: {err}"
            );
        }
        for text in items_and_ids {
            assert!(!err.contains(text), "{label}: {text} on stderr: {err}");
        }
    }
}

fn percent_encoded(password: &str) -> String {
    password.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// The URLs of one server with its password as userinfo, percent-encoded userinfo and (where
/// the backend takes it) a query option, each with an encryption key from the environment.
fn url_forms(url: &str, password: &str, query_option: bool) -> Vec<String> {
    let sep = if url.contains('?') { '&' } else { '?' };
    let mut forms = vec![
        url.to_owned(),
        url.replace(
            &format!(":{password}@"),
            &format!(":{}@", percent_encoded(password)),
        ),
    ];
    if query_option {
        forms.push(format!(
            "{}{sep}password={}",
            url.replace(&format!(":{password}@"), "@"),
            percent_encoded(password)
        ));
    }
    forms
        .into_iter()
        .map(|u| {
            let sep = if u.contains('?') { '&' } else { '?' };
            format!("{u}{sep}encryption_key_env=OAS_OBS_KEY")
        })
        .collect()
}

fn password_of(url: &str) -> String {
    let userinfo = url.split("://").nth(1).unwrap().split('@').next().unwrap();
    userinfo.split(':').nth(1).unwrap().to_owned()
}

#[test]
fn verbose_output_holds_no_password_key_item_or_session_id() {
    let dir = Dir::new("secrets");
    let (key, _) = ok(&dir.cmd().arg("keygen").output().unwrap());
    let key = key.trim().to_owned();
    let pid = std::process::id();
    let redis = server_url("OAS_TEST_REDIS_ACL_URL");
    let postgres = server_url("OAS_TEST_POSTGRES_URL");
    let targets = [
        (redis.clone(), false, format!("prefix=obs_{pid}")),
        (postgres.clone(), true, format!("schema=obs_{pid}")),
    ];
    for (url, query_option, scope) in targets {
        let password = password_of(&url);
        let secrets = Secrets {
            passwords: vec![password.clone(), percent_encoded(&password)],
            key: key.clone(),
        };
        for (n, form) in url_forms(&url, &password, query_option)
            .into_iter()
            .enumerate()
        {
            let form = format!("{form}&{scope}");
            let session = format!("obs-session-id-{pid}-{n}");
            let item = format!(r#"{{"content":"obs-item-contents-{pid}"}}"#);
            let hidden = [session.as_str(), &item[12..item.len() - 2]];
            let run = |args: &[&str]| {
                dir.cmd()
                    .env("OAS_OBS_KEY", &key)
                    .arg("--url")
                    .arg(&form)
                    .args(args)
                    .output()
                    .unwrap()
            };
            for flags in [
                &["-vv"][..],
                &["-v", "--log-format", "json"][..],
                &["-vv", "--log-format", "json"][..],
            ] {
                let label = format!("{form} {flags:?}");
                let with = |args: &[&str]| {
                    let mut all: Vec<&str> = flags.to_vec();
                    all.extend_from_slice(args);
                    run(&all)
                };
                if query_option {
                    let (_, err) = ok(&with(&["init"]));
                    secrets.check(&label, "", &err, &hidden);
                }
                let (out, err) = ok(&with(&["add", &session, &item]));
                assert!(
                    err.contains("add_items"),
                    "{label}: the span is shown: {err}"
                );
                secrets.check(&label, &out, &err, &hidden);
                for args in [
                    &["get", session.as_str()][..],
                    &["info", session.as_str()][..],
                    &["list"][..],
                    &["pop", session.as_str()][..],
                    &["clear", session.as_str()][..],
                ] {
                    let (out, err) = ok(&with(args));
                    secrets.check(&label, &out, &err, &hidden);
                }
            }
        }
        // A wrong password: the failure is shown, the password is not.
        let wrong = url.replace(&password, "obs-wrong-pw-77");
        let o = dir.run(&wrong, &["-vv", "get", "s"]);
        assert_ne!(o.status.code(), Some(0));
        let (out, err) = (text(&o.stdout), text(&o.stderr));
        assert!(
            !err.contains("obs-wrong-pw-77") && !out.contains("obs-wrong-pw-77"),
            "{err}"
        );
        Secrets {
            passwords: vec![password.clone()],
            key: key.clone(),
        }
        .check(&wrong, &out, &err, &[]);
    }
}
