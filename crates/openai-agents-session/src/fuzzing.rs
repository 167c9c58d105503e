//! Entry points of the fuzz targets (hidden feature `fuzzing`; `fuzz/` and
//! `tests/fuzz_corpora.rs` call them): each takes arbitrary bytes, runs one family of decoders
//! and parsers on them, and checks the round trips that must hold. None may panic on any
//! input; a panic here is a bug in the library. `docs/testing.md` ("Fuzzing") says how to run
//! them. Not a stable API.
//!
//! ```
//! openai_agents_session::fuzzing::codec(br#"{"a":1}"#);
//! openai_agents_session::fuzzing::store_url(b"redis://h/0?ttl=5");
//! ```

use std::collections::HashMap;

use crate::backend::dynamodb::records as dynamo;
use crate::backend::redis::layout as redis_layout;
use crate::codec::{Decoded, RecordCodec};
use crate::encryption::{Encryption, EncryptionKey};
use crate::history::{self, HistoryTransaction, PreparedTransaction};
use crate::item::Item;
use crate::url::StoreUrl;

/// The fixed test key of the encrypted codec (never a real key).
const TEST_KEY: [u8; 32] = *b"openai-agents-session fuzz key!!";
/// A second, older key: records under it decode as under an older key.
const OLD_KEY: [u8; 32] = *b"openai-agents-session old key!!!";

fn key(bytes: &[u8; 32]) -> EncryptionKey {
    match EncryptionKey::from_bytes(bytes) {
        Ok(key) => key,
        Err(e) => panic!("a 32-byte key is always valid: {e}"),
    }
}

/// The codecs every record is decoded with: plain, keyed (two keys), keyed and
/// `require_encryption`.
fn codecs() -> [RecordCodec; 3] {
    let keys = || Encryption::new(vec![key(&TEST_KEY), key(&OLD_KEY)]);
    [
        RecordCodec::default(),
        RecordCodec::new(keys()),
        RecordCodec::new(keys().with_required(true)),
    ]
}

/// Decodes `record` with every codec; a valid item must encode and decode back to itself.
fn decode_everywhere(session_id: &str, record: &[u8]) {
    for codec in codecs() {
        if let Decoded::Valid(item) = codec.decode(session_id, record) {
            assert_round_trip(&codec, session_id, &item);
        }
    }
}

fn assert_round_trip(codec: &RecordCodec, session_id: &str, item: &Item) {
    // Encoding fails only when the OS random generator does: nothing to check then.
    let Ok(encoded) = codec.encode(session_id, item) else {
        return;
    };
    assert_eq!(
        codec.decode(session_id, &encoded),
        Decoded::Valid(item.clone()),
        "an encoded item must decode back to itself"
    );
    #[cfg(feature = "compression")]
    {
        let Ok(packed) = codec.encode_compressed(session_id, item) else {
            return;
        };
        assert_eq!(
            codec.decode(session_id, &packed),
            Decoded::Valid(item.clone()),
            "a compressed item must decode back to itself"
        );
    }
}

/// The record codec: `data` as a stored record (plain, envelope, compressed, encrypted under
/// the test key), and as item JSON to encode. The first byte picks the session id.
///
/// ```
/// openai_agents_session::fuzzing::codec(&[0, 1, 0, b'{', b'}']);
/// ```
pub fn codec(data: &[u8]) {
    let (session_id, record) = match data.split_first() {
        Some((b, rest)) if b & 1 == 1 => ("s", rest),
        _ => ("fuzz-session", data),
    };
    decode_everywhere(session_id, record);
    decode_everywhere(session_id, data);
    // Item text: accepted once, accepted again from its own text, unchanged.
    if let Ok(item) = Item::from_json_slice(data) {
        let again = Item::from_json_str(item.as_str());
        assert_eq!(
            again.as_ref().ok(),
            Some(&item),
            "an item's text is an item"
        );
        let _ = item.to_value();
        let _ = item.item_type();
        for codec in codecs() {
            assert_round_trip(&codec, session_id, &item);
        }
    }
}

/// Store URL parsing: [`StoreUrl::parse`], `redact`, the shared options, every scheme's
/// backend options (`from_url`), and encryption keys (the value of `encryption_key_env` or
/// `encryption_key_file` is taken as key text, never read as a variable or a file).
///
/// ```
/// openai_agents_session::fuzzing::store_url(b"postgres://u:p@h1,h2:5/db?sslmode=require");
/// ```
pub fn store_url(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::url::redact(&text);
    let _ = crate::url::percent_decode(&text);
    let Ok(mut url) = StoreUrl::parse(&text) else {
        return;
    };
    let _ = url.location();
    for name in ["encryption_key_env", "encryption_key_file"] {
        if let Some(keys) = url.take_option(name) {
            let _ = Encryption::parse_keys(keys.split(',').map(str::trim), name);
        }
    }
    if url.take_store_options().is_err() {
        return;
    }
    let scheme = url.scheme.clone();
    match scheme.as_str() {
        "redis" | "rediss" | "redis+cluster" | "rediss+cluster" => {
            let _ = crate::backend::redis::config::RedisConfig::from_url(&mut url);
        }
        "dynamodb" => {
            let _ = crate::backend::dynamodb::config::DynamoConfig::from_url(&mut url);
        }
        "postgres" | "postgresql" => {
            let _ = crate::backend::postgres::config::PgConfig::from_url(&mut url, |_| None);
        }
        "sqlite" => {
            let _ = crate::backend::sqlite::config::SqliteConfig::from_url(&mut url);
        }
        _ => {
            // Every parser on every URL: none may panic on another scheme's options.
            let _ = crate::backend::redis::config::RedisConfig::from_url(&mut url.clone());
            let _ = crate::backend::dynamodb::config::DynamoConfig::from_url(&mut url.clone());
            let _ =
                crate::backend::postgres::config::PgConfig::from_url(&mut url.clone(), |_| None);
        }
    }
}

/// History-transaction input: [`HistoryTransaction::from_json`], its canonical form and
/// digest, operation ids, canonical numbers, and the suffix match against records.
///
/// ```
/// openai_agents_session::fuzzing::history(br#"{"type":"append","items":[{"a":1}]}"#);
/// ```
pub fn history(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = history::validate_operation_id(&text);
    let _ = history::canonical_number(&text);
    let Ok(tx) = HistoryTransaction::from_json(&text) else {
        return;
    };
    let canonical = tx.canonical();
    assert_eq!(tx.digest(), tx.clone().digest(), "the digest is a function");
    // The canonical form is a transaction that canonicalizes to itself.
    if let Ok(again) = HistoryTransaction::from_json(&canonical) {
        assert_eq!(
            again.canonical(),
            canonical,
            "canonical forms are fixed points"
        );
    }
    for item in tx.items_added().iter().chain(tx.expected_suffix()) {
        let _ = history::canonical_item(item);
    }
    if let Ok(prepared) = PreparedTransaction::new("op", &tx, std::time::Duration::from_secs(60)) {
        let codec = RecordCodec::default();
        let records: Vec<Vec<u8>> = tx
            .expected_suffix()
            .iter()
            .filter_map(|item| codec.encode("s", item).ok())
            .collect();
        assert!(
            prepared.suffix_matches(&codec, "s", records.iter().map(Vec::as_slice)),
            "the expected suffix matches itself"
        );
        let _ = prepared.digest_hex();
    }
}

/// JSON Lines import ([`crate::transfer::import_sessions`]) of `data` into a fresh
/// `memory://` store; on success every non-blank line was written.
///
/// ```
/// openai_agents_session::fuzzing::jsonl_import(b"{\"session_id\":\"a\",\"item\":{}}\n");
/// ```
pub fn jsonl_import(data: &[u8]) {
    let path = std::env::temp_dir().join(format!(
        "oas-fuzz-import-{}-{:?}.jsonl",
        std::process::id(),
        std::thread::current().id()
    ));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime,
        Err(e) => panic!("a current-thread runtime builds: {e}"),
    };
    let outcome = runtime.block_on(async {
        let store = crate::Store::open("memory://").await?;
        let mut chunk_bytes = 1 << 20;
        if data.first() == Some(&b'{') && data.len() % 3 == 0 {
            chunk_bytes = 7; // streamed through staged writes, part by part
        }
        crate::transfer::import_sessions_chunked(
            &store,
            &path,
            crate::transfer::OnExisting::Error,
            chunk_bytes,
            &mut |_| {},
        )
        .await
    });
    let _ = std::fs::remove_file(&path);
    if let Ok(summary) = outcome {
        let lines = data
            .split(|&b| b == b'\n')
            .filter(|l| !String::from_utf8_lossy(l).trim().is_empty())
            .count();
        assert_eq!(summary.items, lines as u64, "every line was imported");
    }
}

/// One DynamoDB attribute value of the fuzz targets' rows.
#[derive(Debug)]
enum Attr {
    N(String),
    S(String),
    B(Vec<u8>),
}

impl dynamo::AttrValue for Attr {
    fn number(&self) -> Option<&str> {
        match self {
            Attr::N(n) => Some(n),
            _ => None,
        }
    }
    fn string(&self) -> Option<&String> {
        match self {
            Attr::S(s) => Some(s),
            _ => None,
        }
    }
    fn binary(&self) -> Option<&[u8]> {
        match self {
            Attr::B(b) => Some(b),
            _ => None,
        }
    }
}

/// Rows from text: rows separated by a line `--`, one attribute a line as `<type><name>=<value>`
/// with type `N`, `S` or `B` (the value's bytes up to the end of the line).
fn rows(data: &[u8]) -> Vec<HashMap<String, Attr>> {
    let mut rows = vec![HashMap::new()];
    for line in data.split(|&b| b == b'\n') {
        if line == b"--" {
            rows.push(HashMap::new());
            continue;
        }
        let Some((&kind, rest)) = line.split_first() else {
            continue;
        };
        let Some(eq) = rest.iter().position(|&b| b == b'=') else {
            continue;
        };
        let name = String::from_utf8_lossy(&rest[..eq]).into_owned();
        let value = &rest[eq + 1..];
        let attr = match kind {
            b'N' => Attr::N(String::from_utf8_lossy(value).into_owned()),
            b'S' => Attr::S(String::from_utf8_lossy(value).into_owned()),
            _ => Attr::B(value.to_vec()),
        };
        if let Some(row) = rows.last_mut() {
            row.insert(name, attr);
        }
    }
    rows
}

/// DynamoDB's stored formats: the first row as a metadata item (version gate, pending and
/// replacing batches, generations), a lease item, an operation item and a seed item; the
/// second as a record item, its body inline or split into the parts of the rows after it,
/// reassembled and decoded.
///
/// ```
/// openai_agents_session::fuzzing::dynamodb(b"Ngen=3\nNp_b=5\n--\nSsk=i#1#2\nNparts=1\n--\nBr={}");
/// ```
pub fn dynamodb(data: &[u8]) {
    let rows = rows(data);
    let now = 1_750_000_000_000;
    if let Some(meta_row) = rows.first() {
        if let Ok(meta) = dynamo::Meta::parse(meta_row) {
            let _ = meta.state(now);
            let _ = meta.next_generation(now);
            let _ = meta.appends_pending_since(now);
        }
        let _ = dynamo::lease_of(meta_row);
        let _ = dynamo::remembered(Some(meta_row), &[0; 32], now);
        let _ = dynamo::batch_of(meta_row);
        if let Some(sk) = dynamo::sk_of(meta_row) {
            let _ = (
                dynamo::seq_of(sk),
                dynamo::gen_of(sk),
                dynamo::parse_op_sk(sk),
            );
        }
        for record in dynamo::seed_records(meta_row) {
            decode_everywhere("s", &record);
        }
        let _ = dynamo::seed_info("s", meta_row);
    }
    if let Some(head) = rows.get(1) {
        match dynamo::body_of(head) {
            dynamo::Body::Inline(bytes) => decode_everywhere("s", bytes),
            dynamo::Body::Split { parts, .. } => {
                let bytes = dynamo::reassemble(parts, &rows[2..]);
                decode_everywhere("s", &bytes);
            }
            dynamo::Body::Missing => {}
        }
    }
}

/// Redis stored formats: key names (session ids escaped into hash tags, metadata keys,
/// staging keys), listing cursors, and the INFO script's reply (metadata fields, lease) from
/// lines `<type><value>`: `b` bulk, `s` simple, `v` verbatim, `i` integer, anything else nil.
/// Also the SQLite legacy tables' timestamps.
///
/// ```
/// openai_agents_session::fuzzing::redis(b"bOK\ni5\nb7\nb\ni2\nbw\ni9\ni10");
/// ```
pub fn redis(data: &[u8]) {
    use redis_layout::Reply;
    let text = String::from_utf8_lossy(data);
    let escaped = redis_layout::escape_id(&text);
    assert_eq!(
        redis_layout::unescape_id(&escaped).as_deref(),
        Some(&*text),
        "an escaped id unescapes to itself"
    );
    let _ = redis_layout::unescape_id(&text);
    let key = crate::backend::redis::layout::SessionKeys::new("p", &text);
    assert_eq!(
        redis_layout::session_id_of_meta_key("p", &key.meta).as_deref(),
        Some(&*text),
        "a metadata key names its session"
    );
    let _ = redis_layout::session_id_of_meta_key("p", data);
    let _ = redis_layout::stage_started_ms(&text);
    if let Some(cursor) = redis_layout::ScanCursor::parse(&text) {
        assert_eq!(
            redis_layout::ScanCursor::parse(&cursor.to_string()),
            Some(cursor),
            "a cursor prints as itself"
        );
    }
    let reply: Vec<Reply<'_>> = data
        .split(|&b| b == b'\n')
        .map(|line| match line.split_first() {
            Some((b'b', rest)) => Reply::Bulk(rest),
            Some((b's', rest)) => Reply::Simple(std::str::from_utf8(rest).unwrap_or("")),
            Some((b'v', rest)) => Reply::Verbatim(std::str::from_utf8(rest).unwrap_or("")),
            Some((b'i', rest)) => Reply::Int(
                std::str::from_utf8(rest)
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(i64::MIN),
            ),
            _ => Reply::Other,
        })
        .collect();
    let _ = redis_layout::tag(&reply);
    let _ = redis_layout::info_from_reply("s", &reply);
    let _ = redis_layout::lease_from_fields(&reply);
    let _ = crate::backend::sqlite::records::parse_sqlite_time(&text);
}
