//! Encryption at rest: master keys, where they come from, and the AEAD the record codec seals
//! records with ([docs/encryption.md](https://example.invalid/docs/encryption.md) has the byte
//! layout).
//!
//! * A key is 32 random bytes written as base64 (standard or URL-safe alphabet, padding
//!   optional, surrounding whitespace ignored): [`EncryptionKey::generate`] makes one,
//!   `agent-session keygen` prints one.
//! * [`Encryption`] is the configuration a store is opened with: a list of keys, newest first
//!   (the first encrypts, all decrypt), and whether plain records are refused
//!   (`require_encryption`). URL options `encryption_key_env=VAR` and `encryption_key_file=PATH`
//!   fill it; a key never goes in a URL.
//! * Each record is sealed with AES-256-GCM under a per-session key derived with HKDF-SHA256
//!   from the master key and the session id, with a fresh random 96-bit nonce, and with the
//!   record header and the session id as associated data. Each record names its master key by
//!   a key id derived from the key itself.
//!
//! Key material is zeroized when dropped and never appears in `Debug` output or errors.
//!
//! ```
//! use openai_agents_session::encryption::{Encryption, EncryptionKey};
//! let key = EncryptionKey::generate().unwrap();
//! let text = key.to_base64();
//! let again = EncryptionKey::from_base64(&text).unwrap();
//! assert_eq!(key.id(), again.id());
//! let encryption = Encryption::new(vec![again]);
//! assert!(encryption.is_enabled());
//! assert!(!format!("{encryption:?}").contains(text.as_str()));
//! ```

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};
use hashlink::LruCache;
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Operation, Result};

/// Bytes of a master key.
pub const KEY_BYTES: usize = 32;
/// Bytes of a key id in a record.
pub const KEY_ID_BYTES: usize = 8;
/// Bytes of a record's nonce.
pub const NONCE_BYTES: usize = 12;
/// Bytes of the authentication tag at the end of a sealed record.
pub const TAG_BYTES: usize = 16;

/// How many per-session ciphers each master key keeps derived (least recently used evicted):
/// a record's HKDF-SHA256 derivation and AES-256 key schedule are then paid once per session
/// and key, not once per record. An evicted or dropped cipher's AES key schedule is zeroized.
pub const SESSION_CIPHER_CACHE: usize = 512;

const KEY_ID_SALT: &[u8] = b"openai-agents-session/key-id/v1";
const RECORD_KEY_SALT: &[u8] = b"openai-agents-session/record-key/v1";

fn config_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Config, Operation::Open, message)
}

/// The id of a master key, as stored in every record it sealed: the first 8 bytes of
/// HKDF-SHA256 of the key under a fixed salt. It reveals nothing about the key and does not
/// depend on the key's place in the list. Displays as 16 hex digits.
///
/// ```
/// use openai_agents_session::encryption::EncryptionKey;
/// let key = EncryptionKey::from_bytes(&[7u8; 32]).unwrap();
/// assert_eq!(key.id().to_string().len(), 16);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; KEY_ID_BYTES]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// One master key: 32 bytes, zeroized on drop. Its `Debug` shows only its [`KeyId`].
///
/// ```
/// use openai_agents_session::encryption::EncryptionKey;
/// assert!(EncryptionKey::from_base64("too short").is_err());
/// let key = EncryptionKey::from_base64(&"A".repeat(43)).unwrap(); // 32 zero bytes, no padding
/// assert!(format!("{key:?}").starts_with("EncryptionKey { id: "));
/// ```
pub struct EncryptionKey {
    secret: Zeroizing<[u8; KEY_BYTES]>,
    id: KeyId,
    /// The per-session ciphers derived so far, by session id, at most
    /// [`SESSION_CIPHER_CACHE`].
    ciphers: Mutex<LruCache<Box<str>, Arc<Aes256Gcm>>>,
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionKey {{ id: {}, .. }}", self.id)
    }
}

impl EncryptionKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Result<Self> {
        let mut secret = Zeroizing::new([0u8; KEY_BYTES]);
        getrandom::fill(secret.as_mut_slice()).map_err(|e| {
            Error::new(
                ErrorKind::Backend,
                Operation::Open,
                format!("the system random generator failed: {e}"),
            )
        })?;
        Ok(Self::from_secret(secret))
    }

    /// A key from its 32 raw bytes; any other length is a configuration error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let secret: [u8; KEY_BYTES] = bytes.try_into().map_err(|_| {
            config_error(format!(
                "an encryption key must be {KEY_BYTES} bytes, got {}",
                bytes.len()
            ))
        })?;
        Ok(Self::from_secret(Zeroizing::new(secret)))
    }

    /// A key from base64 text: standard or URL-safe alphabet, padding optional, surrounding
    /// whitespace ignored. The error never repeats the text.
    pub fn from_base64(text: &str) -> Result<Self> {
        Self::parse(text, "the given key")
    }

    /// Parses `text`, naming `source` (never the key) in the error.
    fn parse(text: &str, source: &str) -> Result<Self> {
        let text = text.trim();
        let config = GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(false);
        let alphabet = if text.contains(['-', '_']) {
            &alphabet::URL_SAFE
        } else {
            &alphabet::STANDARD
        };
        let decoded = Zeroizing::new(GeneralPurpose::new(alphabet, config).decode(text).map_err(
            |_| {
                config_error(format!(
                    "encryption key from {source} is not valid base64 \
                         (expected {KEY_BYTES} random bytes; `agent-session keygen` makes one)"
                ))
            },
        )?);
        Self::from_bytes(&decoded).map_err(|_| {
            config_error(format!(
                "encryption key from {source} is {} bytes, expected {KEY_BYTES} \
                 (`agent-session keygen` makes one)",
                decoded.len()
            ))
        })
    }

    fn from_secret(secret: Zeroizing<[u8; KEY_BYTES]>) -> Self {
        let mut id = [0u8; KEY_ID_BYTES];
        Hkdf::<Sha256>::new(Some(KEY_ID_SALT), secret.as_slice())
            .expand(b"key id", &mut id)
            .expect("8 bytes is a valid HKDF-SHA256 output length");
        EncryptionKey {
            secret,
            id: KeyId(id),
            ciphers: Mutex::new(LruCache::new(SESSION_CIPHER_CACHE)),
        }
    }

    /// The key as standard base64 with padding (what `agent-session keygen` prints).
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.secret.as_slice()))
    }

    /// The key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The AEAD of one session: AES-256-GCM under HKDF-SHA256(salt, master key, info = the
    /// session id), from the cache when this key derived it recently.
    fn session_cipher(&self, session_id: &str) -> Arc<Aes256Gcm> {
        // A panic while the lock is held cannot leave the map half-updated in a way that
        // matters (a missing entry is derived again), so a poisoned lock is used as is.
        let mut ciphers = self.ciphers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cipher) = ciphers.get(session_id) {
            return Arc::clone(cipher);
        }
        let cipher = Arc::new(self.derive_cipher(session_id));
        ciphers.insert(session_id.into(), Arc::clone(&cipher));
        cipher
    }

    /// Derives the AEAD of one session (no cache).
    fn derive_cipher(&self, session_id: &str) -> Aes256Gcm {
        let mut okm = Zeroizing::new([0u8; KEY_BYTES]);
        Hkdf::<Sha256>::new(Some(RECORD_KEY_SALT), self.secret.as_slice())
            .expand(session_id.as_bytes(), okm.as_mut_slice())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Aes256Gcm::new_from_slice(okm.as_slice()).expect("AES-256 takes a 32-byte key")
    }

    /// How many per-session ciphers this key holds derived (at most [`SESSION_CIPHER_CACHE`]).
    #[cfg(test)]
    fn cached_ciphers(&self) -> usize {
        self.ciphers.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// One key as given in code: its 32 raw bytes, or base64 text (see
/// [`Encryption::from_key_material`]).
///
/// ```
/// use openai_agents_session::encryption::KeyMaterial;
/// let key = KeyMaterial::Bytes(&[0u8; 32]);
/// assert!(matches!(key, KeyMaterial::Bytes(_)));
/// ```
#[derive(Clone, Copy)]
#[non_exhaustive]
pub enum KeyMaterial<'a> {
    /// The key's raw bytes (must be 32).
    Bytes(&'a [u8]),
    /// The key as base64 text (standard or URL-safe, padding optional).
    Base64(&'a str),
}

impl fmt::Debug for KeyMaterial<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key itself.
        match self {
            KeyMaterial::Bytes(b) => write!(f, "KeyMaterial::Bytes({} bytes)", b.len()),
            KeyMaterial::Base64(t) => write!(f, "KeyMaterial::Base64({} chars)", t.len()),
        }
    }
}

/// Counts of what the record codec decoded: an audit hook (`agent-session info --verify`,
/// `rekey`), set with [`StoreOptions::with_record_tally`](crate::StoreOptions::with_record_tally).
///
/// ```
/// use openai_agents_session::encryption::RecordTally;
/// let tally = RecordTally::default();
/// assert_eq!(tally.snapshot().records(), 0);
/// ```
#[derive(Debug, Default)]
pub struct RecordTally {
    plain: AtomicU64,
    current_key: AtomicU64,
    older_key: AtomicU64,
    unreadable: AtomicU64,
    corrupt: AtomicU64,
    key_missing: AtomicU64,
}

/// A snapshot of a [`RecordTally`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TallyCounts {
    /// Valid records stored without encryption.
    pub plain: u64,
    /// Valid records sealed with the first (current) key.
    pub current_key: u64,
    /// Valid records sealed with another configured key.
    pub older_key: u64,
    /// Records no configured key opens (or plain ones under `require_encryption`).
    pub unreadable: u64,
    /// Damaged records.
    pub corrupt: u64,
    /// Encrypted records met with no key configured.
    pub key_missing: u64,
}

impl TallyCounts {
    /// Every record counted.
    pub fn records(&self) -> u64 {
        self.plain
            + self.current_key
            + self.older_key
            + self.unreadable
            + self.corrupt
            + self.key_missing
    }
}

/// What a decode was, for the tally.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Tallied {
    Plain,
    CurrentKey,
    OlderKey,
    Unreadable,
    Corrupt,
    KeyMissing,
}

impl RecordTally {
    pub(crate) fn note(&self, what: Tallied) {
        let counter = match what {
            Tallied::Plain => &self.plain,
            Tallied::CurrentKey => &self.current_key,
            Tallied::OlderKey => &self.older_key,
            Tallied::Unreadable => &self.unreadable,
            Tallied::Corrupt => &self.corrupt,
            Tallied::KeyMissing => &self.key_missing,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> TallyCounts {
        TallyCounts {
            plain: self.plain.load(Ordering::Relaxed),
            current_key: self.current_key.load(Ordering::Relaxed),
            older_key: self.older_key.load(Ordering::Relaxed),
            unreadable: self.unreadable.load(Ordering::Relaxed),
            corrupt: self.corrupt.load(Ordering::Relaxed),
            key_missing: self.key_missing.load(Ordering::Relaxed),
        }
    }

    /// Sets every count back to zero.
    pub fn reset(&self) {
        for c in [
            &self.plain,
            &self.current_key,
            &self.older_key,
            &self.unreadable,
            &self.corrupt,
            &self.key_missing,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// A store's encryption configuration: keys newest first (the first encrypts, all decrypt)
/// and whether plain records are refused. The default has no key: records are written plain,
/// plain and encrypted records are both recognised, and an encrypted one fails reads with
/// [`ErrorKind::EncryptionKeyMissing`]. Cheap to clone; `Debug` shows key ids only.
///
/// ```
/// use openai_agents_session::encryption::{Encryption, EncryptionKey};
/// std::env::set_var("DOC_KEYS", format!(" {}, {} ",
///     EncryptionKey::generate().unwrap().to_base64().as_str(),
///     EncryptionKey::generate().unwrap().to_base64().as_str()));
/// let encryption = Encryption::from_env("DOC_KEYS").unwrap().with_required(true);
/// assert_eq!(encryption.key_ids().len(), 2);
/// assert!(encryption.is_required());
/// let err = Encryption::from_env("DOC_KEYS_UNSET").unwrap_err();
/// assert!(err.to_string().contains("DOC_KEYS_UNSET"));
/// ```
#[derive(Clone, Default)]
pub struct Encryption {
    keys: Arc<[EncryptionKey]>,
    required: bool,
    pub(crate) tally: Option<Arc<RecordTally>>,
}

impl fmt::Debug for Encryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encryption")
            .field("key_ids", &self.key_ids())
            .field("required", &self.required)
            .finish()
    }
}

impl PartialEq for Encryption {
    fn eq(&self, other: &Self) -> bool {
        self.key_ids() == other.key_ids() && self.required == other.required
    }
}

impl Eq for Encryption {}

/// The outcome of opening a sealed record.
pub(crate) enum Opened {
    /// The plaintext payload and whether the first key sealed it.
    Plain(Zeroizing<Vec<u8>>, bool),
    /// None of the keys opens it.
    Failed(String),
}

impl Encryption {
    /// No key: records are written plain.
    pub fn none() -> Self {
        Self::default()
    }

    /// These keys, newest first (an empty list is [`none`](Self::none)).
    pub fn new(keys: Vec<EncryptionKey>) -> Self {
        Encryption {
            keys: keys.into(),
            required: false,
            tally: None,
        }
    }

    /// Keys from base64 texts, newest first; the error names `source` and the key's place,
    /// never the key.
    pub fn parse_keys<'a>(
        texts: impl IntoIterator<Item = &'a str>,
        source: &str,
    ) -> Result<Vec<EncryptionKey>> {
        let mut keys = Vec::new();
        for (i, text) in texts.into_iter().enumerate() {
            keys.push(EncryptionKey::parse(
                text,
                &format!("{source} (key {})", i + 1),
            )?);
        }
        if keys.is_empty() {
            return Err(config_error(format!("{source} holds no encryption key")));
        }
        Ok(keys)
    }

    /// Keys given in code, newest first, each as raw bytes or base64 text (how the Python
    /// package's `encryption_key=` and the Node package's `encryptionKey` receive them).
    /// `name` is the option as the caller spells it: a malformed key is a configuration error
    /// naming `"{name} (key i of n)"`, never the key; an empty list is one too.
    ///
    /// ```
    /// use openai_agents_session::encryption::{Encryption, KeyMaterial};
    /// let raw = [3u8; 32];
    /// let enc = Encryption::from_key_material(
    ///     [KeyMaterial::Base64(&"A".repeat(43)), KeyMaterial::Bytes(&raw)],
    ///     "encryptionKey",
    /// ).unwrap();
    /// assert_eq!(enc.key_ids().len(), 2);
    /// let err = Encryption::from_key_material([KeyMaterial::Bytes(b"short")], "encryptionKey")
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("encryptionKey (key 1 of 1)"));
    /// let err = Encryption::from_key_material([], "encryption_key").unwrap_err();
    /// assert!(err.to_string().contains("encryption_key is an empty list"));
    /// ```
    pub fn from_key_material<'a>(
        keys: impl IntoIterator<Item = KeyMaterial<'a>>,
        name: &str,
    ) -> Result<Self> {
        let keys: Vec<KeyMaterial<'a>> = keys.into_iter().collect();
        let count = keys.len();
        if count == 0 {
            return Err(config_error(format!("{name} is an empty list")));
        }
        let mut parsed = Vec::with_capacity(count);
        for (i, key) in keys.into_iter().enumerate() {
            let key = match key {
                KeyMaterial::Bytes(bytes) => EncryptionKey::from_bytes(bytes),
                KeyMaterial::Base64(text) => EncryptionKey::from_base64(text),
            }
            .map_err(|e| {
                config_error(format!(
                    "{name} (key {} of {count}): {}",
                    i + 1,
                    e.message()
                ))
            })?;
            parsed.push(key);
        }
        Ok(Self::new(parsed))
    }

    /// Keys from an environment variable: one key, or several separated by commas, newest
    /// first. An unset or empty variable is a configuration error naming it.
    pub fn from_env(var: &str) -> Result<Self> {
        let source = format!("environment variable {var}");
        let value = Zeroizing::new(std::env::var(var).map_err(|_| {
            config_error(format!(
                "{source} (encryption_key_env) is not set or not UTF-8"
            ))
        })?);
        let texts = value.split(',').map(str::trim).filter(|t| !t.is_empty());
        Ok(Self::new(Self::parse_keys(texts, &source)?))
    }

    /// Keys from a file: one key per line, newest first; blank lines and lines starting with
    /// `#` are ignored. A missing or unreadable file is a configuration error naming it.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let source = format!("key file {}", path.display());
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            config_error(format!(
                "{source} (encryption_key_file) cannot be read: {}",
                e.kind()
            ))
        })?);
        let texts = text
            .lines()
            .map(str::trim)
            .filter(|t| !t.is_empty() && !t.starts_with('#'));
        Ok(Self::new(Self::parse_keys(texts, &source)?))
    }

    /// Refuses plain records: they read as unreadable and are never written (opening a store
    /// that requires encryption without a key is a configuration error).
    pub fn with_required(mut self, required: bool) -> Self {
        self.required = required;
        self
    }

    /// Whether records are encrypted (at least one key).
    pub fn is_enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Whether plain records are refused.
    pub fn is_required(&self) -> bool {
        self.required
    }

    /// The keys' ids, newest first.
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(EncryptionKey::id).collect()
    }

    /// The id of the key that encrypts (the first).
    pub fn current_key_id(&self) -> Option<KeyId> {
        self.keys.first().map(EncryptionKey::id)
    }

    /// Checks the configuration when a store opens.
    pub(crate) fn check(&self) -> Result<()> {
        if self.required && !self.is_enabled() {
            return Err(config_error(
                "require_encryption=true needs a key (encryption_key_env or encryption_key_file)",
            ));
        }
        Ok(())
    }

    pub(crate) fn note(&self, what: Tallied) {
        if let Some(tally) = &self.tally {
            tally.note(what);
        }
    }

    pub(crate) fn has_key_id(&self, id: &[u8]) -> bool {
        self.keys.iter().any(|k| k.id.0 == id)
    }

    /// Seals `plaintext` as a complete record after `header` (magic, version, flags), under the
    /// first key; `Ok(None)` without a key. Fails with [`ErrorKind::Backend`] when the operating
    /// system's random generator fails: without a fresh nonce no record is sealed (a reused
    /// nonce would break AES-GCM), and the write that asked fails having stored nothing.
    pub(crate) fn seal(
        &self,
        session_id: &str,
        header: [u8; 3],
        plaintext: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        self.seal_with(session_id, header, plaintext, |nonce| {
            getrandom::fill(nonce)
        })
    }

    /// [`seal`](Self::seal) with the nonce from `fill_nonce` (the tests' failing generator).
    fn seal_with<E: fmt::Display>(
        &self,
        session_id: &str,
        header: [u8; 3],
        plaintext: &[u8],
        fill_nonce: impl FnOnce(&mut [u8]) -> std::result::Result<(), E>,
    ) -> Result<Option<Vec<u8>>> {
        let Some(key) = self.keys.first() else {
            return Ok(None);
        };
        let mut nonce = [0u8; NONCE_BYTES];
        fill_nonce(&mut nonce).map_err(|e| rng_failed(session_id, e))?;
        let mut record =
            Vec::with_capacity(3 + KEY_ID_BYTES + NONCE_BYTES + plaintext.len() + TAG_BYTES);
        record.extend_from_slice(&header);
        record.extend_from_slice(&key.id.0);
        record.extend_from_slice(&nonce);
        let aad = associated_data(&record[..3 + KEY_ID_BYTES], session_id);
        let sealed = key
            .session_cipher(session_id)
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer does not fail");
        record.extend_from_slice(&sealed);
        Ok(Some(record))
    }

    /// Opens a sealed record whose key id is one of ours.
    pub(crate) fn open(&self, session_id: &str, record: &[u8]) -> Opened {
        let head = 3 + KEY_ID_BYTES;
        if record.len() < head + NONCE_BYTES + TAG_BYTES {
            return Opened::Failed("encrypted record is truncated".into());
        }
        let id = &record[3..head];
        let Some((index, key)) = self.keys.iter().enumerate().find(|(_, k)| k.id.0 == id) else {
            return Opened::Failed(format!(
                "encrypted with key id {}, which is not among the configured keys",
                hex(id)
            ));
        };
        let aad = associated_data(&record[..head], session_id);
        match key.session_cipher(session_id).decrypt(
            Nonce::from_slice(&record[head..head + NONCE_BYTES]),
            Payload {
                msg: &record[head + NONCE_BYTES..],
                aad: &aad,
            },
        ) {
            Ok(plain) => Opened::Plain(Zeroizing::new(plain), index == 0),
            Err(_) => Opened::Failed(format!(
                "record under key id {} does not authenticate (another session's record, \
                 or damaged bytes)",
                key.id
            )),
        }
    }
}

/// The error of a write whose record could not be sealed: the random generator failed.
fn rng_failed(session_id: &str, cause: impl fmt::Display) -> Error {
    tracing::error!(error = %cause, "the system random generator failed; nothing was encrypted");
    Error::new(
        ErrorKind::Backend,
        Operation::AddItems,
        format!(
            "the system random generator failed ({cause}), so no record can be encrypted \
             (a nonce is never reused); nothing was written"
        ),
    )
    .with_session(session_id)
}

fn associated_data(header: &[u8], session_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + session_id.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(session_id.as_bytes());
    aad
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_in_every_spelling() {
        let key = EncryptionKey::generate().unwrap();
        let std_text = key.to_base64();
        let url = std_text.replace('+', "-").replace('/', "_");
        let bare = std_text.trim_end_matches('=');
        for text in [
            std_text.to_string(),
            url.clone(),
            bare.to_owned(),
            url.trim_end_matches('=').to_owned(),
            format!("\n  {}\t\n", std_text.as_str()),
        ] {
            assert_eq!(EncryptionKey::from_base64(&text).unwrap().id(), key.id());
        }
        let err = EncryptionKey::parse("QUFB", "environment variable X").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("environment variable X"));
        assert!(err.to_string().contains("3 bytes"));
        let err = EncryptionKey::parse("not*base64!", "key file k").unwrap_err();
        assert!(!err.to_string().contains("not*base64!"));
    }

    #[test]
    fn key_ids_come_from_the_key() {
        let a = EncryptionKey::from_bytes(&[1; 32]).unwrap();
        let b = EncryptionKey::from_bytes(&[2; 32]).unwrap();
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id(), EncryptionKey::from_bytes(&[1; 32]).unwrap().id());
    }

    #[test]
    fn seal_and_open_bind_the_session() {
        let enc = Encryption::new(vec![EncryptionKey::from_bytes(&[9; 32]).unwrap()]);
        let record = enc.seal("s1", [0, 1, 2], b"{\"a\":1}").unwrap().unwrap();
        assert!(
            matches!(enc.open("s1", &record), Opened::Plain(p, true) if p.as_slice() == b"{\"a\":1}")
        );
        assert!(matches!(enc.open("s2", &record), Opened::Failed(_)));
        for i in 0..record.len() {
            let mut bad = record.clone();
            bad[i] ^= 0x01;
            if (3..3 + KEY_ID_BYTES).contains(&i) {
                continue; // another key id: not ours (the codec reports it)
            }
            assert!(
                matches!(enc.open("s1", &bad), Opened::Failed(_)),
                "byte {i}"
            );
        }
    }

    #[test]
    fn a_failing_random_generator_is_a_typed_error() {
        let enc = Encryption::new(vec![EncryptionKey::from_bytes(&[9; 32]).unwrap()]);
        let err = enc
            .seal_with("chat", [0, 1, 2], b"{}", |_| Err("entropy source gone"))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Backend);
        assert_eq!(err.session_id(), Some("chat"));
        assert!(err.to_string().contains("random generator failed"), "{err}");
        assert!(err.to_string().contains("nothing was written"), "{err}");
        // Without a key nothing needs a nonce.
        let plain = Encryption::none();
        assert!(plain
            .seal_with("chat", [0, 1, 2], b"{}", |_| Err("gone"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn session_ciphers_are_cached_and_bounded() {
        let key = EncryptionKey::from_bytes(&[4; 32]).unwrap();
        let enc = Encryption::new(vec![key]);
        let first = enc.seal("a", [0, 1, 2], b"{}").unwrap().unwrap();
        let _ = enc.seal("a", [0, 1, 2], b"{}").unwrap();
        assert_eq!(enc.keys[0].cached_ciphers(), 1);
        // The cached cipher is the derived one: a cold key opens what the cached one sealed.
        let cold = Encryption::new(vec![EncryptionKey::from_bytes(&[4; 32]).unwrap()]);
        assert!(matches!(cold.open("a", &first), Opened::Plain(_, true)));
        for i in 0..SESSION_CIPHER_CACHE + 50 {
            let id = format!("s{i}");
            let record = enc.seal(&id, [0, 1, 2], b"{}").unwrap().unwrap();
            assert!(matches!(enc.open(&id, &record), Opened::Plain(_, true)));
        }
        assert_eq!(enc.keys[0].cached_ciphers(), SESSION_CIPHER_CACHE);
        // An evicted session derives its cipher again, and still opens its records.
        assert!(matches!(enc.open("a", &first), Opened::Plain(_, true)));
        assert!(matches!(enc.open("b", &first), Opened::Failed(_)));
    }
}
