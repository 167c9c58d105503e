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

use crate::encryption::{Encryption, Opened, Tallied, KEY_ID_BYTES};
use crate::error::{Error, ErrorKind, Operation, Result};
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
/// assert!(matches!(codec.decode("s", br#"{"a":1}"#), Decoded::Valid(_)));
/// assert!(matches!(codec.decode("s", b"{not json"), Decoded::Corrupt(_)));
/// assert!(matches!(codec.decode("s", &[0, 2, 0, 7, 7]), Decoded::Unreadable(_)));
/// assert!(matches!(codec.decode("s", &[0, 1, 0b10, 7, 7]), Decoded::KeyMissing(_)));
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A valid item.
    Valid(Item),
    /// Damaged, or not written by this library: skipped by reads, dropped by `pop_item`.
    Corrupt(String),
    /// Well-formed but not readable with this configuration (no configured key opens it, a
    /// newer format, a plain record under `require_encryption`): skipped by reads, never
    /// deleted; `pop_item` on it fails with [`ErrorKind::Unreadable`].
    Unreadable(String),
    /// An encrypted record met by a store with no key configured: the store is misconfigured,
    /// so reads and pops fail with [`ErrorKind::EncryptionKeyMissing`] and change nothing.
    KeyMissing(String),
}

impl Decoded {
    /// The error a read or pop meeting this record fails with, if any
    /// ([`ErrorKind::EncryptionKeyMissing`] for `KeyMissing`).
    pub fn read_error(&self, op: Operation) -> Option<Error> {
        match self {
            Decoded::KeyMissing(reason) => Some(key_missing_error(op, reason)),
            _ => None,
        }
    }
}

pub(crate) fn key_missing_error(op: Operation, reason: &str) -> Error {
    Error::new(
        ErrorKind::EncryptionKeyMissing,
        op,
        format!(
            "the session holds encrypted records ({reason}); open the store with its key \
             (encryption_key_env or encryption_key_file); nothing was changed"
        ),
    )
}

/// Encodes items into stored records and decodes them back. One codec serves every backend;
/// a backend builds it from its [`StoreOptions`](crate::StoreOptions) with
/// [`StoreOptions::codec`](crate::StoreOptions::codec), so that encryption reaches every
/// write path. Records are bound to their session: pass the session id to both directions.
///
/// ```
/// use openai_agents_session::{codec::{Decoded, RecordCodec}, Item};
/// use openai_agents_session::encryption::{Encryption, EncryptionKey};
/// let item: Item = r#"{"role":"user","content":"hi"}"#.parse().unwrap();
/// let plain = RecordCodec::default();
/// assert_eq!(plain.decode("chat", &plain.encode("chat", &item).unwrap()), Decoded::Valid(item.clone()));
/// assert_eq!(plain.decode_owned("chat", plain.encode("chat", &item).unwrap()), Decoded::Valid(item.clone()));
/// assert!(matches!(plain.decode_owned("chat", b"{oops".to_vec()), Decoded::Corrupt(_)));
///
/// let sealed = RecordCodec::new(Encryption::new(vec![EncryptionKey::generate().unwrap()]));
/// let record = sealed.encode("chat", &item).unwrap();
/// assert!(!record.windows(2).any(|w| w == b"hi"));
/// assert_eq!(sealed.decode("chat", &record), Decoded::Valid(item));
/// assert!(matches!(sealed.decode("other", &record), Decoded::Unreadable(_)));
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RecordCodec {
    encryption: Encryption,
}

impl RecordCodec {
    /// A codec with this encryption configuration.
    pub fn new(encryption: Encryption) -> Self {
        RecordCodec { encryption }
    }

    /// Whether records are written encrypted.
    pub fn encrypts(&self) -> bool {
        self.encryption.is_enabled()
    }

    /// Whether plain records are refused (`require_encryption`).
    pub fn requires_encryption(&self) -> bool {
        self.encryption.is_required()
    }

    /// Encodes one item of session `session_id` as the bytes a backend stores: plain JSON, or
    /// an encrypted envelope when a key is configured. Fails only when encrypting and the
    /// operating system's random generator fails ([`ErrorKind::Backend`]; the write stores
    /// nothing).
    pub fn encode(&self, session_id: &str, item: &Item) -> Result<Vec<u8>> {
        Ok(self
            .encryption
            .seal(
                session_id,
                [ENVELOPE_MAGIC, RECORD_FORMAT_VERSION, FLAG_ENCRYPTED],
                item.as_bytes(),
            )?
            .unwrap_or_else(|| item.as_bytes().to_vec()))
    }

    /// [`encode`](Self::encode) of every item, in order (the first failure fails them all).
    pub fn encode_all<'i>(
        &self,
        session_id: &str,
        items: impl IntoIterator<Item = &'i Item>,
    ) -> Result<Vec<Vec<u8>>> {
        items
            .into_iter()
            .map(|item| self.encode(session_id, item))
            .collect()
    }

    /// Encodes one item compressed with zstd in an envelope, when that is smaller than the
    /// plain record (backends with a small item size limit use it for large items); then
    /// encrypted when a key is configured (compress, then encrypt).
    #[cfg(feature = "compression")]
    pub fn encode_compressed(&self, session_id: &str, item: &Item) -> Result<Vec<u8>> {
        let plain = item.as_bytes();
        let packed = match zstd::stream::encode_all(plain, 3) {
            Ok(packed) if packed.len() + 3 < plain.len() => packed,
            _ => return self.encode(session_id, item),
        };
        if let Some(record) = self.encryption.seal(
            session_id,
            [
                ENVELOPE_MAGIC,
                RECORD_FORMAT_VERSION,
                FLAG_ENCRYPTED | FLAG_COMPRESSED,
            ],
            &packed,
        )? {
            return Ok(record);
        }
        let mut record = Vec::with_capacity(packed.len() + 3);
        record.extend_from_slice(&[ENVELOPE_MAGIC, RECORD_FORMAT_VERSION, FLAG_COMPRESSED]);
        record.extend_from_slice(&packed);
        Ok(record)
    }

    /// Decodes one stored record of session `session_id`.
    pub fn decode(&self, session_id: &str, record: &[u8]) -> Decoded {
        let (decoded, what) = self.decode_tallied(session_id, record);
        self.encryption.note(what);
        decoded
    }

    /// [`RecordCodec::decode`] of a record the caller owns: a plain record's item keeps the
    /// buffer (no copy of the text), as when a backend's client hands over each record it
    /// read.
    pub fn decode_owned(&self, session_id: &str, record: Vec<u8>) -> Decoded {
        let plain = record.first() == Some(&b'{')
            && !self.encryption.is_enabled()
            && !self.encryption.is_required();
        if !plain {
            return self.decode(session_id, &record);
        }
        let (decoded, what) = tally_plain(plain_decoded(Item::from_json_vec(record)));
        self.encryption.note(what);
        decoded
    }

    fn decode_tallied(&self, session_id: &str, record: &[u8]) -> (Decoded, Tallied) {
        // With keys configured, a record naming one of our key ids is ours whatever else
        // happened to it: any failure (a flipped header byte included) is unreadable, never
        // corrupt, so that no pop ever drops it.
        if self.encryption.is_enabled()
            && record
                .get(3..3 + KEY_ID_BYTES)
                .is_some_and(|id| self.encryption.has_key_id(id))
        {
            return self.open_sealed(session_id, record);
        }
        match record.first() {
            Some(b'{') if self.encryption.is_required() => (
                Decoded::Unreadable("plain record refused by require_encryption".into()),
                Tallied::Unreadable,
            ),
            Some(b'{') => tally_plain(decode_plain(record)),
            Some(&ENVELOPE_MAGIC) => self.decode_envelope(record),
            Some(_) => (
                Decoded::Corrupt("record does not start with '{' or an envelope".into()),
                Tallied::Corrupt,
            ),
            None => (Decoded::Corrupt("empty record".into()), Tallied::Corrupt),
        }
    }

    fn open_sealed(&self, session_id: &str, record: &[u8]) -> (Decoded, Tallied) {
        let unreadable = |reason: String| (Decoded::Unreadable(reason), Tallied::Unreadable);
        let flags = record[2];
        if record[0] != ENVELOPE_MAGIC
            || record[1] != RECORD_FORMAT_VERSION
            || flags & !(FLAG_ENCRYPTED | FLAG_COMPRESSED) != 0
            || flags & FLAG_ENCRYPTED == 0
        {
            return unreadable("encrypted record's header was altered".into());
        }
        let (payload, current) = match self.encryption.open(session_id, record) {
            Opened::Plain(payload, current) => (payload, current),
            Opened::Failed(reason) => return unreadable(reason),
        };
        let decoded = if flags & FLAG_COMPRESSED != 0 {
            decompress(&payload)
        } else if payload.first() == Some(&b'{') {
            decode_plain(&payload)
        } else {
            Decoded::Corrupt("decrypted payload is not a JSON object".into())
        };
        let what = match &decoded {
            Decoded::Valid(_) if current => Tallied::CurrentKey,
            Decoded::Valid(_) => Tallied::OlderKey,
            Decoded::Unreadable(_) => Tallied::Unreadable,
            _ => Tallied::Corrupt,
        };
        (decoded, what)
    }

    fn decode_envelope(&self, record: &[u8]) -> (Decoded, Tallied) {
        let (Some(&version), Some(&flags)) = (record.get(1), record.get(2)) else {
            return (
                Decoded::Corrupt("truncated envelope header".into()),
                Tallied::Corrupt,
            );
        };
        let unreadable = |reason: String| (Decoded::Unreadable(reason), Tallied::Unreadable);
        if version > RECORD_FORMAT_VERSION {
            return unreadable(format!(
                "record format version {version} is newer than this build's {RECORD_FORMAT_VERSION}"
            ));
        }
        if version == 0 {
            return (
                Decoded::Corrupt("record format version 0 does not exist".into()),
                Tallied::Corrupt,
            );
        }
        if flags & !(FLAG_ENCRYPTED | FLAG_COMPRESSED) != 0 {
            return unreadable(format!("record has unknown flags {flags:#04b}"));
        }
        if flags & FLAG_ENCRYPTED != 0 {
            if !self.encryption.is_enabled() {
                return (
                    Decoded::KeyMissing("record is encrypted and no key is configured".into()),
                    Tallied::KeyMissing,
                );
            }
            let id = record
                .get(3..3 + KEY_ID_BYTES)
                .map(|id| id.iter().map(|b| format!("{b:02x}")).collect::<String>())
                .unwrap_or_else(|| "(truncated)".into());
            return unreadable(format!(
                "encrypted with key id {id}, which is not among the configured keys"
            ));
        }
        if self.encryption.is_required() {
            return unreadable("plain record refused by require_encryption".into());
        }
        if flags & FLAG_COMPRESSED != 0 {
            return tally_plain(decompress(&record[3..]));
        }
        match record.get(3) {
            Some(b'{') => tally_plain(decode_plain(&record[3..])),
            _ => (
                Decoded::Corrupt("envelope payload is not a JSON object".into()),
                Tallied::Corrupt,
            ),
        }
    }
}

fn tally_plain(decoded: Decoded) -> (Decoded, Tallied) {
    let what = match &decoded {
        Decoded::Valid(_) => Tallied::Plain,
        Decoded::Unreadable(_) => Tallied::Unreadable,
        _ => Tallied::Corrupt,
    };
    (decoded, what)
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
    plain_decoded(Item::from_json_slice(bytes))
}

/// A plain record's parse: its item, or corrupt (it is not one JSON object).
fn plain_decoded(parsed: Result<Item>) -> Decoded {
    match parsed {
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
    key_missing: Option<String>,
}

impl TailCollector {
    pub(crate) fn new(limit: Option<usize>) -> Self {
        TailCollector {
            limit,
            newest_first: Vec::new(),
            skipped: 0,
            key_missing: None,
        }
    }

    /// How many more valid items are wanted (`None`: all of them).
    pub(crate) fn wanted(&self) -> Option<usize> {
        self.limit
            .map(|n| n.saturating_sub(self.newest_first.len()))
    }

    pub(crate) fn is_full(&self) -> bool {
        self.wanted() == Some(0) || self.key_missing.is_some()
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
            // The store is misconfigured: stop, and fail the read in `finish`.
            Decoded::KeyMissing(reason) => self.key_missing = Some(reason),
        }
        self.is_full()
    }

    /// The collected items, oldest first, or the `EncryptionKeyMissing` error of a read that
    /// met an encrypted record without a key.
    pub(crate) fn finish(mut self) -> crate::error::Result<Vec<Item>> {
        if let Some(reason) = self.key_missing {
            return Err(key_missing_error(Operation::GetItems, &reason));
        }
        self.newest_first.reverse();
        Ok(self.newest_first)
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
            RecordCodec::default().decode("s", &rec),
            Decoded::Valid(Item::from_json_str(r#"{"a":1}"#).unwrap())
        );
    }

    #[test]
    fn newer_versions_and_flags_are_unreadable_not_corrupt() {
        let codec = RecordCodec::default();
        assert!(matches!(
            codec.decode("s", &[0, 2, 0, b'{', b'}']),
            Decoded::Unreadable(_)
        ));
        // A compressed payload: unreadable without the codec, corrupt (damaged) with it.
        #[cfg(not(feature = "compression"))]
        assert!(matches!(
            codec.decode("s", &[0, 1, 1, 1, 2]),
            Decoded::Unreadable(_)
        ));
        #[cfg(feature = "compression")]
        assert!(matches!(
            codec.decode("s", &[0, 1, 1, 1, 2]),
            Decoded::Corrupt(_)
        ));
        assert!(matches!(
            codec.decode("s", &[0, 1, 0x80, b'{', b'}']),
            Decoded::Unreadable(_)
        ));
        assert!(matches!(codec.decode("s", &[0]), Decoded::Corrupt(_)));
        assert!(matches!(codec.decode("s", &[0, 0, 0]), Decoded::Corrupt(_)));
        assert!(matches!(codec.decode("s", b""), Decoded::Corrupt(_)));
        assert!(matches!(codec.decode("s", b"[1]"), Decoded::Corrupt(_)));
        assert!(matches!(
            codec.decode("s", b"{\"a\":1"),
            Decoded::Corrupt(_)
        ));
        assert!(matches!(
            codec.decode("s", &[b'{', 0xff, b'}']),
            Decoded::Corrupt(_)
        ));
    }

    #[cfg(feature = "compression")]
    #[test]
    fn compressed_records_round_trip() {
        let codec = RecordCodec::default();
        let big = Item::from_value(serde_json::json!({"text": "abc ".repeat(10_000)})).unwrap();
        let record = codec.encode_compressed("s", &big).unwrap();
        assert_eq!(
            &record[..3],
            &[ENVELOPE_MAGIC, RECORD_FORMAT_VERSION, FLAG_COMPRESSED]
        );
        assert!(record.len() < big.len_bytes() / 10);
        assert_eq!(codec.decode("s", &record), Decoded::Valid(big));
        let small = item(1);
        assert_eq!(
            codec.encode_compressed("s", &small).unwrap(),
            small.as_bytes()
        );
    }

    fn keyed(keys: &[u8]) -> RecordCodec {
        use crate::encryption::{Encryption, EncryptionKey};
        RecordCodec::new(Encryption::new(
            keys.iter()
                .map(|k| EncryptionKey::from_bytes(&[*k; 32]).unwrap())
                .collect(),
        ))
    }

    #[test]
    fn encrypted_records_round_trip_and_bind_their_session() {
        let codec = keyed(&[1]);
        let it = Item::from_value(serde_json::json!({"secret": "MARKER-42"})).unwrap();
        let record = codec.encode("s1", &it).unwrap();
        assert_eq!(&record[..3], &[ENVELOPE_MAGIC, 1, FLAG_ENCRYPTED]);
        assert!(!record.windows(9).any(|w| w == b"MARKER-42"));
        assert_eq!(codec.decode("s1", &record), Decoded::Valid(it.clone()));
        assert!(matches!(
            codec.decode("s2", &record),
            Decoded::Unreadable(_)
        ));
        // Whatever byte is flipped, the record is unreadable, never corrupt.
        for i in 0..record.len() {
            let mut bad = record.clone();
            bad[i] ^= 0x01;
            assert!(
                matches!(codec.decode("s1", &bad), Decoded::Unreadable(_)),
                "byte {i}"
            );
            bad[i] ^= 0xff;
            assert!(
                matches!(codec.decode("s1", &bad), Decoded::Unreadable(_)),
                "byte {i}"
            );
        }
        // Another key: unreadable; no key: key missing; rotation: old keys still decrypt.
        assert!(matches!(
            keyed(&[2]).decode("s1", &record),
            Decoded::Unreadable(_)
        ));
        assert!(matches!(
            RecordCodec::default().decode("s1", &record),
            Decoded::KeyMissing(_)
        ));
        assert_eq!(
            keyed(&[2, 1]).decode("s1", &record),
            Decoded::Valid(it.clone())
        );
        // Plain records stay readable unless encryption is required.
        assert_eq!(
            codec.decode("s1", it.as_bytes()),
            Decoded::Valid(it.clone())
        );
        let strict = RecordCodec::new(codec.encryption.clone().with_required(true));
        assert!(matches!(
            strict.decode("s1", it.as_bytes()),
            Decoded::Unreadable(_)
        ));
        assert_eq!(strict.decode("s1", &record), Decoded::Valid(it));
    }

    #[cfg(feature = "compression")]
    #[test]
    fn compressed_then_encrypted() {
        let codec = keyed(&[3]);
        let big = Item::from_value(serde_json::json!({"text": "abc ".repeat(10_000)})).unwrap();
        let record = codec.encode_compressed("s", &big).unwrap();
        assert_eq!(record[2], FLAG_ENCRYPTED | FLAG_COMPRESSED);
        assert!(record.len() < big.len_bytes() / 10);
        assert_eq!(codec.decode("s", &record), Decoded::Valid(big));
    }

    #[test]
    fn tail_collector_skips_without_counting() {
        let mut c = TailCollector::new(Some(2));
        assert!(!c.push(Decoded::Valid(item(3))));
        assert!(!c.push(Decoded::Corrupt("x".into())));
        assert!(!c.push(Decoded::Unreadable("y".into())));
        assert!(c.push(Decoded::Valid(item(1))));
        assert_eq!(c.skipped, 2);
        assert_eq!(c.finish().unwrap(), vec![item(1), item(3)]);

        let mut zero = TailCollector::new(Some(0));
        assert!(zero.is_full());
        assert!(zero.push(Decoded::Valid(item(1))));
        assert!(zero.finish().unwrap().is_empty());
    }
}
