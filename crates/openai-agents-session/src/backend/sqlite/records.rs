//! Decoders of stored formats that need no driver (feature `fuzzing` compiles this file without
//! rusqlite, for the fuzz targets): the Agents SDK tables' timestamps.

use crate::time::Timestamp;

/// `YYYY-MM-DD HH:MM:SS` (SQLite's CURRENT_TIMESTAMP, UTC) as a timestamp.
pub(crate) fn parse_sqlite_time(text: &str) -> Option<Timestamp> {
    let (date, time) = text.split_once([' ', 'T'])?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.trim_end_matches('Z').split(':');
    let (hh, mm) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let ss: f64 = t.next().unwrap_or("0").parse().ok()?;
    // Days from civil (Howard Hinnant), in checked arithmetic: a text with a huge year or
    // field is no time (it once overflowed: found by the fuzz target `redis`).
    let y2 = if m <= 2 { y.checked_sub(1)? } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2.rem_euclid(400);
    let mp = m.checked_add(9)? % 12;
    let doy = ((153 * mp + 2) / 5).checked_add(day)?.checked_sub(1)?;
    let doe = (yoe * 365 + yoe / 4 - yoe / 100).checked_add(doy)?;
    let days = era
        .checked_mul(146_097)?
        .checked_add(doe)?
        .checked_sub(719_468)?;
    let secs = days
        .checked_mul(86_400)?
        .checked_add(hh.checked_mul(3600)?)?
        .checked_add(mm.checked_mul(60)?)?;
    Some(Timestamp::from_millis(
        secs.checked_mul(1000)?.checked_add((ss * 1000.0) as i64)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::parse_sqlite_time;

    #[test]
    fn sqlite_timestamps() {
        assert_eq!(
            parse_sqlite_time("2023-11-14 22:13:20").map(|t| t.as_millis()),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_sqlite_time("2000-02-29T00:00:00.5Z").map(|t| t.as_millis()),
            Some(951_782_400_500)
        );
        assert_eq!(parse_sqlite_time("nonsense"), None);
    }

    #[test]
    fn huge_fields_are_no_time_not_an_overflow() {
        // Each overflowed the days-from-civil arithmetic (a panic in debug builds).
        for text in [
            "9223372036854775807-01-01 00:00:00",
            "-9223372036854775808-01-01 00:00:00",
            "2000-9223372036854775807-01 00:00:00",
            "2000-01-9223372036854775807 00:00:00",
            "2000-01-01 9223372036854775807:00:00",
            "2000-01-01 00:9223372036854775807:00",
            "300000000000000-01-01 00:00:00",
        ] {
            assert_eq!(parse_sqlite_time(text), None, "{text}");
        }
        assert_eq!(
            parse_sqlite_time("1970-01-01 00:00:00").map(|t| t.as_millis()),
            Some(0)
        );
    }
}
