//! Store URLs: one syntax for the library, the CLI and the Python package.
//!
//! | URL | Store |
//! |---|---|
//! | `memory://` | in memory, private to this store |
//! | `memory://NAME` | in memory, shared by every store of this process opened with `NAME` |
//! | `sqlite://PATH` | SQLite file at `PATH`, relative to the current directory |
//! | `sqlite:///ABS/PATH` | SQLite file at the absolute path `/ABS/PATH` |
//!
//! Paths are percent-decoded (`sqlite://my%20dir/s.db`). Query options shared by every backend:
//! `ttl` (positive whole seconds), `refresh_on_read` (`true`/`false`, default `true`),
//! `max_item_bytes` (positive integer). SQLite adds `synchronous` (`normal`, the default, or
//! `full`) and `busy_timeout_ms` (default 5000). Unknown schemes and options are
//! [`ErrorKind::Config`] errors that name them.
//!
//! ```
//! use openai_agents_session::url::StoreUrl;
//! let url = StoreUrl::parse("sqlite://data/sessions.db?ttl=3600&refresh_on_read=false").unwrap();
//! assert_eq!(url.scheme, "sqlite");
//! assert_eq!(url.location().unwrap(), "data/sessions.db");
//! assert_eq!(url.options["ttl"], "3600");
//! assert!(StoreUrl::parse("ftp://x").is_ok()); // parsing is generic; opening checks the scheme
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Operation, Result};
use crate::store::StoreOptions;

/// A parsed store URL: scheme, authority, percent-decoded path and query options.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreUrl {
    /// The scheme, lower-cased (`sqlite`, `memory`, `redis`...).
    pub scheme: String,
    /// Everything between `//` and the path (`user:pass@host:port`, a memory store's name), raw.
    pub authority: String,
    /// The percent-decoded path (for `sqlite`, the file path; empty when absent).
    pub path: String,
    /// Query options, percent-decoded, in order. Repeated keys are an error.
    pub options: BTreeMap<String, String>,
    /// The URL with any password replaced by `***`, safe to print.
    pub redacted: String,
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StoreUrl").field(&self.redacted).finish()
    }
}

fn config_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Config, Operation::Open, message)
}

/// Replaces the password of `scheme://user:password@host...` (and the value of a `password`
/// query option) with `***`.
///
/// ```
/// use openai_agents_session::url::redact;
/// assert_eq!(redact("redis://me:s3cret@host:6379/0"), "redis://me:***@host:6379/0");
/// assert_eq!(redact("redis://:s3cret@host"), "redis://:***@host");
/// assert_eq!(redact("sqlite://a.db"), "sqlite://a.db");
/// assert_eq!(redact("postgres://me@h/db?password=s3cret&x=1"), "postgres://me@h/db?password=***&x=1");
/// ```
pub fn redact(url: &str) -> String {
    let redacted = redact_userinfo(url);
    // A `password` query option (libpq's form) is hidden too.
    match redacted.split_once('?') {
        Some((head, query)) if query.split('&').any(is_password_option) => {
            let hidden: Vec<String> = query
                .split('&')
                .map(|pair| {
                    if is_password_option(pair) {
                        format!("{}=***", pair.split('=').next().unwrap_or("password"))
                    } else {
                        pair.to_owned()
                    }
                })
                .collect();
            format!("{head}?{}", hidden.join("&"))
        }
        _ => redacted,
    }
}

fn is_password_option(pair: &str) -> bool {
    pair.split('=')
        .next()
        .is_some_and(|key| key.eq_ignore_ascii_case("password"))
}

fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let redacted_userinfo = match userinfo.find(':') {
                Some(colon) => format!("{}:***", &userinfo[..colon]),
                None => userinfo.to_owned(),
            };
            format!(
                "{}{}{}",
                &url[..rest_start],
                redacted_userinfo,
                &url[rest_start + at..]
            )
        }
        None => url.to_owned(),
    }
}

/// Decodes `%XX` escapes (UTF-8); `+` stays `+`.
pub fn percent_decode(text: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| config_error(format!("bad percent escape in {text:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| config_error(format!("percent escapes in {text:?} are not UTF-8")))
}

impl StoreUrl {
    /// Parses `scheme://authority/path?key=value&...`.
    pub fn parse(url: &str) -> Result<StoreUrl> {
        let redacted = redact(url);
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            config_error(format!(
                "store URL {redacted:?} has no scheme (expected e.g. sqlite://sessions.db or memory://)"
            ))
        })?;
        if scheme.is_empty() {
            return Err(config_error(format!(
                "store URL {redacted:?} has an empty scheme"
            )));
        }
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match before_query.find('/') {
            Some(slash) => (&before_query[..slash], &before_query[slash..]),
            None => (before_query, ""),
        };
        let mut options = BTreeMap::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(key)?;
            let value = percent_decode(value)?;
            if options.insert(key.clone(), value).is_some() {
                return Err(config_error(format!(
                    "option {key:?} is given twice in {redacted:?}"
                )));
            }
        }
        Ok(StoreUrl {
            scheme: scheme.to_ascii_lowercase(),
            authority: authority.to_owned(),
            path: percent_decode(path)?,
            options,
            redacted,
        })
    }

    /// The authority and path joined and percent-decoded: the file of `sqlite://data/s.db`
    /// (`data/s.db`) or `sqlite:///abs/s.db` (`/abs/s.db`), the name of `memory://NAME`.
    pub fn location(&self) -> Result<String> {
        Ok(percent_decode(&self.authority)? + &self.path)
    }

    /// Removes and returns an option.
    pub fn take_option(&mut self, key: &str) -> Option<String> {
        self.options.remove(key)
    }

    /// Takes the options every backend shares (`ttl`, `refresh_on_read`, `max_item_bytes`).
    pub fn take_store_options(&mut self) -> Result<StoreOptions> {
        let mut opts = StoreOptions::default();
        if let Some(ttl) = self.take_option("ttl") {
            let secs = parse_positive("ttl", &ttl)?;
            opts = opts
                .with_ttl(Some(secs))
                .map_err(|e| e.with_operation(Operation::Open))?;
        }
        if let Some(refresh) = self.take_option("refresh_on_read") {
            opts = opts.with_refresh_on_read(parse_bool("refresh_on_read", &refresh)?);
        }
        if let Some(retention) = self.take_parsed("operation_retention", &[], |name, v| {
            parse_positive(name, v).map(std::time::Duration::from_secs)
        })? {
            opts.operation_retention = retention;
        }
        if let Some(max) = self.take_option("max_item_bytes") {
            let bytes = parse_positive("max_item_bytes", &max)?;
            let bytes = usize::try_from(bytes)
                .map_err(|_| config_error(format!("max_item_bytes {bytes} is too large")))?;
            opts = opts.with_max_item_bytes(bytes)?;
        }
        Ok(opts)
    }

    /// Takes an option given under `name` or one of its `aliases` (names users already write,
    /// kept working), parsed with `parse`, which receives the name actually used. Giving two
    /// of them is an error naming both.
    ///
    /// ```
    /// use openai_agents_session::url::{parse_bool, StoreUrl};
    /// let mut url = StoreUrl::parse("memory://?old_name=true").unwrap();
    /// let value = url.take_parsed("new_name", &["old_name"], parse_bool).unwrap();
    /// assert_eq!(value, Some(true));
    /// assert!(url.options.is_empty());
    /// ```
    pub fn take_parsed<T>(
        &mut self,
        name: &str,
        aliases: &[&str],
        parse: impl Fn(&str, &str) -> Result<T>,
    ) -> Result<Option<T>> {
        let mut found: Option<(String, String)> = None;
        for key in std::iter::once(name).chain(aliases.iter().copied()) {
            if let Some(value) = self.take_option(key) {
                if let Some((first, _)) = &found {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        Operation::Open,
                        format!("options {first:?} and {key:?} are the same option; give one"),
                    ));
                }
                found = Some((key.to_owned(), value));
            }
        }
        found.map(|(key, value)| parse(&key, &value)).transpose()
    }

    /// Fails naming the first option no one took.
    pub fn reject_unknown_options(&self) -> Result<()> {
        match self.options.keys().next() {
            Some(key) => Err(config_error(format!(
                "unknown option {key:?} for {} store URL {:?}",
                self.scheme, self.redacted
            ))),
            None => Ok(()),
        }
    }
}

/// Parses a positive whole number (`ttl`, sizes): zero, negatives, decimals and junk are
/// [`ErrorKind::InvalidInput`] naming the option.
pub fn parse_positive(name: &str, value: &str) -> Result<u64> {
    match value.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(Error::new(
            ErrorKind::InvalidInput,
            Operation::Open,
            format!("{name} must be a positive whole number, got {value:?}"),
        )),
    }
}

/// Parses `true`/`false` (also `1`/`0`, `yes`/`no`).
pub fn parse_bool(name: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(Error::new(
            ErrorKind::InvalidInput,
            Operation::Open,
            format!("{name} must be true or false, got {value:?}"),
        )),
    }
}

/// Parses a duration option: seconds (decimals allowed, at most a day), or whole milliseconds
/// when the option's name ends in `_ms` (names users already write, such as
/// `busy_timeout_ms`). One parser for every duration of every backend.
///
/// ```
/// use std::time::Duration;
/// use openai_agents_session::url::parse_duration;
/// assert_eq!(parse_duration("busy_timeout", "2.5").unwrap(), Duration::from_millis(2500));
/// assert_eq!(parse_duration("busy_timeout_ms", "250").unwrap(), Duration::from_millis(250));
/// assert!(parse_duration("ttl", "0").is_err());
/// ```
pub fn parse_duration(name: &str, value: &str) -> Result<Duration> {
    if name.ends_with("_ms") {
        let ms = parse_positive(name, value)?;
        if ms > 86_400_000 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                Operation::Open,
                format!("{name} must be at most a day, got {value:?}"),
            ));
        }
        return Ok(Duration::from_millis(ms));
    }
    parse_seconds(name, value)
}

/// Parses a positive number of seconds (decimals allowed, at most a day).
pub(crate) fn parse_seconds(name: &str, value: &str) -> Result<Duration> {
    match value.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 => {
            Ok(Duration::from_secs_f64(secs))
        }
        _ => Err(Error::new(
            ErrorKind::InvalidInput,
            Operation::Open,
            format!(
                "{name} must be a positive number of seconds (decimals allowed), got {value:?}"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    #[test]
    fn parses_paths_and_options() {
        let u = StoreUrl::parse("sqlite:///tmp/my%20dir/s.db?ttl=60&max_item_bytes=100").unwrap();
        assert_eq!(u.path, "/tmp/my dir/s.db");
        assert_eq!(u.authority, "");
        let u = StoreUrl::parse("sqlite://rel/s.db").unwrap();
        assert_eq!(u.authority, "rel");
        assert_eq!(u.path, "/s.db");
        let u = StoreUrl::parse("memory://shared-1").unwrap();
        assert_eq!(u.authority, "shared-1");
    }

    #[test]
    fn bad_urls_and_options_are_named() {
        let e = StoreUrl::parse("no-scheme").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        let e = StoreUrl::parse("sqlite://a.db?ttl=1&ttl=2").unwrap_err();
        assert!(e.to_string().contains("ttl"), "{e}");
        for bad in [
            "0",
            "-1",
            "1.5",
            "abc",
            "",
            "99999999999999",
            "18446744073709551616",
        ] {
            let mut u = StoreUrl::parse(&format!("memory://?ttl={bad}")).unwrap();
            let e = u.take_store_options().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
            assert!(e.to_string().contains("ttl"));
        }
        let mut u = StoreUrl::parse("memory://?bogus=1").unwrap();
        u.take_store_options().unwrap();
        let e = u.reject_unknown_options().unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn redaction_hides_passwords_everywhere() {
        let u = StoreUrl::parse("redis://user:hunter2@localhost:6379/0?nope=1").unwrap();
        assert!(!format!("{u:?}").contains("hunter2"));
        assert!(!u
            .reject_unknown_options()
            .unwrap_err()
            .to_string()
            .contains("hunter2"));
        assert_eq!(redact("redis://user:p%40ss@h/0"), "redis://user:***@h/0");
        assert_eq!(
            redact("rediss+cluster://u:pw@h1:1,h2:2/"),
            "rediss+cluster://u:***@h1:1,h2:2/"
        );
    }

    #[tokio::test]
    async fn unknown_scheme_is_named() {
        let e = Store::open("ftp://x").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("\"ftp\""), "{e}");
        let e = Store::open("redis://u:topsecret@h:1?nope=1")
            .await
            .unwrap_err();
        assert!(!e.to_string().contains("topsecret"), "{e}");
    }
}
