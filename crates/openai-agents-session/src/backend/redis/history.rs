//! History transactions on Redis: `append_items` is one `APPLY` script call; `replace_suffix`
//! reads the newest records (`TAIL`), compares them in the client as JSON values, then sends
//! `APPLY` with the exact bytes read, which replaces them only if they are still there (else
//! the client reads again). Operation ids live in the session's metadata hash.

use redis::Value;

use crate::error::{Operation, Result};
use crate::history::{self, Applied, PreparedTransaction};

use super::error::unexpected;
use super::layout::{tag, value_bytes, SessionKeys};
use super::lease::{fence_arg, fenced_error};
use super::RedisBackend;

/// How many times a `replace_suffix` reads again after a concurrent change of the tail.
const APPLY_ATTEMPTS: usize = 16;

fn bytes_of(values: &[Value]) -> Vec<Vec<u8>> {
    values.iter().cloned().filter_map(value_bytes).collect()
}

impl RedisBackend {
    pub(super) async fn apply_history(
        &self,
        session_id: &str,
        prepared: &PreparedTransaction,
        fence: Option<u64>,
    ) -> Result<Applied> {
        let op = Operation::ApplyTransaction;
        let keys = SessionKeys::new(&self.prefix, session_id);
        let script_keys = self.script_keys(&keys);
        let records: Vec<Vec<u8>> = prepared
            .transaction
            .items_added()
            .iter()
            .map(|i| self.codec.encode(session_id, i))
            .collect::<Result<_>>()?;
        let k = prepared.transaction.expected_suffix().len();
        let (ttl, k_text) = (self.ttl_ms().to_string(), k.to_string());
        let digest = prepared.digest_hex();
        let retention = prepared.retention.as_millis().to_string();
        let fence_text = fence_arg(fence);
        let mut checked = !(self.check_seed && self.conn.is_cluster());
        for _ in 0..APPLY_ATTEMPTS {
            let mut expected: Vec<Vec<u8>> = Vec::new();
            if k > 0 {
                let args: [&[u8]; 2] = [k_text.as_bytes(), prepared.operation_id.as_bytes()];
                let reply = self
                    .eval(op, &self.scripts.tail, &script_keys, &args)
                    .await?;
                match tag(&reply) {
                    Some("MISSING") => {
                        self.check_seed_key(op, &keys, session_id).await?;
                        return Err(history::suffix_mismatch());
                    }
                    Some("KNOWN") => {
                        let known = reply.get(1).cloned().and_then(value_bytes);
                        return if known.as_deref() == Some(digest.as_bytes()) {
                            Ok(Applied::Before)
                        } else {
                            Err(history::operation_reused(&prepared.operation_id))
                        };
                    }
                    Some("OK") => expected = bytes_of(&reply[1..]),
                    _ => return Err(unexpected(op, "tail", &reply)),
                }
                if !prepared.suffix_matches(
                    &self.codec,
                    session_id,
                    expected.iter().map(Vec::as_slice),
                ) {
                    return Err(history::suffix_mismatch());
                }
            }
            let mut args: Vec<&[u8]> = vec![
                ttl.as_bytes(),
                if checked { b"1" } else { b"0" },
                fence_text.as_bytes(),
                prepared.operation_id.as_bytes(),
                digest.as_bytes(),
                retention.as_bytes(),
                k_text.as_bytes(),
            ];
            args.extend(expected.iter().map(Vec::as_slice));
            args.extend(records.iter().map(Vec::as_slice));
            let reply = self
                .eval(op, &self.scripts.apply, &script_keys, &args)
                .await?;
            match tag(&reply) {
                Some("NOW") => return Ok(Applied::Now),
                Some("FENCED") => return Err(fenced_error(op, fence.unwrap_or(0), &reply)),
                Some("BEFORE") => return Ok(Applied::Before),
                Some("REUSED") => return Err(history::operation_reused(&prepared.operation_id)),
                // The tail moved between the two steps: read it again.
                Some("CHANGED") => {}
                Some("NEW") if !checked => {
                    self.check_seed_key(op, &keys, session_id).await?;
                    checked = true;
                }
                _ => return Err(unexpected(op, "apply", &reply)),
            }
        }
        Err(history::suffix_mismatch())
    }
}
