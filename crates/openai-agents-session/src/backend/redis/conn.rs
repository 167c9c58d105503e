//! Connections to Redis that know whether a request reached the socket.
//!
//! The rule (README, "Retries"): a request is sent again on a fresh connection when the
//! connection was already known to be closed before the request was written (the client saw
//! the peer close it, or writing to the socket failed); a read is retried once on any
//! connection error; a write written to a live connection whose answer was lost stays
//! `OutcomeUnknown`.
//!
//! redis-rs's multiplexed connection reports both "the pipeline had already stopped" and "the
//! answer was lost" as the same `BrokenPipe`, so each connection here runs over a
//! [`WatchedStream`] that counts the bytes accepted by the socket and notes when the peer
//! closed it. A request whose failure left the byte count unchanged was never written, and is
//! safe to send again; one that moved it may have been applied.
//!
//! The same [`Watched`] connection serves one server (through [`Standalone`], which replaces a
//! closed connection before writing to it) and each node of a cluster (through redis-rs's
//! cluster client and its [`Connect`] trait), where a request lost after it was written is
//! turned into an error the cluster client does not retry.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::Connect;
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, RedisError,
    RedisFuture, RedisResult, Value,
};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Mutex as AsyncMutex;

/// The error code (a redis-rs extension error) of a request lost after it was written: the
/// cluster client does not retry it, and [`super::map_redis`] reports `OutcomeUnknown` for a
/// write.
pub(super) const LOST_CONNECTION: &str = "OAS_LOST_CONNECTION";
/// As [`LOST_CONNECTION`], for a request written whose answer did not come in time.
pub(super) const LOST_TIMEOUT: &str = "OAS_LOST_TIMEOUT";

/// What the socket under one connection has seen.
#[derive(Debug, Default)]
pub(super) struct WireState {
    written: AtomicU64,
    closed: AtomicBool,
}

impl WireState {
    fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

/// A byte stream that records, in its [`WireState`], the bytes the socket accepted and whether
/// the peer closed it (end of stream, or a read or write error).
pub(super) struct WatchedStream<S> {
    inner: S,
    state: Arc<WireState>,
}

impl<S: AsyncRead + Unpin> AsyncRead for WatchedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let asked = buf.remaining() > 0;
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) if asked && buf.filled().len() == before => self.state.close(),
            Poll::Ready(Err(_)) => self.state.close(),
            _ => {}
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WatchedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        match &polled {
            Poll::Ready(Ok(n)) => {
                self.state.written.fetch_add(*n as u64, Ordering::SeqCst);
            }
            Poll::Ready(Err(_)) => self.state.close(),
            Poll::Pending => {}
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        if let Poll::Ready(Err(_)) = &polled {
            self.state.close();
        }
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.state.close();
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How to reach the nodes of one store: the TLS client configuration (for `rediss`) and the
/// connect timeout. Looked up by address when the cluster client connects a node, because its
/// [`Connect`] trait passes no state of ours.
#[derive(Clone)]
pub(super) struct Profile {
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("tls", &self.tls.is_some())
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

type Registry = Mutex<(HashMap<(String, u16), Profile>, Option<Profile>)>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new((HashMap::new(), None)))
}

/// Registers the profile of a cluster's seed nodes. Nodes the cluster discovers at other
/// addresses use the profile registered last (one TLS configuration per process for those).
pub(super) fn register(nodes: &[(String, u16)], profile: &Profile) {
    let mut guard = registry().lock().unwrap_or_else(|e| e.into_inner());
    for node in nodes {
        guard.0.insert(node.clone(), profile.clone());
    }
    guard.1 = Some(profile.clone());
}

fn profile_for(host: &str, port: u16) -> Option<Profile> {
    let guard = registry().lock().unwrap_or_else(|e| e.into_inner());
    guard
        .0
        .get(&(host.to_owned(), port))
        .cloned()
        .or_else(|| guard.1.clone())
}

/// One multiplexed connection over a [`WatchedStream`].
#[derive(Clone)]
pub struct Watched {
    conn: MultiplexedConnection,
    state: Arc<WireState>,
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched")
            .field("written", &self.state.written())
            .field("closed", &self.state.is_closed())
            .finish()
    }
}

/// The error of a request not sent because its connection is known to be closed.
fn closed() -> RedisError {
    io_error(
        io::ErrorKind::BrokenPipe,
        "the connection to Redis was closed before the request was written".to_owned(),
    )
}

fn io_error(kind: io::ErrorKind, message: String) -> RedisError {
    RedisError::from(io::Error::new(kind, message))
}

impl Watched {
    /// Connects to `info`'s address (TCP, then TLS when `profile` has it) and performs the
    /// handshake (AUTH, SELECT) within `profile.connect_timeout`.
    pub(super) async fn connect(
        info: redis::ConnectionInfo,
        config: AsyncConnectionConfig,
        profile: &Profile,
    ) -> RedisResult<Watched> {
        let attempt = async {
            let (host, port) = match info.addr() {
                ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                    (host.clone(), *port)
                }
                other => {
                    return Err(RedisError::from((
                        redis::ErrorKind::InvalidClientConfig,
                        "unsupported Redis address",
                        format!("{other}"),
                    )))
                }
            };
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            let _ = tcp.set_nodelay(true);
            let state = Arc::new(WireState::default());
            let watched = WatchedStream {
                inner: tcp,
                state: Arc::clone(&state),
            };
            let is_tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
            let (conn, driver) = match (&profile.tls, is_tls) {
                (Some(tls), true) => {
                    let name = ServerName::try_from(host.clone()).map_err(|_| {
                        io_error(
                            io::ErrorKind::InvalidInput,
                            format!("{host:?} is not a valid TLS server name"),
                        )
                    })?;
                    let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
                        .connect(name, watched)
                        .await?;
                    let (conn, driver) = MultiplexedConnection::new_with_config(
                        info.redis_settings(),
                        stream,
                        config,
                    )
                    .await?;
                    (conn, tokio::spawn(driver))
                }
                (None, true) => {
                    return Err(RedisError::from((
                        redis::ErrorKind::InvalidClientConfig,
                        "a rediss:// node needs a TLS configuration",
                    )))
                }
                _ => {
                    let (conn, driver) = MultiplexedConnection::new_with_config(
                        info.redis_settings(),
                        watched,
                        config,
                    )
                    .await?;
                    (conn, tokio::spawn(driver))
                }
            };
            // The driver ends when the connection does; nothing waits for it.
            drop(driver);
            Ok(Watched { conn, state })
        };
        match tokio::time::timeout(profile.connect_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(io_error(
                io::ErrorKind::TimedOut,
                "connecting to Redis timed out".to_owned(),
            )),
        }
    }

    /// Whether the peer closed the connection, or writing to it failed.
    pub(super) fn is_closed(&self) -> bool {
        self.state.is_closed()
    }

    /// Sends `cmd`, waiting at most `limit` for the answer. A failure after the request was
    /// written is the non-retryable [`LOST_CONNECTION`] / [`LOST_TIMEOUT`] error; one before it
    /// (the connection was already closed, or writing failed) is the driver's own error.
    pub(super) async fn send_within(&mut self, cmd: &Cmd, limit: Duration) -> RedisResult<Value> {
        if self.is_closed() {
            return Err(closed());
        }
        let before = self.state.written();
        let result = match tokio::time::timeout(limit, self.conn.send_packed_command(cmd)).await {
            // A server's error reply arrives as a value: made an error here, as `query_async`
            // does.
            Ok(result) => result.and_then(Value::extract_error),
            Err(_) => Err(io_error(
                io::ErrorKind::TimedOut,
                "Redis did not answer within response_timeout".to_owned(),
            )),
        };
        self.classify(before, result)
    }

    /// Sends a pipeline as [`Watched::send_within`] sends one command; the replies come back
    /// as one array, a server error of one command left as a value in it.
    pub(super) async fn send_pipeline_within(
        &mut self,
        pipe: &Pipeline,
        limit: Duration,
    ) -> RedisResult<Value> {
        if self.is_closed() {
            return Err(closed());
        }
        let before = self.state.written();
        let result =
            match tokio::time::timeout(limit, self.conn.send_packed_commands(pipe, 0, pipe.len()))
                .await
            {
                Ok(result) => result.map(Value::Array),
                Err(_) => Err(io_error(
                    io::ErrorKind::TimedOut,
                    "Redis did not answer within response_timeout".to_owned(),
                )),
            };
        self.classify(before, result)
    }

    fn classify<T>(&self, before: u64, result: RedisResult<T>) -> RedisResult<T> {
        match result {
            Err(e) if is_transport_failure(&e) => {
                if e.is_connection_dropped() || !e.is_timeout() {
                    self.state.close();
                }
                if self.state.written() == before {
                    Err(e)
                } else {
                    let code = if e.is_timeout() {
                        LOST_TIMEOUT
                    } else {
                        LOST_CONNECTION
                    };
                    Err(redis::make_extension_error(
                        code.to_owned(),
                        Some(format!(
                            "the request was written but its answer was lost: {e}"
                        )),
                    ))
                }
            }
            other => other,
        }
    }
}

/// A failure of the connection itself (not an answer of the server).
pub(super) fn is_transport_failure(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout()
}

impl ConnectionLike for Watched {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            if self.is_closed() {
                return Err(closed());
            }
            let before = self.state.written();
            let result = self.conn.send_packed_command(cmd).await;
            self.classify(before, result)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            if self.is_closed() {
                return Err(closed());
            }
            let before = self.state.written();
            let result = self.conn.req_packed_commands(pipeline, offset, count).await;
            self.classify(before, result)
        })
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}

impl Connect for Watched {
    fn connect_with_config<'a, T>(info: T, config: AsyncConnectionConfig) -> RedisFuture<'a, Self>
    where
        T: IntoConnectionInfo + Send + 'a,
    {
        Box::pin(async move {
            let info = info.into_connection_info()?;
            let (host, port) = match info.addr() {
                ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                    (host.clone(), *port)
                }
                other => {
                    return Err(RedisError::from((
                        redis::ErrorKind::InvalidClientConfig,
                        "unsupported Redis address",
                        format!("{other}"),
                    )))
                }
            };
            let profile = profile_for(&host, port).unwrap_or(Profile {
                tls: None,
                connect_timeout: super::DEFAULT_CONNECT_TIMEOUT,
            });
            Watched::connect(info, config, &profile).await
        })
    }
}

/// One server: a [`Watched`] connection, replaced by a fresh one when it is known to be
/// closed, before anything is written to it.
pub struct Standalone {
    info: redis::ConnectionInfo,
    config: AsyncConnectionConfig,
    profile: Profile,
    current: AsyncMutex<Option<Watched>>,
}

impl std::fmt::Debug for Standalone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standalone")
            .field("profile", &self.profile)
            .finish()
    }
}

impl Standalone {
    pub(super) async fn open(
        info: redis::ConnectionInfo,
        response_timeout: Duration,
        profile: Profile,
    ) -> RedisResult<Standalone> {
        let config = AsyncConnectionConfig::new().set_response_timeout(Some(response_timeout));
        let first = Watched::connect(info.clone(), config.clone(), &profile).await?;
        Ok(Standalone {
            info,
            config,
            profile,
            current: AsyncMutex::new(Some(first)),
        })
    }

    /// The live connection, connecting first when there is none or it is known to be closed.
    /// Returns it and whether a connection was made.
    pub(super) async fn live(&self) -> RedisResult<(Watched, bool)> {
        let mut current = self.current.lock().await;
        if let Some(conn) = current.as_ref() {
            if !conn.is_closed() {
                return Ok((conn.clone(), false));
            }
            tracing::debug!("the Redis connection was closed; connecting again");
        }
        *current = None;
        let conn = Watched::connect(self.info.clone(), self.config.clone(), &self.profile).await?;
        *current = Some(conn.clone());
        Ok((conn, true))
    }
}
