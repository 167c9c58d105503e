//! The backends this crate ships, one folder each, each behind its cargo feature, each with the
//! same rooms (`mod.rs`: the type and its `Backend` impl; `config.rs`: its URL options;
//! `layout.rs`: keys and formats; `read.rs`, `write.rs`, `staged.rs`, `prune.rs`, `error.rs`,
//! `legacy.rs`: as it needs them). No backend refers to another.
//!
//! With the hidden `fuzzing` feature and without a backend's own feature, only its pure rooms
//! (URL options and stored-format decoders, which name no driver type) are compiled, from the
//! same files, so that the fuzz targets (`fuzz/`) build without the drivers and the AWS SDK.

#[cfg(feature = "dynamodb")]
pub mod dynamodb;
#[cfg(all(feature = "fuzzing", not(feature = "dynamodb")))]
#[path = "dynamodb"]
#[allow(dead_code, unused_imports)]
pub(crate) mod dynamodb {
    pub(crate) mod config;
    pub(crate) mod records;
}
pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(all(feature = "fuzzing", not(feature = "postgres")))]
#[path = "postgres"]
#[allow(dead_code, unused_imports)]
pub(crate) mod postgres {
    pub(crate) mod config;
}
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(all(feature = "fuzzing", not(feature = "redis")))]
#[path = "redis"]
#[allow(dead_code, unused_imports)]
pub(crate) mod redis {
    pub(crate) mod config;
    pub(crate) mod layout;
}
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(all(feature = "fuzzing", not(feature = "sqlite")))]
#[path = "sqlite"]
#[allow(dead_code, unused_imports)]
pub(crate) mod sqlite {
    pub(crate) mod config;
    pub(crate) mod records;
}
