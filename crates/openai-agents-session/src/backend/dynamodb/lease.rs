//! Session leases ([`crate::lease`]) on DynamoDB: one item per session that had a lease, in the
//! session's partition under the sort key `m#lease` (`lo` owner, `lt` the newest token ever
//! granted, `le` the end of that lease in ms, `ttl` a day after it). It is not the metadata
//! item: clears, expiry and staged replaces never touch it, and the `sessions` index never
//! lists it. Acquire, renew and release are one conditional `UpdateItem` each (a failed
//! condition returns the stored item, `ReturnValuesOnConditionCheckFailure = ALL_OLD`), and
//! `lease_info` one `GetItem`. A fenced write adds a `ConditionCheck` of the item (token and
//! end) to the transaction that makes the write visible; see `docs/storage/dynamodb.md`.

use std::time::Duration;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    ConditionCheck, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};

use super::error::{build_error, is_condition_failure, map_sdk, Reason};
use super::layout::{
    expr_maps, lease_key, lease_of, lease_ttl, n, s, token_value, Meta, Row, FENCE, LEASE_SK,
    META_SK,
};
use super::Inner;
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::lease::{self, Lease, LeaseGrant};
use crate::time::Timestamp;

/// How many conditional writes one acquisition attempt may take: each failed one returns the
/// stored lease, and the next is built on it (a second one is needed only when this process
/// guessed wrong: another owner released it, this owner holds it without this process knowing,
/// or another host's clock is ahead of this one's).
const ACQUIRE_WRITES: usize = 8;

/// The conditional write an acquisition sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// A new grant with this token: the item is missing, or its lease ended and its token is
    /// smaller.
    Grant(u64),
    /// The caller holds the live lease of this token: extend it.
    Extend(u64),
}

impl Attempt {
    /// What to send, knowing the stored lease `seen` (`None`: none, or unknown) at `now`.
    fn after(seen: Option<&Lease>, owner: &str, now: Timestamp, now_micros: u64) -> Attempt {
        match seen {
            Some(l) if l.is_live_at(now) && l.owner == owner => Attempt::Extend(l.token),
            Some(l) => Attempt::Grant(lease::next_token(l.token, now_micros)),
            None => Attempt::Grant(lease::next_token(0, now_micros)),
        }
    }

    fn token(self) -> u64 {
        match self {
            Attempt::Grant(t) | Attempt::Extend(t) => t,
        }
    }

    /// The attempt's condition and update expressions.
    fn expressions(self) -> (&'static str, &'static str) {
        match self {
            Attempt::Grant(_) => (
                "attribute_not_exists(#pk) OR (#le <= :now AND #lt < :tok)",
                "SET #lo = :o, #lt = :tok, #le = :exp, #ttl = :ttl",
            ),
            Attempt::Extend(_) => (
                "#lo = :o AND #lt = :tok AND #le > :now",
                "SET #le = :exp, #ttl = :ttl",
            ),
        }
    }
}

/// The stored item a failed `UpdateItem` condition returned (`ALL_OLD`), when it did.
fn failed_item<R>(err: &aws_sdk_dynamodb::error::SdkError<UpdateItemError, R>) -> Option<Row> {
    match err.as_service_error() {
        Some(UpdateItemError::ConditionalCheckFailedException(c)) => c.item().cloned(),
        _ => None,
    }
}

/// A lease that is live at `now`.
fn live(lease: Option<Lease>, now: Timestamp) -> Option<Lease> {
    lease.filter(|l| l.is_live_at(now))
}

/// The typed error of a fenced write whose `ConditionCheck` on the lease item failed: the
/// reason holds the item as stored (the live lease, if any, is named).
pub(super) fn fenced_by(op: Operation, token: u64, reason: &Reason) -> Error {
    let current = reason.item.as_ref().and_then(lease_of);
    Error::fenced(op, token, live(current, Timestamp::now()))
}

/// A fenced write's check on a lease item it read (`None`: there is none) before writing:
/// refuses at once when `token` is not the live lease's. The write's own transaction checks
/// again, atomically.
pub(super) fn check_read(op: Operation, token: u64, row: Option<&Row>) -> Result<()> {
    let now = Timestamp::now();
    match live(row.and_then(lease_of), now) {
        Some(l) if l.token == token => Ok(()),
        current => Err(Error::fenced(op, token, current)),
    }
}

/// Whether the `index`th action of a cancelled transaction is the one that failed its
/// condition.
pub(super) fn failed_at(reasons: &[Reason], index: usize) -> bool {
    reasons.get(index).is_some_and(Reason::failed_condition)
}

impl Inner {
    fn cached_lease(&self, session_id: &str) -> Option<Lease> {
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(session_id)
            .cloned()
    }

    /// Remembers the lease item as last seen (or that there is none), so that this process's
    /// next acquisition is built on it and takes one request.
    fn cache_lease(&self, session_id: &str, lease: Option<&Lease>) {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        match lease {
            Some(l) => {
                if leases.len() > 100_000 {
                    leases.clear();
                }
                leases.insert(session_id.to_owned(), l.clone());
            }
            None => {
                leases.remove(session_id);
            }
        }
    }

    /// A fenced write's `ConditionCheck` on the lease item: token `token`, not ended at `now`
    /// (ms, the writer's clock); a failure returns the item as stored.
    pub(super) fn fence_check(
        &self,
        op: Operation,
        session_id: &str,
        token: u64,
        now: i64,
    ) -> Result<TransactWriteItem> {
        let (names, values) = expr_maps(
            &[FENCE],
            vec![(":tok", token_value(token)), (":now", n(now))],
            &[],
        );
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(lease_key(session_id)))
            .condition_expression(FENCE)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| build_error(op, e))?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// The lease item as stored (one strongly consistent GetItem).
    async fn read_lease(&self, op: Operation, session_id: &str) -> Result<Option<Lease>> {
        self.stats.record_requests(op, 1);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(lease_key(session_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| map_sdk(op, &self.table, e))?;
        Ok(out.item().and_then(lease_of))
    }

    /// One conditional UpdateItem of the lease item; `Ok(Err(stored))` when its condition
    /// failed, with the lease as stored (`ALL_OLD`: DynamoDB returns nothing only when there
    /// is no item).
    async fn update_lease(
        &self,
        op: Operation,
        session_id: &str,
        condition: &str,
        update: &str,
        values: Vec<(&str, aws_sdk_dynamodb::types::AttributeValue)>,
        return_new: bool,
    ) -> Result<std::result::Result<Option<Row>, Option<Lease>>> {
        let (names, values) = expr_maps(&[condition, update], values, &[]);
        self.stats.record_requests(op, 1);
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(lease_key(session_id)))
            .condition_expression(condition)
            .update_expression(update)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if return_new {
            request = request.return_values(ReturnValue::AllNew);
        }
        match request.send().await {
            Ok(out) => Ok(Ok(out.attributes().cloned())),
            Err(e) if is_condition_failure(&e) => {
                Ok(Err(failed_item(&e).as_ref().and_then(lease_of)))
            }
            Err(e) => Err(map_sdk(op, &self.table, e)),
        }
    }

    /// One acquisition attempt ([`crate::Backend::acquire_lease`]): one conditional
    /// UpdateItem, built on the lease this process saw last; when that picture was wrong, the
    /// failed condition returns the stored lease and the next write is built on it.
    pub(super) async fn acquire_lease(
        &self,
        session_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<LeaseGrant> {
        let op = Operation::AcquireLease;
        let mut seen = self.cached_lease(session_id);
        for _ in 0..ACQUIRE_WRITES {
            let now = Timestamp::now();
            let attempt = Attempt::after(seen.as_ref(), owner, now, lease::now_micros());
            let expires_at = lease::expiry(now, ttl);
            let (condition, update) = attempt.expressions();
            let result = self
                .update_lease(
                    op,
                    session_id,
                    condition,
                    update,
                    vec![
                        (":o", s(owner)),
                        (":tok", token_value(attempt.token())),
                        (":now", n(now.as_millis())),
                        (":exp", n(expires_at.as_millis())),
                        (":ttl", n(lease_ttl(expires_at.as_millis()))),
                    ],
                    false,
                )
                .await?;
            match result {
                Ok(_) => {
                    let granted = Lease::new(owner, attempt.token(), expires_at);
                    self.cache_lease(session_id, Some(&granted));
                    return Ok(LeaseGrant::Granted(granted));
                }
                Err(stored) => {
                    self.cache_lease(session_id, stored.as_ref());
                    let now = Timestamp::now();
                    if let Some(held) = stored
                        .as_ref()
                        .filter(|l| l.is_live_at(now) && l.owner != owner)
                    {
                        return Ok(LeaseGrant::Held(held.clone()));
                    }
                    seen = stored;
                }
            }
        }
        Err(Error::new(
            ErrorKind::Timeout,
            op,
            format!(
                "the lease kept changing under {ACQUIRE_WRITES} conditional writes; nothing was granted"
            ),
        ))
    }

    /// Moves the end of the live lease of `token` to `now + ttl`: one conditional UpdateItem
    /// (`ALL_NEW` for the owner); anything else is `Fenced`, naming the live lease.
    pub(super) async fn renew_lease(
        &self,
        session_id: &str,
        token: u64,
        ttl: Duration,
    ) -> Result<Lease> {
        let op = Operation::RenewLease;
        let now = Timestamp::now();
        let expires_at = lease::expiry(now, ttl);
        let result = self
            .update_lease(
                op,
                session_id,
                FENCE,
                "SET #le = :exp, #ttl = :ttl",
                vec![
                    (":tok", token_value(token)),
                    (":now", n(now.as_millis())),
                    (":exp", n(expires_at.as_millis())),
                    (":ttl", n(lease_ttl(expires_at.as_millis()))),
                ],
                true,
            )
            .await?;
        match result {
            Ok(new) => {
                let renewed = new.as_ref().and_then(lease_of).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Backend,
                        op,
                        "DynamoDB did not return the renewed lease item",
                    )
                })?;
                self.cache_lease(session_id, Some(&renewed));
                Ok(renewed)
            }
            Err(stored) => {
                self.cache_lease(session_id, stored.as_ref());
                Err(Error::fenced(op, token, live(stored, Timestamp::now())))
            }
        }
    }

    /// Ends the lease of `token` now (`le = now`; the item stays, with the newest token): one
    /// conditional UpdateItem. A lease of `token` that ended already is a no-op; a token that
    /// is not the newest is `Fenced`.
    pub(super) async fn release_lease(&self, session_id: &str, token: u64) -> Result<()> {
        let op = Operation::ReleaseLease;
        let now = Timestamp::now().as_millis();
        let result = self
            .update_lease(
                op,
                session_id,
                FENCE,
                "SET #le = :now, #ttl = :ttl",
                vec![
                    (":tok", token_value(token)),
                    (":now", n(now)),
                    (":ttl", n(lease_ttl(now))),
                ],
                false,
            )
            .await?;
        match result {
            Ok(_) => {
                if let Some(mut mine) = self.cached_lease(session_id).filter(|l| l.token == token) {
                    mine.expires_at = Timestamp::from_millis(now);
                    self.cache_lease(session_id, Some(&mine));
                }
                Ok(())
            }
            Err(stored) => {
                self.cache_lease(session_id, stored.as_ref());
                match stored {
                    Some(newest) if newest.token == token => Ok(()), // ended already
                    other => Err(Error::fenced(op, token, live(other, Timestamp::now()))),
                }
            }
        }
    }

    /// The live lease: one strongly consistent GetItem.
    pub(super) async fn lease_info(&self, session_id: &str) -> Result<Option<Lease>> {
        let stored = self.read_lease(Operation::LeaseInfo, session_id).await?;
        self.cache_lease(session_id, stored.as_ref());
        Ok(live(stored, Timestamp::now()))
    }

    /// The metadata and the lease item together: one strongly consistent Query of
    /// `sk BETWEEN m AND m#lease` (nothing else sorts between them), for `session_info` and
    /// for fenced writes that read the session first anyway.
    pub(super) async fn meta_and_lease(
        &self,
        op: Operation,
        session_id: &str,
    ) -> Result<(Option<Meta>, Option<Row>)> {
        self.stats.record_requests(op, 1);
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :m AND :l")
            .expression_attribute_values(":pk", s(session_id))
            .expression_attribute_values(":m", s(META_SK))
            .expression_attribute_values(":l", s(LEASE_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| map_sdk(op, &self.table, e))?;
        let (mut meta, mut lease) = (None, None);
        for row in out.items() {
            match super::layout::sk_of(row) {
                Some(META_SK) => meta = Some(Meta::parse(row).map_err(|e| e.with_operation(op))?),
                Some(LEASE_SK) => lease = Some(row.clone()),
                _ => {}
            }
        }
        Ok((meta, lease))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::dynamodb::layout::{item_key, op_ttl};

    fn row(owner: &str, token: u64, ends: i64) -> Row {
        let mut row = lease_key("s");
        row.insert("lo".to_owned(), s(owner));
        row.insert("lt".to_owned(), token_value(token));
        row.insert("le".to_owned(), n(ends));
        row
    }

    #[test]
    fn attempts_follow_what_was_seen() {
        let now = Timestamp::from_millis(1_000);
        let mine = Lease::new("me", 7, Timestamp::from_millis(2_000));
        // Unknown or none: a grant taking the clock.
        assert_eq!(
            Attempt::after(None, "me", now, 5_000),
            Attempt::Grant(5_000)
        );
        // Live and mine: the same token, extended.
        assert_eq!(
            Attempt::after(Some(&mine), "me", now, 5_000),
            Attempt::Extend(7)
        );
        // Live and another owner's: a grant that will fail and name the holder.
        assert_eq!(
            Attempt::after(Some(&mine), "you", now, 5_000),
            Attempt::Grant(5_000)
        );
        // Ended (even mine): a new token above the newest.
        let ended = Timestamp::from_millis(2_000);
        assert_eq!(
            Attempt::after(Some(&mine), "me", ended, 5),
            Attempt::Grant(8)
        );
        let ahead = Lease::new("x", 9_000, Timestamp::from_millis(0));
        assert_eq!(
            Attempt::after(Some(&ahead), "me", now, 5_000),
            Attempt::Grant(9_001)
        );
        for attempt in [Attempt::Grant(1), Attempt::Extend(1)] {
            let (cond, update) = attempt.expressions();
            let (names, values) = expr_maps(
                &[cond, update],
                vec![
                    (":o", s("o")),
                    (":tok", token_value(1)),
                    (":now", n(1)),
                    (":exp", n(2)),
                    (":ttl", n(3)),
                ],
                &[],
            );
            // Every name the expressions use is known.
            for token in [cond, update]
                .join(" ")
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
                .filter(|t| t.starts_with('#'))
            {
                assert!(names.as_ref().unwrap().contains_key(token), "{token}");
            }
            assert!(values.unwrap().len() >= 4);
        }
    }

    #[test]
    fn lease_items_parse_and_say_when_they_go() {
        let item = row("é/{*}", u64::MAX, 61_500);
        let lease = lease_of(&item).unwrap();
        assert_eq!(
            lease,
            Lease::new("é/{*}", u64::MAX, Timestamp::from_millis(61_500))
        );
        assert_eq!(lease_of(&item_key("s", META_SK)), None);
        let mut no_token = item.clone();
        no_token.remove("lt");
        assert_eq!(lease_of(&no_token), None);
        // A day after the lease ends, rounded up to the second.
        assert_eq!(lease_ttl(61_500), op_ttl(61_500 + 86_400_000));
        assert_eq!(lease_ttl(1_000), 86_401);
        // The read-side fence check.
        let far = Timestamp::now().as_millis() + 60_000;
        assert!(check_read(Operation::AddItems, 4, Some(&row("o", 4, far))).is_ok());
        let err = check_read(Operation::AddItems, 3, Some(&row("o", 4, far))).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Fenced);
        assert_eq!(err.lease_holder().map(|l| l.token), Some(4));
        let err = check_read(Operation::PopItem, 4, Some(&row("o", 4, 0))).unwrap_err();
        assert_eq!((err.kind(), err.lease_holder()), (ErrorKind::Fenced, None));
        assert_eq!(
            check_read(Operation::PopItem, 4, None).unwrap_err().kind(),
            ErrorKind::Fenced
        );
        let reason = Reason {
            code: "ConditionalCheckFailed".to_owned(),
            item: Some(row("o", 9, far)),
        };
        let err = fenced_by(Operation::ClearSession, 4, &reason);
        assert_eq!(err.lease_holder().map(|l| l.token), Some(9));
        assert!(failed_at(&[reason], 0));
        assert!(!failed_at(&[], 0));
    }

    #[test]
    fn the_lease_key_sorts_where_the_queries_need_it() {
        use crate::backend::dynamodb::layout::{item_sk, op_sk};
        // Above the metadata: the walk from `m` down never meets it...
        assert!(LEASE_SK > META_SK && LEASE_SK.starts_with(META_SK));
        // ...and below every operation id: `m`..`m#lease` holds exactly the two.
        assert!(LEASE_SK < op_sk(0, "a").as_str());
        assert!(LEASE_SK > item_sk(i64::MAX, i64::MAX).as_str());
    }
}
