//! The decoders of the stored formats (`docs/storage/dynamodb.md`): the metadata item and its
//! version gate, sort keys, operation and lease items, where a record's bytes are and the
//! reassembly of split records, and the seed's item. Pure functions over any attribute value
//! type ([`AttrValue`]): they compile without the AWS SDK (feature `fuzzing`), so that the fuzz
//! targets (`fuzz/`) build without it. `layout.rs` implements [`AttrValue`] for the SDK's
//! `AttributeValue` and re-exports everything here.

use std::collections::{HashMap, HashSet};

use crate::error::{Error, ErrorKind, Operation, Result};
use crate::lease::Lease;
use crate::store::SessionInfo;
use crate::time::Timestamp;

/// The layout version written into every session's metadata item (`v`).
pub const LAYOUT_VERSION: i64 = 1;
/// Metadata attributes naming uncommitted batches start with this.
pub(crate) const PENDING_PREFIX: &str = "p_";
/// Metadata attributes naming the generation a pending replace writes start with this.
pub(crate) const REPLACING_PREFIX: &str = "q_";
/// Sort keys of remembered operation ids start with this (they sort above the metadata, so
/// the newest-first walk from `m` down never meets them).
pub(crate) const OP_PREFIX: &str = "o#";

/// What the decoders need of one attribute value: its number text (`N`), its string (`S`),
/// its bytes (`B`); `None` for a value of another type.
pub(crate) trait AttrValue {
    /// The text of an `N` value.
    fn number(&self) -> Option<&str>;
    /// The text of an `S` value.
    fn string(&self) -> Option<&String>;
    /// The bytes of a `B` value.
    fn binary(&self) -> Option<&[u8]>;
}

/// A DynamoDB item: attribute name -> value.
pub(crate) type RowOf<V> = HashMap<String, V>;

/// What the metadata item says, as far as a writer needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetaState {
    Missing,
    /// `stamp`: the oldest `ttl` stamp on the session's records (0: none); `life`: what the
    /// session's remembered operation ids are keyed by ([`Meta::life`]).
    Live {
        gen: i64,
        next: i64,
        updated: i64,
        stamp: i64,
        life: i64,
    },
    Expired {
        gen: i64,
    },
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Meta {
    pub(crate) gen: i64,
    pub(crate) next: i64,
    pub(crate) count: i64,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) expires_at: Option<i64>,
    pub(crate) stamp: Option<i64>,
    pub(crate) pending: HashSet<String>,
    /// When each pending batch started (ms; the value of its `p_<batch>`).
    pub(crate) pending_since: HashMap<String, i64>,
    /// Pending replaces: batch id -> the generation they write (`q_<batch>`).
    pub(crate) replacing: HashMap<String, i64>,
    /// Pending batches older than the stale threshold (filled in by `prune`).
    pub(crate) abandoned: HashSet<String>,
    /// The life of the session: the generation it began with (a new session, a new life after
    /// expiry or a clear, a staged replace's commit). A history transaction that rewrites the
    /// session into a new generation keeps it (`life`, absent: the same as `gen`), so that the
    /// operation ids remembered under it (`o#<life>#<id>`) survive it, and only them.
    pub(crate) life: i64,
    /// The highest generation ever reserved for a rewrite (`rg`): a reservation takes a larger
    /// one, so two rewrites never write into the same generation.
    pub(crate) reserved: Option<i64>,
}

impl Meta {
    pub(crate) fn parse<V: AttrValue>(item: &RowOf<V>) -> Result<Meta> {
        let num = |k: &str| num_attr(item, k);
        if let Some(v) = num("v") {
            if v > LAYOUT_VERSION {
                return Err(Error::new(
                    ErrorKind::UnsupportedFormat,
                    Operation::Open,
                    format!("the session's metadata has layout version {v}; this build reads up to {LAYOUT_VERSION}"),
                ));
            }
        }
        Ok(Meta {
            gen: num("gen").unwrap_or(0),
            next: num("next").unwrap_or(0),
            count: num("count").unwrap_or(0),
            created_at: num("created_at").unwrap_or(0),
            updated_at: num("updated_at").unwrap_or(0),
            expires_at: num("expires_at"),
            stamp: num("stamp"),
            // Pending (uncommitted) batches are top-level attributes `p_<batch id>`.
            pending: item
                .keys()
                .filter_map(|k| k.strip_prefix(PENDING_PREFIX))
                .map(str::to_owned)
                .collect(),
            pending_since: item
                .iter()
                .filter_map(|(k, v)| {
                    let batch = k.strip_prefix(PENDING_PREFIX)?;
                    Some((batch.to_owned(), v.number()?.parse::<i64>().ok()?))
                })
                .collect(),
            replacing: item
                .iter()
                .filter_map(|(k, v)| {
                    let batch = k.strip_prefix(REPLACING_PREFIX)?;
                    Some((batch.to_owned(), v.number()?.parse::<i64>().ok()?))
                })
                .collect(),
            abandoned: HashSet::new(),
            life: num("life").unwrap_or_else(|| num("gen").unwrap_or(0)),
            reserved: num("rg"),
        })
    }

    /// A generation for a rewrite of this session (a staged replace, a history transaction
    /// too large for one request): above the current one, every one reserved before, and now.
    pub(crate) fn next_generation(&self, now: i64) -> i64 {
        let reserved = self.replacing.values().copied().chain(self.reserved);
        reserved.fold(self.gen.max(now), i64::max).saturating_add(1)
    }

    /// Whether an append batch other than a replace is pending that started after `since`
    /// (older ones are abandoned: `prune` would reclaim them).
    pub(crate) fn appends_pending_since(&self, since: i64) -> bool {
        self.pending.iter().any(|b| {
            !self.replacing.contains_key(b) && self.pending_since.get(b).is_none_or(|&t| t > since)
        })
    }

    pub(crate) fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    pub(crate) fn state(&self, now: i64) -> MetaState {
        if self.expired(now) {
            MetaState::Expired { gen: self.gen }
        } else {
            MetaState::Live {
                gen: self.gen,
                next: self.next,
                updated: self.updated_at,
                stamp: self.stamp.unwrap_or(0),
                life: self.life,
            }
        }
    }
}

/// A number attribute, when present and a whole number.
pub(crate) fn num_attr<V: AttrValue>(item: &RowOf<V>, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(V::number)
        .and_then(|n| n.parse::<i64>().ok())
}

/// A string attribute, when present and a string.
pub(crate) fn str_attr<'a, V: AttrValue>(item: &'a RowOf<V>, name: &str) -> Option<&'a String> {
    item.get(name).and_then(V::string)
}

/// The sort key of an item.
pub(crate) fn sk_of<V: AttrValue>(item: &RowOf<V>) -> Option<&str> {
    str_attr(item, "sk").map(String::as_str)
}

/// The batch a record was written by (the commit protocol tags its records with `b`).
pub(crate) fn batch_of<V: AttrValue>(item: &RowOf<V>) -> Option<&str> {
    str_attr(item, "b").map(String::as_str)
}

/// How many parts a split record has (0: not split).
pub(crate) fn parts_of<V: AttrValue>(item: &RowOf<V>) -> usize {
    item.get("parts")
        .and_then(V::number)
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0)
}

/// The sequence of a record's sort key (of a part's: its index).
pub(crate) fn seq_of(sk: &str) -> Option<i64> {
    sk.rsplit('#').next()?.parse().ok()
}

/// The generation of a record's or a part's sort key.
pub(crate) fn gen_of(sk: &str) -> Option<i64> {
    sk.split('#').nth(1).and_then(|g| g.parse::<i64>().ok())
}

/// The life and operation id of an operation item's sort key; `None` for any other item.
pub(crate) fn parse_op_sk(sk: &str) -> Option<(i64, &str)> {
    let rest = sk.strip_prefix(OP_PREFIX)?;
    let (life, id) = rest.split_once('#')?;
    if life.len() != 20 || id.is_empty() {
        return None;
    }
    Some((life.parse().ok()?, id))
}

/// What a session remembers of an operation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Remembered {
    /// Nothing (never used, or forgotten: its retention passed).
    Absent,
    /// Applied before with this digest.
    Same,
    /// Applied before with another transaction.
    Other,
}

/// What the operation item `row` (if any) says about `digest` at `now`. An item whose
/// forget-at time has passed is gone, whatever DynamoDB's TTL has done; one without a
/// readable digest is another transaction's (it never matches).
pub(crate) fn remembered<V: AttrValue>(
    row: Option<&RowOf<V>>,
    digest: &[u8],
    now: i64,
) -> Remembered {
    let Some(row) = row else {
        return Remembered::Absent;
    };
    if num_attr(row, "fa").is_some_and(|at| at <= now) {
        return Remembered::Absent;
    }
    match row.get("d").and_then(V::binary) {
        Some(d) if d == digest => Remembered::Same,
        _ => Remembered::Other,
    }
}

/// The lease an item holds (`lo` owner, `lt` token, `le` end in ms); `None` for anything else
/// (no item, or one missing an attribute). Live or ended: see [`Lease::is_live_at`].
pub(crate) fn lease_of<V: AttrValue>(row: &RowOf<V>) -> Option<Lease> {
    let owner = str_attr(row, "lo")?;
    let token = row.get("lt")?.number()?.parse::<u64>().ok()?;
    let ends = num_attr(row, "le")?;
    Some(Lease::new(
        owner.clone(),
        token,
        Timestamp::from_millis(ends),
    ))
}

/// Where a record item's bytes are.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Body<'a> {
    /// In the item itself (`r`).
    Inline(&'a [u8]),
    /// In `parts` items under `part_prefix(gen, seq)`.
    Split { seq: i64, parts: usize },
    /// Nowhere this build can find: the record is corrupt.
    Missing,
}

pub(crate) fn body_of<V: AttrValue>(item: &RowOf<V>) -> Body<'_> {
    if let Some(b) = item.get("r").and_then(V::binary) {
        return Body::Inline(b);
    }
    match sk_of(item).and_then(seq_of) {
        Some(seq) => Body::Split {
            seq,
            parts: parts_of(item),
        },
        None => Body::Missing,
    }
}

/// A split record's bytes from the part items found under its prefix (in sort-key order), or
/// nothing when a part is missing: that makes the record corrupt, not an error.
pub(crate) fn reassemble<V: AttrValue>(parts: usize, found: &[RowOf<V>]) -> Vec<u8> {
    if found.len() != parts || parts == 0 {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    for part in found {
        if let Some(b) = part.get("r").and_then(V::binary) {
            bytes.extend_from_slice(b);
        }
    }
    bytes
}

/// A number attribute of the seed's items (`ttl`: the seed wrote it as a number, possibly with
/// decimals), truncated to a whole number.
pub(crate) fn seed_num<V: AttrValue>(item: &RowOf<V>, key: &str) -> Option<i64> {
    item.get(key)
        .and_then(V::number)
        .and_then(|n| n.parse::<f64>().ok())
        .map(|f| f as i64)
}

/// The records of a seed item: its `conversation_data`, a JSON array of items, each element's
/// text as one record (nothing when the attribute is missing or not such an array).
pub(crate) fn seed_records<V: AttrValue>(item: &RowOf<V>) -> Vec<Vec<u8>> {
    let text = item
        .get("conversation_data")
        .and_then(V::string)
        .map(String::as_str)
        .unwrap_or_default();
    match serde_json::from_str::<Vec<Box<serde_json::value::RawValue>>>(text) {
        Ok(list) => list
            .into_iter()
            .map(|raw| raw.get().as_bytes().to_vec())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A seed session's info from its item: `updated_at` and `ttl` are epoch seconds (saturated
/// when they do not fit in milliseconds); the seed records no creation time, so its last write
/// stands in for it.
pub(crate) fn seed_info<V: AttrValue>(session_id: &str, item: &RowOf<V>) -> SessionInfo {
    let updated = Timestamp::from_millis(
        seed_num(item, "updated_at")
            .unwrap_or(0)
            .saturating_mul(1000),
    );
    let expires = seed_num(item, "ttl").map(|t| Timestamp::from_millis(t.saturating_mul(1000)));
    SessionInfo::new(
        session_id,
        seed_records(item).len() as u64,
        updated,
        updated,
        expires,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    enum V {
        N(&'static str),
        S(String),
        B(Vec<u8>),
    }

    impl AttrValue for V {
        fn number(&self) -> Option<&str> {
            match self {
                V::N(n) => Some(n),
                _ => None,
            }
        }
        fn string(&self) -> Option<&String> {
            match self {
                V::S(s) => Some(s),
                _ => None,
            }
        }
        fn binary(&self) -> Option<&[u8]> {
            match self {
                V::B(b) => Some(b),
                _ => None,
            }
        }
    }

    fn row(attrs: Vec<(&str, V)>) -> RowOf<V> {
        attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    #[test]
    fn seed_times_out_of_range_saturate_instead_of_overflowing() {
        // `updated_at * 1000` overflowed (a panic in debug builds) for seconds beyond
        // i64::MAX / 1000; a float beyond i64 saturates when truncated, then here.
        for (updated, ttl, want_updated, want_expires) in [
            ("9.3e15", "1e300", i64::MAX, i64::MAX),
            ("-1e300", "-9223372036854776", i64::MIN, i64::MIN),
            (
                "1700000000.5",
                "1700003600",
                1_700_000_000_000,
                1_700_003_600_000,
            ),
        ] {
            let item = row(vec![
                ("updated_at", V::N(updated)),
                ("ttl", V::N(ttl)),
                ("conversation_data", V::S(r#"[{"a":1},2]"#.into())),
            ]);
            let info = seed_info("s", &item);
            assert_eq!(info.updated_at.as_millis(), want_updated, "{updated}");
            assert_eq!(info.created_at, info.updated_at);
            assert_eq!(info.expires_at.map(|t| t.as_millis()), Some(want_expires));
            assert_eq!(info.item_count, 2);
        }
    }

    #[test]
    fn split_records_reassemble_only_when_every_part_is_there() {
        let part = |b: &[u8]| row(vec![("r", V::B(b.to_vec()))]);
        let found = vec![part(b"ab"), part(b"cd")];
        assert_eq!(reassemble(2, &found), b"abcd");
        assert!(reassemble(3, &found).is_empty());
        assert!(reassemble::<V>(0, &[]).is_empty());
        let head = row(vec![
            (
                "sk",
                V::S("i#00000000000000000001#00000000000000000007".into()),
            ),
            ("parts", V::N("2")),
        ]);
        assert_eq!(body_of(&head), Body::Split { seq: 7, parts: 2 });
        assert_eq!(body_of(&row(vec![("parts", V::N("x"))])), Body::Missing);
    }
}
