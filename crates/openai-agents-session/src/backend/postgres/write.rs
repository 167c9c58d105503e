//! Writes: append (`add`), pop (`pop`, and `pop_at` for an envelope only the client can
//! decode, or any record under `require_encryption`) and clear (`clear`), each one function call, and history transactions (`apply`).
//! A fenced write passes its token to the same function (an unfenced one NULL), which refuses
//! it with `FENCED` before any change unless the token is the session's live lease's.

use crate::history;

use super::error::unexpected;
use super::*;

/// How many times one `pop_item` may start over (a concurrent writer changed the newest
/// records, or a record the function found plausible decoded as corrupt).
const POP_ATTEMPTS: usize = 64;
/// How many times a `replace_suffix` sends again with the bytes the server holds.
const APPLY_ATTEMPTS: usize = 16;

fn status(op: Operation, row: &tokio_postgres::Row) -> Result<String> {
    row.try_get::<_, Option<String>>(0)
        .map_err(|e| row_error(op, e))?
        .ok_or_else(|| Error::new(ErrorKind::Backend, op, "a function returned no status"))
}

impl Inner {
    pub(super) async fn append(
        &self,
        op: Operation,
        session_id: &str,
        records: &[Vec<u8>],
        fence: Option<u64>,
    ) -> Result<()> {
        let ttl = self.ttl_ms();
        let fence_arg = fence_arg(fence);
        let row = self
            .one(
                op,
                &self.sql.add,
                &[&sid(session_id), &records, &ttl, &fence_arg],
            )
            .await?;
        match status(op, &row)?.as_str() {
            "OK" => Ok(()),
            "FENCED" => Err(fenced_from(op, fence.unwrap_or(0), &row, 1)),
            other => Err(unexpected(op, "add", other)),
        }
    }

    pub(super) async fn pop(&self, session_id: &str, fence: Option<u64>) -> Result<Option<Item>> {
        let op = Operation::PopItem;
        let ttl = self.ttl_ms();
        let fence_arg = fence_arg(fence);
        // Under require_encryption plain records are unreadable: the function hands every one
        // to the codec (a 'CHECK') instead of removing it as a plausible item.
        let check_all = self.codec.requires_encryption();
        for _ in 0..POP_ATTEMPTS {
            let row = self
                .one(
                    op,
                    &self.sql.pop,
                    &[&sid(session_id), &ttl, &fence_arg, &check_all],
                )
                .await?;
            match status(op, &row)?.as_str() {
                "FENCED" => return Err(fenced_from(op, fence.unwrap_or(0), &row, 4)),
                "EMPTY" => return Ok(None),
                "OK" => {
                    let record: Vec<u8> = row
                        .try_get::<_, Option<Vec<u8>>>(1)
                        .map_err(|e| row_error(op, e))?
                        .unwrap_or_default();
                    match self.codec.decode(session_id, &record) {
                        Decoded::KeyMissing(reason) => {
                            return Err(Decoded::KeyMissing(reason)
                                .read_error(op)
                                .unwrap_or_else(|| unexpected(op, "pop", "KEY")))
                        }
                        Decoded::Valid(item) => return Ok(Some(item)),
                        // It looked like an object but is not one: dropped, as corrupt
                        // records are; pop the next.
                        _ => continue,
                    }
                }
                "CHECK" => {
                    let record: Vec<u8> = row
                        .try_get::<_, Option<Vec<u8>>>(1)
                        .map_err(|e| row_error(op, e))?
                        .unwrap_or_default();
                    let at: Option<i64> = row.try_get(2).map_err(|e| row_error(op, e))?;
                    let top: Option<i64> = row.try_get(3).map_err(|e| row_error(op, e))?;
                    let decoded = self.codec.decode(session_id, &record);
                    if let Some(err) = decoded.read_error(op) {
                        return Err(err);
                    }
                    if let Decoded::Unreadable(reason) = &decoded {
                        return Err(Error::new(
                            ErrorKind::Unreadable,
                            op,
                            format!(
                                "the newest record is unreadable: {reason}; nothing was removed"
                            ),
                        ));
                    }
                    let done = self
                        .one(
                            op,
                            &self.sql.pop_at,
                            &[&sid(session_id), &ttl, &fence_arg, &at, &top, &record],
                        )
                        .await?;
                    match (status(op, &done)?.as_str(), decoded) {
                        ("FENCED", _) => return Err(fenced_from(op, fence.unwrap_or(0), &done, 1)),
                        ("OK", Decoded::Valid(item)) => return Ok(Some(item)),
                        ("OK" | "CHANGED", _) => continue,
                        (other, _) => return Err(unexpected(op, "pop_at", other)),
                    }
                }
                other => return Err(unexpected(op, "pop", other)),
            }
        }
        Err(Error::new(
            ErrorKind::Backend,
            op,
            format!("the session kept changing under pop_item ({POP_ATTEMPTS} attempts)"),
        ))
    }

    pub(super) async fn clear(&self, session_id: &str, fence: Option<u64>) -> Result<()> {
        let op = Operation::ClearSession;
        let fence_arg = fence_arg(fence);
        let row = self
            .one(op, &self.sql.clear, &[&sid(session_id), &fence_arg])
            .await?;
        match status(op, &row)?.as_str() {
            "OK" => Ok(()),
            "FENCED" => Err(fenced_from(op, fence.unwrap_or(0), &row, 1)),
            other => Err(unexpected(op, "clear", other)),
        }
    }

    /// A history transaction in one `apply` call: the expected suffix is sent as the records
    /// this build writes for it, which is what the server holds unless it was written by
    /// another build (or encrypted); then the server answers with the records it holds, the
    /// client compares them as JSON, and sends again with those exact bytes.
    pub(super) async fn apply_history(
        &self,
        session_id: &str,
        prepared: &PreparedTransaction,
        fence: Option<u64>,
    ) -> Result<Applied> {
        let op = Operation::ApplyTransaction;
        let records = self.encode_all(session_id, prepared.transaction.items_added())?;
        let mut expected = self.encode_all(session_id, prepared.transaction.expected_suffix())?;
        let k = expected.len() as i64;
        let ttl = self.ttl_ms();
        let fence_arg = fence_arg(fence);
        let retention = i64::try_from(prepared.retention.as_millis()).unwrap_or(i64::MAX);
        let digest: &[u8] = &prepared.digest;
        for _ in 0..APPLY_ATTEMPTS {
            let row = self
                .one(
                    op,
                    &self.sql.apply,
                    &[
                        &sid(session_id),
                        &ttl,
                        &fence_arg,
                        &prepared.operation_id.as_bytes(),
                        &digest,
                        &retention,
                        &k,
                        &expected,
                        &records,
                    ],
                )
                .await?;
            match status(op, &row)?.as_str() {
                "NOW" => return Ok(Applied::Now),
                "BEFORE" => return Ok(Applied::Before),
                "REUSED" => return Err(history::operation_reused(&prepared.operation_id)),
                "FENCED" => return Err(fenced_from(op, fence.unwrap_or(0), &row, 2)),
                "TAIL" => {
                    let tail: Vec<Vec<u8>> = row
                        .try_get::<_, Option<Vec<Vec<u8>>>>(1)
                        .map_err(|e| row_error(op, e))?
                        .unwrap_or_default();
                    if tail == expected
                        || !prepared.suffix_matches(
                            &self.codec,
                            session_id,
                            tail.iter().map(Vec::as_slice),
                        )
                    {
                        return Err(history::suffix_mismatch());
                    }
                    expected = tail;
                }
                other => return Err(unexpected(op, "apply", other)),
            }
        }
        Err(history::suffix_mismatch())
    }
}
