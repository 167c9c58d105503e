//! The native key layout and the shapes of script replies: pure functions, no I/O.
//!
//! `docs/storage/redis.md` ("Keys") is the operator's view of the same layout; a change here is
//! a change of the stored format and goes there too.

#[cfg(feature = "redis")]
use redis::Value;

use crate::lease::Lease;
use crate::store::SessionInfo;
use crate::time::Timestamp;

/// The default key prefix: the seed's (`openai-agents-session` 0.1.0 for Python).
pub const DEFAULT_PREFIX: &str = "openai_agents_session";
/// The official Agents SDK `RedisSession`'s default key prefix.
pub(crate) const OPENAI_AGENTS_PREFIX: &str = "agents:session";
/// The layout version written into every session's metadata (`v`).
pub const LAYOUT_VERSION: u32 = 1;

/// Where one session's keys are. All of them share the hash tag `{<escaped id>}`.
///
/// The id is escaped (`%` → `%25`, `{` → `%7B`, `}` → `%7D`) so that it can never end the hash
/// tag early: two different ids never share or collide on a key, whatever they contain.
///
/// ```
/// use openai_agents_session::backend::redis::SessionKeys;
/// let keys = SessionKeys::new("openai_agents_session", "user:{42}");
/// assert_eq!(keys.meta, b"openai_agents_session:{user:%7B42%7D}:meta".to_vec());
/// assert_eq!(keys.items, b"openai_agents_session:{user:%7B42%7D}:items".to_vec());
/// assert_eq!(keys.lease, b"openai_agents_session:{user:%7B42%7D}:lease".to_vec());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionKeys {
    /// The metadata hash.
    pub meta: Vec<u8>,
    /// The item list.
    pub items: Vec<u8>,
    /// The lease hash (`owner`, `token`, `expires_at`): outlives the other two, never listed.
    pub lease: Vec<u8>,
    /// Where the seed layout kept this session (`{prefix}:{session_id}`).
    pub seed: Vec<u8>,
    /// The id has the shape of this layout's own keys after the prefix (`{TAG}:...`).
    seed_is_ours: bool,
}

impl SessionKeys {
    /// The keys of `session_id` under `prefix`.
    pub fn new(prefix: &str, session_id: &str) -> Self {
        let tag = escape_id(session_id);
        SessionKeys {
            meta: format!("{prefix}:{{{tag}}}:meta").into_bytes(),
            items: format!("{prefix}:{{{tag}}}:items").into_bytes(),
            lease: format!("{prefix}:{{{tag}}}:lease").into_bytes(),
            seed: format!("{prefix}:{session_id}").into_bytes(),
            seed_is_ours: has_native_key_shape(session_id),
        }
    }

    /// Whether the seed's key may hold this session's seed history, to migrate (standalone)
    /// or to refuse with `LegacyData` (Cluster). Not when the id has the shape of this layout's
    /// own keys after the prefix, as `{chat}:items` has: its seed key is then another session's
    /// item list, metadata, lease or staging list (`{prefix}:{TAG}:...`, TAG brace-free as
    /// every escaped id is), and taking it for seed history would move that session's items
    /// into this one (reading `{chat}:items` emptied `chat`; see docs/testing.md, "Property tests").
    ///
    /// ```
    /// use openai_agents_session::backend::redis::SessionKeys;
    /// assert!(SessionKeys::new("p", "chat").seed_may_hold_history());
    /// assert!(SessionKeys::new("p", "{chat").seed_may_hold_history());
    /// assert!(!SessionKeys::new("p", "{chat}:items").seed_may_hold_history());
    /// ```
    pub fn seed_may_hold_history(&self) -> bool {
        !self.seed_is_ours
    }

    /// The staging list of one staged write: `{prefix}:{tag}:stage:<started ms>-<pid>-<n>`, in
    /// the session's slot so that the commit script may rename it into place. The start time
    /// leads so that `prune` can tell a stale one by its name alone ([`stage_started_ms`]).
    pub(super) fn stage(&self, started_ms: i64, pid: u32, n: u64) -> Vec<u8> {
        let mut key = self.meta.clone();
        key.truncate(key.len() - "meta".len());
        key.extend_from_slice(format!("stage:{started_ms}-{pid}-{n}").as_bytes());
        key
    }
}

/// Whether `{prefix}:{session_id}` has the shape of a key of this layout: `{TAG}:` then
/// anything, with a brace-free TAG.
fn has_native_key_shape(session_id: &str) -> bool {
    session_id
        .strip_prefix('{')
        .and_then(|rest| rest.split_once('}'))
        .is_some_and(|(tag, after)| !tag.contains('{') && after.starts_with(':'))
}

/// Escapes a session id for the hash tag.
pub fn escape_id(session_id: &str) -> String {
    let mut out = String::with_capacity(session_id.len());
    for ch in session_id.chars() {
        match ch {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out
}

/// Reverses [`escape_id`]; `None` for text it cannot have produced.
pub fn unescape_id(tag: &str) -> Option<String> {
    let mut out = String::with_capacity(tag.len());
    let mut rest = tag;
    while let Some(pos) = rest.find(['%', '{', '}']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        let (ch, len) = match tail.get(..3) {
            Some("%25") => ('%', 3),
            Some("%7B") => ('{', 3),
            Some("%7D") => ('}', 3),
            _ => return None,
        };
        out.push(ch);
        rest = &tail[len..];
    }
    out.push_str(rest);
    Some(out)
}

/// Escapes Redis glob metacharacters so that a pattern matches `text` literally.
pub(super) fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// The SCAN pattern of the metadata hashes under `prefix` of sessions whose id starts with
/// `id_prefix` (both literal: the id prefix is escaped as a key would be, then for the glob).
pub(super) fn meta_pattern(prefix: &str, id_prefix: &str) -> String {
    format!(
        "{}:{{{}*}}:meta",
        glob_escape(prefix),
        glob_escape(&escape_id(id_prefix))
    )
}

/// The session id whose metadata hash under `prefix` is `key`; `None` for any other key.
pub(crate) fn session_id_of_meta_key(prefix: &str, key: &[u8]) -> Option<String> {
    let key = std::str::from_utf8(key).ok()?;
    let tag = key
        .strip_prefix(prefix)?
        .strip_prefix(":{")?
        .strip_suffix("}:meta")?;
    unescape_id(tag)
}

/// The SCAN pattern of every staging list under `prefix`.
pub(super) fn stage_pattern(prefix: &str) -> String {
    format!("{}:{{*}}:stage:*", glob_escape(prefix))
}

/// When the staged write of staging list `key` started (ms since the epoch), from its name.
pub(crate) fn stage_started_ms(key: &str) -> Option<i64> {
    let suffix = &key[key.rfind("}:stage:")? + "}:stage:".len()..];
    suffix.split('-').next()?.parse().ok()
}

/// Where a session listing resumes: the master's index, the SCAN cursor on it, and how many
/// ids of the batch at that cursor were already returned (SCAN batches cannot be split).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ScanCursor {
    pub node: usize,
    pub scan: u64,
    pub skip: usize,
}

impl ScanCursor {
    /// Reads `node:scan_cursor:skip`; `None` for anything else.
    pub(crate) fn parse(cursor: &str) -> Option<ScanCursor> {
        let mut parts = cursor.split(':');
        let node = parts.next()?.parse().ok()?;
        let scan = parts.next()?.parse().ok()?;
        let skip = parts.next()?.parse().ok()?;
        parts
            .next()
            .is_none()
            .then_some(ScanCursor { node, scan, skip })
    }
}

impl std::fmt::Display for ScanCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.node, self.scan, self.skip)
    }
}

/// One element of a script reply, as the decoders see it (the backend's `redis::Value`):
/// decoding lives here, on this view, so that it compiles without the driver (fuzz targets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply<'a> {
    /// A bulk string.
    Bulk(&'a [u8]),
    /// A simple (status) string.
    Simple(&'a str),
    /// A RESP3 verbatim string's text.
    Verbatim(&'a str),
    /// An integer.
    Int(i64),
    /// Anything else (nil, arrays, maps, ...).
    Other,
}

/// A reply element the decoders can read.
pub(crate) trait AsReply {
    /// This element as a [`Reply`].
    fn reply(&self) -> Reply<'_>;
}

impl AsReply for Reply<'_> {
    fn reply(&self) -> Reply<'_> {
        *self
    }
}

#[cfg(feature = "redis")]
impl AsReply for Value {
    fn reply(&self) -> Reply<'_> {
        match self {
            Value::BulkString(b) => Reply::Bulk(b),
            Value::SimpleString(s) => Reply::Simple(s),
            Value::VerbatimString { text, .. } => Reply::Verbatim(text),
            Value::Int(n) => Reply::Int(*n),
            _ => Reply::Other,
        }
    }
}

/// A session's info from the INFO script's reply: `OK`, then the metadata fields `created_at`,
/// `updated_at` and `expires_at` (ms since the epoch; `''` without a TTL), then the item count.
pub(crate) fn info_from_reply<V: AsReply>(session_id: &str, reply: &[V]) -> SessionInfo {
    let int = |i: usize| reply.get(i).and_then(value_int);
    let created = Timestamp::from_millis(int(1).unwrap_or(0));
    let updated = Timestamp::from_millis(int(2).unwrap_or(0));
    let expires = int(3).map(Timestamp::from_millis);
    let count = int(4).unwrap_or(0).max(0) as u64;
    SessionInfo::new(session_id, count, created, updated, expires)
        .with_lease(lease_from_fields(reply.get(5..8).unwrap_or(&[])))
}

/// A lease from three reply fields: owner, token, expires_at (ms); `None` when they are not
/// there (no live lease) or not numbers.
pub(crate) fn lease_from_fields<V: AsReply>(fields: &[V]) -> Option<Lease> {
    let [owner, token, expires_at] = fields else {
        return None;
    };
    Some(Lease::new(
        value_string(owner)?,
        u64::try_from(value_int(token)?).ok()?,
        Timestamp::from_millis(value_int(expires_at)?),
    ))
}

/// A script reply's first element: `OK`, `MISSING`, `NEW`, ... (`None` if it is no text).
pub(crate) fn tag<V: AsReply>(reply: &[V]) -> Option<&str> {
    match reply.first()?.reply() {
        Reply::Bulk(b) => std::str::from_utf8(b).ok(),
        Reply::Simple(s) => Some(s),
        _ => None,
    }
}

pub(crate) fn value_string<V: AsReply>(v: &V) -> Option<String> {
    match v.reply() {
        Reply::Bulk(b) => String::from_utf8(b.to_vec()).ok(),
        Reply::Simple(s) | Reply::Verbatim(s) => Some(s.to_owned()),
        Reply::Int(n) => Some(n.to_string()),
        Reply::Other => None,
    }
}

pub(crate) fn value_int<V: AsReply>(v: &V) -> Option<i64> {
    match v.reply() {
        Reply::Int(n) => Some(n),
        _ => value_string(v).and_then(|s| s.parse().ok()),
    }
}

#[cfg(feature = "redis")]
pub(super) fn value_bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

#[cfg(feature = "redis")]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_injective_and_reversible() {
        let ids = [
            "a",
            "a:b",
            "{x}",
            "x}",
            "{",
            "%7B",
            "%",
            "%%",
            "a}:meta",
            "\u{1F600}",
            "*?[]\\",
        ];
        let escaped: std::collections::HashSet<String> = ids.iter().map(|i| escape_id(i)).collect();
        assert_eq!(escaped.len(), ids.len());
        for id in ids {
            let e = escape_id(id);
            assert!(!e.contains('{') && !e.contains('}'), "{e}");
            assert_eq!(unescape_id(&e).as_deref(), Some(id));
        }
        assert_eq!(unescape_id("%zz"), None);
        assert_eq!(unescape_id("a{b"), None);
    }

    #[test]
    fn keys_share_one_hash_tag() {
        let keys = SessionKeys::new("p", "a}b{c");
        let meta = String::from_utf8(keys.meta).unwrap();
        let items = String::from_utf8(keys.items).unwrap();
        let lease = String::from_utf8(keys.lease).unwrap();
        let tag = |k: &str| {
            let open = k.find('{').unwrap();
            let close = open + k[open..].find('}').unwrap();
            k[open + 1..close].to_owned()
        };
        assert_eq!(tag(&meta), tag(&items));
        assert_eq!(tag(&meta), tag(&lease));
        // Neither the listing's nor prune's SCAN pattern matches a lease key.
        for id in ["a", "x}:stage:1-2-3", "y}:meta"] {
            let lease = String::from_utf8(SessionKeys::new("p", id).lease).unwrap();
            assert!(
                !lease.ends_with("}:meta") && !lease.contains("}:stage:"),
                "{lease}"
            );
        }
        assert_eq!(tag(&meta), "a%7Db%7Bc");
    }

    #[test]
    fn seed_keys_shaped_like_ours_are_never_seed_history() {
        // Every key of this layout, taken as a seed id, is recognised as ours.
        for id in ["chat", "{x}", "a%7Bb", "", "}:items{"] {
            let keys = SessionKeys::new("p", id);
            for key in [&keys.meta, &keys.items, &keys.lease, &keys.stage(1, 2, 3)] {
                let as_seed_id = std::str::from_utf8(&key[2..]).unwrap();
                assert!(
                    !SessionKeys::new("p", as_seed_id).seed_may_hold_history(),
                    "{as_seed_id:?}"
                );
            }
        }
        for id in [
            "chat",
            "{chat",
            "{a{b}:items",
            "x{a}:items",
            "{a}items",
            "}:items",
        ] {
            assert!(SessionKeys::new("p", id).seed_may_hold_history(), "{id:?}");
        }
    }

    #[test]
    fn keys_of_a_session() {
        let keys = SessionKeys::new("app", "chat:{7}%");
        assert_eq!(keys.meta, b"app:{chat:%7B7%7D%25}:meta");
        assert_eq!(keys.items, b"app:{chat:%7B7%7D%25}:items");
        assert_eq!(keys.lease, b"app:{chat:%7B7%7D%25}:lease");
        // The seed's key is the raw id: the seed did not escape.
        assert_eq!(keys.seed, b"app:chat:{7}%");
        assert_eq!(
            keys.stage(1_700_000_000_123, 42, 3),
            b"app:{chat:%7B7%7D%25}:stage:1700000000123-42-3"
        );
    }

    #[test]
    fn stage_keys_carry_their_start_time() {
        let keys = SessionKeys::new("p", "x}:stage:9-9-9");
        let key = String::from_utf8(keys.stage(1234, 1, 0)).unwrap();
        assert_eq!(stage_started_ms(&key), Some(1234));
        assert_eq!(stage_started_ms("p:{x}:meta"), None);
        assert_eq!(stage_started_ms("p:{x}:stage:junk-1-0"), None);
        assert_eq!(stage_pattern("a*b"), "a\\*b:{*}:stage:*");
    }

    #[test]
    fn meta_keys_parse_back_to_their_ids() {
        for id in ["a", "a:b", "{x}", "%7B", "*?[]\\", "\u{1F600}"] {
            let keys = SessionKeys::new("pre:fix", id);
            assert_eq!(
                session_id_of_meta_key("pre:fix", &keys.meta).as_deref(),
                Some(id)
            );
            assert_eq!(session_id_of_meta_key("pre:fix", &keys.items), None);
            assert_eq!(session_id_of_meta_key("pre:fix", &keys.lease), None);
            assert_eq!(session_id_of_meta_key("pre", &keys.meta), None);
        }
        assert_eq!(session_id_of_meta_key("p", b"p:{a{b}:meta"), None);
        assert_eq!(session_id_of_meta_key("p", b"\xff"), None);
    }

    #[test]
    fn patterns_match_literally() {
        assert_eq!(meta_pattern("p", ""), "p:{*}:meta");
        assert_eq!(meta_pattern("a[1]", "u{*"), "a\\[1\\]:{u%7B\\**}:meta");
        assert_eq!(glob_escape("*?[]\\x"), "\\*\\?\\[\\]\\\\x");
    }

    #[test]
    fn cursors_round_trip() {
        let parsed = |c: &str| ScanCursor::parse(c).map(|c| (c.node, c.scan, c.skip));
        assert_eq!(parsed("2:12345:7"), Some((2, 12345, 7)));
        assert_eq!(parsed("x"), None);
        assert_eq!(parsed("1:2:3:4"), None);
        for cursor in [
            ScanCursor::default(),
            ScanCursor {
                node: 3,
                scan: u64::MAX,
                skip: 999,
            },
        ] {
            assert_eq!(ScanCursor::parse(&cursor.to_string()), Some(cursor));
        }
        assert_eq!(ScanCursor::default().to_string(), "0:0:0");
        for bad in ["", "1:2", "-1:0:0", "0:-5:0", "0:0:x", "0:0:0:"] {
            assert_eq!(ScanCursor::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn info_reply_fields() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = [
            bulk("OK"),
            bulk("1000"),
            bulk("2000"),
            bulk("3000"),
            Value::Int(5),
        ];
        let info = info_from_reply("s", &reply);
        assert_eq!(info.session_id, "s");
        assert_eq!(info.item_count, 5);
        assert_eq!(info.created_at, Timestamp::from_millis(1000));
        assert_eq!(info.updated_at, Timestamp::from_millis(2000));
        assert_eq!(info.expires_at, Some(Timestamp::from_millis(3000)));
        // Without a TTL the script sends '' for expires_at.
        let reply = [
            bulk("OK"),
            bulk("1000"),
            bulk("1000"),
            bulk(""),
            Value::Int(0),
        ];
        assert_eq!(info_from_reply("s", &reply).expires_at, None);
        assert_eq!(info_from_reply("s", &reply).lease, None);
        // With a live lease, its fields follow.
        let mut leased = reply.to_vec();
        leased.extend([bulk("w-1"), bulk("1764000000000001"), bulk("5000")]);
        assert_eq!(
            info_from_reply("s", &leased).lease,
            Some(Lease::new(
                "w-1",
                1_764_000_000_000_001,
                Timestamp::from_millis(5000)
            ))
        );
        assert_eq!(lease_from_fields(&[bulk("w"), bulk("x"), bulk("1")]), None);
        assert_eq!(lease_from_fields(&[bulk("w")]), None);
    }

    #[test]
    fn reply_values() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        assert_eq!(tag(&[bulk("OK"), Value::Int(1)]), Some("OK"));
        assert_eq!(tag(&[Value::SimpleString("NEW".into())]), Some("NEW"));
        assert_eq!(tag(&[Value::Int(1)]), None);
        assert_eq!(tag::<Value>(&[]), None);
        assert_eq!(value_int(&bulk("-12")), Some(-12));
        assert_eq!(value_int(&Value::Int(7)), Some(7));
        assert_eq!(value_int(&bulk("x")), None);
        assert_eq!(value_int(&Value::Nil), None);
        assert_eq!(value_string(&Value::Int(7)).as_deref(), Some("7"));
        assert_eq!(value_bytes(bulk("ab")), Some(b"ab".to_vec()));
        assert_eq!(value_bytes(Value::Nil), None);
    }
}
