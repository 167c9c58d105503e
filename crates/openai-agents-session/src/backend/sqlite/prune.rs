//! Deleting expired sessions and leftovers of interrupted staged writes.

use super::*;

/// Deletes the rows of at most `limit` expired sessions (-1: all), oldest expiry first.
pub(super) fn prune_expired(
    conn: &Connection,
    now: Timestamp,
    limit: i64,
) -> rusqlite::Result<u64> {
    const EXPIRED: &str =
        "SELECT id FROM oas_sessions WHERE expires_at IS NOT NULL AND expires_at <= ?1
                           ORDER BY expires_at, id LIMIT ?2";
    conn.prepare_cached(&format!(
        "DELETE FROM oas_items WHERE session IN ({EXPIRED})"
    ))?
    .execute(params![now.as_millis(), limit])?;
    conn.prepare_cached(&format!(
        "DELETE FROM oas_operations WHERE session IN ({EXPIRED})"
    ))?
    .execute(params![now.as_millis(), limit])?;
    let removed = conn
        .prepare_cached(&format!("DELETE FROM oas_sessions WHERE id IN ({EXPIRED})"))?
        .execute(params![now.as_millis(), limit])?;
    Ok(removed as u64)
}
