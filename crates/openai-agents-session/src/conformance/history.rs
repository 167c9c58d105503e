//! Conformance cases of history transactions ([`crate::history`]): idempotence, conditions,
//! equality, failure leaving nothing, concurrency, retention and clearing.

use super::*;
use crate::history::{Applied, ConflictReason, HistoryTransaction};

fn append(items: Vec<Item>) -> HistoryTransaction {
    HistoryTransaction::append_items(items)
}

fn replace(expected: Vec<Item>, replacement: Vec<Item>) -> HistoryTransaction {
    HistoryTransaction::replace_suffix(expected, replacement)
}

fn conflict_of(result: crate::Result<Applied>) -> std::result::Result<ConflictReason, Fail> {
    match result {
        Err(e) if e.kind() == ErrorKind::Conflict => e
            .conflict_reason()
            .ok_or_else(|| Fail(format!("a Conflict without a reason: {e}"))),
        Err(e) => Err(Fail(format!("expected a Conflict, got {e}"))),
        Ok(applied) => Err(Fail(format!("expected a Conflict, got {applied:?}"))),
    }
}

fn texts(items: &[Item]) -> Vec<String> {
    items.iter().map(|i| i.as_str().to_owned()).collect()
}

pub(super) async fn tx_append_applies_once_and_says_so(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = ctx.session(&store, "once")?;
    let tx = append(numbered(0..3));
    ensure_eq!(
        s.apply_history_transaction("op-1", &tx).await?,
        Applied::Now,
        "first apply"
    );
    ensure_eq!(
        s.apply_history_transaction("op-1", &tx).await?,
        Applied::Before,
        "retry"
    );
    ensure_eq!(s.get_items(None).await?, numbered(0..3), "applied once");
    // An empty append records the id and adds nothing.
    let empty = append(vec![]);
    ensure_eq!(
        s.apply_history_transaction("op-empty", &empty).await?,
        Applied::Now,
        "empty"
    );
    ensure_eq!(
        s.apply_history_transaction("op-empty", &empty).await?,
        Applied::Before,
        "empty again"
    );
    ensure_eq!(s.get_items(None).await?, numbered(0..3), "nothing added");
    // Any UTF-8 id up to 256 bytes.
    let odd = format!("{}{}", "é/{*}%\u{0}", "x".repeat(240));
    ensure_eq!(
        s.apply_history_transaction(&odd, &append(numbered(3..4)))
            .await?,
        Applied::Now,
        "odd id"
    );
    ensure_eq!(s.get_items(None).await?, numbered(0..4), "after the odd id");
    Ok(())
}

pub(super) async fn tx_retry_from_another_store_is_applied_before(ctx: &Ctx<'_>) -> CaseResult {
    let first = ctx.store().await?;
    let second = if ctx.factory.capabilities().persistent {
        ctx.store().await?
    } else {
        first.clone()
    };
    let tx = append(numbered(0..2));
    ensure_eq!(
        ctx.session(&first, "retry")?
            .apply_history_transaction("turn-7", &tx)
            .await?,
        Applied::Now,
        "first store"
    );
    ensure_eq!(
        ctx.session(&second, "retry")?
            .apply_history_transaction("turn-7", &tx)
            .await?,
        Applied::Before,
        "the retry through another store"
    );
    // The same transaction spelled differently (key order, numbers) is the same transaction.
    let respelled = append(vec![
        item(json!({"n": 0})),
        Item::from_json_str(r#"{"n":1.0}"#).map_err(Fail::from)?,
    ]);
    ensure_eq!(
        ctx.session(&second, "retry")?
            .apply_history_transaction("turn-7", &respelled)
            .await?,
        Applied::Before,
        "the same transaction, spelled otherwise"
    );
    ensure_eq!(
        ctx.session(&second, "retry")?.get_items(None).await?,
        numbered(0..2),
        "once"
    );
    Ok(())
}

pub(super) async fn tx_reused_id_with_another_transaction_conflicts(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = ctx.session(&store, "reused")?;
    s.apply_history_transaction("op", &append(numbered(0..2)))
        .await?;
    let before = texts(&s.get_items(None).await?);
    for other in [
        append(numbered(5..6)),
        replace(numbered(1..2), vec![]),
        append(vec![]),
    ] {
        let reason = conflict_of(s.apply_history_transaction("op", &other).await)?;
        ensure_eq!(reason, ConflictReason::OperationReused, "reason");
    }
    let err = s
        .apply_history_transaction("op", &append(numbered(5..6)))
        .await
        .err()
        .ok_or_else(|| Fail("no error".into()))?;
    ensure!(!err.is_retryable(), "a conflict is not retryable: {err}");
    ensure_eq!(err.kind().name(), "conflict", "kind name");
    ensure!(
        err.to_string().contains("op"),
        "the message names the id: {err}"
    );
    ensure_eq!(texts(&s.get_items(None).await?), before, "nothing changed");
    Ok(())
}

pub(super) async fn tx_suffix_mismatch_changes_nothing(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = ctx.session(&store, "mismatch")?;
    let odd = Item::from_json_str(r#"{"z":1.50,"a":"\u00e9"}"#).map_err(Fail::from)?;
    s.add_items(vec![item(json!({"n": 0})), odd.clone()])
        .await?;
    let before = texts(&s.get_items(None).await?);
    for (expected, why) in [
        (numbered(7..8), "a different newest item"),
        (
            vec![odd.clone(), item(json!({"n": 0}))],
            "the right items in the wrong order",
        ),
        (
            vec![item(json!({"n": 9})), item(json!({"n": 0})), odd.clone()],
            "longer than the history",
        ),
    ] {
        let reason = conflict_of(
            s.apply_history_transaction("m", &replace(expected, numbered(100..101)))
                .await,
        )?;
        ensure_eq!(reason, ConflictReason::SuffixMismatch, "{why}");
        ensure_eq!(
            texts(&s.get_items(None).await?),
            before,
            "{why}: byte-exact, unchanged"
        );
    }
    let missing = ctx.session(&store, "mismatch-missing")?;
    let reason = conflict_of(
        missing
            .apply_history_transaction("m", &replace(numbered(0..1), vec![]))
            .await,
    )?;
    ensure_eq!(
        reason,
        ConflictReason::SuffixMismatch,
        "a missing session has no suffix"
    );
    ensure!(
        store.session_info(missing.session_id()).await?.is_none(),
        "not created"
    );
    Ok(())
}

pub(super) async fn tx_failed_transaction_leaves_its_id_unused(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = seeded(ctx, &store, "unused", 3).await?;
    let wrong = replace(numbered(7..8), vec![]);
    conflict_of(s.apply_history_transaction("fix", &wrong).await)?;
    let right = replace(numbered(2..3), vec![]);
    ensure_eq!(
        s.apply_history_transaction("fix", &right).await?,
        Applied::Now,
        "the corrected retry"
    );
    ensure_eq!(s.get_items(None).await?, numbered(0..2), "rewound");
    Ok(())
}

pub(super) async fn tx_equality_ignores_key_order_and_number_spelling(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = ctx.session(&store, "equal")?;
    let stored = [
        r#"{"b":1,"a":[1.0,{"y":2,"x":"\u00e9"}]}"#,
        r#"{"big":123456789012345678901234567890,"f":1e2}"#,
    ];
    let expected = [
        r#"{"a":[1,{"x":"é","y":2.0}],"b":1.0}"#,
        r#"{"f":100,"big":1.23456789012345678901234567890e29}"#,
    ];
    let parse = |t: &[&str]| -> std::result::Result<Vec<Item>, Fail> {
        t.iter()
            .map(|s| Item::from_json_str(s).map_err(Fail::from))
            .collect()
    };
    s.add_items(parse(&stored)?).await?;
    let tx = replace(parse(&expected)?, numbered(0..1));
    ensure_eq!(
        s.apply_history_transaction("eq", &tx).await?,
        Applied::Now,
        "equal as JSON"
    );
    ensure_eq!(s.get_items(None).await?, numbered(0..1), "replaced");
    // Numbers that differ by one past 64 bits, and arrays out of order, are different.
    s.add_items(parse(&[r#"{"n":18446744073709551617,"l":[1,2]}"#])?)
        .await?;
    for (other, why) in [
        (
            r#"{"n":18446744073709551616,"l":[1,2]}"#,
            "a big integer one apart",
        ),
        (
            r#"{"n":18446744073709551617,"l":[2,1]}"#,
            "an array out of order",
        ),
    ] {
        let reason = conflict_of(
            s.apply_history_transaction("ne", &replace(parse(&[other])?, vec![]))
                .await,
        )?;
        ensure_eq!(reason, ConflictReason::SuffixMismatch, "{why}");
    }
    Ok(())
}

pub(super) async fn tx_rewind_and_compaction(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = seeded(ctx, &store, "rewind", 5).await?;
    // A rewind: exactly the newest two or nothing.
    ensure_eq!(
        s.apply_history_transaction("rewind", &replace(numbered(3..5), vec![]))
            .await?,
        Applied::Now,
        "rewind"
    );
    ensure_eq!(s.get_items(None).await?, numbered(0..3), "after the rewind");
    // A compaction: the whole history replaced by a summary.
    let summary = vec![item(
        json!({"role": "system", "content": "summary of 0..3"}),
    )];
    ensure_eq!(
        s.apply_history_transaction("compact", &replace(numbered(0..3), summary.clone()))
            .await?,
        Applied::Now,
        "compaction"
    );
    ensure_eq!(s.get_items(None).await?, summary, "after the compaction");
    // An empty expected suffix appends.
    s.apply_history_transaction("tail", &replace(vec![], numbered(9..10)))
        .await?;
    let mut want = summary.clone();
    want.extend(numbered(9..10));
    ensure_eq!(s.get_items(None).await?, want, "an empty suffix appends");
    // Pops and further writes work on the result.
    s.add_items(numbered(10..11)).await?;
    ensure_eq!(
        s.pop_item().await?,
        Some(numbered(10..11).remove(0)),
        "pop after"
    );
    Ok(())
}

pub(super) async fn tx_compaction_loses_to_a_concurrent_append(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = seeded(ctx, &store, "race", 4).await?;
    let seen = s.get_items(None).await?;
    // Meanwhile another writer appends.
    s.add_items(numbered(4..5)).await?;
    let reason = conflict_of(
        s.apply_history_transaction("compact", &replace(seen, numbered(100..101)))
            .await,
    )?;
    ensure_eq!(
        reason,
        ConflictReason::SuffixMismatch,
        "the stale compaction"
    );
    ensure_eq!(
        s.get_items(None).await?,
        numbered(0..5),
        "the concurrent write survives"
    );
    Ok(())
}

async fn stores(ctx: &Ctx<'_>, n: usize) -> crate::Result<Vec<Store>> {
    let first = ctx.store().await?;
    let mut all = vec![first.clone()];
    for _ in 1..n {
        all.push(if ctx.factory.capabilities().persistent {
            ctx.store().await?
        } else {
            first.clone()
        });
    }
    Ok(all)
}

pub(super) async fn tx_concurrent_applies_of_one_id_apply_once(ctx: &Ctx<'_>) -> CaseResult {
    let stores = stores(ctx, 4).await?;
    let id = ctx.id("hundred");
    let tx = append(numbered(0..3));
    let mut tasks = Vec::new();
    for n in 0..100 {
        let session = stores[n % 4].session(&id)?;
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            session.apply_history_transaction("the-one", &tx).await
        }));
    }
    let (mut now, mut before) = (0, 0);
    for task in tasks {
        match task.await.map_err(|e| Fail(format!("task: {e}")))? {
            Ok(Applied::Now) => now += 1,
            Ok(Applied::Before) => before += 1,
            Err(e) => return Err(Fail(format!("an apply failed: {e}"))),
        }
    }
    ensure_eq!((now, before), (1, 99), "applied now once, before 99 times");
    ensure_eq!(
        stores[0].session(&id)?.get_items(None).await?,
        numbered(0..3),
        "applied once"
    );
    Ok(())
}

pub(super) async fn tx_racing_replace_suffix_one_wins(ctx: &Ctx<'_>) -> CaseResult {
    let stores = stores(ctx, 4).await?;
    let id = ctx.id("racers");
    stores[0].session(&id)?.add_items(numbered(0..3)).await?;
    let mut tasks = Vec::new();
    for n in 0..12u64 {
        let session = stores[n as usize % 4].session(&id)?;
        let tx = replace(numbered(2..3), numbered(100 + n..101 + n));
        tasks.push(tokio::spawn(async move {
            session
                .apply_history_transaction(&format!("racer-{n}"), &tx)
                .await
        }));
    }
    let mut winners = 0;
    for task in tasks {
        match task.await.map_err(|e| Fail(format!("task: {e}")))? {
            Ok(Applied::Now) => winners += 1,
            result => {
                ensure_eq!(
                    conflict_of(result)?,
                    ConflictReason::SuffixMismatch,
                    "a loser"
                );
            }
        }
    }
    ensure_eq!(winners, 1, "exactly one racer wins");
    let items = stores[0].session(&id)?.get_items(None).await?;
    ensure_eq!(items.len(), 3, "one replacement: {items:?}");
    ensure_eq!(items[..2].to_vec(), numbered(0..2), "the rest is untouched");
    Ok(())
}

pub(super) async fn tx_clear_forgets_operation_ids(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = ctx.session(&store, "clear")?;
    let tx = append(numbered(0..1));
    s.apply_history_transaction("op", &tx).await?;
    s.clear_session().await?;
    ensure_eq!(
        s.apply_history_transaction("op", &tx).await?,
        Applied::Now,
        "after a clear"
    );
    ensure_eq!(s.get_items(None).await?, numbered(0..1), "applied again");
    Ok(())
}

pub(super) async fn tx_retention_expiry_forgets_operation_ids(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx
        .store_with(FactoryOptions {
            operation_retention: Some(1),
            ..FactoryOptions::default()
        })
        .await?;
    let s = ctx.session(&store, "retention")?;
    let tx = append(numbered(0..1));
    s.apply_history_transaction("op", &tx).await?;
    ensure_eq!(
        s.apply_history_transaction("op", &tx).await?,
        Applied::Before,
        "remembered"
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    ensure_eq!(
        s.apply_history_transaction("op", &tx).await?,
        Applied::Now,
        "forgotten after retention"
    );
    ensure_eq!(s.get_items(None).await?.len(), 2, "applied again");
    Ok(())
}

pub(super) async fn tx_invalid_input_writes_nothing(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx
        .store_with(FactoryOptions {
            max_item_bytes: Some(64),
            ..FactoryOptions::default()
        })
        .await?;
    let s = ctx.session(&store, "invalid")?;
    let tx = append(numbered(0..1));
    for id in [String::new(), "x".repeat(257)] {
        let err = s
            .apply_history_transaction(&id, &tx)
            .await
            .err()
            .ok_or_else(|| Fail(format!("the id of {} bytes was accepted", id.len())))?;
        ensure_eq!(err.kind(), ErrorKind::InvalidInput, "bad id");
    }
    let big = append(vec![item(json!({"text": "y".repeat(100)}))]);
    let err = s
        .apply_history_transaction("big", &big)
        .await
        .err()
        .ok_or_else(|| Fail("an item over max_item_bytes was accepted".into()))?;
    ensure_eq!(err.kind(), ErrorKind::TooLarge, "too large");
    ensure!(
        store.session_info(s.session_id()).await?.is_none(),
        "nothing was written"
    );
    ensure_eq!(
        s.apply_history_transaction("big", &tx).await?,
        Applied::Now,
        "the id is unused"
    );
    Ok(())
}

pub(super) async fn tx_undecodable_record_never_matches(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = ctx.session(&store, "undecodable")?;
    let id = s.session_id().to_owned();
    s.add_items(numbered(0..1)).await?;
    raw(&store, &id, corrupt_records()[0].clone()).await?;
    // Whatever is expected, a record that does not decode is not it.
    for expected in [numbered(0..1), vec![item(json!({}))]] {
        let reason = conflict_of(
            s.apply_history_transaction("u", &replace(expected, vec![]))
                .await,
        )?;
        ensure_eq!(
            reason,
            ConflictReason::SuffixMismatch,
            "an undecodable newest record"
        );
    }
    raw(&store, &id, unreadable_record()).await?;
    let reason = conflict_of(
        s.apply_history_transaction("u", &replace(numbered(0..1), vec![]))
            .await,
    )?;
    ensure_eq!(
        reason,
        ConflictReason::SuffixMismatch,
        "an unreadable newest record"
    );
    ensure_eq!(s.get_items(None).await?, numbered(0..1), "nothing removed");
    Ok(())
}
