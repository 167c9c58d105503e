//! The options of a Redis store URL, beyond the shared ones (`docs/storage/redis.md`, "URLs and
//! options"), read in one place: [`RedisConfig::from_url`].
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `prefix` | `openai_agents_session` (`agents:session` for `layout=openai-agents`) | first part of every key |
//! | `layout` | `native` | `seed` or `openai-agents`: older programs' data, read-only |
//! | `connect_timeout` | 5 s | to establish a connection |
//! | `response_timeout` | 10 s | to wait for an answer |
//! | `tls_ca_file` | none | PEM file of the CA to trust instead of the system roots (`rediss` only) |
//! | `tls_insecure` | `false` | skip verifying the server's certificate (`rediss` only) |
//! | `stale_stage_after` (alias `stale_batch_secs`, whole seconds) | 1 h | age after which `prune` deletes the staging list of a write never committed |

use std::time::Duration;

use crate::error::{Error, ErrorKind, Operation, Result};
use crate::url::{parse_bool, parse_duration, parse_positive, StoreUrl};

use super::layout::{DEFAULT_PREFIX, OPENAI_AGENTS_PREFIX};

pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default age after which `prune` deletes the staging list of a write never committed.
pub(super) const DEFAULT_STALE_STAGE_AFTER: Duration = Duration::from_secs(3600);
/// The name users have written for `stale_stage_after` (the one word for staged writes is
/// "stage"), kept working with its unit: whole seconds.
const STALE_BATCH_SECS: &str = "stale_batch_secs";

/// Which layout a store reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Layout {
    /// This library's layout (read and write).
    Native,
    /// The seed's: one list per session at `{prefix}:{session_id}` (read-only).
    Seed,
    /// The official Agents SDK `RedisSession`'s: a hash at `{prefix}:{id}` and a list at
    /// `{prefix}:{id}:messages` (read-only).
    OpenAiAgents,
}

/// Options of a Redis store, beyond the shared ones.
#[derive(Debug, Clone)]
pub(crate) struct RedisConfig {
    /// `prefix`: the first part of every key (default: the layout's).
    pub prefix: String,
    /// `layout`: `native`, or an older program's layout to read.
    pub layout: Layout,
    /// `connect_timeout` (seconds, decimals allowed).
    pub connect_timeout: Duration,
    /// `response_timeout` (seconds, decimals allowed).
    pub response_timeout: Duration,
    /// `tls_ca_file`: the PEM file of the CA to trust instead of the system roots.
    pub tls_ca_file: Option<String>,
    /// `tls_insecure`: skip verifying the server's certificate.
    pub tls_insecure: bool,
    /// `stale_stage_after` (alias `stale_batch_secs`): age after which `prune` deletes a
    /// staging list never committed.
    pub stale_stage_after: Duration,
}

impl RedisConfig {
    /// Takes this backend's options out of `url` (the caller has taken the shared ones) and
    /// fails on any option left, naming it.
    pub(crate) fn from_url(url: &mut StoreUrl) -> Result<Self> {
        let layout = url
            .take_parsed("layout", &[], parse_layout)?
            .unwrap_or(Layout::Native);
        let prefix = url
            .take_parsed("prefix", &[], parse_prefix)?
            .unwrap_or_else(|| {
                match layout {
                    Layout::OpenAiAgents => OPENAI_AGENTS_PREFIX,
                    _ => DEFAULT_PREFIX,
                }
                .to_owned()
            });
        let stale_stage_after = url
            .take_parsed("stale_stage_after", &[STALE_BATCH_SECS], parse_stale_age)?
            .unwrap_or(DEFAULT_STALE_STAGE_AFTER);
        let config = RedisConfig {
            prefix,
            layout,
            connect_timeout: url
                .take_parsed("connect_timeout", &[], parse_duration)?
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            response_timeout: url
                .take_parsed("response_timeout", &[], parse_duration)?
                .unwrap_or(DEFAULT_RESPONSE_TIMEOUT),
            tls_ca_file: url.take_parsed("tls_ca_file", &[], |_, v| Ok(v.to_owned()))?,
            tls_insecure: url
                .take_parsed("tls_insecure", &[], parse_bool)?
                .unwrap_or(false),
            stale_stage_after,
        };
        url.reject_unknown_options()?;
        let tls = url.scheme.starts_with("rediss");
        if !tls && (config.tls_ca_file.is_some() || config.tls_insecure) {
            return Err(config_error(format!(
                "tls_ca_file and tls_insecure need a rediss:// URL, not {:?}",
                url.redacted
            )));
        }
        Ok(config)
    }
}

fn parse_layout(key: &str, value: &str) -> Result<Layout> {
    match value {
        "native" => Ok(Layout::Native),
        "seed" => Ok(Layout::Seed),
        "openai-agents" => Ok(Layout::OpenAiAgents),
        other => Err(invalid(format!(
            "{key} must be native, seed or openai-agents, got {other:?}"
        ))),
    }
}

fn parse_prefix(key: &str, value: &str) -> Result<String> {
    if value.is_empty() {
        return Err(invalid(format!("{key} must not be empty")));
    }
    Ok(value.to_owned())
}

/// A duration like every other under the new name; under the old one whole seconds without an
/// upper bound, as it has always been read, so that no URL in use stops working.
fn parse_stale_age(key: &str, value: &str) -> Result<Duration> {
    if key == STALE_BATCH_SECS {
        parse_positive(key, value).map(Duration::from_secs)
    } else {
        parse_duration(key, value)
    }
}

fn config_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Config, Operation::Open, message)
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidInput, Operation::Open, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> Result<RedisConfig> {
        let mut url = StoreUrl::parse(url)?;
        url.take_store_options()?;
        RedisConfig::from_url(&mut url)
    }

    fn error(url: &str) -> (ErrorKind, String) {
        let e = config(url).unwrap_err();
        (e.kind(), e.message().to_owned())
    }

    #[test]
    fn seconds_accept_decimals() {
        assert_eq!(
            parse_duration("t", "0.5").unwrap(),
            Duration::from_millis(500)
        );
        for bad in ["0", "-1", "abc", "inf", "NaN"] {
            assert_eq!(
                parse_duration("t", bad).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
        }
    }

    #[test]
    fn stale_stage_after_and_its_alias() {
        let age = |url: &str| config(url).map(|c| c.stale_stage_after);
        assert_eq!(
            age("redis://h/?stale_stage_after=1.5").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            age("redis://h/?stale_batch_secs=90").unwrap(),
            Duration::from_secs(90)
        );
        // The old name keeps its old range: more than a day is accepted as it always was.
        assert_eq!(
            age("redis://h/?stale_batch_secs=172800").unwrap(),
            Duration::from_secs(172_800)
        );
        assert_eq!(
            error("redis://h/?stale_stage_after=172800").0,
            ErrorKind::InvalidInput
        );
        let (kind, message) = error("redis://h/?stale_stage_after=60&stale_batch_secs=60");
        assert_eq!(kind, ErrorKind::InvalidInput);
        assert!(
            message.contains("\"stale_stage_after\" and \"stale_batch_secs\""),
            "{message}"
        );
    }

    #[test]
    fn defaults() {
        let c = config("redis://localhost/").unwrap();
        assert_eq!(c.prefix, DEFAULT_PREFIX);
        assert_eq!(c.layout, Layout::Native);
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.response_timeout, Duration::from_secs(10));
        assert_eq!(c.tls_ca_file, None);
        assert!(!c.tls_insecure);
        assert_eq!(c.stale_stage_after, Duration::from_secs(3600));
        let c = config("redis://localhost/?layout=openai-agents").unwrap();
        assert_eq!(c.prefix, OPENAI_AGENTS_PREFIX);
        let c = config("redis://localhost/?layout=seed").unwrap();
        assert_eq!(
            (c.layout, c.prefix.as_str()),
            (Layout::Seed, DEFAULT_PREFIX)
        );
    }

    #[test]
    fn every_option_is_read() {
        let c = config(
            "rediss+cluster://h1:1,h2:2/?prefix=app&layout=native&connect_timeout=0.25\
             &response_timeout=3&tls_ca_file=/ca.pem&tls_insecure=yes&stale_batch_secs=90&ttl=60",
        )
        .unwrap();
        assert_eq!(c.prefix, "app");
        assert_eq!(c.layout, Layout::Native);
        assert_eq!(c.connect_timeout, Duration::from_millis(250));
        assert_eq!(c.response_timeout, Duration::from_secs(3));
        assert_eq!(c.tls_ca_file.as_deref(), Some("/ca.pem"));
        assert!(c.tls_insecure);
        assert_eq!(c.stale_stage_after, Duration::from_secs(90));
    }

    #[test]
    fn bad_options_are_named() {
        let cases = [
            (
                "redis://h/?layout=v2",
                ErrorKind::InvalidInput,
                "layout must be native, seed or openai-agents, got \"v2\"",
            ),
            (
                "redis://h/?prefix=",
                ErrorKind::InvalidInput,
                "prefix must not be empty",
            ),
            (
                "redis://h/?stale_batch_secs=1.5",
                ErrorKind::InvalidInput,
                "stale_batch_secs must be a positive whole number, got \"1.5\"",
            ),
            (
                "redis://h/?connect_timeout=0",
                ErrorKind::InvalidInput,
                "connect_timeout must be a positive number of seconds (decimals allowed), got \"0\"",
            ),
            (
                "redis://h/?response_timeout=x",
                ErrorKind::InvalidInput,
                "response_timeout must be a positive number of seconds (decimals allowed), got \"x\"",
            ),
            (
                "rediss://h/?tls_insecure=maybe",
                ErrorKind::InvalidInput,
                "tls_insecure must be true or false, got \"maybe\"",
            ),
            (
                "redis://h/?tls_insecure=true",
                ErrorKind::Config,
                "tls_ca_file and tls_insecure need a rediss:// URL, not \"redis://h/?tls_insecure=true\"",
            ),
        ];
        for (url, kind, message) in cases {
            assert_eq!(error(url), (kind, message.to_owned()), "{url}");
        }
        let (kind, message) = error("redis://h/?prefix=a&stale_batch_ms=5");
        assert_eq!(kind, ErrorKind::Config);
        assert!(
            message.contains("unknown option \"stale_batch_ms\""),
            "{message}"
        );
    }
}
