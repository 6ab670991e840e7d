//! Instants on the command line (`audit --since`, `key create --expires-at`, `key expire
//! --at`): unix milliseconds, an RFC 3339 date-time, or a date.
//!
//! * unix milliseconds: `1796083200000` (a negative number is before 1970);
//! * RFC 3339: `2026-12-01T00:00:00Z`, `2026-12-01T01:00:00+01:00`,
//!   `2026-12-01T00:00:00.250Z` (a fraction beyond milliseconds is truncated; `t`, `z` and a
//!   space for `T` are accepted, as RFC 3339 allows; a leap second `:60` is read as the
//!   next minute's `:00`);
//! * a date alone: `2026-12-01`, midnight UTC.
//!
//! Anything else is `invalid_argument` (exit 8), with a message naming these forms.

use keyledger::Millis;

use crate::exit::{invalid, CliResult};

/// The forms an instant takes, for error messages and `--help`.
pub const FORMS: &str = "unix milliseconds (e.g. 1796083200000), an RFC 3339 date-time \
    (e.g. 2026-12-01T00:00:00Z or 2026-12-01T01:00:00+01:00) or a date (2026-12-01, midnight UTC)";

/// An instant argument as unix milliseconds (see the module docs).
pub fn parse_instant(what: &str, s: &str) -> CliResult<Millis> {
    let t = s.trim();
    if let Ok(ms) = t.parse::<i64>() {
        return Ok(ms);
    }
    rfc3339_millis(t).ok_or_else(|| invalid(format!("{what} must be {FORMS}; got {s:?}")))
}

/// `YYYY-MM-DD`, or `YYYY-MM-DD(T|t| )HH:MM:SS[.fraction](Z|z|±HH:MM)`, as unix ms.
fn rfc3339_millis(s: &str) -> Option<Millis> {
    let b = s.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    if b.len() == 10 {
        return Some(days * 86_400_000);
    }
    if b.len() < 20 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        // The first three digits, padded: `.5` is 500 ms, `.123456` is 123 ms.
        millis = (start..start + 3).fold(0i64, |n, k| {
            n * 10
                + b.get(k)
                    .filter(|d| k < i && d.is_ascii_digit())
                    .map_or(0, |d| i64::from(d - b'0'))
        });
    }
    let offset_minutes = match &b[i..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let m = oh * 60 + om;
            if *sign == b'-' {
                -m
            } else {
                m
            }
        }
        _ => return None,
    };
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_forms_read_as_the_same_instant() {
        let utc = 1_796_083_200_000; // 2026-12-01T00:00:00Z
        for s in [
            "1796083200000",
            "2026-12-01",
            "2026-12-01T00:00:00Z",
            "2026-12-01t00:00:00z",
            "2026-12-01 00:00:00Z",
            "2026-12-01T01:00:00+01:00",
            "2026-11-30T19:30:00-04:30",
            "2026-12-01T00:00:00.000Z",
            " 2026-12-01T00:00:00Z ",
        ] {
            assert_eq!(parse_instant("since", s).unwrap(), utc, "{s}");
        }
        assert_eq!(
            parse_instant("since", "2026-12-01T00:00:00.25Z").unwrap(),
            utc + 250
        );
        assert_eq!(
            parse_instant("since", "2026-12-01T00:00:00.123999Z").unwrap(),
            utc + 123
        );
        assert_eq!(parse_instant("since", "1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            parse_instant("since", "2024-02-29T12:00:00Z").unwrap(),
            1_709_208_000_000
        );
        assert_eq!(
            parse_instant("since", "1969-12-31T23:59:59Z").unwrap(),
            -1000
        );
        assert_eq!(parse_instant("since", "-5").unwrap(), -5);
    }

    #[test]
    fn malformed_instants_are_invalid_arguments_naming_the_forms() {
        for s in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-12-32",
            "2026-12-01T24:00:00Z",
            "2026-12-01T00:60:00Z",
            "2026-12-01T00:00:00",
            "2026-12-01T00:00:00+0100",
            "2026-12-01T00:00:00+24:00",
            "2026-12-01T00:00:00.Z",
            "2026-12-01T00:00Z",
            "2026-12-01X00:00:00Z",
            "+2026-12-01T00:00:00Z",
            "2026-12-01T00:00:00Z trailing",
            "1.5",
        ] {
            let err = parse_instant("since", s).unwrap_err();
            let text = format!("{err:?}");
            assert!(
                text.contains("RFC 3339") && text.contains("unix milliseconds"),
                "{s}: {text}"
            );
        }
    }
}
