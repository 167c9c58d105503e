//! The native half of the Python package `openai_agents_session`: a store handle whose
//! operations are Python awaitables running on a shared tokio runtime, so they never block the
//! event loop. The Python classes (`RedisSession`, `DynamoDBSession`, `SQLiteSession`,
//! `open_session`) live in `python/openai_agents_session/__init__.py`.

use std::future::Future;
use std::sync::Arc;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::provider::{error::CredentialsError, future, ProvideCredentials};
use aws_credential_types::Credentials;
use openai_agents_session::backend::dynamodb::open_with_credentials;
use openai_agents_session::{Error, Item, Session, Store};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use tokio::sync::OnceCell;

pyo3::create_exception!(
    _native,
    NativeError,
    PyException,
    "An error of the Rust core: args are (kind, message)."
);

fn to_py(err: Error) -> PyErr {
    let kind = format!("{:?}", err.kind());
    NativeError::new_err((kind, err.to_string()))
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

/// A store opened lazily from a URL (constructors do no I/O) and shared by every session
/// created from the same URL (and credentials source).
#[pyclass(frozen)]
struct NativeStore {
    url: String,
    credentials: Option<PySource>,
    store: Arc<OnceCell<Store>>,
}

impl NativeStore {
    async fn get(
        store: Arc<OnceCell<Store>>,
        url: String,
        credentials: Option<PySource>,
    ) -> Result<Store, PyErr> {
        store
            .get_or_try_init(|| async {
                match credentials {
                    Some(source) => {
                        let provider = SharedCredentialsProvider::new(PythonCredentials { source });
                        open_with_credentials(&url, provider).await
                    }
                    None => Store::open(&url).await,
                }
            })
            .await
            .cloned()
            .map_err(to_py)
    }

    /// A Python awaitable that opens the store if needed and runs `work` on it, on the shared
    /// runtime (never blocking the event loop); errors become `NativeError`.
    fn awaitable<'py, T, F, Fut>(&self, py: Python<'py>, work: F) -> PyResult<Bound<'py, PyAny>>
    where
        T: for<'p> IntoPyObject<'p> + Send + 'static,
        F: FnOnce(Store) -> Fut + Send + 'static,
        Fut: Future<Output = openai_agents_session::Result<T>> + Send + 'static,
    {
        let (cell, url, creds) = (
            Arc::clone(&self.store),
            self.url.clone(),
            self.credentials.clone(),
        );
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let store = NativeStore::get(cell, url, creds).await?;
            work(store).await.map_err(to_py)
        })
    }
}

#[pymethods]
impl NativeStore {
    /// A store for `url`; `credentials`, for a `dynamodb://` URL, is a callable returning
    /// `(access_key, secret_key, token, expiry_epoch_seconds)`, asked whenever the AWS SDK's
    /// cached credentials are due to expire.
    #[new]
    #[pyo3(signature = (url, credentials=None))]
    fn new(url: String, credentials: Option<Py<PyAny>>) -> Self {
        NativeStore {
            url,
            credentials: credentials.map(Arc::new),
            store: Arc::new(OnceCell::new()),
        }
    }

    /// The URL with any password hidden.
    #[getter]
    fn redacted_url(&self) -> String {
        openai_agents_session::url::redact(&self.url)
    }

    /// Opens the store now (connects); an awaitable.
    fn connect<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.awaitable(
            py,
            |store| async move { Ok(store.backend_name().to_owned()) },
        )
    }

    /// The newest `limit` items (all with None) as JSON texts, oldest first; an awaitable.
    #[pyo3(signature = (session_id, limit=None))]
    fn get_items<'py>(
        &self,
        py: Python<'py>,
        session_id: String,
        limit: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.awaitable(py, move |store| async move {
            let items = store.session(&session_id)?.get_items(limit).await?;
            Ok(items.into_iter().map(Item::into_string).collect::<Vec<_>>())
        })
    }

    /// Appends JSON object texts as one atomic batch; an awaitable. Every text is validated
    /// before anything is written.
    fn add_items<'py>(
        &self,
        py: Python<'py>,
        session_id: String,
        items: Vec<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let parsed = items
            .iter()
            .enumerate()
            .map(|(i, text)| {
                Item::from_json_str(text).map_err(|e| {
                    NativeError::new_err(("InvalidInput".to_owned(), format!("item {i}: {e}")))
                })
            })
            .collect::<PyResult<Vec<Item>>>()?;
        self.awaitable(py, move |store| async move {
            store.session(&session_id)?.add_items(parsed).await
        })
    }

    /// Removes and returns the newest item's JSON text, or None; an awaitable.
    fn pop_item<'py>(&self, py: Python<'py>, session_id: String) -> PyResult<Bound<'py, PyAny>> {
        self.awaitable(py, move |store| async move {
            let item = store.session(&session_id)?.pop_item().await?;
            Ok(item.map(Item::into_string))
        })
    }

    /// Deletes the session; an awaitable.
    fn clear_session<'py>(
        &self,
        py: Python<'py>,
        session_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.awaitable(py, move |store| async move {
            store.session(&session_id)?.clear_session().await
        })
    }

    /// Creates the storage's table if missing (DynamoDB); an awaitable.
    fn init<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.awaitable(py, |store| async move { store.init().await })
    }

    /// Validates a session id without I/O (raises on an invalid one).
    #[staticmethod]
    fn validate_session_id(session_id: &str) -> PyResult<()> {
        openai_agents_session::validate_session_id(session_id).map_err(to_py)
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeStore>()?;
    m.add("NativeError", m.py().get_type::<NativeError>())?;
    Ok(())
}
