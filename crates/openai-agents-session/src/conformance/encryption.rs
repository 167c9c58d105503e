//! Conformance cases of encryption at rest ([`crate::encryption`]). They hold for stores opened
//! with or without a key, checking what each configuration promises: with a key, records
//! sealed under another key (or moved, or damaged) are unreadable, skipped and never deleted;
//! without one, an encrypted record is a typed `EncryptionKeyMissing` error that changes
//! nothing.

use super::*;
use crate::codec::RecordCodec;
use crate::encryption::{Encryption, EncryptionKey};

/// A record of `session_id` holding `item`, sealed under a fresh random key that no store has.
pub fn foreign_encrypted_record(session_id: &str, item: &Item) -> Vec<u8> {
    let key = EncryptionKey::generate().expect("the system random generator works");
    RecordCodec::new(Encryption::new(vec![key]))
        .encode(session_id, item)
        .expect("the system random generator works")
}

async fn count_of(store: &Store, id: &str) -> std::result::Result<Option<u64>, Fail> {
    Ok(store.session_info(id).await?.map(|i| i.item_count))
}

pub(super) async fn encrypted_records_need_their_key(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = ctx.session(&store, "foreign-key")?;
    let id = s.session_id().to_owned();
    s.add_items(numbered(0..2)).await?;
    raw(
        &store,
        &id,
        foreign_encrypted_record(&id, &item(json!({"n": 99}))),
    )
    .await?;
    s.add_items(numbered(2..3)).await?;
    if store.options().encryption.is_enabled() {
        ensure_eq!(s.get_items(None).await?, numbered(0..3), "reads skip it");
        ensure_eq!(
            s.get_items(Some(2)).await?,
            numbered(1..3),
            "it is not counted toward limit"
        );
        ensure_eq!(
            s.pop_item().await?,
            Some(item(json!({"n": 2}))),
            "pop above it"
        );
        for attempt in 0..2 {
            let kind = s.pop_item().await.err().map(|e| e.kind());
            ensure_eq!(
                kind,
                Some(ErrorKind::Unreadable),
                "pop reaching it (attempt {attempt})"
            );
        }
        ensure_eq!(s.get_items(None).await?, numbered(0..2), "nothing removed");
        ensure_eq!(count_of(&store, &id).await?, Some(3), "the record is kept");
    } else {
        ensure_eq!(
            s.get_items(Some(1)).await?,
            numbered(2..3),
            "a read that stops above the encrypted record"
        );
        ensure_eq!(
            s.pop_item().await?,
            Some(item(json!({"n": 2}))),
            "pop above it"
        );
        for (what, kind) in [
            (
                "get_items(None)",
                s.get_items(None).await.err().map(|e| e.kind()),
            ),
            (
                "get_items(Some(1))",
                s.get_items(Some(1)).await.err().map(|e| e.kind()),
            ),
            ("pop_item", s.pop_item().await.err().map(|e| e.kind())),
        ] {
            ensure_eq!(
                kind,
                Some(ErrorKind::EncryptionKeyMissing),
                "{what} without a key"
            );
        }
        let err = s.pop_item().await.err();
        ensure!(
            err.as_ref()
                .is_some_and(|e| e.to_string().contains("encrypted records")),
            "the error says the session holds encrypted records: {err:?}"
        );
        ensure_eq!(count_of(&store, &id).await?, Some(3), "nothing was changed");
    }
    s.clear_session().await?;
    ensure_eq!(
        count_of(&store, &id).await?,
        None,
        "clear_session still clears"
    );
    Ok(())
}

pub(super) async fn encrypted_records_are_bound_and_sealed(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let codec = store.options().codec();
    let a = ctx.session(&store, "bound-a")?;
    let b = ctx.session(&store, "bound-b")?;
    let (a_id, b_id) = (a.session_id().to_owned(), b.session_id().to_owned());
    let moved = item(json!({"moved": "from a"}));
    b.add_items(numbered(0..1)).await?;
    // A record written for session a, copied into session b.
    raw(&store, &b_id, codec.encode(&a_id, &moved)?).await?;
    if !codec.encrypts() {
        // Plain records are not bound to their session: that is what encryption adds.
        ensure_eq!(
            b.get_items(None).await?,
            vec![numbered(0..1)[0].clone(), moved],
            "a plain record reads anywhere"
        );
        return Ok(());
    }
    ensure_eq!(
        b.get_items(None).await?,
        numbered(0..1),
        "a moved record is skipped"
    );
    ensure_eq!(
        b.pop_item().await.err().map(|e| e.kind()),
        Some(ErrorKind::Unreadable),
        "pop reaching a moved record"
    );
    // Damaged records of b's own: whatever byte is flipped, unreadable, never dropped.
    let own = codec.encode(&b_id, &item(json!({"own": true})))?;
    for at in [0, 1, 2, 5, own.len() / 2, own.len() - 1] {
        let mut bad = own.clone();
        bad[at] ^= 0x5a;
        raw(&store, &b_id, bad).await?;
    }
    ensure_eq!(
        b.get_items(None).await?,
        numbered(0..1),
        "damaged records are skipped"
    );
    ensure_eq!(
        b.get_items(Some(1)).await?,
        numbered(0..1),
        "and not counted"
    );
    ensure_eq!(
        b.pop_item().await.err().map(|e| e.kind()),
        Some(ErrorKind::Unreadable),
        "pop reaching a damaged record"
    );
    ensure_eq!(
        count_of(&store, &b_id).await?,
        Some(8),
        "nothing was removed"
    );
    raw(&store, &b_id, own).await?;
    ensure_eq!(
        b.get_items(Some(1)).await?,
        vec![item(json!({"own": true}))],
        "intact"
    );
    ensure_eq!(
        a.get_items(None).await?,
        Vec::<Item>::new(),
        "a is untouched"
    );
    Ok(())
}

/// Under `require_encryption` every plain record is unreadable, on every path: reads skip it
/// uncounted, and a pop reaching it fails with `Unreadable` and removes nothing, whatever the
/// backend decides on the server (a record starting with `{` but cut short included, and one
/// that is all the session has left). A store of the same data without the option still
/// reads and pops them. Without a key the option is refused at open.
pub(super) async fn plain_records_unreadable_under_require_encryption(ctx: &Ctx<'_>) -> CaseResult {
    let lax = ctx.store().await?;
    let required = FactoryOptions {
        require_encryption: true,
        ..FactoryOptions::default()
    };
    if !lax.options().encryption.is_enabled() {
        ensure_eq!(
            ctx.store_with(required).await.err().map(|e| e.kind()),
            Some(ErrorKind::Config),
            "require_encryption without a key is refused at open"
        );
        return Ok(());
    }
    let strict = ctx.store_with(required).await?;
    ensure!(
        strict.options().encryption.is_required(),
        "the factory passes require_encryption on"
    );
    let s = ctx.session(&strict, "required")?;
    let l = ctx.session(&lax, "required")?;
    let id = s.session_id().to_owned();
    let plain = |text: &str| text.as_bytes().to_vec();
    raw(&strict, &id, plain(r#"{"plain": "cut"#)).await?;
    s.add_items(numbered(0..1)).await?;
    raw(&strict, &id, plain(r#"{"plain":"below"}"#)).await?;
    s.add_items(numbered(1..2)).await?;
    raw(&strict, &id, plain(r#"{"plain":"newest"}"#)).await?;
    ensure_eq!(s.get_items(None).await?, numbered(0..2), "reads skip them");
    ensure_eq!(
        s.get_items(Some(1)).await?,
        numbered(1..2),
        "they are not counted toward limit"
    );
    let refused = |what: &str, r: crate::Result<Option<Item>>| match r {
        Err(e) if e.kind() == ErrorKind::Unreadable => Ok(()),
        other => Err(Fail(format!(
            "{what}: expected an Unreadable error, got {other:?}"
        ))),
    };
    for attempt in 0..2 {
        refused(
            &format!("pop reaching the newest, plain (attempt {attempt})"),
            s.pop_item().await,
        )?;
    }
    ensure_eq!(
        count_of(&strict, &id).await?,
        Some(5),
        "nothing was removed"
    );
    ensure_eq!(
        l.get_items(None).await?,
        vec![
            numbered(0..1)[0].clone(),
            item(json!({"plain": "below"})),
            numbered(1..2)[0].clone(),
            item(json!({"plain": "newest"})),
        ],
        "without require_encryption they read"
    );
    ensure_eq!(
        l.pop_item().await?,
        Some(item(json!({"plain": "newest"}))),
        "and pop"
    );
    ensure_eq!(
        s.pop_item().await?,
        numbered(1..2).pop(),
        "pop above a plain record"
    );
    refused("pop reaching a plain record", s.pop_item().await)?;
    ensure_eq!(count_of(&strict, &id).await?, Some(3), "it is kept");
    ensure_eq!(
        l.pop_item().await?,
        Some(item(json!({"plain": "below"}))),
        "popped without the option"
    );
    ensure_eq!(
        s.pop_item().await?,
        numbered(0..1).pop(),
        "pop above the cut one"
    );
    for attempt in 0..2 {
        refused(
            &format!("pop reaching a cut plain record, the last one (attempt {attempt})"),
            s.pop_item().await,
        )?;
    }
    ensure_eq!(
        count_of(&strict, &id).await?,
        Some(1),
        "the last record is kept"
    );
    ensure_eq!(s.get_items(None).await?, Vec::<Item>::new(), "and skipped");
    s.clear_session().await?;
    ensure_eq!(count_of(&strict, &id).await?, None, "clear_session clears");
    Ok(())
}
