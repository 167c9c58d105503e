//! Encryption at rest on SQLite and memory (docs/encryption.md): no plaintext in the file or
//! the WAL, wrong keys, missing keys, rotation, key sources and redaction.
#![cfg(feature = "sqlite")]

use openai_agents_session::encryption::{Encryption, EncryptionKey, RecordTally};
use openai_agents_session::{ErrorKind, Item, Session, Store};
use serde_json::json;
use std::sync::Arc;

const MARKER: &[u8] = b"MARKER-90210";

fn items(n: usize) -> Vec<Item> {
    (0..n)
        .map(|i| {
            Item::from_value(json!({"role": "user", "content": format!("MARKER-90210 says {i}")}))
                .unwrap()
        })
        .collect()
}

/// Every byte of the database file and its WAL.
fn stored_bytes(db: &std::path::Path) -> Vec<u8> {
    let mut all = std::fs::read(db).unwrap();
    let wal = db.with_extension("db-wal");
    if let Ok(w) = std::fs::read(&wal) {
        all.extend(w);
    }
    all
}

fn holds_marker(bytes: &[u8]) -> bool {
    bytes.windows(MARKER.len()).any(|w| w == MARKER)
}

fn key_text(byte: u8) -> String {
    EncryptionKey::from_bytes(&[byte; 32])
        .unwrap()
        .to_base64()
        .to_string()
}

async fn open_keyed(db: &std::path::Path, keys: &[u8]) -> Store {
    let keys: Vec<EncryptionKey> = keys
        .iter()
        .map(|b| EncryptionKey::from_bytes(&[*b; 32]).unwrap())
        .collect();
    Store::open_with(&format!("sqlite://{}", db.display()), |o| {
        o.with_encryption(Encryption::new(keys))
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn sqlite_file_and_wal_hold_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("enc.db");
    let store = open_keyed(&db, &[7]).await;
    let s = store.session("chat").unwrap();
    s.add_items(items(50)).await.unwrap();
    // A staged write's parts are encrypted too.
    let mut staged = store
        .stage("big", openai_agents_session::StageMode::Append, None)
        .await
        .unwrap();
    staged.append(items(20)).await.unwrap();
    staged.commit().await.unwrap();
    assert_eq!(s.get_items(None).await.unwrap(), items(50));
    assert!(
        !holds_marker(&stored_bytes(&db)),
        "plaintext in the file or WAL"
    );
}

#[tokio::test]
async fn clear_leaves_no_plaintext_in_sqlite_file_or_wal() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plain.db");
    let store = Store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let s = store.session("chat").unwrap();
    s.add_items(items(200)).await.unwrap();
    assert!(
        holds_marker(&stored_bytes(&db)),
        "the test writes plaintext first"
    );
    s.clear_session().await.unwrap();
    assert!(
        !holds_marker(&stored_bytes(&db)),
        "old plaintext left after clear_session"
    );
}

#[tokio::test]
async fn wrong_key_skips_pop_errors_and_the_right_key_reads_everything() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keys.db");
    let right = open_keyed(&db, &[1]).await;
    right
        .session("s")
        .unwrap()
        .add_items(items(3))
        .await
        .unwrap();

    let wrong = open_keyed(&db, &[2]).await;
    let s = wrong.session("s").unwrap();
    assert!(s.get_items(None).await.unwrap().is_empty());
    assert!(s.get_items(Some(2)).await.unwrap().is_empty());
    for _ in 0..3 {
        assert_eq!(
            s.pop_item().await.unwrap_err().kind(),
            ErrorKind::Unreadable
        );
    }
    // No key: a typed error saying the session holds encrypted records.
    let none = Store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let err = none
        .session("s")
        .unwrap()
        .get_items(None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EncryptionKeyMissing);
    assert_eq!(err.kind().name(), "encryption_key_missing");
    assert!(err.to_string().contains("encrypted records"), "{err}");
    let err = none.session("s").unwrap().pop_item().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::EncryptionKeyMissing);
    // Intact when the right key returns, also behind a newer key.
    let rotated = open_keyed(&db, &[3, 1]).await;
    let s = rotated.session("s").unwrap();
    assert_eq!(s.get_items(None).await.unwrap(), items(3));
    s.add_items(items(1)).await.unwrap();
    assert_eq!(s.pop_item().await.unwrap(), Some(items(1)[0].clone()));
    assert_eq!(s.pop_item().await.unwrap(), Some(items(3)[2].clone()));
}

#[tokio::test]
async fn rotation_writes_under_the_first_key_and_reads_all() {
    let tally = Arc::new(RecordTally::default());
    let (k_old, k_new) = (
        EncryptionKey::from_bytes(&[4; 32]).unwrap(),
        EncryptionKey::from_bytes(&[5; 32]).unwrap(),
    );
    let old = Encryption::new(vec![EncryptionKey::from_bytes(&[4; 32]).unwrap()]);
    let both = Encryption::new(vec![k_new, k_old]);
    let t = Arc::clone(&tally);
    let store = Store::open_with("memory://rotation", move |o| {
        Ok(o.with_encryption(old)?.with_record_tally(t))
    })
    .await
    .unwrap();
    store
        .session("r")
        .unwrap()
        .add_items(items(2))
        .await
        .unwrap();
    let t = Arc::clone(&tally);
    let store = Store::open_with("memory://rotation", move |o| {
        Ok(o.with_encryption(both)?.with_record_tally(t))
    })
    .await
    .unwrap();
    let s = store.session("r").unwrap();
    s.add_items(items(1)).await.unwrap();
    tally.reset();
    assert_eq!(s.get_items(None).await.unwrap().len(), 3);
    let counts = tally.snapshot();
    assert_eq!((counts.current_key, counts.older_key), (1, 2));
}

#[tokio::test]
async fn key_sources_and_require_encryption() {
    let dir = tempfile::tempdir().unwrap();
    let keyfile = dir.path().join("keys");
    std::fs::write(
        &keyfile,
        format!("# newest first\n{}\n\n{}\n", key_text(8), key_text(9)),
    )
    .unwrap();
    let url = format!("memory://src?encryption_key_file={}", keyfile.display());
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.options().encryption.key_ids().len(), 2);
    let debug = format!("{:?} {:?}", store.options(), store.options().encryption);
    assert!(!debug.contains(&key_text(8)) && !debug.contains(&key_text(9)[..20]));

    std::env::set_var("OAS_TEST_BAD_KEY", "c2hvcnQ=");
    let err = Store::open("memory://?encryption_key_env=OAS_TEST_BAD_KEY")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("OAS_TEST_BAD_KEY"), "{err}");
    assert!(!err.to_string().contains("c2hvcnQ"), "{err}");
    let err = Store::open("memory://?encryption_key_env=OAS_TEST_UNSET_KEY_VAR")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("OAS_TEST_UNSET_KEY_VAR"));
    let secret = key_text(10);
    let err = Store::open(&format!("memory://?encryption_key={secret}"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(!err.to_string().contains(&secret));
    let err = Store::open("memory://?require_encryption=true")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);

    // require_encryption: plain records written before are not served, and never deleted.
    let db = dir.path().join("req.db");
    let plain = Store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    plain
        .session("p")
        .unwrap()
        .add_items(items(2))
        .await
        .unwrap();
    std::env::set_var("OAS_TEST_REQ_KEY", key_text(11));
    let strict = Store::open(&format!(
        "sqlite://{}?encryption_key_env=OAS_TEST_REQ_KEY&require_encryption=true",
        db.display()
    ))
    .await
    .unwrap();
    let s = strict.session("p").unwrap();
    assert!(s.get_items(None).await.unwrap().is_empty());
    assert_eq!(
        s.pop_item().await.unwrap_err().kind(),
        ErrorKind::Unreadable
    );
    s.add_items(items(1)).await.unwrap();
    assert_eq!(s.get_items(None).await.unwrap(), items(1));
    assert_eq!(
        plain
            .session("p")
            .unwrap()
            .get_items(Some(2))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::EncryptionKeyMissing
    );
}

#[test]
fn urls_redact_passwords_in_every_form() {
    use openai_agents_session::url::{redact, StoreUrl};
    for (url, secret) in [
        ("redis://user:hunter2@h:6379/0", "hunter2"),
        ("redis://:hunter2@h/0", "hunter2"),
        ("redis://u:hunter%402@h/0", "hunter%402"),
        ("redis://h/0?password=hunter2", "hunter2"),
        ("redis://h/0?prefix=a&Password=hunter2&ttl=3", "hunter2"),
        ("dynamodb://t?secret_access_key=hunter2", "hunter2"),
        ("redis://h/0?pass%77ord=hunter2", "hunter2"),
        ("memory://?encryption_key=hunter2", "hunter2"),
    ] {
        let shown = redact(url);
        assert!(!shown.contains(secret), "{url} -> {shown}");
        if let Ok(parsed) = StoreUrl::parse(url) {
            assert!(!format!("{parsed:?}").contains(secret), "{url}");
        }
    }
    assert_eq!(
        redact("sqlite://s.db?encryption_key_env=OAS_KEYS"),
        "sqlite://s.db?encryption_key_env=OAS_KEYS"
    );
}
