//! The storage layout (`docs/storage/dynamodb.md`): sort keys, attribute names, the metadata
//! item and its version gate, expression maps, and records compressed then split into parts.
//! Pure functions only: everything that talks to DynamoDB lives in the other files.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::AttributeValue;

use crate::codec::{Decoded, RecordCodec, ENVELOPE_MAGIC, FLAG_COMPRESSED};
use crate::lease;
use crate::time::Timestamp;

pub use super::records::LAYOUT_VERSION;
pub(super) use super::records::{
    batch_of, body_of, gen_of, lease_of, num_attr, parse_op_sk, parts_of, reassemble, remembered,
    seed_info, seed_num, seed_records, seq_of, sk_of, str_attr, AttrValue, Body, Meta, MetaState,
    Remembered, RowOf, OP_PREFIX, PENDING_PREFIX, REPLACING_PREFIX,
};

/// The name of the sparse global secondary index over metadata items (for listing).
pub const SESSIONS_INDEX: &str = "sessions";
/// The largest record stored in one DynamoDB item; larger ones are compressed, then split.
pub const PART_BYTES: usize = 350_000;
/// The sort key of a session's metadata item.
pub(super) const META_SK: &str = "m";
/// The sort key of a session's lease item: just above the metadata (`m` is its prefix, and no
/// other key starts with `m`), so the newest-first walk from `m` down never meets it, a walk
/// from here down meets it first and then the metadata, and `sk BETWEEN m AND m#lease` reads
/// the two together. It carries no `lk`, so the `sessions` index never lists it.
pub(super) const LEASE_SK: &str = "m#lease";
/// The condition a fenced write puts on the lease item: its token is the writer's and the
/// lease has not ended (`:now`, the writer's clock in ms).
pub(super) const FENCE: &str = "#lt = :tok AND #le > :now";

/// A DynamoDB item: attribute name -> value.
pub(super) type Row = RowOf<AttributeValue>;

impl AttrValue for AttributeValue {
    fn number(&self) -> Option<&str> {
        self.as_n().ok().map(String::as_str)
    }
    fn string(&self) -> Option<&String> {
        self.as_s().ok()
    }
    fn binary(&self) -> Option<&[u8]> {
        self.as_b().ok().map(|b| b.as_ref())
    }
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn item_sk(gen: i64, seq: i64) -> String {
    format!("i#{gen:020}#{seq:020}")
}

pub(super) fn item_prefix(gen: i64) -> String {
    format!("i#{gen:020}#")
}

/// The prefix of every part of every split record of a generation.
pub(super) fn gen_part_prefix(gen: i64) -> String {
    format!("c#{gen:020}#")
}

pub(super) fn part_prefix(gen: i64, seq: i64) -> String {
    format!("c#{gen:020}#{seq:020}#")
}

pub(super) fn part_sk(gen: i64, seq: i64, k: usize) -> String {
    format!("c#{gen:020}#{seq:020}#{k:05}")
}

/// The metadata attribute marking `batch` pending.
pub(super) fn pending_attr(batch: &str) -> String {
    format!("{PENDING_PREFIX}{batch}")
}

/// The metadata attribute naming the generation a pending replace `batch` writes.
pub(super) fn replacing_attr(batch: &str) -> String {
    format!("{REPLACING_PREFIX}{batch}")
}

/// The primary key of an item of the session.
pub(super) fn item_key(session_id: &str, sk: impl Into<String>) -> Row {
    HashMap::from([("pk".to_owned(), s(session_id)), ("sk".to_owned(), s(sk))])
}

pub(super) fn meta_key(session_id: &str) -> Row {
    item_key(session_id, META_SK)
}

/// The key of a session's metadata item in the `sessions` index (a listing cursor).
pub(super) fn index_key(session_id: &str) -> Row {
    HashMap::from([
        ("lk".to_owned(), s("s")),
        ("sid".to_owned(), s(session_id)),
        ("pk".to_owned(), s(session_id)),
        ("sk".to_owned(), s(META_SK)),
    ])
}

/// The sort-key prefix of every operation id remembered in a life of a session.
pub(super) fn op_prefix(life: i64) -> String {
    format!("{OP_PREFIX}{life:020}#")
}

/// The sort key of an operation id remembered in a life of a session: `o#<life:020>#<id>`,
/// the id as given (any UTF-8, at most 256 bytes: the key stays far below DynamoDB's 1,024).
pub(super) fn op_sk(life: i64, operation_id: &str) -> String {
    format!("{}{operation_id}", op_prefix(life))
}

/// The `ttl` (epoch seconds) of an operation item remembered until `forget_at` (ms): the
/// second it is forgotten, rounded up, so DynamoDB's TTL never takes it early.
pub(super) fn op_ttl(forget_at: i64) -> i64 {
    forget_at.div_euclid(1000) + i64::from(forget_at.rem_euclid(1000) != 0)
}

/// The item remembering an operation id: the transaction's digest (`d`), when it is
/// forgotten (`fa`, ms since the epoch; reads treat it as gone from then on) and the `ttl`
/// that lets DynamoDB delete it eventually.
pub(super) fn op_item(
    session_id: &str,
    life: i64,
    operation_id: &str,
    digest: &[u8],
    forget_at: i64,
) -> Row {
    let mut item = item_key(session_id, op_sk(life, operation_id));
    item.insert("d".to_owned(), AttributeValue::B(digest.to_vec().into()));
    item.insert("fa".to_owned(), n(forget_at));
    item.insert("ttl".to_owned(), n(op_ttl(forget_at)));
    item
}

/// The condition under which an operation item may be written: no id of that name is
/// remembered (none stored, or one whose retention has passed). `:now` is the writer's clock.
pub(super) const OP_FREE: &str = "attribute_not_exists(#pk) OR #fa <= :now";

/// The primary key of a session's lease item.
pub(super) fn lease_key(session_id: &str) -> Row {
    item_key(session_id, LEASE_SK)
}

/// A token as the lease item stores it (`N`: any u64 fits DynamoDB's 38 digits).
pub(super) fn token_value(token: u64) -> AttributeValue {
    AttributeValue::N(token.to_string())
}

/// The `ttl` (epoch seconds) of a lease item whose lease ends at `ends` (ms): a day later
/// ([`crate::lease::LEASE_RECORD_RETENTION`]), rounded up. Until then the item keeps the
/// session's newest token; afterwards DynamoDB (or `prune`) may delete it.
pub(super) fn lease_ttl(ends: i64) -> i64 {
    op_ttl(lease::record_kept_until(Timestamp::from_millis(ends)).as_millis())
}

/// The metadata item of a new session (or of a new life after expiry). `expiry`: the
/// session's `expires_at` (ms) and its records' `ttl` stamp (s), when it has a TTL.
pub(super) fn meta_item(
    session_id: &str,
    gen: i64,
    next: i64,
    count: i64,
    now: i64,
    expiry: Option<(i64, i64)>,
    pending: Option<&str>,
) -> Row {
    let mut item = meta_key(session_id);
    for (k, v) in [
        ("v", n(LAYOUT_VERSION)),
        ("gen", n(gen)),
        ("next", n(next)),
        ("count", n(count)),
        ("created_at", n(now)),
        ("updated_at", n(now)),
        ("lk", s("s")),
        ("sid", s(session_id)),
    ] {
        item.insert(k.to_owned(), v);
    }
    if let Some((at, ttl)) = expiry {
        item.insert("expires_at".to_owned(), n(at));
        item.insert("ttl".to_owned(), n(ttl));
        item.insert("stamp".to_owned(), n(ttl));
    }
    if let Some(batch) = pending {
        item.insert(pending_attr(batch), n(now));
    }
    item
}

/// Expression attribute names and values, as the SDK's setters take them.
pub(super) type ExprMaps = (
    Option<HashMap<String, String>>,
    Option<HashMap<String, AttributeValue>>,
);

/// Expression attribute names and values for a set of expressions: only the `#name`s and
/// `:value`s that appear (DynamoDB rejects unused ones).
pub(super) fn expr_maps(
    texts: &[&str],
    values: Vec<(&str, AttributeValue)>,
    extra_names: &[(&str, &str)],
) -> ExprMaps {
    const NAMES: &[(&str, &str)] = &[
        ("#pk", "pk"),
        ("#gen", "gen"),
        ("#next", "next"),
        ("#count", "count"),
        ("#ttl", "ttl"),
        ("#exp", "expires_at"),
        ("#upd", "updated_at"),
        ("#cre", "created_at"),
        ("#stamp", "stamp"),
        ("#v", "v"),
        ("#lk", "lk"),
        ("#sid", "sid"),
        ("#life", "life"),
        ("#rg", "rg"),
        ("#fa", "fa"),
        ("#lo", "lo"),
        ("#lt", "lt"),
        ("#le", "le"),
    ];
    let joined = texts.join(" ");
    let tokens: HashSet<&str> = joined
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '#' || c == ':' || c == '_'))
        .filter(|t| t.starts_with('#') || t.starts_with(':'))
        .collect();
    let names: HashMap<String, String> = NAMES
        .iter()
        .chain(extra_names.iter())
        .filter(|(k, _)| tokens.contains(k))
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let values: HashMap<String, AttributeValue> = values
        .into_iter()
        .filter(|(k, _)| tokens.contains(k))
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    (
        (!names.is_empty()).then_some(names),
        (!values.is_empty()).then_some(values),
    )
}

/// A new session, or a new life after expiry: its generation (newer than any earlier one, so
/// records of an earlier life never reappear) and the condition that the metadata is still
/// missing, or still the expired life we saw, with the condition's names and values.
pub(super) fn new_life(state: MetaState, now: i64) -> (i64, &'static str, ExprMaps) {
    let (gen, cond, old) = match state {
        MetaState::Expired { gen } => (gen.max(now) + 1, "#gen = :old AND #exp <= :now", gen),
        _ => (now, "attribute_not_exists(#pk)", 0),
    };
    (
        gen,
        cond,
        expr_maps(&[cond], vec![(":old", n(old)), (":now", n(now))], &[]),
    )
}

/// A prepared record: inline, or split into parts.
pub(super) struct Prepared {
    pub(super) head: Option<Vec<u8>>,
    pub(super) parts: Vec<Vec<u8>>,
}

impl Prepared {
    pub(super) fn bytes(&self) -> usize {
        self.head.as_ref().map_or(0, Vec::len) + self.parts.iter().map(Vec::len).sum::<usize>()
    }
    pub(super) fn actions(&self) -> usize {
        1 + self.parts.len()
    }
}

/// Makes a record fit DynamoDB's item size limit: inline when small enough, else compressed
/// and, when still too large, split into parts of [`PART_BYTES`].
/// Fails only when re-sealing a compressed record fails (the random generator).
pub(super) fn prepare(
    codec: &RecordCodec,
    session_id: &str,
    record: Vec<u8>,
) -> crate::error::Result<Prepared> {
    if record.len() <= PART_BYTES {
        return Ok(Prepared {
            head: Some(record),
            parts: Vec::new(),
        });
    }
    // Compress large records that are not compressed yet (the codec keeps the smaller form,
    // and encrypts after compressing when a key is configured), then split.
    let compressed = record.first() == Some(&ENVELOPE_MAGIC)
        && record
            .get(2)
            .is_some_and(|flags| flags & FLAG_COMPRESSED != 0);
    let record = if compressed {
        record
    } else {
        match codec.decode(session_id, &record) {
            Decoded::Valid(item) => codec.encode_compressed(session_id, &item)?,
            _ => record,
        }
    };
    if record.len() <= PART_BYTES {
        return Ok(Prepared {
            head: Some(record),
            parts: Vec::new(),
        });
    }
    Ok(Prepared {
        head: None,
        parts: record.chunks(PART_BYTES).map(<[u8]>::to_vec).collect(),
    })
}

/// The items that store prepared records from sequence `start` of generation `gen`: each
/// record item followed by its parts.
pub(super) fn record_items(
    session_id: &str,
    gen: i64,
    start: i64,
    prepared: &[Prepared],
    ttl: Option<i64>,
    batch: Option<&str>,
) -> Vec<Row> {
    let mut out = Vec::new();
    for (i, p) in prepared.iter().enumerate() {
        let seq = start + i as i64;
        let mut head = item_key(session_id, item_sk(gen, seq));
        match &p.head {
            Some(bytes) => {
                head.insert("r".to_owned(), AttributeValue::B(bytes.clone().into()));
            }
            None => {
                head.insert("parts".to_owned(), n(p.parts.len() as i64));
            }
        }
        if let Some(t) = ttl {
            head.insert("ttl".to_owned(), n(t));
        }
        if let Some(b) = batch {
            head.insert("b".to_owned(), s(b));
        }
        out.push(head);
        for (k, part) in p.parts.iter().enumerate() {
            let mut item = item_key(session_id, part_sk(gen, seq, k));
            item.insert("r".to_owned(), AttributeValue::B(part.clone().into()));
            if let Some(t) = ttl {
                item.insert("ttl".to_owned(), n(t));
            }
            out.push(item);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Decoded;
    use crate::error::{ErrorKind, Operation};
    use crate::item::Item;

    #[test]
    fn sort_keys_round_trip_and_sort_as_the_queries_need() {
        for (gen, seq) in [
            (0, 0),
            (1, 9),
            (1_733_000_000_000, 123_456),
            (i64::MAX, i64::MAX),
        ] {
            let sk = item_sk(gen, seq);
            assert!(sk.starts_with(&item_prefix(gen)));
            assert_eq!(seq_of(&sk), Some(seq));
            assert_eq!(gen_of(&sk), Some(gen));
            for k in [0usize, 7, 99_999] {
                let part = part_sk(gen, seq, k);
                assert!(part.starts_with(&part_prefix(gen, seq)));
                assert!(part.starts_with(&gen_part_prefix(gen)));
                assert_eq!(gen_of(&part), Some(gen));
                assert_eq!(seq_of(&part), Some(k as i64));
            }
        }
        // Zero padding: lexical order is numeric order.
        assert!(item_sk(1, 9) < item_sk(1, 10));
        assert!(item_sk(1, i64::MAX) < item_sk(2, 0));
        assert!(part_sk(1, 1, 9) < part_sk(1, 1, 10));
        // One descending Query from `m` down meets the metadata, then records, then parts.
        assert!(item_sk(i64::MAX, i64::MAX).as_str() < META_SK);
        assert!(part_sk(i64::MAX, i64::MAX, 99_999) < item_sk(0, 0));
        assert_eq!(gen_of(META_SK), None);
        assert_eq!(seq_of(META_SK), None);
        assert_eq!(seq_of("i#x#y"), None);
    }

    #[test]
    fn meta_item_parses_back() {
        let item = meta_item("s1", 42, 5, 3, 1_000, Some((61_000, 70)), Some("b1"));
        assert_eq!(str_attr(&item, "pk").map(String::as_str), Some("s1"));
        assert_eq!(sk_of(&item), Some(META_SK));
        assert_eq!(item.get("lk"), Some(&s("s")));
        assert_eq!(item.get("sid"), Some(&s("s1")));
        assert_eq!(num_attr(&item, "v"), Some(LAYOUT_VERSION));
        assert_eq!(num_attr(&item, "ttl"), Some(70));
        let meta = Meta::parse(&item).unwrap();
        assert_eq!((meta.gen, meta.next, meta.count), (42, 5, 3));
        assert_eq!((meta.created_at, meta.updated_at), (1_000, 1_000));
        assert_eq!((meta.expires_at, meta.stamp), (Some(61_000), Some(70)));
        assert_eq!(meta.pending, HashSet::from(["b1".to_owned()]));
        assert!(meta.replacing.is_empty() && meta.abandoned.is_empty());
        assert!(!meta.expired(60_999));
        assert!(meta.expired(61_000));
        assert_eq!(
            meta.state(1_000),
            MetaState::Live {
                gen: 42,
                next: 5,
                updated: 1_000,
                stamp: 70,
                life: 42
            }
        );
        assert_eq!(meta.state(61_000), MetaState::Expired { gen: 42 });

        let plain = Meta::parse(&meta_item("s2", 1, 0, 0, 5, None, None)).unwrap();
        assert_eq!((plain.expires_at, plain.stamp), (None, None));
        assert!(plain.pending.is_empty());
        assert!(!plain.expired(i64::MAX));
        assert_eq!(
            plain.state(0),
            MetaState::Live {
                gen: 1,
                next: 0,
                updated: 5,
                stamp: 0,
                life: 1
            }
        );
    }

    #[test]
    fn meta_names_pending_batches_and_replaces() {
        let mut item = meta_item("s", 7, 0, 0, 0, None, Some("a"));
        item.insert(pending_attr("b"), n(3));
        item.insert(replacing_attr("b"), n(8));
        assert_eq!(pending_attr("b"), "p_b");
        assert_eq!(replacing_attr("b"), "q_b");
        let meta = Meta::parse(&item).unwrap();
        assert_eq!(
            meta.pending,
            HashSet::from(["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(meta.replacing, HashMap::from([("b".to_owned(), 8)]));
    }

    #[test]
    fn a_newer_layout_version_is_refused() {
        let mut item = meta_item("s", 1, 0, 0, 0, None, None);
        item.insert("v".to_owned(), n(LAYOUT_VERSION + 1));
        let e = Meta::parse(&item).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnsupportedFormat);
        assert_eq!(e.operation(), Operation::Open);
        assert_eq!(
            e.message(),
            format!(
                "the session's metadata has layout version {}; this build reads up to {LAYOUT_VERSION}",
                LAYOUT_VERSION + 1
            )
        );
        // The current version and an older or absent one read.
        for v in [Some(LAYOUT_VERSION), Some(0), None] {
            let mut item = meta_item("s", 1, 0, 0, 0, None, None);
            match v {
                Some(v) => item.insert("v".to_owned(), n(v)),
                None => item.remove("v"),
            };
            assert_eq!(Meta::parse(&item).unwrap().gen, 1);
        }
    }

    #[test]
    fn malformed_meta_attributes_read_as_absent() {
        let item = HashMap::from([
            ("pk".to_owned(), s("s")),
            ("sk".to_owned(), s(META_SK)),
            ("v".to_owned(), s("99")), // not a number: no version gate
            ("gen".to_owned(), n(3)),
            ("next".to_owned(), AttributeValue::N("1.5".into())),
            ("count".to_owned(), AttributeValue::Bool(true)),
            ("expires_at".to_owned(), AttributeValue::N("junk".into())),
            (replacing_attr("x"), s("9")), // a replace without a number is ignored
            (replacing_attr("y"), n(4)),
        ]);
        let meta = Meta::parse(&item).unwrap();
        assert_eq!((meta.gen, meta.next, meta.count), (3, 0, 0));
        assert_eq!(meta.expires_at, None);
        assert_eq!(meta.replacing, HashMap::from([("y".to_owned(), 4)]));
        let empty = Meta::parse(&Row::new()).unwrap();
        assert_eq!((empty.gen, empty.next, empty.stamp), (0, 0, None));
    }

    #[test]
    fn expression_maps_hold_only_what_the_expressions_use() {
        let (names, values) = expr_maps(
            &[
                "#gen = :gen AND attribute_not_exists(#pk)",
                "SET #next = :n2, #b = :now REMOVE #stamp",
            ],
            vec![
                (":gen", n(1)),
                (":n2", n(2)),
                (":now", n(3)),
                (":n", n(4)), // a prefix of `:n2`, unused
                (":unused", n(5)),
            ],
            &[("#b", "p_batch"), ("#q", "q_batch")],
        );
        let names = names.unwrap();
        assert_eq!(
            names,
            HashMap::from(
                [
                    ("#gen", "gen"),
                    ("#pk", "pk"),
                    ("#next", "next"),
                    ("#stamp", "stamp"),
                    ("#b", "p_batch"),
                ]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
            )
        );
        let values = values.unwrap();
        assert_eq!(
            values,
            HashMap::from([
                (":gen".to_owned(), n(1)),
                (":n2".to_owned(), n(2)),
                (":now".to_owned(), n(3)),
            ])
        );
        // Nothing used: no maps at all (DynamoDB rejects empty ones).
        assert_eq!(
            expr_maps(&["REMOVE x"], vec![(":a", n(1))], &[]),
            (None, None)
        );
    }

    #[test]
    fn a_new_life_is_newer_than_the_expired_one() {
        let (gen, cond, (names, values)) = new_life(MetaState::Missing, 1_000);
        assert_eq!((gen, cond), (1_000, "attribute_not_exists(#pk)"));
        assert_eq!(
            names,
            Some(HashMap::from([("#pk".to_owned(), "pk".to_owned())]))
        );
        assert_eq!(values, None);

        let (gen, cond, (names, values)) = new_life(MetaState::Expired { gen: 5_000 }, 1_000);
        assert_eq!((gen, cond), (5_001, "#gen = :old AND #exp <= :now"));
        assert_eq!(names.unwrap().len(), 2);
        assert_eq!(
            values,
            Some(HashMap::from([
                (":old".to_owned(), n(5_000)),
                (":now".to_owned(), n(1_000)),
            ]))
        );
        assert_eq!(new_life(MetaState::Expired { gen: 10 }, 1_000).0, 1_001);
    }

    /// Text that zstd cannot shrink much: a pseudo-random walk over the alphabet.
    fn noise(len: usize) -> String {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'a' + (x % 26) as u8)
            })
            .collect()
    }

    fn item_of(text: &str) -> Item {
        Item::from_json_str(&format!(r#"{{"role":"user","content":"{text}"}}"#)).unwrap()
    }

    #[test]
    fn small_records_stay_inline_and_plain() {
        let codec = RecordCodec::default();
        let record = codec.encode("s", &item_of("hi")).unwrap();
        let p = prepare(&codec, "s", record.clone()).unwrap();
        assert_eq!(p.head.as_deref(), Some(record.as_slice()));
        assert!(p.parts.is_empty());
        assert_eq!((p.bytes(), p.actions()), (record.len(), 1));
        let rows = record_items("s", 3, 7, &[p], Some(99), Some("b1"));
        assert_eq!(rows.len(), 1);
        assert_eq!(sk_of(&rows[0]), Some(item_sk(3, 7).as_str()));
        assert_eq!(batch_of(&rows[0]), Some("b1"));
        assert_eq!(num_attr(&rows[0], "ttl"), Some(99));
        assert_eq!(body_of(&rows[0]), Body::Inline(record.as_slice()));
    }

    #[test]
    fn large_compressible_records_are_compressed_inline() {
        let codec = RecordCodec::default();
        let item = item_of(&"ab".repeat(PART_BYTES));
        let p = prepare(&codec, "s", codec.encode("s", &item).unwrap()).unwrap();
        let head = p.head.as_deref().unwrap();
        assert!(p.parts.is_empty());
        assert!(head.len() < PART_BYTES && head[0] != b'{');
        assert_eq!(codec.decode("s", head), Decoded::Valid(item));
    }

    #[test]
    fn large_records_are_compressed_then_split_and_reassemble() {
        let codec = RecordCodec::default();
        let item = item_of(&noise(4 * PART_BYTES));
        let plain = codec.encode("s", &item).unwrap();
        let p = prepare(&codec, "s", plain.clone()).unwrap();
        assert!(p.head.is_none());
        let whole: Vec<u8> = p.parts.concat();
        // Compressed first (an envelope, smaller than the plain record), then split.
        assert_eq!(whole, codec.encode_compressed("s", &item).unwrap());
        assert!(whole[0] != b'{' && whole.len() < plain.len());
        let parts = p.parts.len();
        assert!(parts >= 2);
        assert_eq!(parts, whole.len().div_ceil(PART_BYTES));
        assert!(p.parts.iter().all(|part| part.len() <= PART_BYTES));
        assert_eq!((p.bytes(), p.actions()), (whole.len(), 1 + parts));

        let next = prepare(&codec, "s", codec.encode("s", &item_of("next")).unwrap()).unwrap();
        let rows = record_items("s", 9, 41, &[p, next], None, None);
        assert_eq!(rows.len(), 1 + parts + 1); // the head, its parts, the next record
        let head = &rows[0];
        assert_eq!(parts_of(head), parts);
        assert!(!head.contains_key("r") && !head.contains_key("ttl") && !head.contains_key("b"));
        assert_eq!(body_of(head), Body::Split { seq: 41, parts });
        let found: Vec<Row> = rows[1..=parts].to_vec();
        for (k, part) in found.iter().enumerate() {
            assert_eq!(sk_of(part), Some(part_sk(9, 41, k).as_str()));
            assert!(sk_of(part).unwrap().starts_with(&part_prefix(9, 41)));
        }
        assert_eq!(sk_of(&rows[parts + 1]), Some(item_sk(9, 42).as_str()));
        assert_eq!(
            codec.decode("s", &reassemble(parts, &found)),
            Decoded::Valid(item)
        );
        // A missing part leaves nothing to decode: the record is corrupt, not an error.
        assert!(reassemble(parts, &found[..parts - 1]).is_empty());
        assert!(reassemble::<AttributeValue>(0, &[]).is_empty());
        assert!(matches!(codec.decode("s", &[]), Decoded::Corrupt(_)));
    }

    #[test]
    fn a_record_without_bytes_or_key_is_missing() {
        assert_eq!(body_of(&Row::new()), Body::Missing);
        assert_eq!(
            body_of(&item_key("s", item_sk(1, 2))),
            Body::Split { seq: 2, parts: 0 }
        );
    }

    #[test]
    fn keys_name_the_session() {
        assert_eq!(meta_key("s"), item_key("s", META_SK));
        let key = index_key("s");
        assert_eq!(key.get("lk"), Some(&s("s")));
        assert_eq!(key.get("sid"), Some(&s("s")));
        assert_eq!(key.get("pk"), Some(&s("s")));
        assert_eq!(sk_of(&key), Some(META_SK));
    }

    #[test]
    fn operation_keys_round_trip_and_sort_above_the_metadata() {
        for (life, id) in [
            (0, "a"),
            (1_733_000_000_000, "turn-7"),
            (i64::MAX, "with#hashes#inside"),
            (5, "\u{e9}/{*}%\u{0}"),
        ] {
            let sk = op_sk(life, id);
            assert!(sk.starts_with(&op_prefix(life)));
            assert!(sk.starts_with(OP_PREFIX));
            assert_eq!(parse_op_sk(&sk), Some((life, id)));
            // The descending walk from `m` never meets them; record and part keys never
            // share their prefix.
            assert!(sk.as_str() > META_SK);
            assert!(!sk.starts_with(&item_prefix(life)) && !sk.starts_with(&gen_part_prefix(life)));
        }
        let longest = op_sk(i64::MAX, &"\u{10ffff}".repeat(64));
        assert!(longest.len() <= 23 + 256 && longest.len() < 1024);
        // Lives are zero-padded: one life's prefix never matches another's ids.
        assert!(!op_sk(12, "x").starts_with(&op_prefix(1)));
        for other in [
            META_SK,
            "o#",
            "o#123#x",
            "o#00000000000000000001#",
            "o#0000000000000000000x#id",
            "i#00000000000000000001#00000000000000000002",
        ] {
            assert_eq!(parse_op_sk(other), None, "{other}");
        }
    }

    #[test]
    fn operation_items_say_what_was_applied_until_forgotten() {
        let digest = [7u8; 32];
        let item = op_item("s", 9, "op", &digest, 61_500);
        assert_eq!(str_attr(&item, "pk").map(String::as_str), Some("s"));
        assert_eq!(sk_of(&item), Some(op_sk(9, "op").as_str()));
        assert_eq!(num_attr(&item, "fa"), Some(61_500));
        assert_eq!(
            num_attr(&item, "ttl"),
            Some(62),
            "rounded up to the next second"
        );
        assert_eq!(remembered(Some(&item), &digest, 61_499), Remembered::Same);
        assert_eq!(
            remembered(Some(&item), &[8u8; 32], 61_499),
            Remembered::Other
        );
        // Gone at once at the forget-at time, whatever DynamoDB's TTL has done.
        assert_eq!(remembered(Some(&item), &digest, 61_500), Remembered::Absent);
        assert_eq!(
            remembered::<AttributeValue>(None, &digest, 0),
            Remembered::Absent
        );
        // An item without a digest never matches; without a forget-at time it stays.
        let mut bare = item_key("s", op_sk(9, "op"));
        assert_eq!(remembered(Some(&bare), &digest, 0), Remembered::Other);
        bare.insert("d".to_owned(), AttributeValue::B(digest.to_vec().into()));
        assert_eq!(remembered(Some(&bare), &digest, i64::MAX), Remembered::Same);
        assert_eq!(
            (op_ttl(0), op_ttl(1), op_ttl(1_000), op_ttl(1_001)),
            (0, 1, 1, 2)
        );
        // The write condition names what `expr_maps` knows.
        let (names, values) = expr_maps(&[OP_FREE], vec![(":now", n(1))], &[]);
        assert_eq!(names.unwrap().len(), 2);
        assert_eq!(values.unwrap().len(), 1);
    }

    #[test]
    fn lives_and_rewrite_generations() {
        let mut item = meta_item("s", 40, 3, 3, 1_000, None, Some("a"));
        // Without `life`, the life is the generation (every session before transactions).
        let meta = Meta::parse(&item).unwrap();
        assert_eq!((meta.life, meta.reserved), (40, None));
        assert_eq!(meta.pending_since, HashMap::from([("a".to_owned(), 1_000)]));
        item.insert("life".to_owned(), n(7));
        item.insert("rg".to_owned(), n(90));
        item.insert(pending_attr("b"), n(5_000));
        item.insert(replacing_attr("b"), n(60));
        let meta = Meta::parse(&item).unwrap();
        assert_eq!((meta.life, meta.reserved), (7, Some(90)));
        assert!(matches!(
            meta.state(0),
            MetaState::Live {
                life: 7,
                gen: 40,
                ..
            }
        ));
        // Above the generation, every reservation and the clock.
        assert_eq!(meta.next_generation(10), 91);
        assert_eq!(meta.next_generation(1_000), 1_001);
        let plain = Meta::parse(&meta_item("s", 40, 0, 0, 0, None, None)).unwrap();
        assert_eq!(plain.next_generation(3), 41);
        // Pending appends (not replaces) block a rewrite until they are stale.
        assert!(meta.appends_pending_since(999));
        assert!(
            !meta.appends_pending_since(1_000),
            "`a` started at 1000: stale"
        );
        assert!(!plain.appends_pending_since(0));
        let mut only_replace = meta_item("s", 40, 0, 0, 0, None, None);
        only_replace.insert(pending_attr("r"), n(5));
        only_replace.insert(replacing_attr("r"), n(41));
        assert!(!Meta::parse(&only_replace).unwrap().appends_pending_since(0));
    }
}
