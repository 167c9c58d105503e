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
    // Lease rows a day past the end of their lease: from then on the clock alone keeps the
    // session's tokens growing (see `crate::lease`).
    let retention = i64::try_from(crate::lease::LEASE_RECORD_RETENTION.as_millis()).unwrap_or(0);
    conn.prepare_cached(
        "DELETE FROM oas_leases WHERE session_id IN
           (SELECT session_id FROM oas_leases WHERE expires_at <= ?1 LIMIT ?2)",
    )?
    .execute(params![now.as_millis() - retention, limit])?;
    Ok(removed as u64)
}

/// Copies the WAL into the database file and truncates it, so that the frames of deleted
/// records (plaintext, or records under a retired key) leave the WAL; with `secure_delete` on,
/// their pages in the file are zeroed. Best effort: a reader holding an old snapshot makes it
/// partial, and the next one completes it.
pub(super) fn checkpoint(conn: &Connection) {
    match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(0) => {}
        Ok(_) => tracing::debug!("WAL checkpoint was partial: a reader holds an old snapshot"),
        Err(e) => tracing::debug!(error = %e, "WAL checkpoint failed"),
    }
}
