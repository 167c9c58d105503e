//! The native half of the Python package `openai_agents_session`: a store handle whose
//! operations are Python awaitables running on a shared tokio runtime, so they never wait on
//! the event loop's thread (for the network, a lock or the disk: SQLite's short reads, and its
//! appends with `synchronous=normal` when its writer is idle, run there at once, with SQLite's
//! busy wait off, in tens of microseconds). The Python classes (`RedisSession`,
//! `DynamoDBSession`, `SQLiteSession`, `open_session`) live in
//! `python/openai_agents_session/__init__.py`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::provider::{error::CredentialsError, future, ProvideCredentials};
use aws_credential_types::Credentials;
use futures_util::FutureExt;
use openai_agents_session::backend::dynamodb::open_with_credentials_and;
use openai_agents_session::encryption::{Encryption, EncryptionKey, KeyMaterial};
use openai_agents_session::{
    Applied, ConflictReason, Error, ErrorKind, FailureCause, HistoryTransaction, Item, Lease,
    Operation, Session, Store, StoreSession, Timestamp,
};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;
use tokio::sync::OnceCell;

pyo3::create_exception!(
    _native,
    NativeError,
    PyException,
    "An error of the Rust core: args are (kind, cause, operation, session_id, message, \
     reason, lease), the stable names of ErrorKind::name(), FailureCause::name() (or None), \
     Operation::as_str(), the session id (or None), the full message, for a conflict \
     ConflictReason::name() (else None) and, for lease_held (the holder) and fenced (the \
     session's live lease, if any), the lease as (owner, token, expires_at in epoch \
     milliseconds) (else None). The package raises the class of the error table for it."
);

/// A lease as Python receives it: `(owner, token, expires_at in epoch milliseconds)`.
type PyLease = (String, u64, i64);

fn lease_to_py(lease: &Lease) -> PyLease {
    (
        lease.owner.clone(),
        lease.token,
        lease.expires_at.as_millis(),
    )
}

/// The one transport of a core error to Python: its stable names, never a `Debug` string.
fn to_py(err: Error) -> PyErr {
    NativeError::new_err((
        err.kind().name(),
        err.cause().map(FailureCause::name),
        err.operation().as_str(),
        err.session_id().map(str::to_owned),
        err.to_string(),
        err.conflict_reason().map(ConflictReason::name),
        err.lease_holder().map(lease_to_py),
    ))
}

/// A duration given in seconds from Python (`what` names it in the error): finite and not
/// negative, else `InvalidInput` of `op` on `session_id`. The core checks the ranges.
fn seconds(op: Operation, session_id: &str, what: &str, secs: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        to_py(
            Error::new(
                ErrorKind::InvalidInput,
                op,
                format!("{what} must be a finite number of seconds, at least 0, got {secs}"),
            )
            .with_session(session_id),
        )
    })
}

/// The handle a write goes through: fenced by `fencing_token` when one is given.
fn handle(
    store: &Store,
    session_id: &str,
    fencing_token: Option<u64>,
) -> openai_agents_session::Result<StoreSession> {
    let session = store.session(session_id)?;
    Ok(match fencing_token {
        Some(token) => session.fenced(token),
        None => session,
    })
}

/// AWS credentials asked of a Python callable (the package passes one that reads the boto3 or
/// aiobotocore client's credentials, refreshing them as botocore does). The callable returns
/// `(access_key, secret_key, token or None, expiry as epoch seconds or None)`. The AWS SDK
/// caches the answer until shortly before its expiry and asks again then, so expiring
/// credentials (assumed roles, SSO) are fetched from the client whenever they need refreshing.
#[derive(Debug)]
struct PythonCredentials {
    source: PySource,
}

type CredentialTuple = (String, String, Option<String>, Option<f64>);

/// A Python credentials callable, shared by a store and its provider.
type PySource = Arc<Py<PyAny>>;

impl PythonCredentials {
    fn fetch(source: &Py<PyAny>) -> Result<Credentials, CredentialsError> {
        let Some(_pass) = exit_gate::enter() else {
            return Err(CredentialsError::provider_error(
                "the Python interpreter is exiting: no credentials can be read",
            ));
        };
        let answer: PyResult<CredentialTuple> = Python::attach(|py| source.call0(py)?.extract(py));
        let (access, secret, token, expiry) = answer.map_err(|e| {
            CredentialsError::provider_error(format!(
                "the Python client's credentials could not be read: {e}"
            ))
        })?;
        let expiry = expiry
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(|secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(secs));
        Ok(Credentials::new(
            access,
            secret,
            token,
            expiry,
            "python-client",
        ))
    }
}

impl ProvideCredentials for PythonCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let source = Arc::clone(&self.source);
        future::ProvideCredentials::new(async move {
            // botocore may refresh over the network (STS, SSO): off the async workers.
            tokio::task::spawn_blocking(move || PythonCredentials::fetch(&source))
                .await
                .map_err(|e| CredentialsError::provider_error(format!("{e}")))?
        })
    }
}

/// The gate every call into Python from the runtime's threads passes, so that none is under way
/// while the interpreter finalizes. A thread that needs the GIL while `Py_FinalizeEx` runs is
/// ended by CPython with `pthread_exit` (3.11 and older; newer ones hang it forever), whose
/// forced unwind through Rust frames aborts the process: the SIGABRT at exit after an
/// operation whose result was delivered with `loop.call_soon_threadsafe`, which releases the
/// GIL to wake the loop and takes it back after the main thread may already be finalizing. The
/// package's `atexit` hook ([`_close_exit_gate`]) closes the gate and waits for the calls under
/// way; later ones are skipped (their awaitables can no longer be awaited anyway).
mod exit_gate {
    use std::sync::{Condvar, Mutex};
    use std::time::{Duration, Instant};

    /// `(closed, calls under way)`.
    static STATE: Mutex<(bool, usize)> = Mutex::new((false, 0));
    static IDLE: Condvar = Condvar::new();

    /// A call under way: leaving it (on drop) lets a waiting [`close`] go on.
    pub(crate) struct Pass(());

    impl Drop for Pass {
        fn drop(&mut self) {
            let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
            state.1 -= 1;
            if state.1 == 0 {
                IDLE.notify_all();
            }
        }
    }

    /// A pass for one call into Python, or None once the interpreter is exiting.
    pub(crate) fn enter() -> Option<Pass> {
        let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
        if state.0 {
            return None;
        }
        state.1 += 1;
        Some(Pass(()))
    }

    /// Closes the gate and waits (at most `limit`) for the calls under way. Called without the
    /// GIL, which those calls need to finish.
    pub(crate) fn close(limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
        state.0 = true;
        while state.1 > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            state = IDLE
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Registered with `atexit` by the package: closes the [`exit_gate`] before the interpreter
/// finalizes, waiting (GIL released) up to 5 s for deliveries under way.
#[pyfunction]
fn _close_exit_gate(py: Python<'_>) {
    py.detach(|| exit_gate::close(Duration::from_secs(5)));
}

/// Completes an asyncio future on its loop (called there through `call_soon_threadsafe`),
/// unless it is already done (cancelled meanwhile).
#[pyclass(frozen)]
struct Complete;

#[pymethods]
impl Complete {
    fn __call__(
        &self,
        future: &Bound<'_, PyAny>,
        ok: bool,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        settle_with(future, ok, value)
    }
}

/// Aborts the Rust task of an awaitable when its asyncio future is cancelled (a done callback).
#[pyclass(frozen)]
struct AbortOnCancel {
    task: tokio::task::AbortHandle,
}

#[pymethods]
impl AbortOnCancel {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if future.call_method0("cancelled")?.is_truthy()? {
            self.task.abort();
        }
        Ok(())
    }
}

/// An operation's outcome as what a future is given: `(true, result)` or `(false, exception)`.
fn outcome(py: Python<'_>, result: PyResult<Py<PyAny>>) -> (bool, Py<PyAny>) {
    match result {
        Ok(value) => (true, value),
        Err(err) => (false, err.into_value(py).into_any()),
    }
}

/// The error an awaitable ends with when its Rust operation panicked.
fn panicked() -> PyErr {
    pyo3::panic::PanicException::new_err("a Rust operation panicked")
}

/// Sets an asyncio future's result (`ok`) or exception (on the loop's thread), unless it is
/// done (cancelled).
fn settle_with(future: &Bound<'_, PyAny>, ok: bool, value: &Bound<'_, PyAny>) -> PyResult<()> {
    if future.call_method0("done")?.is_truthy()? {
        return Ok(());
    }
    let method = if ok { "set_result" } else { "set_exception" };
    future.call_method1(method, (value,))?;
    Ok(())
}

/// [`settle_with`] of an operation's outcome.
fn settle(py: Python<'_>, future: &Bound<'_, PyAny>, result: PyResult<Py<PyAny>>) -> PyResult<()> {
    let (ok, value) = outcome(py, result);
    settle_with(future, ok, value.bind(py))
}

/// An asyncio future of the running loop that `fut` completes (cancelling the future aborts
/// `fut`). Like `pyo3_async_runtimes::tokio::future_into_py`, with fewer hops:
///
/// - `fut` is polled once here, on the loop's thread (inside the runtime's context): an
///   operation that needs no waiting (`memory://`) is answered at once, and one that waits has
///   already started its work (SQLite's blocking task, a Redis request) without first waking
///   a runtime worker;
/// - otherwise it runs on the shared tokio runtime, and its outcome is handed to the loop
///   through the loop's [`bridge::Bridge`]: a queue and one byte written to a socket the loop
///   watches (`add_reader`), so no runtime thread takes the GIL (no blocking-pool hop, no
///   `call_soon_threadsafe`; this also keeps runtime threads away from a finalizing
///   interpreter), and results completing together are delivered in one wake-up. A loop that
///   cannot hold a bridge falls back to `call_soon_threadsafe` through the [`exit_gate`].
fn awaitable_of<'py, T, Fut>(py: Python<'py>, fut: Fut) -> PyResult<Bound<'py, PyAny>>
where
    T: for<'p> IntoPyObject<'p> + Send + 'static,
    Fut: Future<Output = PyResult<T>> + Send + 'static,
{
    let event_loop = pyo3_async_runtimes::get_running_loop(py)?;
    let future = event_loop.call_method0("create_future")?;
    let runtime = pyo3_async_runtimes::tokio::get_runtime();
    let mut fut = Box::pin(fut);
    let first = {
        let _context = runtime.enter();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)))
    };
    match first {
        Ok(std::task::Poll::Ready(result)) => {
            settle(py, &future, result.and_then(|v| v.into_py_any(py)))?;
            return Ok(future);
        }
        Ok(std::task::Poll::Pending) => {}
        Err(_) => {
            settle(py, &future, Err(panicked()))?;
            return Ok(future);
        }
    }
    let bridge = bridge::of_loop(py, &event_loop)?;
    let (event_loop, target) = (event_loop.unbind(), future.clone().unbind());
    // One task, polled again by the runtime (every future re-registers its waker on each
    // poll), that also delivers the outcome: one spawn, so one worker woken from here. An
    // aborted task (the future was cancelled) delivers nothing.
    let task = runtime.spawn(async move {
        let result = match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
            Ok(result) => result,
            Err(_) => Err(panicked()),
        };
        if let Some(bridge) = bridge {
            bridge.deliver(
                target,
                Box::new(move |py: Python<'_>| result.and_then(|v| v.into_py_any(py))),
            );
            drop(event_loop);
            return;
        }
        // The GIL is never taken on the async workers (a blocked one would stall others).
        // Detached: the handle is dropped.
        drop(tokio::task::spawn_blocking(move || {
            let Some(_pass) = exit_gate::enter() else {
                return; // exiting: the Py handles are released later, without the GIL
            };
            Python::attach(move |py| {
                let (ok, value) = outcome(py, result.and_then(|v| v.into_py_any(py)));
                // An error here means the loop is closed: nobody awaits the future any more.
                let _ = event_loop.bind(py).call_method1(
                    "call_soon_threadsafe",
                    (Complete, target.bind(py), ok, value),
                );
                drop((event_loop, target));
            });
        }));
    });
    future.call_method1(
        "add_done_callback",
        (AbortOnCancel {
            task: task.abort_handle(),
        },),
    )?;
    Ok(future)
}

/// The hand-over of outcomes from the runtime's threads to an asyncio loop without the GIL:
/// one [`Bridge`] per loop (kept in a `WeakKeyDictionary` keyed by the loop, so it goes with
/// the loop), a queue of outcomes and a socket pair whose reading end the loop watches.
mod bridge {
    use std::sync::{Arc, Mutex};

    use pyo3::prelude::*;
    use pyo3::sync::PyOnceLock;

    /// Turns a Rust outcome into the future's Python result, on the loop's thread.
    pub(crate) type Convert = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

    /// Outcomes waiting for the loop, and whether a wake-up byte is already on its way.
    #[derive(Default)]
    struct Queue {
        ready: Vec<(Py<PyAny>, Convert)>,
        woken: bool,
    }

    /// One loop's bridge.
    pub(crate) struct Bridge {
        queue: Mutex<Queue>,
        #[cfg(unix)]
        wake: std::os::unix::net::UnixStream,
        #[cfg(unix)]
        watched: std::os::unix::net::UnixStream,
    }

    impl Bridge {
        /// Queues `future`'s outcome and wakes the loop unless a wake-up is pending already.
        /// Runs on a runtime thread; takes no GIL (the `Py` handle moves into the queue).
        pub(crate) fn deliver(&self, future: Py<PyAny>, convert: Convert) {
            let wake = {
                let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                queue.ready.push((future, convert));
                !std::mem::replace(&mut queue.woken, true)
            };
            if wake {
                #[cfg(unix)]
                {
                    use std::io::Write;
                    // Non-blocking: a full buffer means the loop has wake-ups to read anyway.
                    let _ = (&self.wake).write(&[1]);
                }
            }
        }
    }

    /// The loop's reader callback: reads the wake-up bytes and settles every queued future.
    #[pyclass(frozen)]
    struct Drain {
        bridge: Arc<Bridge>,
    }

    #[pymethods]
    impl Drain {
        fn __call__(&self, py: Python<'_>) -> PyResult<()> {
            #[cfg(unix)]
            {
                use std::io::Read;
                let mut buf = [0u8; 256];
                while let Ok(n) = (&self.bridge.watched).read(&mut buf) {
                    if n < buf.len() {
                        break;
                    }
                }
            }
            let ready = {
                let mut queue = self.bridge.queue.lock().unwrap_or_else(|e| e.into_inner());
                queue.woken = false;
                std::mem::take(&mut queue.ready)
            };
            for (future, convert) in ready {
                let result = convert(py);
                // A future that cannot be settled (its loop is closing) is not awaited by
                // anyone; the others are still settled.
                let _ = super::settle(py, future.bind(py), result);
            }
            Ok(())
        }
    }

    /// Keeps a loop's bridge alive as long as the loop (the dictionary's value).
    #[pyclass(frozen)]
    struct Held {
        bridge: Arc<Bridge>,
    }

    static BRIDGES: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

    /// The bridge of `event_loop` (made and registered with `add_reader` on first use), or
    /// None where there is none (no Unix sockets, a loop without `add_reader` or weak
    /// references): the caller then delivers with `call_soon_threadsafe`.
    pub(crate) fn of_loop(
        py: Python<'_>,
        event_loop: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Arc<Bridge>>> {
        #[cfg(not(unix))]
        {
            let _ = (py, event_loop);
            Ok(None)
        }
        #[cfg(unix)]
        {
            let bridges = BRIDGES
                .get_or_try_init(py, || -> PyResult<Py<PyAny>> {
                    Ok(py
                        .import("weakref")?
                        .getattr("WeakKeyDictionary")?
                        .call0()?
                        .unbind())
                })?
                .bind(py);
            let known = match bridges.call_method1("get", (event_loop,)) {
                Ok(known) => known,
                Err(_) => return Ok(None), // not weakly referenceable
            };
            if let Ok(held) = known.cast::<Held>() {
                return Ok(Some(Arc::clone(&held.get().bridge)));
            }
            let Ok((wake, watched)) = std::os::unix::net::UnixStream::pair() else {
                return Ok(None);
            };
            if wake.set_nonblocking(true).is_err() || watched.set_nonblocking(true).is_err() {
                return Ok(None);
            }
            use std::os::fd::AsRawFd;
            let fd = watched.as_raw_fd();
            let bridge = Arc::new(Bridge {
                queue: Mutex::new(Queue::default()),
                wake,
                watched,
            });
            let drain = Drain {
                bridge: Arc::clone(&bridge),
            };
            if event_loop.call_method1("add_reader", (fd, drain)).is_err() {
                return Ok(None);
            }
            let held = Held {
                bridge: Arc::clone(&bridge),
            };
            if bridges.set_item(event_loop, held).is_err() {
                let _ = event_loop.call_method1("remove_reader", (fd,));
                return Ok(None);
            }
            Ok(Some(bridge))
        }
    }
}

/// A store opened lazily from a URL (constructors do no I/O) and shared by every session
/// created from the same URL (and credentials source).
#[pyclass(frozen)]
struct NativeStore {
    url: String,
    credentials: Option<PySource>,
    encryption: Option<Encryption>,
    store: Arc<OnceCell<Store>>,
}

/// The keys of `encryption_key=` (newest first): each `bytes` (32 raw bytes) or a base64 `str`.
/// A malformed one is a `ConfigError` naming its place, never the key.
fn encryption_of(keys: Vec<Bound<'_, PyAny>>) -> PyResult<Encryption> {
    enum Given<'k> {
        Text(std::borrow::Cow<'k, str>),
        Bytes(&'k [u8]),
    }
    let mut given = Vec::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        if let Ok(text) = key.cast::<pyo3::types::PyString>() {
            given.push(Given::Text(text.to_cow()?.into_owned().into()));
        } else if let Ok(bytes) = key.cast::<pyo3::types::PyBytes>() {
            given.push(Given::Bytes(bytes.as_bytes()));
        } else {
            return Err(to_py(Error::new(
                ErrorKind::Config,
                Operation::Open,
                format!(
                    "encryption_key (key {} of {}) must be bytes or a base64 str",
                    i + 1,
                    keys.len()
                ),
            )));
        }
    }
    let material = given.iter().map(|g| match g {
        Given::Text(text) => KeyMaterial::Base64(text),
        Given::Bytes(bytes) => KeyMaterial::Bytes(bytes),
    });
    Encryption::from_key_material(material, "encryption_key").map_err(to_py)
}

impl NativeStore {
    async fn get(
        store: Arc<OnceCell<Store>>,
        url: String,
        credentials: Option<PySource>,
        encryption: Option<Encryption>,
    ) -> openai_agents_session::Result<Store> {
        let adjust =
            move |o: openai_agents_session::StoreOptions| o.with_keys_from_code(encryption);
        store
            .get_or_try_init(|| async {
                match credentials {
                    Some(source) => {
                        let provider = SharedCredentialsProvider::new(PythonCredentials { source });
                        open_with_credentials_and(&url, provider, adjust).await
                    }
                    None => Store::open_with(&url, adjust).await,
                }
            })
            .await
            .cloned()
    }

    /// A Python awaitable that opens the store if needed and runs `work` on it, on the shared
    /// runtime (never waiting on the event loop's thread); errors become `NativeError`. A
    /// failure to open the store is reported as a failure of `op` on `session_id`, the call
    /// the user made.
    fn awaitable<'py, T, F, Fut>(
        &self,
        py: Python<'py>,
        op: Operation,
        session_id: Option<String>,
        work: F,
    ) -> PyResult<Bound<'py, PyAny>>
    where
        T: for<'p> IntoPyObject<'p> + Send + 'static,
        F: FnOnce(Store) -> Fut + Send + 'static,
        Fut: Future<Output = openai_agents_session::Result<T>> + Send + 'static,
    {
        let (cell, url, creds, encryption) = (
            Arc::clone(&self.store),
            self.url.clone(),
            self.credentials.clone(),
            self.encryption.clone(),
        );
        awaitable_of(py, async move {
            let store = NativeStore::get(cell, url, creds, encryption)
                .await
                .map_err(|err| {
                    let err = err.with_operation(op);
                    to_py(match session_id {
                        Some(id) if err.session_id().is_none() => err.with_session(id),
                        _ => err,
                    })
                })?;
            work(store).await.map_err(to_py)
        })
    }
}

#[pymethods]
impl NativeStore {
    /// A store for `url`; `credentials`, for a `dynamodb://` URL, is a callable returning
    /// `(access_key, secret_key, token, expiry_epoch_seconds)`, asked whenever the AWS SDK's
    /// cached credentials are due to expire. `encryption_keys`: keys newest first (`bytes` or
    /// base64 `str`), replacing the URL's `encryption_key_env` / `encryption_key_file`.
    #[new]
    #[pyo3(signature = (url, credentials=None, encryption_keys=None))]
    fn new(
        url: String,
        credentials: Option<Py<PyAny>>,
        encryption_keys: Option<Vec<Bound<'_, PyAny>>>,
    ) -> PyResult<Self> {
        Ok(NativeStore {
            url,
            credentials: credentials.map(Arc::new),
            encryption: encryption_keys.map(encryption_of).transpose()?,
            store: Arc::new(OnceCell::new()),
        })
    }

    /// A new encryption key as standard base64 (what `agent-session keygen` prints).
    #[staticmethod]
    fn generate_key() -> PyResult<String> {
        Ok(EncryptionKey::generate()
            .map_err(to_py)?
            .to_base64()
            .as_str()
            .to_owned())
    }

    /// The ids of the configured keys (16 hex digits each), newest first; never the keys.
    #[getter]
    fn encryption_key_ids(&self) -> Vec<String> {
        self.encryption
            .as_ref()
            .map(|e| e.key_ids().iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    /// The URL with any password hidden.
    #[getter]
    fn redacted_url(&self) -> String {
        openai_agents_session::url::redact(&self.url)
    }

    /// Opens the store now (connects); an awaitable.
    fn connect<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.awaitable(py, Operation::Open, None, |store| async move {
            Ok(store.backend_name().to_owned())
        })
    }

    /// The newest `limit` items (all with None), oldest first, as the text of one JSON array;
    /// an awaitable.
    #[pyo3(signature = (session_id, limit=None))]
    fn get_items<'py>(
        &self,
        py: Python<'py>,
        session_id: String,
        limit: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.awaitable(
            py,
            Operation::GetItems,
            Some(session_id.clone()),
            move |store| async move {
                let items = store.session(&session_id)?.get_items(limit).await?;
                // One JSON array text: Python parses the whole history with one json.loads
                // instead of one call per item (the items are exact JSON texts already).
                let mut text = String::with_capacity(
                    2 + items.iter().map(|i| i.len_bytes() + 1).sum::<usize>(),
                );
                text.push('[');
                for (n, item) in items.iter().enumerate() {
                    if n > 0 {
                        text.push(',');
                    }
                    text.push_str(item.as_str());
                }
                text.push(']');
                Ok(text)
            },
        )
    }

    /// Appends JSON object texts as one atomic batch; an awaitable. Every text is validated
    /// before anything is written. With `fencing_token`, the write checks in the same atomic
    /// step that the token is the session's live lease's (else `fenced`, nothing written).
    #[pyo3(signature = (session_id, items, fencing_token=None))]
    fn add_items<'py>(
        &self,
        py: Python<'py>,
        session_id: String,
        items: Vec<String>,
        fencing_token: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let parsed = items
            .iter()
            .enumerate()
            .map(|(i, text)| {
                Item::from_json_str(text).map_err(|e| {
                    let detail = std::error::Error::source(&e)
                        .map(|source| format!(": {source}"))
                        .unwrap_or_default();
                    let message = format!("item {i}: {}{detail}; nothing was written", e.message());
                    to_py(
                        Error::new(e.kind(), Operation::AddItems, message)
                            .with_session(session_id.as_str()),
                    )
                })
            })
            .collect::<PyResult<Vec<Item>>>()?;
        self.awaitable(
            py,
            Operation::AddItems,
            Some(session_id.clone()),
            move |store| async move {
                handle(&store, &session_id, fencing_token)?
                    .add_items(parsed)
                    .await
            },
        )
    }

    /// Applies a history transaction (its JSON text, the shapes of
    /// `HistoryTransaction::from_json`) under `operation_id`; an awaitable of `True` when it
    /// was applied now, `False` when it had been applied before under the same id. The text
    /// and the id are checked before anything is written. `fencing_token`: as `add_items`.
    #[pyo3(signature = (session_id, operation_id, transaction, fencing_token=None))]
    fn apply_history_transaction<'py>(
        &self,
        py: Python<'py>,
        session_id: String,
        operation_id: String,
        transaction: String,
        fencing_token: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let op = Operation::ApplyTransaction;
        let invalid = |e: Error| {
            let message = format!("{}; nothing was written", e.message());
            to_py(Error::new(e.kind(), op, message).with_session(session_id.as_str()))
        };
        openai_agents_session::history::validate_operation_id(&operation_id).map_err(invalid)?;
        let tx = HistoryTransaction::from_json(&transaction).map_err(invalid)?;
        self.awaitable(py, op, Some(session_id.clone()), move |store| async move {
            let applied = handle(&store, &session_id, fencing_token)?
                .apply_history_transaction(&operation_id, &tx)
                .await?;
            Ok(applied == Applied::Now)
        })
    }

    /// Removes and returns the newest item's JSON text, or None; an awaitable.
    /// `fencing_token`: as `add_items`.
    #[pyo3(signature = (session_id, fencing_token=None))]
    fn pop_item<'py>(
        &self,
        py: Python<'py>,
        session_id: String,
        fencing_token: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.awaitable(
            py,
            Operation::PopItem,
            Some(session_id.clone()),
            move |store| async move {
                let item = handle(&store, &session_id, fencing_token)?
                    .pop_item()
                    .await?;
                Ok(item.map(Item::into_string))
            },
        )
    }

    /// Deletes the session (not its lease); an awaitable. `fencing_token`: as `add_items`.
    #[pyo3(signature = (session_id, fencing_token=None))]
    fn clear_session<'py>(
        &self,
        py: Python<'py>,
        session_id: String,
        fencing_token: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.awaitable(
            py,
            Operation::ClearSession,
            Some(session_id.clone()),
            move |store| async move {
                handle(&store, &session_id, fencing_token)?
                    .clear_session()
                    .await
            },
        )
    }

    /// Acquires the session's lease for `owner` for `ttl` seconds, polling with backoff for up
    /// to `wait` seconds while another owner holds it (None: fail at once with `lease_held`);
    /// an awaitable of `(owner, token, expires_at in epoch milliseconds)`. The same owner
    /// acquiring again gets its token, extended. Does not create the session.
    #[pyo3(signature = (session_id, owner, ttl, wait=None))]
    fn acquire_lease<'py>(
        &self,
        py: Python<'py>,
        session_id: String,
        owner: String,
        ttl: f64,
        wait: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let op = Operation::AcquireLease;
        let ttl = seconds(op, &session_id, "a lease ttl", ttl)?;
        let wait = wait
            .map(|w| seconds(op, &session_id, "a lease wait", w))
            .transpose()?;
        self.awaitable(py, op, Some(session_id.clone()), move |store| async move {
            let lease = store.acquire_lease(&session_id, &owner, ttl, wait).await?;
            Ok(lease_to_py(&lease))
        })
    }

    /// Moves the expiry of the session's live lease of `token` to now + `ttl` seconds; an
    /// awaitable of the lease, as `acquire_lease`'s. `fenced` when `token` is not the live
    /// lease's (expired, released or taken over).
    fn renew_lease<'py>(
        &self,
        py: Python<'py>,
        session_id: String,
        token: u64,
        ttl: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let op = Operation::RenewLease;
        let ttl = seconds(op, &session_id, "a lease ttl", ttl)?;
        self.awaitable(py, op, Some(session_id.clone()), move |store| async move {
            let lease = store.renew_lease(&session_id, token, ttl).await?;
            Ok(lease_to_py(&lease))
        })
    }

    /// Ends the session's lease of `token` now; an awaitable. A no-op when it ended already;
    /// `fenced` when another token was granted since.
    fn release_lease<'py>(
        &self,
        py: Python<'py>,
        session_id: String,
        token: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.awaitable(
            py,
            Operation::ReleaseLease,
            Some(session_id.clone()),
            move |store| async move { store.release_lease(&session_id, token).await },
        )
    }

    /// The session's live lease as `(owner, token, expires_at in epoch milliseconds)`, or
    /// None; an awaitable.
    fn lease_info<'py>(&self, py: Python<'py>, session_id: String) -> PyResult<Bound<'py, PyAny>> {
        self.awaitable(
            py,
            Operation::LeaseInfo,
            Some(session_id.clone()),
            move |store| async move {
                let lease = store.lease_info(&session_id).await?;
                Ok(lease.as_ref().map(lease_to_py))
            },
        )
    }

    /// Creates the storage's table if missing (DynamoDB); an awaitable.
    fn init<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.awaitable(py, Operation::Open, None, |store| async move {
            store.init().await
        })
    }

    /// Validates a session id without I/O (raises on an invalid one).
    #[staticmethod]
    fn validate_session_id(session_id: &str) -> PyResult<()> {
        openai_agents_session::validate_session_id(session_id).map_err(to_py)
    }
}

/// The stable names of every `ErrorKind` of the core, in declaration order (for the test that
/// the Python error table covers them all).
#[pyfunction]
fn _error_kinds() -> Vec<&'static str> {
    ErrorKind::ALL.iter().map(|kind| kind.name()).collect()
}

/// Test hook: raises the `NativeError` of a real core `Error` of kind `kind` (an
/// `ErrorKind::name()`), with `cause` (`"timeout"`, `"connection"` or None), `operation` (an
/// `Operation::as_str()`), `session_id`, `reason` (a `ConflictReason::name()`, or None) and
/// `lease` (`(owner, token, expires_at_millis)`: the holder of a `lease_held` error, the live
/// lease of a `fenced` one, made by `Error::lease_held` / `Error::fenced` with token 1), through
/// the same `to_py` as every operation, so that the error table is tested on the production
/// transport.
#[pyfunction]
#[pyo3(signature = (kind, cause=None, operation="add_items", session_id=None, reason=None, lease=None))]
fn _raise_for_test(
    kind: &str,
    cause: Option<&str>,
    operation: &str,
    session_id: Option<String>,
    reason: Option<&str>,
    lease: Option<PyLease>,
) -> PyResult<()> {
    let unknown = |what: &str, name: &str| {
        pyo3::exceptions::PyValueError::new_err(format!("unknown {what} {name:?}"))
    };
    let kind = ErrorKind::ALL
        .into_iter()
        .find(|k| k.name() == kind)
        .ok_or_else(|| unknown("kind", kind))?;
    let operation = Operation::ALL
        .into_iter()
        .find(|op| op.as_str() == operation)
        .ok_or_else(|| unknown("operation", operation))?;
    let mut err = match (kind, lease) {
        (_, None) => Error::new(kind, operation, format!("a test {} error", kind.name())),
        (ErrorKind::LeaseHeld, Some((owner, token, millis))) => {
            Error::lease_held(Lease::new(owner, token, Timestamp::from_millis(millis)))
                .with_operation(operation)
        }
        (ErrorKind::Fenced, Some((owner, token, millis))) => Error::fenced(
            operation,
            1,
            Some(Lease::new(owner, token, Timestamp::from_millis(millis))),
        ),
        (_, Some(_)) => {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "a lease goes with kind lease_held or fenced only",
            ))
        }
    };
    if let Some(cause) = cause {
        err = err.with_cause(
            [FailureCause::Timeout, FailureCause::Connection]
                .into_iter()
                .find(|c| c.name() == cause)
                .ok_or_else(|| unknown("cause", cause))?,
        );
    }
    if let Some(id) = session_id {
        err = err.with_session(id);
    }
    if let Some(reason) = reason {
        err = err.with_conflict(
            [
                ConflictReason::OperationReused,
                ConflictReason::SuffixMismatch,
            ]
            .into_iter()
            .find(|r| r.name() == reason)
            .ok_or_else(|| unknown("reason", reason))?,
        );
    }
    Err(to_py(err))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeStore>()?;
    m.add_function(wrap_pyfunction!(_error_kinds, m)?)?;
    m.add_function(wrap_pyfunction!(_raise_for_test, m)?)?;
    m.add_function(wrap_pyfunction!(_close_exit_gate, m)?)?;
    m.add("NativeError", m.py().get_type::<NativeError>())?;
    Ok(())
}
