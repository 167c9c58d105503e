//! Wall-clock timestamps (milliseconds since the Unix epoch) and the TTL arithmetic every backend
//! shares. Ordering never uses these: items are ordered by a per-session sequence.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time, in whole milliseconds since the Unix epoch (UTC).
///
/// Displays as RFC 3339 UTC with milliseconds:
///
/// ```
/// use openai_agents_session::Timestamp;
/// assert_eq!(Timestamp::from_millis(0).to_string(), "1970-01-01T00:00:00.000Z");
/// assert_eq!(Timestamp::from_millis(1_700_000_000_123).to_string(), "2023-11-14T22:13:20.123Z");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Timestamp {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Timestamp(millis)
    }

    /// A timestamp from milliseconds since the epoch.
    pub fn from_millis(millis: i64) -> Timestamp {
        Timestamp(millis)
    }

    /// Milliseconds since the epoch.
    pub fn as_millis(self) -> i64 {
        self.0
    }

    /// This time plus a number of whole seconds.
    pub fn plus_secs(self, secs: u64) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000)),
        )
    }

    /// The time as a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_millis(self.0 as u64)
        } else {
            UNIX_EPOCH - Duration::from_millis(self.0.unsigned_abs())
        }
    }

    /// RFC 3339 UTC with milliseconds, e.g. `2026-11-26T12:00:00.000Z`.
    pub fn to_rfc3339(self) -> String {
        let secs = self.0.div_euclid(1000);
        let millis = self.0.rem_euclid(1000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// When a session written (or, with refresh, read) at `now` expires; `None` without a TTL.
pub(crate) fn expiry_after(now: Timestamp, ttl_secs: Option<u64>) -> Option<Timestamp> {
    ttl_secs.map(|ttl| now.plus_secs(ttl))
}

/// Whether a session with this expiry is expired at `now` (expired sessions are invisible).
pub(crate) fn is_expired(expires_at: Option<Timestamp>, now: Timestamp) -> bool {
    matches!(expires_at, Some(at) if at <= now)
}

/// The `updated_at` of a write at `now`: it advances on every write, even within a millisecond.
pub(crate) fn advance_updated(previous: Option<Timestamp>, now: Timestamp) -> Timestamp {
    match previous {
        Some(prev) if prev >= now => Timestamp(prev.0 + 1),
        _ => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(
            Timestamp(951_782_400_000).to_rfc3339(),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            Timestamp(1_798_761_599_999).to_rfc3339(),
            "2026-12-31T23:59:59.999Z"
        );
        assert_eq!(Timestamp(-1).to_rfc3339(), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn ttl_arithmetic() {
        let now = Timestamp(10_000);
        assert_eq!(expiry_after(now, Some(2)), Some(Timestamp(12_000)));
        assert_eq!(expiry_after(now, None), None);
        assert!(is_expired(Some(Timestamp(10_000)), now));
        assert!(!is_expired(Some(Timestamp(10_001)), now));
        assert!(!is_expired(None, now));
        assert_eq!(
            advance_updated(Some(Timestamp(10_000)), now),
            Timestamp(10_001)
        );
        assert_eq!(advance_updated(Some(Timestamp(9_000)), now), now);
        assert_eq!(advance_updated(None, now), now);
    }
}
