//! Rate limits counted in the database (`ratelimit_mode=exact`): each limit's GCRA state
//! (its theoretical arrival time, unix nanoseconds) is one row of `kl_ratelimit_state`,
//! updated by one atomic statement per limit and call (its own commit), so every process
//! on every host draws from the same counter: a limit is never exceeded, at the cost of a
//! round trip and a commit per limited call. The table is part of the versioned schema
//! (version 3).

use postgres::Client;

use super::pg_err;
use crate::error::Result;
use crate::limits::{Exceeded, RateLimit, Taken};
use crate::model::{Millis, RateLimitStatus};

const NS_PER_MS: u64 = 1_000_000;

fn signed(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn ms_ceil(ns: u64) -> Millis {
    i64::try_from(ns.div_ceil(NS_PER_MS)).unwrap_or(i64::MAX)
}

/// Consume `weight` units of `def` (bucket `key`) at `now`, in the database.
pub(super) fn take(
    c: &mut Client,
    key: u64,
    def: &RateLimit,
    weight: u64,
    now: Millis,
) -> Result<std::result::Result<Taken, Exceeded>> {
    let now_ns = u64::try_from(now).unwrap_or(0).saturating_mul(NS_PER_MS);
    let window = def.duration_ms.saturating_mul(NS_PER_MS);
    let limit = def.limit.max(1);
    let interval = (window / limit).max(1);
    let increment = interval.saturating_mul(weight);
    let exceeded = |old: u64| {
        let new = old.max(now_ns).saturating_add(increment);
        let wait_ns = new.saturating_sub(now_ns).saturating_sub(window);
        Exceeded {
            name: def.name.clone(),
            max: limit,
            reset_ms: ms_ceil(now_ns.saturating_add(wait_ns)),
            retry_after_s: wait_ns.div_ceil(1_000_000_000).max(1),
        }
    };
    if increment > window {
        return Ok(Err(exceeded(now_ns)));
    }
    let row = c
        .query_opt(
            "INSERT INTO kl_ratelimit_state AS s (key, tat) VALUES ($1::bigint, $2::bigint + $3::bigint) \
             ON CONFLICT (key) DO UPDATE SET tat = greatest(s.tat, $2) + $3 \
             WHERE greatest(s.tat, $2) + $3 - $2 <= $4::bigint RETURNING tat",
            &[
                &signed(key),
                &clamp(now_ns),
                &clamp(increment),
                &clamp(window),
            ],
        )
        .map_err(pg_err)?;
    let Some(row) = row else {
        let old: Option<i64> = c
            .query_opt(
                "SELECT tat FROM kl_ratelimit_state WHERE key = $1",
                &[&signed(key)],
            )
            .map_err(pg_err)?
            .map(|r| r.get(0));
        return Ok(Err(exceeded(u64::try_from(old.unwrap_or(0)).unwrap_or(0))));
    };
    let new = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
    Ok(Ok(Taken {
        key,
        increment,
        status: RateLimitStatus {
            name: def.name.clone(),
            max: limit,
            remaining: (now_ns.saturating_add(window).saturating_sub(new)) / interval,
            reset_ms: ms_ceil(new),
        },
    }))
}

/// Give back what [`take`] consumed (the call was refused later).
pub(super) fn give_back(c: &mut Client, taken: &Taken) -> Result<()> {
    c.execute(
        "UPDATE kl_ratelimit_state SET tat = greatest(tat - $2::bigint, 0) WHERE key = $1::bigint",
        &[&signed(taken.key), &clamp(taken.increment)],
    )
    .map_err(pg_err)?;
    Ok(())
}
