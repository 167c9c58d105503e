//! Opening a store by URL: [`Store::open`] and the one table of schemes.
//!
//! The table maps each URL scheme to the cargo feature that provides it and its opener, so the
//! "this build knows: ..." list and the "needs the `X` feature" error both come from it, and a
//! scheme is added in one place. Rust users register their own schemes with
//! [`register_scheme`], so that a third-party backend opens by URL like ours.
//!
//! Data flows one way: URL text -> [`StoreUrl`] -> shared [`StoreOptions`] -> the backend's
//! opener (which takes its own options and rejects unknown ones) -> [`Store`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> openai_agents_session::Result<()> {
//! use openai_agents_session::open::{known_schemes, register_scheme};
//! use openai_agents_session::{Store, StoreOptions};
//! use openai_agents_session::url::StoreUrl;
//!
//! // A scheme of our own, opening an in-memory store (a real one would build its Backend).
//! register_scheme("scratch", |url: StoreUrl, options: StoreOptions| {
//!     Box::pin(async move {
//!         url.reject_unknown_options()?;
//!         Ok(Store::from_backend(
//!             std::sync::Arc::new(openai_agents_session::backend::memory::MemoryBackend::new(options.clone())),
//!             options,
//!         ))
//!     })
//! })?;
//! assert!(known_schemes().contains(&"scratch".to_owned()));
//! let store = Store::open("scratch://?ttl=60").await?;
//! assert_eq!(store.options().ttl, Some(60));
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};

use crate::error::{Error, ErrorKind, Operation, Result};
use crate::store::{BoxFuture, Store, StoreOptions};
use crate::url::StoreUrl;

/// Opens a store from a parsed URL (its shared options already taken out).
pub type Opener = fn(StoreUrl, StoreOptions) -> BoxFuture<'static, Result<Store>>;

/// One row of the scheme table.
struct Scheme {
    schemes: &'static [&'static str],
    /// The cargo feature that builds the backend.
    feature: &'static str,
    /// `None` when this build lacks the feature.
    opener: Option<Opener>,
}

/// The backends of this crate. A backend is added here and nowhere else.
const SCHEMES: &[Scheme] = &[
    Scheme {
        schemes: &["memory"],
        feature: "(always)",
        opener: Some(|url, options| {
            Box::pin(async move { crate::backend::memory::open(url, options) })
        }),
    },
    Scheme {
        schemes: &["sqlite"],
        feature: "sqlite",
        #[cfg(feature = "sqlite")]
        opener: Some(|url, options| Box::pin(crate::backend::sqlite::open(url, options))),
        #[cfg(not(feature = "sqlite"))]
        opener: None,
    },
    Scheme {
        schemes: &["redis", "rediss", "redis+cluster", "rediss+cluster"],
        feature: "redis",
        #[cfg(feature = "redis")]
        opener: Some(|url, options| Box::pin(crate::backend::redis::open(url, options))),
        #[cfg(not(feature = "redis"))]
        opener: None,
    },
    Scheme {
        schemes: &["postgres", "postgresql"],
        feature: "postgres",
        #[cfg(feature = "postgres")]
        opener: Some(|url, options| Box::pin(crate::backend::postgres::open(url, options))),
        #[cfg(not(feature = "postgres"))]
        opener: None,
    },
    Scheme {
        schemes: &["dynamodb"],
        feature: "dynamodb",
        #[cfg(feature = "dynamodb")]
        opener: Some(|url, options| Box::pin(crate::backend::dynamodb::open(url, options))),
        #[cfg(not(feature = "dynamodb"))]
        opener: None,
    },
];

/// A scheme registered at run time by [`register_scheme`].
type Custom =
    Arc<dyn Fn(StoreUrl, StoreOptions) -> BoxFuture<'static, Result<Store>> + Send + Sync>;

fn custom() -> &'static RwLock<BTreeMap<String, Custom>> {
    static CUSTOM: OnceLock<RwLock<BTreeMap<String, Custom>>> = OnceLock::new();
    CUSTOM.get_or_init(|| RwLock::new(BTreeMap::new()))
}

fn config_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Config, Operation::Open, message)
}

/// Registers a URL scheme for a backend of your own, so that [`Store::open`] (and so the CLI's
/// and the Python package's URLs, in a program that registers it) opens it like ours. The
/// opener receives the parsed URL with the shared options (`ttl`, `refresh_on_read`,
/// `max_item_bytes`) already taken out as [`StoreOptions`]; it should take its own options and
/// call [`StoreUrl::reject_unknown_options`]. A scheme this crate knows (built or not) cannot be
/// registered, nor can one twice: both are `Config` errors.
pub fn register_scheme<F>(scheme: &str, opener: F) -> Result<()>
where
    F: Fn(StoreUrl, StoreOptions) -> BoxFuture<'static, Result<Store>> + Send + Sync + 'static,
{
    let scheme = scheme.to_ascii_lowercase();
    let valid = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid {
        return Err(config_error(format!(
            "{scheme:?} is not a valid URL scheme"
        )));
    }
    if SCHEMES
        .iter()
        .any(|row| row.schemes.contains(&scheme.as_str()))
    {
        return Err(config_error(format!(
            "the scheme {scheme:?} belongs to a backend of this crate"
        )));
    }
    let mut table = custom().write().unwrap_or_else(|e| e.into_inner());
    if table.contains_key(&scheme) {
        return Err(config_error(format!(
            "the scheme {scheme:?} is already registered"
        )));
    }
    table.insert(scheme, Arc::new(opener));
    Ok(())
}

/// The URL schemes this build can open: the built backends', then registered ones.
///
/// ```
/// let schemes = openai_agents_session::open::known_schemes();
/// assert!(schemes.contains(&"memory".to_owned()));
/// ```
pub fn known_schemes() -> Vec<String> {
    let mut schemes: Vec<String> = SCHEMES
        .iter()
        .filter(|row| row.opener.is_some())
        .flat_map(|row| row.schemes.iter().map(|s| (*s).to_owned()))
        .collect();
    schemes.extend(
        custom()
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned(),
    );
    schemes
}

impl Store {
    /// Opens a store from a URL: `memory://`, `memory://NAME`, `sqlite://PATH`,
    /// `sqlite:///ABS/PATH`, `redis://...`, `rediss://...`, `redis+cluster://...`,
    /// `rediss+cluster://...`, `dynamodb://TABLE?region=...` (each behind its feature), or a
    /// scheme registered with [`register_scheme`]; with query options (`ttl`,
    /// `refresh_on_read`, `max_item_bytes`, and each backend's own). See [`crate::url`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use openai_agents_session::{ErrorKind, Store};
    /// let err = Store::open("ftp://x").await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Config);
    /// assert!(err.to_string().contains("this build knows: memory"));
    /// # }
    /// ```
    pub async fn open(url: &str) -> Result<Store> {
        let mut parsed = StoreUrl::parse(url)?;
        let options = parsed.take_store_options()?;
        let scheme = parsed.scheme.clone();
        if let Some(row) = SCHEMES
            .iter()
            .find(|row| row.schemes.contains(&scheme.as_str()))
        {
            return match row.opener {
                Some(opener) => opener(parsed, options).await,
                None => Err(config_error(format!(
                    "{:?} needs the `{}` feature, which this build lacks",
                    parsed.redacted, row.feature
                ))),
            };
        }
        let registered = custom()
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&scheme)
            .cloned();
        match registered {
            Some(opener) => opener(parsed, options).await,
            None => Err(config_error(format!(
                "unknown store URL scheme {scheme:?} in {:?} (this build knows: {})",
                parsed.redacted,
                known_schemes().join(", ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_appears_once() {
        let mut all: Vec<&str> = SCHEMES
            .iter()
            .flat_map(|r| r.schemes.iter().copied())
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[tokio::test]
    async fn unbuilt_features_are_named() {
        for row in SCHEMES.iter().filter(|r| r.opener.is_none()) {
            let err = Store::open(&format!("{}://x", row.schemes[0]))
                .await
                .unwrap_err();
            assert!(
                err.to_string()
                    .contains(&format!("needs the `{}` feature", row.feature)),
                "{err}"
            );
        }
    }

    #[test]
    fn our_schemes_cannot_be_taken_and_none_twice() {
        let open: fn(StoreUrl, StoreOptions) -> BoxFuture<'static, Result<Store>> =
            |url, options| Box::pin(async move { crate::backend::memory::open(url, options) });
        assert!(register_scheme("memory", open).is_err());
        assert!(register_scheme("redis", open).is_err());
        assert!(register_scheme("bad scheme", open).is_err());
        register_scheme("unit-test-twice", open).unwrap();
        assert!(register_scheme("unit-test-twice", open).is_err());
    }
}
