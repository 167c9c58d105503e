//! Test support: the shared servers' URLs (started by `scripts/servers.sh`), Redis servers a
//! test starts itself on free ports (for faults), and a TCP proxy that counts the commands
//! crossing it.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod takeover;

/// The URL of a shared test server. Missing is a failure, never a skip: the servers come from
/// `scripts/servers.sh start` (which `scripts/test.sh` and CI run).
pub fn shared_url(var: &str) -> String {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{var} is not set: this test needs the shared test servers. Run `scripts/test.sh`, \
             or `scripts/servers.sh start && source target/test-servers.env` first."
        ),
    }
}

/// The environment variable holding the encrypted kit runs' keys (fixed test keys, newest
/// first: base64 of 32 bytes 0x2a, then of 32 bytes 0x01).
#[allow(dead_code)]
pub const KIT_KEY_ENV: &str = "OAS_TEST_KIT_ENCRYPTION_KEYS";

/// Sets [`KIT_KEY_ENV`] (the same value from every test, so concurrent setters agree).
#[allow(dead_code)]
pub fn set_kit_keys() {
    std::env::set_var(
        KIT_KEY_ENV,
        "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=,AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE",
    );
}

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A temporary directory removed when dropped, also when the test fails (unwinding drops it).
#[derive(Debug)]
pub struct TestDir(tempfile::TempDir);

impl std::ops::Deref for TestDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

pub fn temp_dir(name: &str) -> TestDir {
    TestDir(
        tempfile::Builder::new()
            .prefix(&format!("oas-test-{name}-"))
            .tempdir()
            .expect("temp dir"),
    )
}

fn redis_server_bin() -> String {
    std::env::var("OAS_TEST_REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_owned())
}

/// A redis-server this test owns: on a free port, append-only with fsync on every write, so
/// that acknowledged writes survive SIGKILL.
pub struct OwnRedis {
    pub port: u16,
    pub dir: TestDir,
    extra: Vec<String>,
    child: Option<Child>,
}

impl OwnRedis {
    pub fn start(name: &str) -> OwnRedis {
        Self::start_with(name, &[])
    }

    pub fn start_with(name: &str, extra: &[&str]) -> OwnRedis {
        let mut server = OwnRedis {
            port: free_port(),
            dir: temp_dir(name),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn spawn(&mut self) {
        let child = Command::new(redis_server_bin())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--dir", &self.dir.display().to_string()])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server (install it with scripts/servers.sh install): {e}"
                )
            });
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(20));
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("running")
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Runs a command through redis-cli against this server.
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, args)
    }

    /// A redis-cli command whose reply is an integer (`PTTL`, `HGET` of a number, `EXISTS`).
    pub fn cli_int(&self, args: &[&str]) -> i64 {
        let reply = self.cli(args);
        reply
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{args:?} answered {reply:?}, not an integer"))
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_ref() {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
    }
}

pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn wait_for_port(port: u16, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if TcpStream::connect(("127.0.0.1", port)).is_ok()
            && redis_cli(port, &["ping"]).contains("PONG")
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("redis-server on port {port} did not answer within {limit:?}");
}

/// `INFO commandstats` as (command, calls).
pub fn command_calls(port: u16) -> std::collections::HashMap<String, u64> {
    redis_cli(port, &["info", "commandstats"])
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

/// A TCP proxy on a free loopback port that forwards to `target` and counts the RESP commands
/// clients send through it (each one a request/response exchange).
pub struct CountingProxy {
    pub port: u16,
    commands: Arc<AtomicU64>,
    answer_bytes: Arc<AtomicU64>,
}

impl CountingProxy {
    pub fn start(target_port: u16) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let commands = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&commands);
        let answer_bytes = Arc::new(AtomicU64::new(0));
        let answered = Arc::clone(&answer_bytes);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    continue;
                };
                let (c2, s2) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                let counter = Arc::clone(&counter);
                let answered = Arc::clone(&answered);
                std::thread::spawn(move || pump_counting(client, server, counter));
                std::thread::spawn(move || pump_bytes(s2, c2, answered));
            }
        });
        CountingProxy {
            port,
            commands,
            answer_bytes,
        }
    }

    /// Bytes the server sent back through the proxy so far.
    #[allow(dead_code)]
    pub fn answer_bytes(&self) -> u64 {
        self.answer_bytes.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn commands(&self) -> u64 {
        self.commands.load(Ordering::SeqCst)
    }
}

fn pump_bytes(mut from: TcpStream, mut to: TcpStream, bytes: Arc<AtomicU64>) {
    use std::io::{Read, Write};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        bytes.fetch_add(n as u64, Ordering::SeqCst);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

#[allow(dead_code)]
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

fn pump_counting(mut from: TcpStream, mut to: TcpStream, counter: Arc<AtomicU64>) {
    use std::io::{Read, Write};
    let mut parser = RespCounter::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Counted before forwarding: the answer cannot reach the client before the count.
        counter.fetch_add(parser.feed(&buf[..n]), Ordering::SeqCst);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// Counts complete top-level RESP arrays (`*N` of bulk strings) in a byte stream.
#[derive(Default)]
struct RespCounter {
    pending: Vec<u8>,
}

impl RespCounter {
    fn feed(&mut self, bytes: &[u8]) -> u64 {
        self.pending.extend_from_slice(bytes);
        let mut count = 0;
        loop {
            match parse_command(&self.pending) {
                Some(used) => {
                    self.pending.drain(..used);
                    count += 1;
                }
                None => return count,
            }
        }
    }
}

fn read_line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
    Some((&buf[at..end], end + 2))
}

fn parse_command(buf: &[u8]) -> Option<usize> {
    let (header, mut at) = read_line(buf, 0)?;
    let n: usize = std::str::from_utf8(header.strip_prefix(b"*")?)
        .ok()?
        .parse()
        .ok()?;
    for _ in 0..n {
        let (len_line, next) = read_line(buf, at)?;
        let len: usize = std::str::from_utf8(len_line.strip_prefix(b"$")?)
            .ok()?
            .parse()
            .ok()?;
        at = next + len + 2;
        if at > buf.len() {
            return None;
        }
    }
    Some(at)
}

/// Makes a self-signed CA that did NOT sign the test server's certificate.
pub fn unrelated_ca(dir: &Path) -> PathBuf {
    let key = dir.join("other-ca.key");
    let crt = dir.join("other-ca.crt");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=unrelated-ca",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success());
    crt
}

/// A 3-master cluster this test owns, with `cluster-require-full-coverage no` so that the
/// other masters keep serving while one is down.
pub struct OwnCluster {
    pub nodes: Vec<OwnRedis>,
}

impl OwnCluster {
    pub fn start(name: &str) -> OwnCluster {
        let nodes: Vec<OwnRedis> = (0..3)
            .map(|i| {
                OwnRedis::start_with(
                    &format!("{name}-{i}"),
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                        "--cluster-require-full-coverage",
                        "no",
                    ],
                )
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let start = Instant::now();
        while !nodes
            .iter()
            .all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok"))
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "cluster did not become ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        OwnCluster { nodes }
    }

    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}/", hosts.join(","))
    }
}

/// A TCP proxy that, when told, swallows the server's next answer and closes the connection:
/// the request reached the server (and was applied), its answer was lost.
pub struct CutAfterRequestProxy {
    pub port: u16,
    cut: Arc<std::sync::atomic::AtomicBool>,
}

impl CutAfterRequestProxy {
    pub fn start(target_port: u16) -> CutAfterRequestProxy {
        use std::sync::atomic::AtomicBool;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cut = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&cut);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    continue;
                };
                let (c2, s2) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                let flag = Arc::clone(&flag);
                std::thread::spawn(move || pump(client, server));
                std::thread::spawn(move || pump_cutting(s2, c2, flag));
            }
        });
        CutAfterRequestProxy { port, cut }
    }

    /// The next answer from the server is dropped and its connection closed.
    pub fn cut_next_answer(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }
}

fn pump_cutting(mut from: TcpStream, mut to: TcpStream, cut: Arc<std::sync::atomic::AtomicBool>) {
    use std::io::{Read, Write};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if cut.swap(false, Ordering::SeqCst) {
            break;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}
