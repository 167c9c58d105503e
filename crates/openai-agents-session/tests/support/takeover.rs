//! A lease holder stalled past its ttl, across processes: the holder process writes through a
//! fenced session until it is SIGSTOPped; a second process takes the lease over and writes;
//! the holder, resumed, finds its next write refused (`Fenced`), and the history holds only
//! the second process's writes after the takeover.
//!
//! The test binary is its own child: the parent re-executes it with [`CHILD_ENV`] set to
//! `role|url|session` (role `holder` or `taker`); the children report on stdout in lines
//! starting with `LEASE `.

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use openai_agents_session::{ErrorKind, Item, Session, Store};

/// The environment variable that makes the test binary a child of this test.
pub const CHILD_ENV: &str = "OAS_TEST_LEASE_CHILD";

/// The holder's lease ttl: it is stopped for longer than this.
pub const HOLDER_TTL: Duration = Duration::from_millis(1000);

fn item(by: &str, n: u64) -> Item {
    format!(r#"{{"by":"{by}","n":{n}}}"#).parse().expect("item")
}

fn say(line: String) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "LEASE {line}").expect("stdout");
    out.flush().expect("flush");
}

/// A child's part (`role|url|session`).
pub async fn child(spec: &str) {
    let mut parts = spec.splitn(3, '|');
    let (role, url, id) = (
        parts.next().expect("role"),
        parts.next().expect("url"),
        parts.next().expect("session"),
    );
    let store = Store::open(url).await.expect("open");
    match role {
        "holder" => {
            let lease = store
                .acquire_lease(id, "holder", HOLDER_TTL, None)
                .await
                .expect("the holder acquires");
            say(format!("token {}", lease.token));
            let fenced = store.session(id).expect("session").fenced(lease.token);
            for n in 0..1000 {
                match fenced.add_items(vec![item("holder", n)]).await {
                    Ok(()) => say(format!("wrote {n}")),
                    Err(e) if e.kind() == ErrorKind::Fenced => {
                        say(format!("fenced {n} {e}"));
                        return;
                    }
                    Err(e) => panic!("the holder's write {n} failed otherwise: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            say("never fenced".into());
        }
        "taker" => {
            let lease = store
                .acquire_lease(
                    id,
                    "taker",
                    Duration::from_secs(30),
                    Some(Duration::from_secs(10)),
                )
                .await
                .expect("the taker acquires");
            let fenced = store.session(id).expect("session").fenced(lease.token);
            for n in 0..2 {
                fenced
                    .add_items(vec![item("taker", n)])
                    .await
                    .expect("the taker writes");
            }
            say(format!("took {}", lease.token));
        }
        other => panic!("unknown role {other:?}"),
    }
}

/// A child process, continued and killed if the test fails while it is stopped.
struct Kid {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    exited: bool,
}

impl Kid {
    fn spawn(mut command: Command) -> Kid {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn a child");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Kid {
            child,
            lines,
            exited: false,
        }
    }

    /// The next `LEASE ` report (other output, such as libtest's, is skipped; libtest may
    /// print `test NAME ... ` on the same line first).
    fn next(&mut self) -> String {
        for line in self.lines.by_ref() {
            let line = line.expect("child stdout");
            if let Some(at) = line.find("LEASE ") {
                return line[at + "LEASE ".len()..].to_owned();
            }
        }
        panic!("the child ended without reporting");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal}");
    }

    fn wait_success(mut self) {
        let status = self.child.wait().expect("wait");
        self.exited = true;
        assert!(status.success(), "child exited with {status}");
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if self.exited {
            return;
        }
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The whole scenario on `url`, session `id`. `command(spec)` builds the command that runs the
/// test binary as a child with `CHILD_ENV=spec`. Returns a line of figures.
pub async fn run(url: &str, id: &str, command: impl Fn(&str) -> Command) -> String {
    let mut holder = Kid::spawn(command(&format!("holder|{url}|{id}")));
    let first: u64 = holder
        .next()
        .strip_prefix("token ")
        .expect("the holder's token")
        .parse()
        .expect("a token");
    // Three writes, then stopped between two writes (while it sleeps: it holds no lock).
    for n in 0..3 {
        assert_eq!(holder.next(), format!("wrote {n}"));
    }
    holder.signal("STOP");
    let stopped = Instant::now();
    tokio::time::sleep(HOLDER_TTL + Duration::from_millis(500)).await;

    let mut taker = Kid::spawn(command(&format!("taker|{url}|{id}")));
    let second: u64 = taker
        .next()
        .strip_prefix("took ")
        .expect("the taker's token")
        .parse()
        .expect("a token");
    taker.wait_success();
    assert!(second > first, "the takeover's token {second} > {first}");

    holder.signal("CONT");
    let stalled = stopped.elapsed();
    let report = holder.next();
    assert!(
        report.starts_with("fenced 3 "),
        "the resumed holder's very next write is refused: {report}"
    );
    holder.wait_success();

    let store = Store::open(url).await.expect("open");
    let history: Vec<String> = store
        .session(id)
        .expect("session")
        .get_items(None)
        .await
        .expect("history")
        .iter()
        .map(|i| i.as_str().to_owned())
        .collect();
    let want: Vec<String> = (0..3)
        .map(|n| item("holder", n))
        .chain((0..2).map(|n| item("taker", n)))
        .map(|i| i.as_str().to_owned())
        .collect();
    assert_eq!(
        history, want,
        "the holder's writes before the takeover, then only the taker's"
    );
    let lease = store.lease_info(id).await.expect("lease_info");
    assert_eq!(
        lease.map(|l| (l.owner, l.token)),
        Some(("taker".into(), second))
    );
    format!(
        "holder token {first} stopped {stalled:.2?} (ttl {HOLDER_TTL:?}), taker token {second}; resumed holder: {report}"
    )
}
