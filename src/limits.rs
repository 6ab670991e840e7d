//! Rate limits: GCRA counters shared by every process through the sidecar.
//!
//! A limit `(name, limit, duration)` allows `limit` units per `duration`, with bursts up to
//! `limit`. Its state is one 64-bit "theoretical arrival time" (TAT, unix nanoseconds) in a
//! sidecar bucket, updated with compare-and-swap: no lock, no fsync, no redb write. A call
//! of weight `w` is allowed when `max(tat, now) + w·T − now ≤ duration`, where
//! `T = duration / limit` is the emission interval.
//!
//! Buckets are found by open addressing on a 64-bit hash of (owner, name, limit,
//! duration), so changing a limit's definition starts it afresh. A bucket whose TAT is in
//! the past holds no information (the limit is at full capacity), so it may be taken over
//! by another limit when the table is crowded. Documented approximations:
//! - when no bucket is free within the probe window, or the vault runs without a sidecar,
//!   the limit is counted per process (each worker allows the full rate);
//! - taking over an idle bucket races with its old owner for at most one call;
//! - a machine crash may lose the file's last writes (counters reset towards full capacity);
//!   a vault copied elsewhere starts with fresh counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::model::{Millis, RateLimitStatus};
use crate::shm::RateBucket;
use crate::{Error, Result};

const PROBES: usize = 16;
const NS_PER_MS: u64 = 1_000_000;

/// A stored limit definition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// The limit's name (1–64 chars of `[a-z0-9:._-]`).
    pub name: String,
    /// Units allowed per window.
    pub limit: u64,
    /// The window, in milliseconds.
    pub duration_ms: u64,
    /// Checked by every `authorize` (else only when named in `limits`).
    pub auto_apply: bool,
}

/// What a limit is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitOwner<'a> {
    /// A key: the limit meters that key alone.
    Key(&'a str),
    /// An account: the limit is shared by all its keys.
    Account(&'a str),
}

impl<'a> LimitOwner<'a> {
    /// The owner named by exactly one of `key_id` and `account_id` (the rule every host
    /// checks through here); both or neither is [`Error::InvalidArgument`].
    pub fn from_ids(
        key_id: Option<&'a str>,
        account_id: Option<&'a str>,
    ) -> Result<LimitOwner<'a>> {
        match (key_id, account_id) {
            (Some(k), None) => Ok(LimitOwner::Key(k)),
            (None, Some(a)) => Ok(LimitOwner::Account(a)),
            _ => Err(Error::invalid("give exactly one of key_id and account_id")),
        }
    }

    /// The owner's name in its rate buckets' keys (`k:<key_id>` / `a:<account_id>`).
    pub(crate) fn bucket_owner(&self) -> String {
        match self {
            LimitOwner::Key(k) => format!("k:{k}"),
            LimitOwner::Account(a) => format!("a:{a}"),
        }
    }
}

/// The bucket key of a limit: never 0 (0 marks a free bucket).
pub(crate) fn bucket_key(owner: &str, def: &RateLimit) -> u64 {
    let h = blake3::Hasher::new()
        .update(b"keyledger ratelimit v1\0")
        .update(owner.as_bytes())
        .update(b"\0")
        .update(def.name.as_bytes())
        .update(b"\0")
        .update(&def.limit.to_le_bytes())
        .update(&def.duration_ms.to_le_bytes())
        .finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(b).max(1)
}

/// A limit as the hot path uses it: its definition and its bucket key, computed once
/// when the key or account is read (not on every call).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BoundLimit {
    pub key: u64,
    pub def: RateLimit,
}

/// Bind the limits of `owner` (a `LimitOwner::bucket_owner()`) to their buckets.
pub(crate) fn bind(owner: &str, defs: Vec<RateLimit>) -> Vec<BoundLimit> {
    defs.into_iter()
        .map(|def| BoundLimit {
            key: bucket_key(owner, &def),
            def,
        })
        .collect()
}

/// A limit consumed by a call, to report in the grant or to give back.
#[derive(Clone, Debug)]
pub(crate) struct Taken {
    pub key: u64,
    pub increment: u64,
    pub status: RateLimitStatus,
}

/// Why a limit refused.
#[derive(Clone, Debug)]
pub(crate) struct Exceeded {
    pub name: String,
    pub max: u64,
    pub reset_ms: Millis,
    pub retry_after_s: u64,
}

/// The counters: the sidecar's buckets, with a per-process fallback.
pub(crate) struct Counters {
    local: Mutex<HashMap<u64, u64>>,
    /// How many processes count the same limits apart (PostgreSQL's `ratelimit_hosts`):
    /// each allows `ceil(limit / share)` per window. 1 elsewhere.
    share: u64,
}

impl Counters {
    #[cfg(test)]
    pub(crate) fn new() -> Counters {
        Counters::with_share(1)
    }

    /// Counters that allow each limit's `1/share` part (rounded up, at least 1).
    pub(crate) fn with_share(share: u64) -> Counters {
        Counters {
            local: Mutex::new(HashMap::new()),
            share: share.max(1),
        }
    }

    /// Find (or claim) the bucket of `key` in `buckets`.
    fn bucket(buckets: &[RateBucket], key: u64, now_ns: u64) -> Option<&AtomicU64> {
        let n = buckets.len();
        if n == 0 {
            return None;
        }
        #[allow(clippy::cast_possible_truncation)]
        let start = (key as usize) % n;
        let mut idle: Option<&RateBucket> = None;
        for i in 0..PROBES.min(n) {
            let b = &buckets[(start + i) % n];
            let k = b.key.load(Ordering::Acquire);
            if k == key {
                return Some(&b.tat);
            }
            if k == 0 {
                match b
                    .key
                    .compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return Some(&b.tat),
                    Err(k) if k == key => return Some(&b.tat),
                    Err(_) => continue,
                }
            }
            if idle.is_none() && b.tat.load(Ordering::Acquire) <= now_ns {
                idle = Some(b);
            }
        }
        // Take over an idle bucket: its past TAT means "full capacity" for us too.
        let b = idle?;
        let old = b.key.load(Ordering::Acquire);
        if b.tat.load(Ordering::Acquire) <= now_ns
            && b.key
                .compare_exchange(old, key, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Some(&b.tat);
        }
        None
    }

    /// Consume `weight` units of `def` (bucket `key`) at `now`, or say why not.
    pub(crate) fn take(
        &self,
        buckets: &[RateBucket],
        key: u64,
        def: &RateLimit,
        weight: u64,
        now: Millis,
    ) -> Result<Taken, Exceeded> {
        let now_ns = u64::try_from(now).unwrap_or(0).saturating_mul(NS_PER_MS);
        let window = def.duration_ms.saturating_mul(NS_PER_MS);
        let limit = def.limit.div_ceil(self.share).max(1);
        let interval = (window / limit).max(1);
        let increment = interval.saturating_mul(weight);
        let decide = |old: u64| -> Result<u64, Exceeded> {
            let new = old.max(now_ns).saturating_add(increment);
            if new - now_ns > window {
                // The call fits again once the TAT has drained this far.
                let wait_ns = new - now_ns - window;
                return Err(Exceeded {
                    name: def.name.clone(),
                    max: limit,
                    reset_ms: ns_to_ms_ceil(now_ns.saturating_add(wait_ns)),
                    retry_after_s: wait_ns.div_ceil(1_000_000_000).max(1),
                });
            }
            Ok(new)
        };
        let new = match Self::bucket(buckets, key, now_ns) {
            Some(tat) => {
                let mut old = tat.load(Ordering::Acquire);
                loop {
                    let new = decide(old)?;
                    match tat.compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Acquire) {
                        Ok(_) => break new,
                        Err(cur) => old = cur,
                    }
                }
            }
            None => {
                let mut local = self.local.lock();
                let tat = local.entry(key).or_insert(0);
                let new = decide(*tat)?;
                *tat = new;
                new
            }
        };
        Ok(Taken {
            key,
            increment,
            status: RateLimitStatus {
                name: def.name.clone(),
                max: limit,
                remaining: (now_ns.saturating_add(window).saturating_sub(new)) / interval,
                reset_ms: ns_to_ms_ceil(new),
            },
        })
    }

    /// Give back what `take` consumed (the call was refused later).
    pub(crate) fn give_back(&self, buckets: &[RateBucket], taken: &Taken) {
        let tat = buckets
            .iter()
            .find(|b| b.key.load(Ordering::Acquire) == taken.key)
            .map(|b| &b.tat);
        match tat {
            Some(tat) => {
                let _ = tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                    Some(t.saturating_sub(taken.increment))
                });
            }
            None => {
                if let Some(t) = self.local.lock().get_mut(&taken.key) {
                    *t = t.saturating_sub(taken.increment);
                }
            }
        }
    }
}

fn ns_to_ms_ceil(ns: u64) -> Millis {
    i64::try_from(ns.div_ceil(NS_PER_MS)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_is_exactly_one_of_key_and_account() {
        assert_eq!(
            LimitOwner::from_ids(Some("k"), None).unwrap(),
            LimitOwner::Key("k")
        );
        assert_eq!(
            LimitOwner::from_ids(None, Some("a")).unwrap(),
            LimitOwner::Account("a")
        );
        for (k, a) in [(None, None), (Some("k"), Some("a"))] {
            let e = LimitOwner::from_ids(k, a).unwrap_err();
            assert_eq!(e.code(), "invalid_argument");
            assert!(e
                .to_string()
                .contains("exactly one of key_id and account_id"));
        }
    }

    fn buckets(n: usize) -> Vec<RateBucket> {
        (0..n)
            .map(|_| RateBucket {
                key: AtomicU64::new(0),
                tat: AtomicU64::new(0),
            })
            .collect()
    }

    fn def(limit: u64, duration_ms: u64) -> RateLimit {
        RateLimit {
            name: "per_second".into(),
            limit,
            duration_ms,
            auto_apply: true,
        }
    }

    const NOW: Millis = 1_795_392_000_000;

    #[test]
    fn ten_per_second_allows_ten_then_refuses_then_recovers() {
        let b = buckets(64);
        let c = Counters::new();
        let d = def(10, 1000);
        let key = bucket_key("k:aaaaaaaa", &d);
        for i in 0..10 {
            let t = c.take(&b, key, &d, 1, NOW).unwrap();
            assert_eq!(t.status.remaining, 9 - i);
        }
        let e = c.take(&b, key, &d, 1, NOW).unwrap_err();
        assert_eq!(e.retry_after_s, 1);
        assert_eq!(e.max, 10);
        // 100 ms later one unit has come back.
        assert!(c.take(&b, key, &d, 1, NOW + 100).is_ok());
        assert!(c.take(&b, key, &d, 1, NOW + 100).is_err());
        // A second later the full burst is back.
        for _ in 0..10 {
            c.take(&b, key, &d, 1, NOW + 1100).unwrap();
        }
    }

    #[test]
    fn a_heavy_call_weighs_more_and_a_refused_one_consumes_nothing() {
        let b = buckets(64);
        let c = Counters::new();
        let d = def(10, 1000);
        let key = bucket_key("a:acct", &d);
        c.take(&b, key, &d, 7, NOW).unwrap();
        assert!(c.take(&b, key, &d, 4, NOW).is_err());
        let t = c.take(&b, key, &d, 3, NOW).unwrap();
        assert_eq!(t.status.remaining, 0);
        c.give_back(&b, &t);
        assert!(c.take(&b, key, &d, 3, NOW).is_ok());
    }

    #[test]
    fn a_changed_definition_gets_a_fresh_bucket() {
        let a = def(10, 1000);
        let b = def(20, 1000);
        assert_ne!(bucket_key("k:x", &a), bucket_key("k:x", &b));
        assert_ne!(bucket_key("k:x", &a), bucket_key("a:x", &a));
    }

    #[test]
    fn without_buckets_the_limit_is_counted_per_process() {
        let c = Counters::new();
        let d = def(2, 1000);
        let key = bucket_key("k:x", &d);
        c.take(&[], key, &d, 1, NOW).unwrap();
        c.take(&[], key, &d, 1, NOW).unwrap();
        assert!(c.take(&[], key, &d, 1, NOW).is_err());
    }

    #[test]
    fn a_crowded_table_reuses_idle_buckets() {
        let b = buckets(4);
        let c = Counters::new();
        let d = def(1, 1000);
        // Fill all four buckets with limits that are busy now.
        for i in 0..4 {
            let k = bucket_key(&format!("k:{i}"), &d);
            c.take(&b, k, &d, 1, NOW).unwrap();
        }
        // Later, when they are idle again, a new limit takes one over (shared, not local).
        let k = bucket_key("k:new", &d);
        c.take(&b, k, &d, 1, NOW + 5000).unwrap();
        assert!(b.iter().any(|x| x.key.load(Ordering::Relaxed) == k));
    }

    #[test]
    fn a_share_allows_the_limit_divided_by_the_hosts_rounded_up() {
        let b = buckets(4);
        let c = Counters::with_share(3);
        let d = def(10, 1000);
        let granted = (0..20).filter(|_| c.take(&b, 1, &d, 1, 0).is_ok()).count();
        assert_eq!(granted, 4, "ceil(10 / 3)");
        assert_eq!(c.take(&b, 1, &d, 1, 0).unwrap_err().max, 4);
    }

    #[test]
    fn threads_never_exceed_the_limit() {
        let b = std::sync::Arc::new(buckets(64));
        let c = std::sync::Arc::new(Counters::new());
        let d = def(1000, 60_000);
        let key = bucket_key("k:x", &d);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (b, c, d) = (b.clone(), c.clone(), d.clone());
                std::thread::spawn(move || {
                    (0..600)
                        .filter(|_| c.take(&b, key, &d, 1, NOW).is_ok())
                        .count()
                })
            })
            .collect();
        let granted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(granted, 1000);
    }
}

/// Calendar arithmetic for refills (UTC, proleptic Gregorian).
pub(crate) mod calendar {
    use crate::model::{Millis, Refill, RefillInterval};

    const DAY_MS: i64 = 86_400_000;

    /// (year, month 1–12, day 1–31) of a day count since 1970-01-01; `None` when the
    /// arithmetic would overflow (never for the days of `crate::times`' range).
    fn civil_from_days(z: i64) -> Option<(i64, i64, i64)> {
        let z = z.checked_add(719_468)?;
        let era = z.div_euclid(146_097);
        let doe = z.checked_sub(era.checked_mul(146_097)?)?;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = era
            .checked_mul(400)?
            .checked_add(yoe)?
            .checked_add(i64::from(m <= 2))?;
        Some((y, m, d))
    }

    /// Days since 1970-01-01 of (year, month 1–12, day); `None` on overflow.
    fn days_from_civil(y: i64, m: i64, d: i64) -> Option<i64> {
        let y = if m <= 2 { y.checked_sub(1)? } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = if m > 2 { m - 3 } else { m + 9 };
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era.checked_mul(146_097)?
            .checked_add(doe)?
            .checked_sub(719_468)
    }

    fn month_start(y: i64, m: i64, day: i64) -> Option<Millis> {
        let (y, m) = if m < 1 {
            (y.checked_sub(1)?, m + 12)
        } else if m > 12 {
            (y.checked_add(1)?, m - 12)
        } else {
            (y, m)
        };
        days_from_civil(y, m, day)?.checked_mul(DAY_MS)
    }

    /// Start of the refill period that contains `now`; `None` if it is not representable
    /// (only for instants far outside `crate::times`' range).
    pub(crate) fn period_start(refill: &Refill, now: Millis) -> Option<Millis> {
        let days = now.div_euclid(DAY_MS);
        match refill.interval {
            RefillInterval::Daily => days.checked_mul(DAY_MS),
            RefillInterval::Monthly => {
                let (y, m, d) = civil_from_days(days)?;
                let day = i64::from(refill.day);
                if d >= day {
                    month_start(y, m, day)
                } else {
                    month_start(y, m - 1, day)
                }
            }
        }
    }

    /// Start of the period after the one starting at `start`; `None` if it is not
    /// representable (the refill is then never due).
    pub(crate) fn next_period(refill: &Refill, start: Millis) -> Option<Millis> {
        match refill.interval {
            RefillInterval::Daily => start.checked_add(DAY_MS),
            RefillInterval::Monthly => {
                let (y, m, _) = civil_from_days(start.div_euclid(DAY_MS))?;
                month_start(y, m + 1, i64::from(refill.day))
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn ps(r: &Refill, now: Millis) -> Millis {
            period_start(r, now).unwrap()
        }

        fn np(r: &Refill, start: Millis) -> Millis {
            next_period(r, start).unwrap()
        }

        #[test]
        fn extreme_instants_give_none_instead_of_overflowing() {
            for interval in [RefillInterval::Daily, RefillInterval::Monthly] {
                let r = Refill {
                    amount: 1,
                    interval,
                    day: 28,
                };
                assert_eq!(next_period(&r, i64::MAX), None);
                let _ = period_start(&r, i64::MIN);
                let _ = period_start(&r, i64::MAX);
            }
        }

        fn at(y: i64, m: i64, d: i64, h: i64) -> Millis {
            days_from_civil(y, m, d).unwrap() * DAY_MS + h * 3_600_000
        }

        #[test]
        fn civil_dates_round_trip() {
            for z in [-800_000, -1, 0, 1, 10_957, 20_415, 2_000_000] {
                let (y, m, d) = civil_from_days(z).unwrap();
                assert_eq!(days_from_civil(y, m, d), Some(z));
            }
            assert_eq!(civil_from_days(0), Some((1970, 1, 1)));
            assert_eq!(
                civil_from_days(days_from_civil(2024, 2, 29).unwrap()),
                Some((2024, 2, 29))
            );
        }

        #[test]
        fn monthly_periods_start_on_their_day() {
            let r = Refill {
                amount: 1,
                interval: RefillInterval::Monthly,
                day: 15,
            };
            assert_eq!(ps(&r, at(2026, 11, 23, 5)), at(2026, 11, 15, 0));
            assert_eq!(ps(&r, at(2026, 11, 14, 23)), at(2026, 10, 15, 0));
            assert_eq!(ps(&r, at(2026, 1, 3, 0)), at(2025, 12, 15, 0));
            assert_eq!(np(&r, at(2026, 12, 15, 0)), at(2027, 1, 15, 0));
            let first = Refill { day: 1, ..r };
            assert_eq!(ps(&first, at(2026, 12, 1, 0)), at(2026, 12, 1, 0));
            assert_eq!(ps(&first, at(2026, 11, 30, 23)), at(2026, 11, 1, 0));
        }

        #[test]
        fn daily_periods_start_at_midnight_utc() {
            let r = Refill {
                amount: 1,
                interval: RefillInterval::Daily,
                day: 1,
            };
            assert_eq!(ps(&r, at(2026, 11, 23, 17)), at(2026, 11, 23, 0));
            assert_eq!(np(&r, at(2026, 11, 23, 0)), at(2026, 11, 24, 0));
        }
    }
}
