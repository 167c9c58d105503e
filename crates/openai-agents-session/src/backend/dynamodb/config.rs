//! The options of a `dynamodb://TABLE?...` URL beyond the shared ones, read in one place:
//! [`DynamoConfig::from_url`] (`docs/storage/dynamodb.md`, "URLs and options").
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `region` | the AWS chain's | AWS region |
//! | `endpoint` | the AWS chain's | `http://` or `https://` URL (DynamoDB Local) |
//! | `create_table` | `false` | create the table when opening |
//! | `enable_ttl` | `true` | `init` / `create_table` turn DynamoDB's TTL on the attribute `ttl` on; `false` leaves the table's TTL setting as it is |
//! | `grace` (whole seconds) | the TTL | how long records outlive their session's expiry |
//! | `stale_stage_after` (alias `stale_batch_secs`, whole seconds) | 1 h | age after which `prune` reclaims a batch never committed |
//! | `connect_timeout` | 5 s | to establish a connection |
//! | `response_timeout` | 20 s | one attempt's limit |
//! | `max_attempts` | 5 (at most 100) | attempts per request |
//! | `layout` | `native` | `seed`: the seed's table, read-only |

use std::time::Duration;

use crate::error::{Error, ErrorKind, Operation, Result};
use crate::url::{parse_bool, parse_duration, parse_positive, StoreUrl};

/// Uncommitted batches older than this are reclaimed by `prune` (URL option `stale_stage_after`).
const DEFAULT_STALE_STAGE_AFTER: Duration = Duration::from_secs(3600);
/// The name users have written for `stale_stage_after` (the one word for staged writes is
/// "stage"), kept working with its unit: whole seconds.
const STALE_BATCH_SECS: &str = "stale_batch_secs";
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(20);
const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// More attempts than this only delay a failure that has already happened.
const MAX_ATTEMPTS_CAP: u64 = 100;

/// Which layout a URL opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// This library's (`layout=native`, the default).
    Native,
    /// The seed's table, read-only (`layout=seed`).
    Seed,
}

/// The options of a DynamoDB store beyond the shared ones.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DynamoConfig {
    pub(super) table: String,
    /// `region`; `None`: the AWS chain's.
    pub(super) region: Option<String>,
    /// `endpoint` (http:// or https://); `None`: the AWS chain's.
    pub(super) endpoint: Option<String>,
    /// `layout`.
    pub(super) layout: Layout,
    /// `create_table`: create the table when opening.
    pub(super) create_table: bool,
    /// `enable_ttl`: table creation (`init`, `create_table`) turns DynamoDB's TTL on.
    pub(super) enable_ttl: bool,
    /// `grace` (whole seconds): how long records outlive their session's expiry (`None`: the
    /// TTL).
    pub(super) grace: Option<Duration>,
    /// `stale_stage_after` (alias `stale_batch_secs`): after this, `prune` treats an
    /// uncommitted batch (a staged write's included) as abandoned.
    pub(super) stale_stage_after: Duration,
    /// `connect_timeout` (seconds, decimals allowed).
    pub(super) connect_timeout: Duration,
    /// `response_timeout` (seconds, decimals allowed): one attempt's limit.
    pub(super) response_timeout: Duration,
    /// `max_attempts`: attempts per request (the SDK's standard retry mode), at most 100.
    pub(super) max_attempts: u32,
}

impl DynamoConfig {
    /// The defaults, for a table named by the caller (a client the caller owns).
    pub(super) fn for_table(table: String) -> Self {
        DynamoConfig {
            table,
            region: None,
            endpoint: None,
            layout: Layout::Native,
            create_table: false,
            enable_ttl: true,
            grace: None,
            stale_stage_after: DEFAULT_STALE_STAGE_AFTER,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }

    /// Takes the table and every DynamoDB option out of `url` (its shared options already
    /// taken), and fails naming any option left over.
    pub(crate) fn from_url(url: &mut StoreUrl) -> Result<Self> {
        let table = url.location()?;
        let table = table.trim_matches('/').to_owned();
        if table.is_empty()
            || table.len() > 255
            || !table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(Error::new(
                ErrorKind::Config,
                Operation::Open,
                format!(
                    "{:?} does not name a valid DynamoDB table (dynamodb://TABLE?region=...)",
                    url.redacted
                ),
            ));
        }
        let mut config = DynamoConfig::for_table(table);
        config.region = url.take_option("region");
        config.endpoint = url.take_option("endpoint");
        let layout = url.take_option("layout");
        if let Some(v) = url.take_parsed("create_table", &[], parse_bool)? {
            config.create_table = v;
        }
        if let Some(v) = url.take_parsed("enable_ttl", &[], parse_bool)? {
            config.enable_ttl = v;
        }
        config.grace = url
            .take_parsed("grace", &[], parse_positive)?
            .map(Duration::from_secs);
        if let Some(d) =
            url.take_parsed("stale_stage_after", &[STALE_BATCH_SECS], parse_stale_age)?
        {
            config.stale_stage_after = d;
        }
        if let Some(d) = url.take_parsed("connect_timeout", &[], parse_duration)? {
            config.connect_timeout = d;
        }
        if let Some(d) = url.take_parsed("response_timeout", &[], parse_duration)? {
            config.response_timeout = d;
        }
        if let Some(v) = url.take_parsed("max_attempts", &[], parse_positive)? {
            config.max_attempts = v.min(MAX_ATTEMPTS_CAP) as u32;
        }
        url.reject_unknown_options()?;
        if let Some(e) = &config.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(Error::new(
                    ErrorKind::Config,
                    Operation::Open,
                    format!("endpoint must be an http:// or https:// URL, got {e:?}"),
                ));
            }
        }
        config.layout = match layout.as_deref() {
            None | Some("native") => Layout::Native,
            Some("seed") => Layout::Seed,
            Some(other) => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    Operation::Open,
                    format!("layout must be native or seed, got {other:?}"),
                ));
            }
        };
        Ok(config)
    }
}

/// `stale_stage_after` is a duration like any other; its old name keeps its old unit and
/// range (whole seconds, no upper bound), so URLs written for it read as before.
fn parse_stale_age(key: &str, value: &str) -> Result<Duration> {
    if key == STALE_BATCH_SECS {
        parse_positive(key, value).map(Duration::from_secs)
    } else {
        parse_duration(key, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<DynamoConfig> {
        let mut url = StoreUrl::parse(url)?;
        DynamoConfig::from_url(&mut url)
    }

    #[test]
    fn defaults() {
        assert_eq!(
            parse("dynamodb://t").unwrap(),
            DynamoConfig::for_table("t".to_owned())
        );
        let c = DynamoConfig::for_table("t".to_owned());
        assert_eq!(c.stale_stage_after, Duration::from_secs(3600));
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.response_timeout, Duration::from_secs(20));
        assert_eq!(
            (c.max_attempts, c.grace, c.layout, c.enable_ttl),
            (5, None, Layout::Native, true)
        );
    }

    #[test]
    fn every_option_as_users_write_it() {
        let c = parse(
            "dynamodb://my-table.v2?region=eu-west-1&endpoint=http://127.0.0.1:8000&layout=seed\
             &create_table=yes&enable_ttl=no&grace=60&stale_batch_secs=5&connect_timeout=0.5\
             &response_timeout=2&max_attempts=1000",
        )
        .unwrap();
        assert_eq!(c.table, "my-table.v2");
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:8000"));
        assert_eq!(c.layout, Layout::Seed);
        assert!(c.create_table);
        assert!(!c.enable_ttl);
        assert_eq!(c.grace, Some(Duration::from_secs(60)));
        assert_eq!(c.stale_stage_after, Duration::from_secs(5));
        assert_eq!(c.connect_timeout, Duration::from_millis(500));
        assert_eq!(c.response_timeout, Duration::from_secs(2));
        assert_eq!(c.max_attempts, 100);
        assert_eq!(
            parse("dynamodb://t?layout=native").unwrap().layout,
            Layout::Native
        );
    }

    #[test]
    fn stale_stage_after_and_its_alias() {
        let age = |url: &str| parse(url).map(|c| c.stale_stage_after);
        assert_eq!(
            age("dynamodb://t?stale_stage_after=1.5").unwrap(),
            Duration::from_millis(1500)
        );
        // The old name: whole seconds, as before (also more than a day).
        assert_eq!(
            age("dynamodb://t?stale_batch_secs=172800").unwrap(),
            Duration::from_secs(172_800)
        );
        let e = age("dynamodb://t?stale_batch_secs=1.5").unwrap_err();
        assert_eq!(
            e.message(),
            "stale_batch_secs must be a positive whole number, got \"1.5\""
        );
        let e = age("dynamodb://t?stale_batch_secs=5&stale_stage_after=5").unwrap_err();
        assert!(e.message().contains("same option"), "{e}");
    }

    #[test]
    fn bad_options_are_named() {
        use ErrorKind::{Config, InvalidInput};
        for (kind, url, needle) in [
            (Config, "dynamodb://t?bogus=1", "\"bogus\""),
            (Config, "dynamodb://bad%20name", "valid DynamoDB table"),
            (Config, "dynamodb://", "valid DynamoDB table"),
            (Config, "dynamodb://t?endpoint=ftp://x", "endpoint"),
            (InvalidInput, "dynamodb://t?layout=v2", "layout"),
            (
                InvalidInput,
                "dynamodb://t?create_table=maybe",
                "create_table",
            ),
            (InvalidInput, "dynamodb://t?grace=1.5", "grace"),
            (
                InvalidInput,
                "dynamodb://t?stale_batch_secs=0",
                "stale_batch_secs",
            ),
            (
                InvalidInput,
                "dynamodb://t?stale_stage_after=0",
                "stale_stage_after",
            ),
            (
                InvalidInput,
                "dynamodb://t?connect_timeout=-1",
                "connect_timeout",
            ),
            (
                InvalidInput,
                "dynamodb://t?response_timeout=x",
                "response_timeout",
            ),
            (InvalidInput, "dynamodb://t?max_attempts=0", "max_attempts"),
        ] {
            let e = parse(url).unwrap_err();
            assert_eq!(e.kind(), kind, "{url}: {e}");
            assert!(e.message().contains(needle), "{url}: {e}");
        }
    }
}
