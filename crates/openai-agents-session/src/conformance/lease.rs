//! Conformance cases of session leases ([`crate::lease`]): one holder at a time, the same-owner
//! rule, waiting, expiry and takeover, tokens that never repeat, renew and release by token,
//! fenced writes and transactions, and lease records that are not sessions.

use super::*;
use crate::error::Operation;
use crate::history::{Applied, HistoryTransaction};
use crate::lease::Lease;

const LONG: Duration = Duration::from_secs(30);

/// The kind of a failed call, or a Fail when it succeeded.
fn kind_of<T: fmt::Debug>(
    result: crate::Result<T>,
    what: &str,
) -> std::result::Result<Error, Fail> {
    match result {
        Err(e) => Ok(e),
        Ok(v) => Err(Fail(format!("{what}: expected an error, got {v:?}"))),
    }
}

fn fenced<T: fmt::Debug>(result: crate::Result<T>, what: &str) -> CaseResult {
    let err = kind_of(result, what)?;
    ensure_eq!(err.kind(), ErrorKind::Fenced, "{what}: {err}");
    ensure!(!err.is_retryable(), "{what}: Fenced is not retryable");
    Ok(())
}

async fn acquire(store: &Store, id: &str, owner: &str, ttl: Duration) -> crate::Result<Lease> {
    store.acquire_lease(id, owner, ttl, None).await
}

/// The history and the info (count, timestamps) of a session: what "nothing changed" compares.
async fn snapshot(
    store: &Store,
    id: &str,
) -> crate::Result<(Vec<String>, Option<(u64, crate::Timestamp)>)> {
    let items = store.session(id)?.get_items(None).await?;
    let info = store.session_info(id).await?;
    Ok((
        items.iter().map(|i| i.as_str().to_owned()).collect(),
        info.map(|i| (i.item_count, i.updated_at)),
    ))
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

pub(super) async fn lease_two_owners_race_one_wins(ctx: &Ctx<'_>) -> CaseResult {
    let stores = stores(ctx, 4).await?;
    let id = ctx.id("race");
    let mut tasks = Vec::new();
    for n in 0..16 {
        let store = stores[n % 4].clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            store
                .acquire_lease(&id, &format!("owner-{n}"), LONG, None)
                .await
        }));
    }
    let (mut winners, mut held) = (Vec::new(), Vec::new());
    for task in tasks {
        match task.await.map_err(|e| Fail(format!("task: {e}")))? {
            Ok(lease) => winners.push(lease),
            Err(e) if e.kind() == ErrorKind::LeaseHeld => held.push(e),
            Err(e) => return Err(Fail(format!("an acquire failed otherwise: {e}"))),
        }
    }
    ensure_eq!(winners.len(), 1, "exactly one owner wins: {winners:?}");
    let winner = winners.remove(0);
    ensure!(winner.token > 0, "tokens are positive");
    let info = stores[1].lease_info(&id).await?;
    ensure_eq!(info.as_ref(), Some(&winner), "lease_info shows the winner");
    for err in &held {
        ensure_eq!(
            err.lease_holder(),
            Some(&winner),
            "the error carries the holder"
        );
        ensure_eq!(err.operation(), Operation::AcquireLease, "operation");
        ensure_eq!(err.session_id(), Some(id.as_str()), "session");
        let text = err.to_string();
        ensure!(
            text.contains(&winner.owner) && text.contains(&winner.expires_at.to_string()),
            "the message names the holder's owner and expiry: {text}"
        );
        ensure!(!err.is_retryable(), "LeaseHeld is not retryable");
        ensure_eq!(err.kind().name(), "lease_held", "kind name");
    }
    Ok(())
}

pub(super) async fn lease_same_owner_reacquires_same_token(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let id = ctx.id("again");
    let first = acquire(&store, &id, "me", LONG).await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let again = acquire(&store, &id, "me", LONG).await?;
    ensure_eq!(again.token, first.token, "the same token");
    ensure_eq!(again.owner, "me", "the same owner");
    ensure!(
        again.expires_at > first.expires_at,
        "a later expiry: {} then {}",
        first.expires_at,
        again.expires_at
    );
    ensure_eq!(
        store.lease_info(&id).await?,
        Some(again.clone()),
        "lease_info"
    );
    let err = kind_of(
        acquire(&store, &id, "someone else", LONG).await,
        "another owner",
    )?;
    ensure_eq!(err.kind(), ErrorKind::LeaseHeld, "another owner: {err}");
    ensure_eq!(err.lease_holder(), Some(&again), "the holder");
    // The owner label is exact: case and spaces matter.
    for other in ["Me", "me ", " me"] {
        let err = kind_of(acquire(&store, &id, other, LONG).await, other)?;
        ensure_eq!(err.kind(), ErrorKind::LeaseHeld, "{other:?}");
    }
    Ok(())
}

pub(super) async fn lease_wait_then_acquire(ctx: &Ctx<'_>) -> CaseResult {
    let stores = stores(ctx, 2).await?;
    let id = ctx.id("wait");
    // Released while the second owner waits.
    let first = acquire(&stores[0], &id, "first", LONG).await?;
    let (holder_store, holder_id) = (stores[0].clone(), id.clone());
    let releaser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        holder_store.release_lease(&holder_id, first.token).await
    });
    let started = Instant::now();
    let second = stores[1]
        .acquire_lease(&id, "second", LONG, Some(Duration::from_secs(10)))
        .await?;
    let waited = started.elapsed();
    releaser.await.map_err(|e| Fail(format!("task: {e}")))??;
    ensure!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "waited for the release: {waited:?}"
    );
    ensure!(second.token > first.token, "a new, larger token");
    ensure_eq!(second.owner, "second", "owner");
    // Expiring while the third waits.
    stores[1].release_lease(&id, second.token).await?;
    let short = acquire(&stores[0], &id, "short", Duration::from_millis(400)).await?;
    let started = Instant::now();
    let third = stores[1]
        .acquire_lease(&id, "third", LONG, Some(Duration::from_secs(10)))
        .await?;
    let waited = started.elapsed();
    ensure!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "waited for the expiry: {waited:?}"
    );
    ensure!(third.token > short.token, "a new token after the expiry");
    // A wait shorter than the lease: LeaseHeld after about the wait.
    let started = Instant::now();
    let err = kind_of(
        stores[0]
            .acquire_lease(&id, "fourth", LONG, Some(Duration::from_millis(300)))
            .await,
        "a wait too short",
    )?;
    let waited = started.elapsed();
    ensure_eq!(err.kind(), ErrorKind::LeaseHeld, "{err}");
    ensure_eq!(err.lease_holder(), Some(&third), "the holder");
    ensure!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "gave up after the wait: {waited:?}"
    );
    // No wait: at once.
    let started = Instant::now();
    let err = kind_of(acquire(&stores[0], &id, "fifth", LONG).await, "no wait")?;
    ensure_eq!(err.kind(), ErrorKind::LeaseHeld, "{err}");
    ensure!(
        started.elapsed() < Duration::from_secs(2),
        "without a wait it fails at once"
    );
    Ok(())
}

pub(super) async fn lease_expiry_and_takeover_fence_the_old_holder(ctx: &Ctx<'_>) -> CaseResult {
    let stores = stores(ctx, 2).await?;
    let id = ctx.id("takeover");
    let old = acquire(&stores[0], &id, "old", Duration::from_millis(400)).await?;
    let old_handle = stores[0].session(&id)?.fenced(old.token);
    old_handle.add_items(numbered(0..2)).await?;
    tokio::time::sleep(Duration::from_millis(700)).await;
    ensure_eq!(
        stores[1].lease_info(&id).await?,
        None,
        "an expired lease is not shown"
    );
    // Expired and not yet taken over: already fenced.
    fenced(
        old_handle.add_items(numbered(50..51)).await,
        "a write after the expiry",
    )?;
    let new = acquire(&stores[1], &id, "new", LONG).await?;
    ensure!(new.token > old.token, "the takeover has a larger token");
    let new_handle = stores[1].session(&id)?.fenced(new.token);
    new_handle.add_items(numbered(2..4)).await?;
    let before = snapshot(&stores[1], &id).await?;
    fenced(
        old_handle.add_items(numbered(90..91)).await,
        "old add_items",
    )?;
    fenced(old_handle.pop_item().await, "old pop_item")?;
    fenced(old_handle.clear_session().await, "old clear_session")?;
    if ctx.factory.capabilities().transactions {
        let tx = HistoryTransaction::append_items(numbered(91..92));
        fenced(
            old_handle.apply_history_transaction("late", &tx).await,
            "old apply_history_transaction",
        )?;
    }
    fenced(
        stores[0].renew_lease(&id, old.token, LONG).await,
        "old renew",
    )?;
    fenced(stores[0].release_lease(&id, old.token).await, "old release")?;
    ensure_eq!(
        snapshot(&stores[1], &id).await?,
        before,
        "the old holder changed nothing"
    );
    ensure_eq!(
        stores[0].lease_info(&id).await?,
        Some(new.clone()),
        "the new lease is intact"
    );
    // Reads through the old handle still work (reads are not fenced).
    ensure_eq!(
        old_handle.get_items(None).await?,
        numbered(0..4),
        "only the holders' writes, in order"
    );
    let err = kind_of(
        old_handle.add_items(numbered(92..93)).await,
        "the Fenced error",
    )?;
    ensure_eq!(
        err.lease_holder(),
        Some(&new),
        "a Fenced error carries the live lease"
    );
    ensure_eq!(err.operation(), Operation::AddItems, "operation");
    ensure_eq!(err.session_id(), Some(id.as_str()), "session");
    Ok(())
}

pub(super) async fn lease_tokens_grow_across_release_expiry_and_clear(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let id = ctx.id("tokens");
    let session = store.session(&id)?;
    let mut tokens = Vec::new();
    // Granted, released, granted to someone else.
    let a = acquire(&store, &id, "a", LONG).await?;
    tokens.push(a.token);
    store.release_lease(&id, a.token).await?;
    let b = acquire(&store, &id, "b", LONG).await?;
    tokens.push(b.token);
    // The same owner after its release gets a new token too.
    store.release_lease(&id, b.token).await?;
    let b2 = acquire(&store, &id, "b", LONG).await?;
    tokens.push(b2.token);
    // A fenced clear keeps the lease; a new grant after the release still grows.
    let fenced_b = session.fenced(b2.token);
    fenced_b.add_items(numbered(0..2)).await?;
    fenced_b.clear_session().await?;
    ensure_eq!(
        store.lease_info(&id).await?,
        Some(b2.clone()),
        "clearing does not release the lease"
    );
    fenced_b.add_items(numbered(2..3)).await?;
    session.clear_session().await?;
    ensure_eq!(
        store.lease_info(&id).await?,
        Some(b2.clone()),
        "nor does an unfenced clear"
    );
    store.release_lease(&id, b2.token).await?;
    let c = acquire(&store, &id, "c", Duration::from_millis(200)).await?;
    tokens.push(c.token);
    // Expired, then taken by the same owner: a new token.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let c2 = acquire(&store, &id, "c", LONG).await?;
    tokens.push(c2.token);
    store.release_lease(&id, c2.token).await?;
    // After the session itself expired.
    if ctx.factory.capabilities().ttl {
        let short = ctx
            .store_with(FactoryOptions {
                ttl: Some(1),
                ..FactoryOptions::default()
            })
            .await?;
        let d = acquire(&short, &id, "d", LONG).await?;
        tokens.push(d.token);
        short
            .session(&id)?
            .fenced(d.token)
            .add_items(numbered(0..1))
            .await?;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        ensure!(
            short.session_info(&id).await?.is_none(),
            "the session expired"
        );
        ensure_eq!(
            short.lease_info(&id).await?.map(|l| l.token),
            Some(d.token),
            "the lease outlives the session's expiry"
        );
        short.release_lease(&id, d.token).await?;
        let e = acquire(&short, &id, "e", LONG).await?;
        tokens.push(e.token);
        short.release_lease(&id, e.token).await?;
    }
    ensure!(
        tokens.windows(2).all(|w| w[0] < w[1]) && tokens[0] > 0,
        "tokens are positive and grow: {tokens:?}"
    );
    Ok(())
}

pub(super) async fn lease_renew_and_release_by_token(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let id = ctx.id("renew");
    let lease = acquire(&store, &id, "w", Duration::from_secs(10)).await?;
    let renewed = store
        .renew_lease(&id, lease.token, Duration::from_secs(60))
        .await?;
    ensure_eq!(
        (renewed.token, renewed.owner.as_str()),
        (lease.token, "w"),
        "renewed"
    );
    ensure!(
        renewed.expires_at > lease.expires_at,
        "renewing moves the expiry"
    );
    ensure_eq!(
        store.lease_info(&id).await?,
        Some(renewed.clone()),
        "lease_info after the renewal"
    );
    for wrong in [0, lease.token - 1, lease.token + 1, u64::MAX] {
        fenced(
            store.renew_lease(&id, wrong, LONG).await,
            &format!("renew with token {wrong}"),
        )?;
        fenced(
            store.release_lease(&id, wrong).await,
            &format!("release with token {wrong}"),
        )?;
    }
    ensure_eq!(
        store.lease_info(&id).await?,
        Some(renewed.clone()),
        "wrong tokens changed nothing"
    );
    store.release_lease(&id, lease.token).await?;
    ensure_eq!(store.lease_info(&id).await?, None, "released");
    store.release_lease(&id, lease.token).await?;
    fenced(
        store.renew_lease(&id, lease.token, LONG).await,
        "renew after the release",
    )?;
    // A lease that expired is released already: a no-op; renewing it is too late.
    let short = acquire(&store, &id, "w", Duration::from_millis(200)).await?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    fenced(
        store.renew_lease(&id, short.token, LONG).await,
        "renew after the expiry",
    )?;
    store.release_lease(&id, short.token).await?;
    // Once another token was granted, the old one is stale for both.
    let next = acquire(&store, &id, "x", LONG).await?;
    fenced(
        store.release_lease(&id, short.token).await,
        "release of a stale token",
    )?;
    fenced(
        store.renew_lease(&id, lease.token, LONG).await,
        "renew of a stale token",
    )?;
    ensure_eq!(
        store.lease_info(&id).await?,
        Some(next.clone()),
        "the live lease is untouched"
    );
    // A session that never had a lease.
    let never = ctx.id("never");
    fenced(store.renew_lease(&never, 1, LONG).await, "renew, no lease")?;
    fenced(store.release_lease(&never, 1).await, "release, no lease")?;
    ensure_eq!(store.lease_info(&never).await?, None, "no lease");
    Ok(())
}

pub(super) async fn lease_fenced_writes_check_the_token(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let id = ctx.id("fenced");
    let plain = store.session(&id)?;
    // No lease at all: fenced writes fail and create nothing.
    let nobody = plain.fenced(1);
    fenced(
        nobody.add_items(numbered(0..1)).await,
        "add without a lease",
    )?;
    fenced(nobody.pop_item().await, "pop without a lease")?;
    fenced(nobody.clear_session().await, "clear without a lease")?;
    ensure!(
        store.session_info(&id).await?.is_none(),
        "a fenced write without a lease created nothing"
    );
    let lease = acquire(&store, &id, "holder", LONG).await?;
    let holder = plain.fenced(lease.token);
    ensure_eq!(holder.fencing_token(), Some(lease.token), "fencing_token");
    ensure_eq!(plain.fencing_token(), None, "unfenced");
    holder.add_items(numbered(0..3)).await?;
    ensure_eq!(
        holder.pop_item().await?,
        Some(numbered(2..3).remove(0)),
        "a fenced pop"
    );
    holder.add_items(vec![]).await?;
    let before = snapshot(&store, &id).await?;
    for wrong in [0, lease.token - 1, lease.token + 1] {
        let stale = plain.fenced(wrong);
        fenced(
            stale.add_items(numbered(10..11)).await,
            &format!("add, token {wrong}"),
        )?;
        fenced(stale.pop_item().await, &format!("pop, token {wrong}"))?;
        fenced(
            stale.clear_session().await,
            &format!("clear, token {wrong}"),
        )?;
        ensure_eq!(
            stale.get_items(None).await?,
            numbered(0..2),
            "reads are not fenced"
        );
    }
    ensure_eq!(
        snapshot(&store, &id).await?,
        before,
        "refused writes changed nothing"
    );
    // Unfenced handles keep working while the lease is held (leases are cooperative).
    plain.add_items(numbered(5..6)).await?;
    ensure_eq!(
        plain.pop_item().await?,
        Some(numbered(5..6).remove(0)),
        "pop"
    );
    // The holder's clear empties the session, keeps the lease, and writes go on.
    holder.clear_session().await?;
    ensure!(
        store.session_info(&id).await?.is_none(),
        "cleared by the holder"
    );
    ensure_eq!(holder.pop_item().await?, None, "a fenced pop of nothing");
    holder.add_items(numbered(7..8)).await?;
    ensure_eq!(
        plain.get_items(None).await?,
        numbered(7..8),
        "written after the clear"
    );
    Ok(())
}

pub(super) async fn lease_fenced_transactions(ctx: &Ctx<'_>) -> CaseResult {
    let stores = stores(ctx, 2).await?;
    let id = ctx.id("tx");
    let first = acquire(&stores[0], &id, "first", Duration::from_millis(400)).await?;
    let holder = stores[0].session(&id)?.fenced(first.token);
    let turn = HistoryTransaction::append_items(numbered(0..2));
    ensure_eq!(
        holder.apply_history_transaction("turn-1", &turn).await?,
        Applied::Now,
        "a fenced append"
    );
    ensure_eq!(
        holder.apply_history_transaction("turn-1", &turn).await?,
        Applied::Before,
        "its retry"
    );
    let rewind = HistoryTransaction::replace_suffix(numbered(1..2), numbered(10..11));
    ensure_eq!(
        holder.apply_history_transaction("rewind", &rewind).await?,
        Applied::Now,
        "a fenced replace_suffix"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let second = acquire(&stores[1], &id, "second", LONG).await?;
    let before = snapshot(&stores[1], &id).await?;
    let compaction = HistoryTransaction::replace_suffix(
        vec![item(json!({"n": 0})), item(json!({"n": 10}))],
        vec![item(json!({"summary": true}))],
    );
    fenced(
        holder
            .apply_history_transaction("compact", &compaction)
            .await,
        "a stale compaction",
    )?;
    fenced(
        holder
            .apply_history_transaction("turn-2", &HistoryTransaction::append_items(numbered(3..4)))
            .await,
        "a stale append",
    )?;
    ensure_eq!(snapshot(&stores[1], &id).await?, before, "nothing changed");
    // The refused transaction's id stays unused: the new holder applies it.
    let new_holder = stores[1].session(&id)?.fenced(second.token);
    ensure_eq!(
        new_holder
            .apply_history_transaction("compact", &compaction)
            .await?,
        Applied::Now,
        "the new holder's compaction under the refused id"
    );
    ensure_eq!(
        new_holder.get_items(None).await?,
        vec![item(json!({"summary": true}))],
        "compacted"
    );
    Ok(())
}

pub(super) async fn lease_records_are_not_sessions(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let id = ctx.id("invisible");
    let lease = acquire(&store, &id, "o", LONG).await?;
    ensure!(
        store.session_info(&id).await?.is_none(),
        "acquiring does not create the session"
    );
    ensure!(
        store.list_all_sessions(Some(&ctx.ns)).await?.is_empty(),
        "a lease is not listed"
    );
    ensure!(
        store.session(&id)?.get_items(None).await?.is_empty(),
        "nothing to read"
    );
    let holder = store.session(&id)?.fenced(lease.token);
    holder.add_items(numbered(0..2)).await?;
    let info = store
        .session_info(&id)
        .await?
        .ok_or_else(|| Fail("no info after a write".into()))?;
    ensure_eq!(info.item_count, 2, "item_count");
    ensure_eq!(
        info.lease,
        Some(lease.clone()),
        "session_info shows the lease"
    );
    ensure_eq!(
        store.list_all_sessions(Some(&ctx.ns)).await?,
        vec![id.clone()],
        "listed once, as a session"
    );
    store.release_lease(&id, lease.token).await?;
    ensure_eq!(
        store.session_info(&id).await?.and_then(|i| i.lease),
        None,
        "no lease after the release"
    );
    // A session cleared while leased is missing again, lease or not.
    let again = acquire(&store, &id, "o", LONG).await?;
    store
        .session(&id)?
        .fenced(again.token)
        .clear_session()
        .await?;
    ensure!(
        store.session_info(&id).await?.is_none(),
        "cleared while leased"
    );
    ensure!(
        store.list_all_sessions(Some(&ctx.ns)).await?.is_empty(),
        "not listed after the clear"
    );
    ensure_eq!(
        store.lease_info(&id).await?,
        Some(again),
        "the lease survives"
    );
    // Leases of ids that collide in naive key schemes are separate.
    let ids: Vec<String> = ADVERSARIAL_IDS.iter().map(|s| ctx.id(s)).collect();
    let mut granted = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        granted.push(acquire(&store, id, &format!("owner-{n}"), LONG).await?);
    }
    for (n, id) in ids.iter().enumerate() {
        ensure_eq!(
            store.lease_info(id).await?.map(|l| l.owner),
            Some(format!("owner-{n}")),
            "the lease of {id:?}"
        );
    }
    ensure!(
        store.list_all_sessions(Some(&ctx.ns)).await?.is_empty(),
        "no lease is listed"
    );
    Ok(())
}

pub(super) async fn lease_input_is_checked(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let id = ctx.id("input");
    for (owner, ttl, why) in [
        ("", LONG, "an empty owner"),
        (&*"o".repeat(257), LONG, "an owner of 257 bytes"),
        ("o", Duration::ZERO, "a zero ttl"),
        ("o", Duration::from_micros(999), "a ttl under a millisecond"),
    ] {
        let err = kind_of(acquire(&store, &id, owner, ttl).await, why)?;
        ensure_eq!(err.kind(), ErrorKind::InvalidInput, "{why}: {err}");
        ensure_eq!(err.operation(), Operation::AcquireLease, "{why}");
    }
    let err = kind_of(
        store.renew_lease(&id, 1, Duration::ZERO).await,
        "renew, zero ttl",
    )?;
    ensure_eq!(err.kind(), ErrorKind::InvalidInput, "renew: {err}");
    let err = kind_of(acquire(&store, "", "o", LONG).await, "an empty id")?;
    ensure_eq!(err.kind(), ErrorKind::InvalidSessionId, "{err}");
    ensure_eq!(err.operation(), Operation::AcquireLease, "operation");
    ensure_eq!(store.lease_info(&id).await?, None, "nothing was granted");
    // Any text is an owner, up to 256 bytes.
    let head = "é/{*}%\u{0} ";
    let odd = format!("{head}{}", "x".repeat(256 - head.len()));
    ensure_eq!(odd.len(), 256, "the odd owner's length");
    let lease = acquire(&store, &id, &odd, LONG).await?;
    ensure_eq!(lease.owner, odd, "owner kept exactly");
    ensure_eq!(
        store.lease_info(&id).await?.map(|l| l.owner),
        Some(odd),
        "lease_info"
    );
    Ok(())
}

pub(super) async fn lease_operations_are_one_request_each(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let id = ctx.id("requests");
    let plain = store.session(&id)?;
    // Warm up every path once (a backend may load scripts or prepare statements).
    let warm = acquire(&store, &id, "w", LONG).await?;
    let holder = plain.fenced(warm.token);
    holder.add_items(numbered(0..1)).await?;
    holder.pop_item().await?;
    holder.clear_session().await?;
    plain.add_items(numbered(0..1)).await?;
    plain.pop_item().await?;
    store.renew_lease(&id, warm.token, LONG).await?;
    store.lease_info(&id).await?;
    store.release_lease(&id, warm.token).await?;
    let stats = store.stats();
    let cost = |op: Operation, before: u64| stats.requests(op) - before;
    let mut figures = Vec::new();
    macro_rules! one {
        ($op:expr, $what:expr, $call:expr) => {{
            let before = stats.requests($op);
            let out = $call;
            figures.push(($what, cost($op, before)));
            out
        }};
    }
    let lease = one!(
        Operation::AcquireLease,
        "acquire",
        acquire(&store, &id, "w", LONG).await?
    );
    one!(
        Operation::AcquireLease,
        "acquire (held)",
        acquire(&store, &id, "other", LONG).await.err()
    );
    one!(
        Operation::RenewLease,
        "renew",
        store.renew_lease(&id, lease.token, LONG).await?
    );
    one!(
        Operation::LeaseInfo,
        "lease_info",
        store.lease_info(&id).await?
    );
    let holder = plain.fenced(lease.token);
    one!(
        Operation::AddItems,
        "fenced add_items",
        holder.add_items(numbered(0..2)).await?
    );
    one!(
        Operation::AddItems,
        "add_items",
        plain.add_items(numbered(2..3)).await?
    );
    one!(
        Operation::PopItem,
        "fenced pop_item",
        holder.pop_item().await?
    );
    one!(Operation::PopItem, "pop_item", plain.pop_item().await?);
    one!(
        Operation::AddItems,
        "refused fenced add_items",
        plain.fenced(0).add_items(numbered(9..10)).await.err()
    );
    one!(
        Operation::ClearSession,
        "fenced clear_session",
        holder.clear_session().await?
    );
    one!(
        Operation::ClearSession,
        "clear_session",
        plain.clear_session().await?
    );
    one!(
        Operation::ReleaseLease,
        "release",
        store.release_lease(&id, lease.token).await?
    );
    let of = |what: &str| {
        figures
            .iter()
            .find(|(w, _)| *w == what)
            .map_or(0, |(_, n)| *n)
    };
    // Lease operations are one request each; a fenced write costs what the same unfenced
    // write costs on this backend (the fence rides in the write's own atomic step), and a
    // refused one no more.
    for what in [
        "acquire",
        "acquire (held)",
        "renew",
        "lease_info",
        "release",
    ] {
        ensure_eq!(of(what), 1, "requests of {what}");
    }
    for write in ["add_items", "pop_item", "clear_session"] {
        ensure_eq!(
            of(&format!("fenced {write}")),
            of(write),
            "requests of fenced {write} against unfenced"
        );
    }
    ensure!(
        of("refused fenced add_items") <= of("add_items"),
        "a refused fenced add_items costs {} requests, more than an add_items ({})",
        of("refused fenced add_items"),
        of("add_items")
    );
    Ok(())
}
