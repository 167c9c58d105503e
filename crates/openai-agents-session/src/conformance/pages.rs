//! Conformance cases of [`Store::read_before`] ([`crate::pages`]): paging backwards through a
//! history, positions that stay put across pops and appends, undecodable records skipped and
//! not counted, and a cost that does not grow with the history.

use super::*;
use crate::pages::PageBefore;

fn items_of(page: &PageBefore) -> Vec<Item> {
    page.items.iter().map(|i| i.item.clone()).collect()
}

fn positions_of(page: &PageBefore) -> Vec<u64> {
    page.items.iter().map(|i| i.position).collect()
}

/// Walks the whole history backwards in pages of `limit`, returning it oldest first with the
/// positions, and the number of pages.
async fn walk_back(
    store: &Store,
    id: &str,
    limit: usize,
) -> std::result::Result<(Vec<Item>, Vec<u64>, usize), Fail> {
    let (mut pages, mut before) = (Vec::new(), None);
    loop {
        let page = store.read_before(id, before, limit).await?;
        ensure!(
            page.items.len() <= limit,
            "a page holds at most limit items"
        );
        ensure!(
            page.earlier.is_none() || page.items.len() == limit,
            "a page with earlier records is full ({} of {limit})",
            page.items.len()
        );
        let earlier = page.earlier;
        pages.push(page);
        match earlier {
            Some(e) => before = Some(e),
            None => break,
        }
        ensure!(pages.len() <= 1000, "paging backwards ends");
    }
    let n = pages.len();
    let (mut items, mut positions) = (Vec::new(), Vec::new());
    for page in pages.iter().rev() {
        items.extend(items_of(page));
        positions.extend(positions_of(page));
    }
    Ok((items, positions, n))
}

pub(super) async fn read_before_pages_back_through_the_history(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = seeded(ctx, &store, "s", 25).await?;
    let newest = s.read_before(None, 4).await?;
    ensure_eq!(items_of(&newest), numbered(21..25), "the newest page");
    ensure!(newest.earlier.is_some(), "older items exist");
    for limit in [1, 3, 25, 100] {
        let (items, positions, pages) = walk_back(&store, s.session_id(), limit).await?;
        ensure_eq!(items, numbered(0..25), "pages of {limit} walked back");
        ensure!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "positions grow with the history: {positions:?}"
        );
        ensure_eq!(pages, 25usize.div_ceil(limit), "pages of {limit}");
        // Any item's position starts the page before it.
        let mid = positions[12];
        let page = store.read_before(s.session_id(), Some(mid), limit).await?;
        let want = 12usize.saturating_sub(limit) as u64..12;
        ensure_eq!(items_of(&page), numbered(want), "the page before item 12");
    }
    ensure_eq!(
        store.read_before(s.session_id(), None, 0).await?,
        PageBefore::default(),
        "limit 0 is empty"
    );
    let missing = store.read_before(&ctx.id("missing"), None, 10).await?;
    ensure_eq!(missing, PageBefore::default(), "a missing session");
    let cleared = seeded(ctx, &store, "cleared", 3).await?;
    cleared.clear_session().await?;
    ensure_eq!(
        cleared.read_before(None, 10).await?,
        PageBefore::default(),
        "a cleared session"
    );
    Ok(())
}

pub(super) async fn read_before_positions_stay_across_pops_and_appends(
    ctx: &Ctx<'_>,
) -> CaseResult {
    let store = ctx.store().await?;
    let s = seeded(ctx, &store, "s", 10).await?;
    let page = s.read_before(None, 10).await?;
    let positions = positions_of(&page);
    ensure_eq!(items_of(&page), numbered(0..10), "the history");
    s.pop_item().await?;
    s.pop_item().await?;
    s.add_items(numbered(100..103)).await?;
    let after = s.read_before(None, 100).await?;
    let mut want = numbered(0..8);
    want.extend(numbered(100..103));
    ensure_eq!(items_of(&after), want, "after two pops and an append");
    ensure_eq!(
        positions_of(&after)[..8],
        positions[..8],
        "items keep their positions"
    );
    ensure!(
        positions_of(&after).windows(2).all(|w| w[0] < w[1]),
        "new items are above the old ones"
    );
    // A position from before the change still pages the same older items.
    let before_five = s.read_before(Some(positions[5]), 3).await?;
    ensure_eq!(
        items_of(&before_five),
        numbered(2..5),
        "the page before item 5"
    );
    // Newer items are found above the newest position seen, as a live view polls for them.
    let newest_seen = positions[7];
    let newer: Vec<Item> = after
        .items
        .iter()
        .filter(|i| i.position > newest_seen)
        .map(|i| i.item.clone())
        .collect();
    ensure_eq!(newer, numbered(100..103), "items above a position");
    Ok(())
}

pub(super) async fn read_before_skips_undecodable_records_uncounted(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let s = ctx.session(&store, "bad")?;
    let id = s.session_id().to_owned();
    s.add_items(numbered(0..3)).await?;
    for record in corrupt_records() {
        raw(&store, &id, record).await?;
    }
    raw(&store, &id, unreadable_record()).await?;
    s.add_items(numbered(3..5)).await?;
    raw(&store, &id, unreadable_record()).await?;
    let newest = s.read_before(None, 3).await?;
    ensure_eq!(
        items_of(&newest),
        numbered(2..5),
        "limit counts valid items"
    );
    ensure_eq!(newest.unreadable, 2, "unreadable records passed over");
    ensure_eq!(
        newest.corrupt,
        corrupt_records().len() as u64,
        "corrupt records passed over"
    );
    ensure!(newest.earlier.is_some(), "older items exist");
    for limit in [1, 2, 100] {
        let (items, _, _) = walk_back(&store, &id, limit).await?;
        ensure_eq!(
            items,
            numbered(0..5),
            "pages of {limit} skip undecodable records"
        );
    }
    // Nothing was deleted: the unreadable records are still counted by session_info.
    let info = store.session_info(&id).await?;
    let stored = 5 + corrupt_records().len() as u64 + 2;
    ensure_eq!(info.map(|i| i.item_count), Some(stored), "records kept");
    Ok(())
}

pub(super) async fn read_before_cost_does_not_grow_with_history(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let small = seeded(ctx, &store, "small", 45).await?;
    let large = seeded(ctx, &store, "large", 3000).await?;
    let cost = |s: StoreSession, before: Option<u64>| {
        let store = store.clone();
        async move {
            let at = store.stats().total_requests();
            let page = s.read_before(before, 20).await?;
            ensure_eq!(page.items.len(), 20, "a full page");
            Ok::<_, Fail>((store.stats().total_requests() - at, page))
        }
    };
    // Warm-up, not measured: a backend may load a script on the server a session lives on at
    // its first call (Redis Cluster: NOSCRIPT, then EVAL, on each master), which is not a cost
    // of the history's length.
    small.read_before(None, 20).await?;
    large.read_before(None, 20).await?;
    let (small_newest, small_page) = cost(small.clone(), None).await?;
    let (large_newest, large_page) = cost(large.clone(), None).await?;
    ensure_eq!(large_newest, small_newest, "requests for the newest page");
    let (small_earlier, _) = cost(small, small_page.earlier).await?;
    let (large_earlier, _) = cost(large, large_page.earlier).await?;
    ensure_eq!(large_earlier, small_earlier, "requests for an earlier page");
    ensure!(
        large_newest <= 2 && large_earlier <= 2,
        "a page is at most two requests ({large_newest}, {large_earlier})"
    );
    Ok(())
}

pub(super) async fn list_newest_first_where_supported(ctx: &Ctx<'_>) -> CaseResult {
    let store = ctx.store().await?;
    let prefix = ctx.id("newest/");
    let names: Vec<String> = (0..7).map(|n| format!("{prefix}{n}")).collect();
    for name in &names {
        store.session(name)?.add_items(numbered(0..1)).await?;
    }
    // Touch one in the middle, a moment later: it becomes the most recently updated.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    store.session(&names[2])?.add_items(numbered(1..2)).await?;
    let (mut seen, mut cursor, mut sorted) = (Vec::new(), None, None);
    loop {
        let mut options = ListOptions::default()
            .prefix(prefix.clone())
            .page_size(3)
            .newest_first(true);
        if let Some(c) = cursor.take() {
            options = options.cursor(c);
        }
        let page = store.list_sessions(&options).await?;
        ensure!(
            sorted.is_none_or(|s| s == page.newest_first),
            "every page of one listing has the same order"
        );
        sorted = Some(page.newest_first);
        seen.extend(page.session_ids);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
        ensure!(seen.len() <= names.len(), "no duplicates across pages");
    }
    let mut all = seen.clone();
    all.sort();
    ensure_eq!(all, names, "every session once");
    if sorted == Some(true) {
        let mut updated = Vec::new();
        for id in &seen {
            let info = store.session_info(id).await?;
            updated.push(info.map(|i| i.updated_at));
        }
        ensure!(
            updated.windows(2).all(|w| w[0] >= w[1]),
            "most recently updated first: {seen:?}"
        );
        ensure_eq!(seen[0], names[2], "the session written last comes first");
    }
    Ok(())
}
