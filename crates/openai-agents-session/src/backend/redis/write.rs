//! Writes of the native layout: append (`ADD`), pop (`POP`, and `POP_AT` for a record only
//! the client can decode) and clear (`CLEAR`), each one script call. A fenced write passes its
//! token to the same script (an unfenced one an empty fence), which refuses it with `FENCED`
//! before any side effect unless the token is the session's live lease's.

use crate::codec::Decoded;
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::item::Item;

use super::error::unexpected;
use super::layout::{tag, value_bytes, value_int, SessionKeys};
use super::lease::{fence_arg, fenced_error};
use super::RedisBackend;

/// How many times one `pop_item` may start over (a concurrent writer changed the tail, or a
/// record the script found plausible decoded as corrupt).
const POP_ATTEMPTS: usize = 64;

impl RedisBackend {
    pub(super) async fn append(
        &self,
        op: Operation,
        session_id: &str,
        records: Vec<Vec<u8>>,
        fence: Option<u64>,
    ) -> Result<()> {
        let keys = SessionKeys::new(&self.prefix, session_id);
        let script_keys = self.script_keys(&keys);
        let ttl = self.ttl_ms().to_string();
        let fence_text = fence_arg(fence);
        let mut checked = !(self.check_seed && self.conn.is_cluster());
        loop {
            let mut args: Vec<&[u8]> = vec![
                ttl.as_bytes(),
                if checked { b"1" } else { b"0" },
                fence_text.as_bytes(),
            ];
            args.extend(records.iter().map(Vec::as_slice));
            let reply = self
                .eval(op, &self.scripts.add, &script_keys, &args)
                .await?;
            match tag(&reply) {
                Some("OK") => return Ok(()),
                Some("FENCED") => return Err(fenced_error(op, fence.unwrap_or(0), &reply)),
                Some("NEW") if !checked => {
                    self.check_seed_key(op, &keys, session_id).await?;
                    checked = true;
                }
                _ => return Err(unexpected(op, "add", &reply)),
            }
        }
    }

    pub(super) async fn pop(&self, session_id: &str, fence: Option<u64>) -> Result<Option<Item>> {
        let op = Operation::PopItem;
        let keys = SessionKeys::new(&self.prefix, session_id);
        let script_keys = self.script_keys(&keys);
        let ttl = self.ttl_ms().to_string();
        let fence_text = fence_arg(fence);
        let refused = |reply: &[redis::Value]| fenced_error(op, fence.unwrap_or(0), reply);
        let mut changed = 0u32;
        // Taken at the first record that needs the two steps, then held to the end.
        let mut queued: Option<tokio::sync::MutexGuard<'_, ()>> = None;
        for _ in 0..POP_ATTEMPTS {
            let check_all: &[u8] = if self.codec.requires_encryption() {
                b"1"
            } else {
                b"0"
            };
            let args: [&[u8]; 3] = [ttl.as_bytes(), fence_text.as_bytes(), check_all];
            let reply = self
                .eval(op, &self.scripts.pop, &script_keys, &args)
                .await?;
            match tag(&reply) {
                Some("FENCED") => return Err(refused(&reply)),
                Some("MISSING") => {
                    self.check_seed_key(op, &keys, session_id).await?;
                    return Ok(None);
                }
                Some("EMPTY") => return Ok(None),
                Some("OK") => {
                    let bytes = reply
                        .into_iter()
                        .nth(1)
                        .and_then(value_bytes)
                        .unwrap_or_default();
                    match self.codec.decode(session_id, &bytes) {
                        Decoded::Valid(item) => return Ok(Some(item)),
                        // It looked like an object but is not one: dropped, as corrupt records
                        // are; pop the next.
                        _ => continue,
                    }
                }
                Some("CHECK") if queued.is_none() => {
                    // Pops of this session in this process take the two steps one at a time
                    // (others keep contending only across processes); read the tail again
                    // once it is our turn.
                    queued = Some(self.pop_stripes.of(session_id).lock().await);
                    continue;
                }
                Some("CHECK") => {
                    let mut parts = reply.into_iter().skip(1);
                    let record = parts.next().and_then(value_bytes).unwrap_or_default();
                    let above = parts.next().and_then(|v| value_int(&v)).unwrap_or(0);
                    let len = parts.next().and_then(|v| value_int(&v)).unwrap_or(0);
                    let decoded = self.codec.decode(session_id, &record);
                    if let Some(e) = decoded.read_error(op) {
                        return Err(e);
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
                    let (above, len) = (above.to_string(), len.to_string());
                    let done = self
                        .eval(
                            op,
                            &self.scripts.pop_at,
                            &script_keys,
                            &[
                                ttl.as_bytes(),
                                fence_text.as_bytes(),
                                above.as_bytes(),
                                len.as_bytes(),
                                &record,
                            ],
                        )
                        .await?;
                    match (tag(&done), decoded) {
                        (Some("FENCED"), _) => return Err(refused(&done)),
                        (Some("OK"), Decoded::Valid(item)) => return Ok(Some(item)),
                        (Some("OK"), _) => continue,
                        (Some("CHANGED"), _) => {
                            // Another pop (or an append) changed the tail between the two
                            // steps. Contending pops that all retried at once would keep
                            // invalidating each other: each waits a random while first.
                            changed += 1;
                            contention_pause(changed).await;
                            continue;
                        }
                        _ => return Err(unexpected(op, "pop_at", &done)),
                    }
                }
                _ => return Err(unexpected(op, "pop", &reply)),
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
        let keys = SessionKeys::new(&self.prefix, session_id);
        let fence_text = fence_arg(fence);
        let reply = self
            .eval(
                op,
                &self.scripts.clear,
                &self.script_keys(&keys),
                &[fence_text.as_bytes()],
            )
            .await?;
        match tag(&reply) {
            Some("OK") => Ok(()),
            Some("FENCED") => Err(fenced_error(op, fence.unwrap_or(0), &reply)),
            _ => Err(unexpected(Operation::ClearSession, "clear", &reply)),
        }
    }
}

/// Locks that queue the two-step pops of a session (64 stripes by a hash of its id).
pub(super) struct PopStripes([tokio::sync::Mutex<()>; 64]);

impl Default for PopStripes {
    fn default() -> Self {
        PopStripes(std::array::from_fn(|_| tokio::sync::Mutex::new(())))
    }
}

impl std::fmt::Debug for PopStripes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PopStripes")
    }
}

impl PopStripes {
    fn of(&self, session_id: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        session_id.hash(&mut hasher);
        &self.0[(hasher.finish() % self.0.len() as u64) as usize]
    }
}

/// A random pause before retrying a two-step pop whose tail changed: 50 to 100 us after the
/// first conflict, doubling with each one to at most 6.4 ms ([`crate::store::jittered`], as
/// lease waiters), so that contending pops spread out instead of invalidating each other in
/// lockstep.
async fn contention_pause(conflicts: u32) {
    let ceiling = std::time::Duration::from_micros(100u64 << conflicts.saturating_sub(1).min(6));
    tokio::time::sleep(crate::store::jittered(ceiling)).await;
}
