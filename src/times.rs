//! The range of time arguments the core accepts.
//!
//! Every instant passed in (`AuthorizeOptions::now`, `expires_at`, an audit query's
//! `since`, …) is unix milliseconds in `0 ..= MAX_TIME_MS` (1970-01-01 to the end of
//! year 9999, UTC). Outside it the call fails with `invalid_argument` and changes
//! nothing: such values only come from bugs or attacks, and bounding them keeps every
//! derived value (hour buckets, rate-limit nanoseconds, refill periods) far from `i64`
//! overflow.

use crate::error::{Error, Result};
use crate::model::Millis;

/// The earliest accepted instant: 1970-01-01T00:00:00Z.
pub const MIN_TIME_MS: Millis = 0;
/// The latest accepted instant: 9999-12-31T23:59:59.999Z.
pub const MAX_TIME_MS: Millis = 253_402_300_799_999;

/// `t` if it is in `MIN_TIME_MS ..= MAX_TIME_MS`, else `invalid_argument` naming `what`.
pub(crate) fn check(what: &str, t: Millis) -> Result<Millis> {
    if (MIN_TIME_MS..=MAX_TIME_MS).contains(&t) {
        Ok(t)
    } else {
        Err(Error::invalid(format!(
            "{what} must be a unix time in milliseconds between {MIN_TIME_MS} and {MAX_TIME_MS} (year 9999)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_ends_with_year_9999() {
        // 9999-12-31 is day 2 932 896 since the epoch.
        assert_eq!(MAX_TIME_MS + 1, 2_932_897 * 86_400_000);
        assert!(check("now", -1).is_err());
        assert!(check("now", MAX_TIME_MS + 1).is_err());
        assert!(check("now", i64::MIN).is_err());
        assert_eq!(check("now", 0).unwrap(), 0);
        assert_eq!(check("now", MAX_TIME_MS).unwrap(), MAX_TIME_MS);
    }
}
