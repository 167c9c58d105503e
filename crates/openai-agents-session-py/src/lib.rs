//! The native half of the Python package `openai_agents_session`: a store handle whose
//! operations are Python awaitables running on a shared tokio runtime, so they never block the
//! event loop. The Python classes (`RedisSession`, `DynamoDBSession`, `SQLiteSession`,
//! `open_session`) live in `python/openai_agents_session/__init__.py`.

use std::sync::Arc;

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

/// A store opened lazily from a URL (constructors do no I/O) and shared by every session
/// created from the same URL.
#[pyclass(frozen)]
struct NativeStore {
    url: String,
    store: Arc<OnceCell<Store>>,
}

impl NativeStore {
    async fn get(store: Arc<OnceCell<Store>>, url: String) -> Result<Store, PyErr> {
        store
            .get_or_try_init(|| async { Store::open(&url).await })
            .await
            .cloned()
            .map_err(to_py)
    }
}

#[pymethods]
impl NativeStore {
    #[new]
    fn new(url: String) -> Self {
        NativeStore {
            url,
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
        let (cell, url) = (Arc::clone(&self.store), self.url.clone());
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let store = NativeStore::get(cell, url).await?;
            Ok(store.backend_name().to_owned())
        })
    }

    /// The newest `limit` items (all with None) as JSON texts, oldest first; an awaitable.
    #[pyo3(signature = (session_id, limit=None))]
    fn get_items<'py>(
        &self,
        py: Python<'py>,
        session_id: String,
        limit: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (cell, url) = (Arc::clone(&self.store), self.url.clone());
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let store = NativeStore::get(cell, url).await?;
            let items = store
                .session(&session_id)
                .map_err(to_py)?
                .get_items(limit)
                .await
                .map_err(to_py)?;
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
        let (cell, url) = (Arc::clone(&self.store), self.url.clone());
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let store = NativeStore::get(cell, url).await?;
            store
                .session(&session_id)
                .map_err(to_py)?
                .add_items(parsed)
                .await
                .map_err(to_py)?;
            Ok(())
        })
    }

    /// Removes and returns the newest item's JSON text, or None; an awaitable.
    fn pop_item<'py>(&self, py: Python<'py>, session_id: String) -> PyResult<Bound<'py, PyAny>> {
        let (cell, url) = (Arc::clone(&self.store), self.url.clone());
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let store = NativeStore::get(cell, url).await?;
            let item = store
                .session(&session_id)
                .map_err(to_py)?
                .pop_item()
                .await
                .map_err(to_py)?;
            Ok(item.map(Item::into_string))
        })
    }

    /// Deletes the session; an awaitable.
    fn clear_session<'py>(
        &self,
        py: Python<'py>,
        session_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (cell, url) = (Arc::clone(&self.store), self.url.clone());
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let store = NativeStore::get(cell, url).await?;
            store
                .session(&session_id)
                .map_err(to_py)?
                .clear_session()
                .await
                .map_err(to_py)?;
            Ok(())
        })
    }

    /// Creates the storage's table if missing (DynamoDB); an awaitable.
    fn init<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (cell, url) = (Arc::clone(&self.store), self.url.clone());
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let store = NativeStore::get(cell, url).await?;
            store.init().await.map_err(to_py)?;
            Ok(())
        })
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
