//! The backends this crate ships, one folder each, each behind its cargo feature, each with the
//! same rooms (`mod.rs`: the type and its `Backend` impl; `config.rs`: its URL options;
//! `layout.rs`: keys and formats; `read.rs`, `write.rs`, `staged.rs`, `prune.rs`, `error.rs`,
//! `legacy.rs`: as it needs them). No backend refers to another.

#[cfg(feature = "dynamodb")]
pub mod dynamodb;
pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "sqlite")]
pub mod sqlite;
