//! The SQLite layout: the schema, the session row and the record column, and the key range of a
//! literal prefix. Pure helpers; `docs/storage/sqlite.md` has the statements of each operation.

use super::*;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS oas_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT OR IGNORE INTO oas_meta (key, value) VALUES ('layout_version', '1');
CREATE TABLE IF NOT EXISTS oas_sessions (
    id         INTEGER PRIMARY KEY,
    session_id TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER,
    item_count INTEGER NOT NULL,
    next_seq   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS oas_sessions_expires_at
    ON oas_sessions (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS oas_sessions_updated_at
    ON oas_sessions (updated_at, session_id);
CREATE TABLE IF NOT EXISTS oas_items (
    session INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    record  BLOB    NOT NULL,
    PRIMARY KEY (session, seq)
);
CREATE TABLE IF NOT EXISTS oas_stages (
    id         INTEGER PRIMARY KEY,
    session_id TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS oas_staged (
    stage  INTEGER NOT NULL,
    seq    INTEGER NOT NULL,
    record BLOB    NOT NULL,
    PRIMARY KEY (stage, seq)
);
CREATE TABLE IF NOT EXISTS oas_leases (
    session_id TEXT    PRIMARY KEY,
    owner      TEXT    NOT NULL,
    token      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS oas_leases_expires_at ON oas_leases (expires_at);
CREATE TABLE IF NOT EXISTS oas_operations (
    session    INTEGER NOT NULL,
    op_id      TEXT    NOT NULL,
    digest     BLOB    NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (session, op_id)
) WITHOUT ROWID;
";

pub(super) fn record_bytes<'r>(value: ValueRef<'r>) -> &'r [u8] {
    match value {
        ValueRef::Blob(b) | ValueRef::Text(b) => b,
        _ => &[],
    }
}

pub(super) struct SessionRow {
    pub key: i64,
    pub expires_at: Option<Timestamp>,
    pub updated_at: Timestamp,
    pub next_seq: i64,
    /// The records the session holds (valid or not).
    pub item_count: i64,
}

pub(super) fn find_session(
    conn: &Connection,
    session_id: &str,
) -> rusqlite::Result<Option<SessionRow>> {
    conn.prepare_cached(
        "SELECT id, expires_at, updated_at, next_seq, item_count FROM oas_sessions WHERE session_id = ?1",
    )?
    .query_row([session_id], |row| {
        Ok(SessionRow {
            key: row.get(0)?,
            expires_at: row.get::<_, Option<i64>>(1)?.map(Timestamp::from_millis),
            updated_at: Timestamp::from_millis(row.get(2)?),
            next_seq: row.get(3)?,
            item_count: row.get(4)?,
        })
    })
    .optional()
}

/// The smallest string greater than every string starting with `prefix` (UTF-8 byte order is
/// code point order, so it is the prefix with its last character replaced by the next one);
/// `None` for the empty prefix or one ending in U+10FFFF.
pub(super) fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last as u32 {
            0xD7FF => Some('\u{E000}'),
            n => char::from_u32(n + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::prefix_successor;

    #[test]
    fn prefix_successor_bounds_every_extension() {
        assert_eq!(prefix_successor(""), None);
        assert_eq!(prefix_successor("a:").as_deref(), Some("a;"));
        assert_eq!(prefix_successor("x\u{D7FF}").as_deref(), Some("x\u{E000}"));
        assert_eq!(prefix_successor("b\u{10FFFF}").as_deref(), Some("c"));
        assert_eq!(prefix_successor("\u{10FFFF}"), None);
        for p in ["a", "user-1:", "\u{e9}", "z\u{1F600}"] {
            let upper = prefix_successor(p).unwrap();
            for ext in ["", "\u{10FFFF}\u{10FFFF}", "zzz", "\u{0}"] {
                let s = format!("{p}{ext}");
                assert!(s.as_str() < upper.as_str(), "{s:?} < {upper:?}");
            }
        }
    }
}
