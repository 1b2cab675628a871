//! The wall clock as the receiver and status show it, and Docker's times read.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix milliseconds (0 if the clock is before 1970).
pub fn unix_ms_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Now, in Unix seconds (0 if the clock is before 1970).
pub(crate) fn unix_s_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Seconds since the epoch of an RFC 3339 UTC time as Docker writes it
/// (`2026-12-06T19:19:24.123456789Z`); None for anything else (Docker's zero time
/// `0001-01-01T00:00:00Z` gives a negative number, which is kept out).
pub(crate) fn epoch_seconds(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || !text.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (proleptic Gregorian), March-based years.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hh * 3600 + mm * 60 + ss;
    (seconds >= 0).then_some(seconds)
}

/// Unix nanoseconds of a time as Docker writes it, its fraction included; None as for
/// [`epoch_seconds`].
pub(crate) fn epoch_nanos(text: &str) -> Option<u64> {
    let seconds = u64::try_from(epoch_seconds(text)?).ok()?;
    let fraction = text.get(19..)?.strip_prefix('.').unwrap_or("");
    let digits: String = fraction
        .chars()
        .take_while(char::is_ascii_digit)
        .take(9)
        .collect();
    let nanos = match digits.is_empty() {
        true => 0,
        false => digits.parse::<u64>().ok()? * 10u64.pow(9 - digits.len() as u32),
    };
    seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_times_in_epoch_seconds() {
        assert_eq!(epoch_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            epoch_seconds("2026-12-06T19:19:24.123456789Z"),
            Some(1_796_584_764)
        );
        assert_eq!(epoch_seconds("2024-02-29T12:00:00Z"), Some(1_709_208_000));
        assert_eq!(epoch_seconds("0001-01-01T00:00:00Z"), None);
        assert_eq!(epoch_seconds("yesterday"), None);
        assert_eq!(epoch_seconds("2026-13-06T19:19:24Z"), None);
    }

    #[test]
    fn docker_times_in_epoch_nanoseconds() {
        assert_eq!(epoch_nanos("1970-01-01T00:00:01Z"), Some(1_000_000_000));
        assert_eq!(
            epoch_nanos("2026-12-07T10:00:00.5Z"),
            Some(1_796_637_600_500_000_000)
        );
        assert_eq!(
            epoch_nanos("0001-01-01T00:00:00Z"),
            None,
            "Docker's zero time"
        );
        assert_eq!(epoch_nanos("yesterday"), None);
    }
}
