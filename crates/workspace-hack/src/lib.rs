//! Feature unification only: no code. See this crate's `Cargo.toml`.
//!
//! ```
//! // Nothing to call: depending on this crate only sets dependency features.
//! ```
