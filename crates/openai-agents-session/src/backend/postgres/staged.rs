//! Staged writes: parts wait in `@staged` (one `stage` call each, invisible to readers), and
//! the commit moves them into `@items` with one `INSERT ... SELECT` inside one `commit` call,
//! so no part is ever visible alone and the client's memory stays bounded.

use super::error::unexpected;
use super::*;

pub(super) struct PgStaged {
    inner: Arc<Inner>,
    session_id: String,
    replace: bool,
    stage: Option<i64>,
    count: i64,
    done: bool,
}

impl PgStaged {
    pub(super) fn new(inner: Arc<Inner>, session_id: &str, replace: bool) -> PgStaged {
        PgStaged {
            inner,
            session_id: session_id.to_owned(),
            replace,
            stage: None,
            count: 0,
            done: false,
        }
    }
}

fn finished() -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        Operation::AddItems,
        "this staged write was already committed or aborted",
    )
}

impl StagedWrite for PgStaged {
    fn append(&mut self, items: Vec<Item>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if self.done {
                return Err(finished());
            }
            let op = Operation::AddItems;
            let records = self.inner.encode_all(&self.session_id, &items)?;
            drop(items);
            let first = self.count + 1;
            let row = self
                .inner
                .one(
                    op,
                    &self.inner.sql.stage,
                    &[&sid(&self.session_id), &self.stage, &first, &records],
                )
                .await?;
            let stage: i64 = row.try_get(0).map_err(|e| row_error(op, e))?;
            self.stage = Some(stage);
            self.count += records.len() as i64;
            Ok(())
        })
    }

    fn commit(&mut self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            if self.done {
                return Err(finished());
            }
            let op = Operation::AddItems;
            let ttl = self.inner.ttl_ms();
            let row = self
                .inner
                .one(
                    op,
                    &self.inner.sql.commit,
                    &[
                        &sid(&self.session_id),
                        &self.stage,
                        &self.count,
                        &self.replace,
                        &ttl,
                    ],
                )
                .await?;
            let status: Option<String> = row.try_get(0).map_err(|e| row_error(op, e))?;
            match status.as_deref() {
                Some("OK") => {
                    self.done = true;
                    Ok(self.count as u64)
                }
                Some("GONE") => Err(Error::new(
                    ErrorKind::Backend,
                    op,
                    "the staged write was removed (by prune, as abandoned) before its commit; nothing was written",
                )),
                other => Err(unexpected(op, "commit", other.unwrap_or(""))),
            }
        })
    }

    fn abort(&mut self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.done = true;
            let Some(stage) = self.stage.take() else {
                return Ok(());
            };
            self.inner.unstage(stage).await
        })
    }
}

impl Inner {
    async fn unstage(&self, stage: i64) -> Result<()> {
        let op = Operation::AddItems;
        self.stats.record_requests(op, 1);
        self.conn
            .query(op, &self.sql.unstage, &[&stage])
            .await
            .map(|_| ())
    }
}

impl Drop for PgStaged {
    fn drop(&mut self) {
        // Abandoned without `abort`: remove the staged rows now when a runtime is at hand;
        // `prune` reclaims them otherwise.
        let (Some(stage), false) = (self.stage, self.done) else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = Arc::clone(&self.inner);
        handle.spawn(async move {
            if let Err(error) = inner.unstage(stage).await {
                tracing::debug!(%error, "an abandoned staged write stays until prune");
            }
        });
    }
}
