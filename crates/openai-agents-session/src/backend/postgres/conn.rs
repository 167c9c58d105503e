//! The connection pool and the one way a statement is sent.
//!
//! deadpool-postgres keeps up to `pool_size` connections; checking one out runs no query
//! (`RecyclingMethod::Fast`: only "is it closed?"), and each connection caches its prepared
//! statements, so after warm-up every call is one Bind/Execute/Sync exchange: one round trip.
//!
//! The retry rule (README, "Retries"): a request goes to a fresh connection when the one at
//! hand is already known to be closed before anything is written to it; a read is sent once
//! more after its connection failed; a write whose connection failed after it was sent, or
//! that got no answer within `response_timeout`, is `OutcomeUnknown` (never resent). Server
//! errors are answers: the statement, a transaction of its own, did not apply.

use std::time::Duration;

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::error::{Error, ErrorKind, FailureCause, Operation, Result};

use super::config::{PgConfig, SslMode};
use super::error::{classify, map_connect, map_pg, Failure};

/// Attempts of one call: fresh connections after closed ones, one more for a lost read, and
/// a few for statements the server rolled back (a deadlock or serialization failure).
const ATTEMPTS: usize = 4;

/// A server error that ended the connection itself.
fn terminated(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code().is_some_and(|c| {
        *c == SqlState::ADMIN_SHUTDOWN
            || *c == SqlState::CRASH_SHUTDOWN
            || *c == SqlState::IDLE_SESSION_TIMEOUT
    })
}

/// The pool and the timeouts of one store.
pub(super) struct Conn {
    pool: Pool,
    response_timeout: Duration,
    /// `host:port,...`, for messages (no credentials).
    pub target: String,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("target", &self.target)
            .field("status", &self.pool.status())
            .finish()
    }
}

impl Conn {
    pub(super) fn new(config: &PgConfig) -> Result<Conn> {
        let mut pg = tokio_postgres::Config::new();
        pg.user(&config.user)
            .dbname(&config.database)
            .application_name(&config.application_name)
            .connect_timeout(config.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        if let Some(password) = &config.password {
            pg.password(password);
        }
        for host in &config.hosts {
            if host.name.starts_with('/') {
                pg.host_path(&host.name);
            } else {
                pg.host(&host.name);
            }
            pg.port(host.port);
        }
        pg.ssl_mode(match config.sslmode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        let ca = match &config.sslrootcert {
            Some(path) if config.sslmode != SslMode::Disable => {
                Some(std::fs::read(path).map_err(|e| {
                    Error::new(
                        ErrorKind::Config,
                        Operation::Open,
                        format!("cannot read sslrootcert {path:?}: {e}"),
                    )
                })?)
            }
            _ => None,
        };
        let tls = super::tls::client_config(config.sslmode, ca.as_deref())
            .map_err(|e| Error::new(ErrorKind::Config, Operation::Open, e))?;
        let manager = Manager::from_config(
            pg,
            tokio_postgres_rustls::MakeRustlsConnect::new(tls),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(
                config.connect_timeout * config.hosts.len() as u32 + Duration::from_secs(1),
            ))
            .wait_timeout(Some(config.response_timeout))
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    Operation::Open,
                    format!("cannot build the connection pool: {e}"),
                )
            })?;
        let target = config
            .hosts
            .iter()
            .map(|h| format!("{}:{}", h.name, h.port))
            .collect::<Vec<_>>()
            .join(",");
        Ok(Conn {
            pool,
            response_timeout: config.response_timeout,
            target,
        })
    }

    /// A connection from the pool (a new one when none is idle): nothing is sent on failure.
    pub(super) async fn client(&self, op: Operation) -> Result<Object> {
        match self.pool.get().await {
            Ok(client) => Ok(client),
            Err(PoolError::Backend(e)) => Err(map_connect(op, &e, &self.target)),
            Err(PoolError::Timeout(deadpool_postgres::TimeoutType::Wait)) => Err(Error::new(
                ErrorKind::Timeout,
                op,
                "every connection of the pool stayed busy (raise pool_size); nothing was sent",
            )
            .with_cause(FailureCause::Timeout)),
            Err(PoolError::Timeout(_)) => Err(Error::new(
                ErrorKind::Connection,
                op,
                format!(
                    "cannot connect to PostgreSQL at {} within connect_timeout; nothing was sent",
                    self.target
                ),
            )
            .with_cause(FailureCause::Timeout)),
            Err(e) => Err(Error::new(
                ErrorKind::Backend,
                op,
                format!("the connection pool failed: {e}"),
            )),
        }
    }

    /// Sends one prepared statement and returns its one row, under the retry rule above.
    pub(super) async fn query_one(
        &self,
        op: Operation,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row> {
        let mut rows = self.query(op, sql, params).await?;
        if rows.len() != 1 {
            return Err(Error::new(
                ErrorKind::Backend,
                op,
                format!(
                    "PostgreSQL returned {} rows where one was expected",
                    rows.len()
                ),
            ));
        }
        Ok(rows.remove(0))
    }

    /// Sends one prepared statement and returns its rows, under the retry rule above.
    pub(super) async fn query(
        &self,
        op: Operation,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        let mut lost_read = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let client = self.client(op).await?;
            if client.is_closed() {
                // Known closed before anything was written: safe to send elsewhere.
                drop(Object::take(client));
                if attempt < ATTEMPTS {
                    continue;
                }
                return Err(Error::new(
                    ErrorKind::Connection,
                    op,
                    "every connection to PostgreSQL closed; nothing was sent",
                ));
            }
            // Preparing applies nothing, so a failure here is retried like a closed connection.
            let statement =
                match tokio::time::timeout(self.response_timeout, client.prepare_cached(sql)).await
                {
                    Ok(Ok(statement)) => statement,
                    Ok(Err(e)) if classify(&e) == Failure::Lost && attempt < ATTEMPTS => {
                        drop(Object::take(client));
                        continue;
                    }
                    Ok(Err(e)) => {
                        return Err(match classify(&e) {
                            Failure::Refused => map_pg(op, e),
                            Failure::Lost => Error::new(
                                ErrorKind::Connection,
                                op,
                                "the connection to PostgreSQL failed; nothing was applied",
                            )
                            .with_source(e),
                        })
                    }
                    Err(_) => {
                        drop(Object::take(client));
                        return Err(self.timed_out(op, false));
                    }
                };
            match tokio::time::timeout(self.response_timeout, client.query(&statement, params))
                .await
            {
                Ok(Ok(rows)) => return Ok(rows),
                Ok(Err(e)) => match classify(&e) {
                    // The server ended this connection while the request was on it (an
                    // administrator's pg_terminate_backend, a shutdown): under the rule, a
                    // write in flight is of unknown outcome; a read is sent once more.
                    Failure::Refused if terminated(&e) => {
                        drop(Object::take(client));
                        if !op.is_write() && !lost_read {
                            lost_read = true;
                            continue;
                        }
                        return Err(if op.is_write() {
                            Error::new(
                                ErrorKind::OutcomeUnknown,
                                op,
                                "PostgreSQL ended the connection during the write; it may or may not have been applied",
                            )
                            .with_cause(FailureCause::Connection)
                            .with_source(e)
                        } else {
                            map_pg(op, e)
                        });
                    }
                    Failure::Refused => {
                        let transient = e.code().is_some_and(|c| {
                            *c == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
                                || *c == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
                        });
                        if e.code()
                            == Some(&tokio_postgres::error::SqlState::INVALID_SQL_STATEMENT_NAME)
                            || e.code()
                                == Some(&tokio_postgres::error::SqlState::FEATURE_NOT_SUPPORTED)
                        {
                            // A cached plan went stale (the schema was reinstalled): prepare again.
                            client.statement_cache.clear();
                            if attempt < ATTEMPTS {
                                continue;
                            }
                        }
                        if transient && attempt < ATTEMPTS {
                            tracing::debug!(%op, attempt, "PostgreSQL rolled the call back, retrying");
                            continue;
                        }
                        return Err(map_pg(op, e));
                    }
                    Failure::Lost => {
                        drop(Object::take(client));
                        if !op.is_write() && !lost_read {
                            lost_read = true;
                            continue;
                        }
                        return Err(map_pg(op, e));
                    }
                },
                Err(_) => {
                    // The server may still be running it: this connection's state is unknown.
                    drop(Object::take(client));
                    return Err(self.timed_out(op, op.is_write()));
                }
            }
        }
    }

    fn timed_out(&self, op: Operation, sent_write: bool) -> Error {
        let secs = self.response_timeout.as_secs_f64();
        if sent_write {
            Error::new(
                ErrorKind::OutcomeUnknown,
                op,
                format!("PostgreSQL did not answer within response_timeout ({secs} s); the write may or may not have been applied"),
            )
            .with_cause(FailureCause::Timeout)
        } else {
            Error::new(
                ErrorKind::Timeout,
                op,
                format!("PostgreSQL did not answer within response_timeout ({secs} s)"),
            )
            .with_cause(FailureCause::Timeout)
        }
    }

    /// Runs `work` on one connection (schema installation at open).
    pub(super) async fn with_client<T>(
        &self,
        op: Operation,
        work: impl for<'c> FnOnce(
            &'c mut Object,
        ) -> crate::store::BoxFuture<
            'c,
            std::result::Result<T, tokio_postgres::Error>,
        >,
    ) -> Result<T> {
        let mut client = self.client(op).await?;
        match tokio::time::timeout(self.response_timeout * 3, work(&mut client)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(map_pg(op, e)),
            Err(_) => {
                drop(Object::take(client));
                Err(self.timed_out(op, false))
            }
        }
    }
}
