//! The record codec shared by every backend: how one [`Item`] becomes the bytes a backend stores,
//! and how stored bytes decode into a valid item, a corrupt record or an unreadable one.
//!
//! # Record format (version 1)
//!
//! * **Plain**: the item's compact JSON text, starting with `{`. This is what this version
//!   writes: operators can read it with `redis-cli` or `sqlite3`, and it costs no bytes.
//! * **Envelope**: `0x00`, a format version byte, a flags byte, then the payload. Flags bit 0
//!   means the payload is zstd-compressed (feature `compression`; DynamoDB writes such records
//!   for large items), bit 1 that it is encrypted. Version 1 with no flags carries
//!   plain JSON. Envelopes with flags this build cannot undo, or with a newer version, decode as
//!   [`Decoded::Unreadable`]: they are skipped by reads and never deleted.
//! * Anything else (damaged bytes, text another program wrote) decodes as [`Decoded::Corrupt`]:
//!   skipped by reads and dropped by `pop_item`.

use crate::item::Item;

/// The first byte of an envelope record.
pub const ENVELOPE_MAGIC: u8 = 0x00;
/// The record format version this build writes and reads.
pub const RECORD_FORMAT_VERSION: u8 = 1;
/// Envelope flag: the payload is compressed.
pub const FLAG_COMPRESSED: u8 = 0b01;
/// Envelope flag: the payload is encrypted.
pub const FLAG_ENCRYPTED: u8 = 0b10;

/// What one stored record decodes to.
///
/// ```
/// use openai_agents_session::codec::{Decoded, RecordCodec};
/// let codec = RecordCodec::default();
/// assert!(matches!(codec.decode(br#"{"a":1}"#), Decoded::Valid(_)));
/// assert!(matches!(codec.decode(b"{not json"), Decoded::Corrupt(_)));
/// assert!(matches!(codec.decode(&[0, 1, 0b10, 7, 7]), Decoded::Unreadable(_)));
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A valid item.
    Valid(Item),
    /// Damaged, or not written by this library: skipped by reads, dropped by `pop_item`.
    Corrupt(String),
    /// Well-formed but not readable with this configuration (encrypted without the key, a newer
    /// format): skipped by reads, never deleted; `pop_item` on it fails with
    /// [`ErrorKind::Unreadable`](crate::ErrorKind::Unreadable).
    Unreadable(String),
}

/// Encodes items into stored records and decodes them back. One codec serves every backend.
///
/// ```
/// use openai_agents_session::{codec::{Decoded, RecordCodec}, Item};
/// let codec = RecordCodec::default();
/// let item: Item = r#"{"role":"user","content":"hi"}"#.parse().unwrap();
/// let record = codec.encode(&item);
/// assert_eq!(codec.decode(&record), Decoded::Valid(item));
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RecordCodec {}

impl RecordCodec {
    /// Encodes one item as the bytes a backend stores.
    pub fn encode(&self, item: &Item) -> Vec<u8> {
        item.as_bytes().to_vec()
    }

    /// Encodes one item into an owned UTF-8 string (for backends that store text).
    ///
    /// Version 1 writes plain records, which are always UTF-8.
    pub fn encode_text(&self, item: &Item) -> String {
        item.as_str().to_owned()
    }

    /// Encodes one item compressed with zstd in an envelope, when that is smaller than the
    /// plain record (backends with a small item size limit use it for large items).
    #[cfg(feature = "compression")]
    pub fn encode_compressed(&self, item: &Item) -> Vec<u8> {
        let plain = item.as_bytes();
        match zstd::stream::encode_all(plain, 3) {
            Ok(packed) if packed.len() + 3 < plain.len() => {
                let mut record = Vec::with_capacity(packed.len() + 3);
                record.extend_from_slice(&[ENVELOPE_MAGIC, RECORD_FORMAT_VERSION, FLAG_COMPRESSED]);
                record.extend_from_slice(&packed);
                record
            }
            _ => plain.to_vec(),
        }
    }

    /// Decodes one stored record.
    pub fn decode(&self, record: &[u8]) -> Decoded {
        match record.first() {
            Some(b'{') => decode_plain(record),
            Some(&ENVELOPE_MAGIC) => self.decode_envelope(record),
            Some(_) => Decoded::Corrupt("record does not start with '{' or an envelope".into()),
            None => Decoded::Corrupt("empty record".into()),
        }
    }

    fn decode_envelope(&self, record: &[u8]) -> Decoded {
        let (Some(&version), Some(&flags)) = (record.get(1), record.get(2)) else {
            return Decoded::Corrupt("truncated envelope header".into());
        };
        if version > RECORD_FORMAT_VERSION {
            return Decoded::Unreadable(format!(
                "record format version {version} is newer than this build's {RECORD_FORMAT_VERSION}"
            ));
        }
        if version == 0 {
            return Decoded::Corrupt("record format version 0 does not exist".into());
        }
        if flags & FLAG_ENCRYPTED != 0 {
            return Decoded::Unreadable("record is encrypted and no key is configured".into());
        }
        if flags & FLAG_COMPRESSED != 0 {
            if flags & !FLAG_COMPRESSED != 0 {
                return Decoded::Unreadable(format!("record has unknown flags {flags:#04b}"));
            }
            return decompress(&record[3..]);
        }
        if flags != 0 {
            return Decoded::Unreadable(format!("record has unknown flags {flags:#04b}"));
        }
        match record.get(3) {
            Some(b'{') => decode_plain(&record[3..]),
            _ => Decoded::Corrupt("envelope payload is not a JSON object".into()),
        }
    }
}

#[cfg(feature = "compression")]
fn decompress(payload: &[u8]) -> Decoded {
    match zstd::stream::decode_all(payload) {
        Ok(plain) if plain.first() == Some(&b'{') => decode_plain(&plain),
        Ok(_) => Decoded::Corrupt("decompressed payload is not a JSON object".into()),
        Err(e) => Decoded::Corrupt(format!("compressed payload is damaged: {e}")),
    }
}

#[cfg(not(feature = "compression"))]
fn decompress(_payload: &[u8]) -> Decoded {
    Decoded::Unreadable(
        "record is compressed and this build lacks the `compression` feature".into(),
    )
}

fn decode_plain(bytes: &[u8]) -> Decoded {
    match Item::from_json_slice(bytes) {
        Ok(item) => Decoded::Valid(item),
        Err(e) => Decoded::Corrupt(e.to_string()),
    }
}

/// Gathers the newest valid items from records visited newest first: corrupt and unreadable
/// records are skipped and not counted, so the window widens until `limit` valid items are found
/// or the history ends.
#[derive(Debug)]
pub(crate) struct TailCollector {
    limit: Option<usize>,
    newest_first: Vec<Item>,
    pub(crate) skipped: usize,
}

impl TailCollector {
    pub(crate) fn new(limit: Option<usize>) -> Self {
        TailCollector {
            limit,
            newest_first: Vec::new(),
            skipped: 0,
        }
    }

    /// How many more valid items are wanted (`None`: all of them).
    pub(crate) fn wanted(&self) -> Option<usize> {
        self.limit
            .map(|n| n.saturating_sub(self.newest_first.len()))
    }

    pub(crate) fn is_full(&self) -> bool {
        self.wanted() == Some(0)
    }

    /// Offers the next older record; returns true once enough items are collected.
    pub(crate) fn push(&mut self, decoded: Decoded) -> bool {
        if self.is_full() {
            return true;
        }
        match decoded {
            Decoded::Valid(item) => self.newest_first.push(item),
            Decoded::Corrupt(reason) | Decoded::Unreadable(reason) => {
                self.skipped += 1;
                tracing::debug!(%reason, "skipping undecodable record");
            }
        }
        self.is_full()
    }

    /// The collected items, oldest first.
    pub(crate) fn finish(mut self) -> Vec<Item> {
        self.newest_first.reverse();
        self.newest_first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: u32) -> Item {
        Item::from_value(serde_json::json!({ "n": n })).unwrap()
    }

    #[test]
    fn envelope_plain_payload_decodes() {
        let mut rec = vec![ENVELOPE_MAGIC, 1, 0];
        rec.extend_from_slice(br#"{"a":1}"#);
        assert_eq!(
            RecordCodec::default().decode(&rec),
            Decoded::Valid(Item::from_json_str(r#"{"a":1}"#).unwrap())
        );
    }

    #[test]
    fn newer_versions_and_flags_are_unreadable_not_corrupt() {
        let codec = RecordCodec::default();
        assert!(matches!(
            codec.decode(&[0, 2, 0, b'{', b'}']),
            Decoded::Unreadable(_)
        ));
        // A compressed payload: unreadable without the codec, corrupt (damaged) with it.
        #[cfg(not(feature = "compression"))]
        assert!(matches!(
            codec.decode(&[0, 1, 1, 1, 2]),
            Decoded::Unreadable(_)
        ));
        #[cfg(feature = "compression")]
        assert!(matches!(
            codec.decode(&[0, 1, 1, 1, 2]),
            Decoded::Corrupt(_)
        ));
        assert!(matches!(
            codec.decode(&[0, 1, 0x80, b'{', b'}']),
            Decoded::Unreadable(_)
        ));
        assert!(matches!(codec.decode(&[0]), Decoded::Corrupt(_)));
        assert!(matches!(codec.decode(&[0, 0, 0]), Decoded::Corrupt(_)));
        assert!(matches!(codec.decode(b""), Decoded::Corrupt(_)));
        assert!(matches!(codec.decode(b"[1]"), Decoded::Corrupt(_)));
        assert!(matches!(codec.decode(b"{\"a\":1"), Decoded::Corrupt(_)));
        assert!(matches!(
            codec.decode(&[b'{', 0xff, b'}']),
            Decoded::Corrupt(_)
        ));
    }

    #[cfg(feature = "compression")]
    #[test]
    fn compressed_records_round_trip() {
        let codec = RecordCodec::default();
        let big = Item::from_value(serde_json::json!({"text": "abc ".repeat(10_000)})).unwrap();
        let record = codec.encode_compressed(&big);
        assert_eq!(
            &record[..3],
            &[ENVELOPE_MAGIC, RECORD_FORMAT_VERSION, FLAG_COMPRESSED]
        );
        assert!(record.len() < big.len_bytes() / 10);
        assert_eq!(codec.decode(&record), Decoded::Valid(big));
        let small = item(1);
        assert_eq!(codec.encode_compressed(&small), small.as_bytes());
    }

    #[test]
    fn tail_collector_skips_without_counting() {
        let mut c = TailCollector::new(Some(2));
        assert!(!c.push(Decoded::Valid(item(3))));
        assert!(!c.push(Decoded::Corrupt("x".into())));
        assert!(!c.push(Decoded::Unreadable("y".into())));
        assert!(c.push(Decoded::Valid(item(1))));
        assert_eq!(c.skipped, 2);
        assert_eq!(c.finish(), vec![item(1), item(3)]);

        let mut zero = TailCollector::new(Some(0));
        assert!(zero.is_full());
        assert!(zero.push(Decoded::Valid(item(1))));
        assert!(zero.finish().is_empty());
    }
}
