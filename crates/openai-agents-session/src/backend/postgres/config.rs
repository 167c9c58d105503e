//! The options of a PostgreSQL store URL, read in one place: [`PgConfig::from_url`].
//!
//! URLs take libpq's form, `postgres://user:password@host1:port1,host2:port2/database?...`
//! (or `postgresql://`); the libpq environment variables fill what the URL leaves out.
//!
//! | option | environment | default | meaning |
//! |---|---|---|---|
//! | user (userinfo or `user`) | `PGUSER` | `$USER` | role to log in as |
//! | password (userinfo or `password`) | `PGPASSWORD` | none | its password (never shown) |
//! | host(s) (authority or `host`) | `PGHOST` | `localhost` | comma-separated; a path is a Unix socket directory |
//! | port (authority or `port`) | `PGPORT` | 5432 | one, or one per host |
//! | database (path or `dbname`) | `PGDATABASE` | the user name | database |
//! | `sslmode` | `PGSSLMODE` | `prefer` | `disable`, `prefer`, `require`, `verify-ca`, `verify-full` |
//! | `sslrootcert` | `PGSSLROOTCERT` | the system roots | PEM file of the CA to trust (`verify-ca`, `verify-full`) |
//! | `connect_timeout` | `PGCONNECT_TIMEOUT` | 5 s | seconds to establish a connection |
//! | `application_name` | `PGAPPNAME` | `openai-agents-session` | shown in `pg_stat_activity` |
//! | `schema` | | `public` | schema of the tables and functions |
//! | `table_prefix` | | `oas_` | first part of every table and function name |
//! | `response_timeout` | | 10 s | how long to wait for an answer |
//! | `pool_size` | | 16 | connections per store at most |
//! | `stale_stage_after` | | 1 h | age after which `prune` removes a staged write never committed |
//! | `layout` | | `native` | `openai-agents`: the Agents SDK's `SQLAlchemySession` tables, read-only |
//! | `sessions_table`, `messages_table` | | `agent_sessions`, `agent_messages` | table names of `layout=openai-agents` |
//!
//! `.pgpass` and `PGSERVICE` are not read. As in libpq, `prefer` and `require` encrypt without
//! verifying the server's certificate; `verify-ca` checks the chain, `verify-full` the chain
//! and the host name.

use std::time::Duration;

use crate::error::{Error, ErrorKind, Operation, Result};
use crate::url::{parse_duration, parse_positive, percent_decode, StoreUrl};

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_STALE_STAGE_AFTER: Duration = Duration::from_secs(3600);
const DEFAULT_POOL_SIZE: usize = 16;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(name: &str, value: &str) -> Result<SslMode> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => {
                return Err(invalid(format!(
                    "{name}=allow is not supported (use disable or prefer)"
                )))
            }
            other => {
                return Err(invalid(format!(
                "{name} must be disable, prefer, require, verify-ca or verify-full, got {other:?}"
            )))
            }
        })
    }
}

/// Where a store's data is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PgLayout {
    Native,
    OpenAiAgents {
        sessions_table: String,
        messages_table: String,
    },
}

/// One host to try, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Host {
    pub name: String,
    pub port: u16,
}

/// Every option of a PostgreSQL store URL.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PgConfig {
    pub hosts: Vec<Host>,
    pub user: String,
    pub password: Option<String>,
    pub database: String,
    pub sslmode: SslMode,
    pub sslrootcert: Option<String>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub application_name: String,
    pub schema: String,
    pub table_prefix: String,
    pub pool_size: usize,
    pub stale_stage_after: Duration,
    pub layout: PgLayout,
    /// The URL with its passwords hidden.
    pub redacted: String,
}

impl std::fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &self.redacted)
            .field("hosts", &self.hosts)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("database", &self.database)
            .field("sslmode", &self.sslmode)
            .field("schema", &self.schema)
            .field("table_prefix", &self.table_prefix)
            .finish_non_exhaustive()
    }
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidInput, Operation::Open, message)
}

fn config_error(message: String) -> Error {
    Error::new(ErrorKind::Config, Operation::Open, message)
}

/// A name that goes into SQL as a quoted identifier: letters, digits and `_`, not starting
/// with a digit, at most 40 bytes (room for the longest suffix within PostgreSQL's 63).
fn identifier(name: &str, value: &str, allow_empty: bool) -> Result<String> {
    let ok = (allow_empty || !value.is_empty())
        && value.len() <= 40
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !value.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(value.to_owned())
    } else {
        Err(invalid(format!(
            "{name} must be letters, digits and _ (not starting with a digit, at most 40), got {value:?}"
        )))
    }
}

fn parse_port(name: &str, value: &str) -> Result<u16> {
    value
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| invalid(format!("{name} must be a port number, got {value:?}")))
}

impl PgConfig {
    /// Takes the PostgreSQL options out of `url` (the shared ones are already gone), fills the
    /// rest from the environment (`env`, `std::env::var` in production) and rejects unknown
    /// options by name.
    pub(crate) fn from_url(
        url: &mut StoreUrl,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<PgConfig> {
        let env = |name: &str| env(name).filter(|v| !v.is_empty());
        // userinfo@hosts
        let authority = url.authority.clone();
        let (userinfo, hostlist) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority.as_str()),
        };
        let (mut user, mut password) = (None, None);
        if let Some(info) = userinfo {
            let (u, p) = match info.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (info, None),
            };
            if !u.is_empty() {
                user = Some(percent_decode(u)?);
            }
            if let Some(p) = p {
                password = Some(percent_decode(p)?);
            }
        }
        let take = |url: &mut StoreUrl, name: &str| url.take_option(name);
        if let Some(u) = take(url, "user") {
            user = Some(u);
        }
        if let Some(p) = take(url, "password") {
            password = Some(p);
        }
        let user = user
            .or_else(|| env("PGUSER"))
            .or_else(|| env("USER"))
            .ok_or_else(|| {
                config_error(format!(
                    "{:?} names no user (give one, or set PGUSER)",
                    url.redacted
                ))
            })?;
        let password = password.or_else(|| env("PGPASSWORD"));
        // Hosts and ports: the authority's, else the `host`/`port` options, else PGHOST/PGPORT.
        let mut names: Vec<String> = Vec::new();
        let mut ports: Vec<Option<u16>> = Vec::new();
        for part in hostlist.split(',').filter(|p| !p.is_empty()) {
            let part = percent_decode(part)?;
            let (name, port) = if let Some(rest) = part.strip_prefix('[') {
                // [v6]:port
                let (addr, after) = rest
                    .split_once(']')
                    .ok_or_else(|| invalid(format!("bad IPv6 host in {:?}", url.redacted)))?;
                let port = match after.strip_prefix(':') {
                    Some(p) if !p.is_empty() => Some(parse_port("port", p)?),
                    _ => None,
                };
                (addr.to_owned(), port)
            } else {
                match part.rsplit_once(':') {
                    Some((h, p)) if !p.is_empty() => (h.to_owned(), Some(parse_port("port", p)?)),
                    Some((h, _)) => (h.to_owned(), None),
                    None => (part.clone(), None),
                }
            };
            names.push(name);
            ports.push(port);
        }
        let host_option = take(url, "host").or_else(|| {
            if names.is_empty() {
                env("PGHOST")
            } else {
                None
            }
        });
        if names.is_empty() {
            if let Some(h) = host_option {
                names = h.split(',').map(str::to_owned).collect();
                ports = vec![None; names.len()];
            }
        }
        if names.is_empty() {
            names.push("localhost".to_owned());
            ports.push(None);
        }
        let port_option = take(url, "port").or_else(|| env("PGPORT"));
        let default_ports: Vec<u16> = match &port_option {
            Some(list) => list
                .split(',')
                .map(|p| parse_port("port", p))
                .collect::<Result<_>>()?,
            None => vec![5432],
        };
        if default_ports.len() != 1 && default_ports.len() != names.len() {
            return Err(invalid(format!(
                "{} ports given for {} hosts (give one, or one per host)",
                default_ports.len(),
                names.len()
            )));
        }
        let hosts = names
            .into_iter()
            .zip(ports)
            .enumerate()
            .map(|(i, (name, port))| Host {
                name,
                port: port.unwrap_or(default_ports[i.min(default_ports.len() - 1)]),
            })
            .collect();
        let path_db = url.path.trim_start_matches('/').to_owned();
        let database = match take(url, "dbname") {
            Some(db) => db,
            None if !path_db.is_empty() => path_db,
            None => env("PGDATABASE").unwrap_or_else(|| user.clone()),
        };
        let sslmode = match take(url, "sslmode").or_else(|| env("PGSSLMODE")) {
            Some(v) => SslMode::parse("sslmode", &v)?,
            None => SslMode::Prefer,
        };
        let sslrootcert = take(url, "sslrootcert").or_else(|| env("PGSSLROOTCERT"));
        let connect_timeout =
            match take(url, "connect_timeout").or_else(|| env("PGCONNECT_TIMEOUT")) {
                Some(v) => parse_duration("connect_timeout", &v)?,
                None => DEFAULT_CONNECT_TIMEOUT,
            };
        let application_name = take(url, "application_name")
            .or_else(|| env("PGAPPNAME"))
            .unwrap_or_else(|| "openai-agents-session".to_owned());
        let schema = match take(url, "schema") {
            Some(v) => identifier("schema", &v, false)?,
            None => "public".to_owned(),
        };
        let table_prefix = match take(url, "table_prefix") {
            Some(v) => identifier("table_prefix", &v, true)?,
            None => "oas_".to_owned(),
        };
        let response_timeout = url
            .take_parsed("response_timeout", &[], parse_duration)?
            .unwrap_or(DEFAULT_RESPONSE_TIMEOUT);
        let pool_size = match url.take_parsed("pool_size", &[], parse_positive)? {
            Some(n) if n <= 1024 => n as usize,
            Some(n) => return Err(invalid(format!("pool_size must be at most 1024, got {n}"))),
            None => DEFAULT_POOL_SIZE,
        };
        let stale_stage_after = url
            .take_parsed("stale_stage_after", &[], parse_duration)?
            .unwrap_or(DEFAULT_STALE_STAGE_AFTER);
        let layout = match take(url, "layout").as_deref() {
            None | Some("native") => PgLayout::Native,
            Some("openai-agents") => PgLayout::OpenAiAgents {
                sessions_table: match take(url, "sessions_table") {
                    Some(v) => identifier("sessions_table", &v, false)?,
                    None => "agent_sessions".to_owned(),
                },
                messages_table: match take(url, "messages_table") {
                    Some(v) => identifier("messages_table", &v, false)?,
                    None => "agent_messages".to_owned(),
                },
            },
            Some(other) => {
                return Err(invalid(format!(
                    "layout must be native or openai-agents, got {other:?}"
                )))
            }
        };
        url.reject_unknown_options()?;
        Ok(PgConfig {
            hosts,
            user,
            password,
            database,
            sslmode,
            sslrootcert,
            connect_timeout,
            response_timeout,
            application_name,
            schema,
            table_prefix,
            pool_size,
            stale_stage_after,
            layout,
            redacted: url.redacted.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_env(url: &str, env: &[(&str, &str)]) -> Result<PgConfig> {
        let mut url = StoreUrl::parse(url)?;
        url.take_store_options()?;
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        PgConfig::from_url(&mut url, move |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    fn config(url: &str) -> Result<PgConfig> {
        config_env(url, &[("USER", "osuser")])
    }

    #[test]
    fn defaults_follow_libpq() {
        let c = config("postgres://").unwrap();
        assert_eq!(
            c.hosts,
            vec![Host {
                name: "localhost".into(),
                port: 5432
            }]
        );
        assert_eq!(c.user, "osuser");
        assert_eq!(c.database, "osuser");
        assert_eq!(c.password, None);
        assert_eq!(c.sslmode, SslMode::Prefer);
        assert_eq!(c.schema, "public");
        assert_eq!(c.table_prefix, "oas_");
        assert_eq!(c.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(c.layout, PgLayout::Native);
    }

    #[test]
    fn url_parts_and_options() {
        let c = config(
            "postgresql://me:p%40ss@db1:5441,[::1]:5442,db3/app?sslmode=verify-full&sslrootcert=/ca.pem\
             &connect_timeout=2&application_name=x&schema=s1&table_prefix=t_&response_timeout=3&pool_size=4",
        )
        .unwrap();
        assert_eq!(c.user, "me");
        assert_eq!(c.password.as_deref(), Some("p@ss"));
        assert_eq!(
            c.hosts,
            vec![
                Host {
                    name: "db1".into(),
                    port: 5441
                },
                Host {
                    name: "::1".into(),
                    port: 5442
                },
                Host {
                    name: "db3".into(),
                    port: 5432
                },
            ]
        );
        assert_eq!(c.database, "app");
        assert_eq!(c.sslmode, SslMode::VerifyFull);
        assert_eq!(c.sslrootcert.as_deref(), Some("/ca.pem"));
        assert_eq!(c.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.response_timeout, Duration::from_secs(3));
        assert_eq!((c.schema.as_str(), c.table_prefix.as_str()), ("s1", "t_"));
        assert_eq!(c.application_name, "x");
        assert_eq!(c.pool_size, 4);
        assert!(!format!("{c:?}").contains("p@ss"));
    }

    #[test]
    fn environment_fills_what_the_url_leaves_out() {
        let env = [
            ("PGHOST", "envhost"),
            ("PGPORT", "6000"),
            ("PGUSER", "envuser"),
            ("PGPASSWORD", "envpw"),
            ("PGDATABASE", "envdb"),
            ("PGSSLMODE", "require"),
            ("PGSSLROOTCERT", "/env.pem"),
            ("PGAPPNAME", "envapp"),
            ("PGCONNECT_TIMEOUT", "7"),
        ];
        let c = config_env("postgres://", &env).unwrap();
        assert_eq!(
            c.hosts,
            vec![Host {
                name: "envhost".into(),
                port: 6000
            }]
        );
        assert_eq!((c.user.as_str(), c.database.as_str()), ("envuser", "envdb"));
        assert_eq!(c.password.as_deref(), Some("envpw"));
        assert_eq!(c.sslmode, SslMode::Require);
        assert_eq!(c.sslrootcert.as_deref(), Some("/env.pem"));
        assert_eq!(c.application_name, "envapp");
        assert_eq!(c.connect_timeout, Duration::from_secs(7));
        // The URL wins over the environment.
        let c = config_env("postgres://u:pw@h:1/d?sslmode=disable", &env).unwrap();
        assert_eq!(
            c.hosts,
            vec![Host {
                name: "h".into(),
                port: 1
            }]
        );
        assert_eq!((c.user.as_str(), c.database.as_str()), ("u", "d"));
        assert_eq!(c.password.as_deref(), Some("pw"));
        assert_eq!(c.sslmode, SslMode::Disable);
    }

    #[test]
    fn a_password_option_is_accepted_and_redacted() {
        let mut url = StoreUrl::parse("postgres://u@h/d?password=s3cret&nope=1").unwrap();
        assert!(!url.redacted.contains("s3cret"), "{}", url.redacted);
        url.take_store_options().unwrap();
        let err = PgConfig::from_url(&mut url, |_| None).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let c = config("postgres://u@h/d?password=s3cret").unwrap();
        assert_eq!(c.password.as_deref(), Some("s3cret"));
    }

    #[test]
    fn bad_values_and_unknown_options_are_named() {
        for (url, needle) in [
            ("postgres://h/?sslmode=maybe", "sslmode"),
            ("postgres://h/?sslmode=allow", "allow"),
            ("postgres://h:0/", "port"),
            ("postgres://h:x/", "port"),
            ("postgres://h/?schema=a-b", "schema"),
            ("postgres://h/?table_prefix=1x", "table_prefix"),
            ("postgres://h/?connect_timeout=0", "connect_timeout"),
            ("postgres://h/?layout=other", "layout"),
            ("postgres://h/?pool_size=0", "pool_size"),
            ("postgres://h/?frobnicate=1", "frobnicate"),
            ("postgres://a,b,c/?port=1,2", "ports"),
        ] {
            let err = config(url).unwrap_err();
            assert!(err.to_string().contains(needle), "{url}: {err}");
        }
        let c =
            config("postgres://h/?layout=openai-agents&sessions_table=s&messages_table=m").unwrap();
        assert_eq!(
            c.layout,
            PgLayout::OpenAiAgents {
                sessions_table: "s".into(),
                messages_table: "m".into()
            }
        );
    }
}
