//! Events (alert thresholds, the event log, consumers' cursors, expiry notices) and usage
//! reports; see `crate::events` for what is recorded when.
//!
//! The hooks other parts call inside their own transactions:
//! - [`Inner::credits_moved`]: from every commit that changes a balance (debits, refills,
//!   `set_credits`; holds' settle/release should call it too), writes one `balance_below`
//!   event per threshold crossed downwards;
//! - [`Inner::record_event`]: any other event (`key_revoked` from `update_key`,
//!   `credits_refilled` from `refill_if_due`);
//! - [`Inner::charged_cell`]: from a debit of a call, its usage cell (charged credits and
//!   charged calls by key and route);
//! - the flusher calls [`Inner::expiry_tick`] and the usage flush adds calls and refusals
//!   to the cells ([`Inner::flushed_cells`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64};

use super::{
    json, validate_id, Error, Inner, KeyRecord, Matched, Millis, Ordering, Result, Value, Vault,
    WriteTx, HOUR_MS,
};
use crate::events::{
    Event, Metrics, ReportBy, ReportCell, StoredEvent, UsageRow, ALL_ROUTES, MAX_ALERTS,
    MAX_EVENTS_PAGE, UNCHARGED_ROUTE,
};
use crate::usage::EventKey;

/// The mark holding the expiry notice horizon (ms; absent: no notices).
const EXPIRY_HORIZON: &str = "expiry_horizon_ms";
/// How often a process scans the keys for expiry notices (ms).
const EXPIRY_SCAN_EVERY_MS: Millis = 60_000;
/// Longest consumer name.
const MAX_CONSUMER: usize = 64;

/// Per-handle state of events, and the process counters of `Vault::metrics`.
#[derive(Default)]
pub(super) struct EventsState {
    /// When this handle may next scan for expiring keys.
    next_expiry_scan: AtomicI64,
    /// Granted calls, as of the last usage flush.
    grants: AtomicU64,
    /// Refused calls by code, as of the last usage flush.
    refusals: parking_lot::Mutex<BTreeMap<&'static str, u64>>,
    /// Debits (credits charged > 0) in committed transactions.
    debits: AtomicU64,
    /// Key lookups the cache could not answer (a store read).
    pub(super) key_cache_misses: AtomicU64,
}

impl EventsState {
    /// Count a committed usage flush.
    pub(super) fn flushed(&self, drained: &crate::usage::Drained) {
        let granted: u64 = drained.usage.iter().map(|u| u.2).sum();
        self.grants.fetch_add(granted, Ordering::Relaxed);
        let mut refusals = self.refusals.lock();
        for (k, agg) in &drained.events {
            if k.action == crate::audit::AuditAction::AuthRefused {
                let code = k.code.unwrap_or("unknown");
                *refusals.entry(code).or_insert(0) += agg.count;
            }
        }
    }

    /// Count the committed debits of a batch.
    pub(super) fn debited(&self, results: &[Result<crate::credits::Debited>]) {
        let n = results
            .iter()
            .filter(|r| r.as_ref().is_ok_and(|d| d.charged > 0))
            .count();
        self.debits.fetch_add(n as u64, Ordering::Relaxed);
    }
}

fn cursor_mark(consumer: &str) -> String {
    format!("cursor:{consumer}")
}

fn notice_mark(key_id: &str) -> String {
    format!("expiring:{key_id}")
}

fn validate_consumer(consumer: &str) -> Result<()> {
    if consumer.is_empty()
        || consumer.len() > MAX_CONSUMER
        || !consumer
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return Err(Error::invalid(format!(
            "consumer must be 1–{MAX_CONSUMER} characters of [A-Za-z0-9._:-]"
        )));
    }
    Ok(())
}

/// The start of the hour holding `t` (the epoch's hour if out of range).
fn hour_of(t: Millis) -> Millis {
    t.div_euclid(HOUR_MS).checked_mul(HOUR_MS).unwrap_or(0)
}

/// `YYYY-MM-DD` (UTC) of an instant.
fn day_of(t: Millis) -> String {
    let days = t.div_euclid(86_400_000);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

/// The route label of a charged call in reports.
pub(super) fn route_label(matched: &Matched<'_>) -> String {
    match matched {
        Matched::Rule { method, pattern } => {
            crate::usage::clip_route(&format!("{method} {pattern}"))
        }
        Matched::Scope(s) => crate::usage::clip_route(&format!("scope {s}")),
        Matched::Debit => "(debit)".into(),
    }
}

impl Vault {
    /// This handle's counters (see [`Metrics`]; [`Metrics::prometheus`] renders them).
    pub fn metrics(&self) -> Metrics {
        let e = &self.inner.events;
        Metrics {
            grants: e.grants.load(Ordering::Relaxed),
            refusals: e
                .refusals
                .lock()
                .iter()
                .map(|(k, v)| ((*k).to_string(), *v))
                .collect(),
            debits: e.debits.load(Ordering::Relaxed),
            argon2_runs: self.stats().argon2_runs,
            key_cache_misses: e.key_cache_misses.load(Ordering::Relaxed),
        }
    }

    /// Alert when the account's balance goes from at or above `below` to under it: each
    /// committed credit movement that crosses it writes a `balance_below` event in its own
    /// transaction. Returns the account's thresholds, ascending. Idempotent; at most
    /// 16 thresholds per account; `below` ≥ 1.
    pub fn set_alert(&self, account_id: &str, below: u64) -> Result<Vec<u64>> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_id(account_id, "account id")?;
        if below == 0 {
            return Err(Error::invalid("below must be at least 1"));
        }
        inner.write(|tx| {
            if tx.account(account_id)?.is_none() {
                return Err(Error::NotFound(format!("account {account_id:?}")));
            }
            let mut t = tx.alerts(account_id)?;
            if !t.contains(&below) {
                if t.len() >= MAX_ALERTS {
                    return Err(Error::invalid(format!(
                        "an account has at most {MAX_ALERTS} alert thresholds"
                    )));
                }
                t.push(below);
                t.sort_unstable();
                tx.put_alerts(account_id, &t)?;
            }
            Ok(t)
        })
    }

    /// Remove one alert threshold; whether it existed.
    pub fn remove_alert(&self, account_id: &str, below: u64) -> Result<bool> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_id(account_id, "account id")?;
        inner.write(|tx| {
            let mut t = tx.alerts(account_id)?;
            let n = t.len();
            t.retain(|&v| v != below);
            if t.len() == n {
                return Ok(false);
            }
            tx.put_alerts(account_id, &t)?;
            Ok(true)
        })
    }

    /// The alert thresholds of an account, ascending.
    pub fn alerts(&self, account_id: &str) -> Result<Vec<u64>> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_id(account_id, "account id")?;
        inner.read()?.alerts(account_id)
    }

    /// Events numbered above `after` (0: from the first), oldest first, at most `limit`
    /// (1–10 000).
    pub fn events(&self, after: u64, limit: usize) -> Result<Vec<Event>> {
        let inner = &*self.inner;
        inner.check_open()?;
        if limit == 0 || limit > MAX_EVENTS_PAGE {
            return Err(Error::invalid(format!("limit must be 1–{MAX_EVENTS_PAGE}")));
        }
        Ok(inner
            .read()?
            .events_after(after, limit)?
            .into_iter()
            .map(|(seq, bytes)| StoredEvent::decode(seq, &bytes))
            .collect())
    }

    /// The last event number a consumer acknowledged (0: none), stored in the vault and
    /// shared by every process that opens it.
    pub fn event_cursor(&self, consumer: &str) -> Result<u64> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_consumer(consumer)?;
        Ok(inner
            .read()?
            .event_mark(&cursor_mark(consumer))?
            .unwrap_or(0))
    }

    /// Acknowledge every event up to `seq` for a consumer. The cursor only moves forward:
    /// an older `seq` (a slower process acknowledging late) leaves it; returns the cursor.
    pub fn ack_events(&self, consumer: &str, seq: u64) -> Result<u64> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_consumer(consumer)?;
        let name = cursor_mark(consumer);
        inner.write(|tx| {
            let old = tx.event_mark(&name)?.unwrap_or(0);
            if seq > old {
                tx.put_event_mark(&name, Some(seq))?;
            }
            Ok(seq.max(old))
        })
    }

    /// Emit a `key_expiring` event once per key (and expiry instant) when a key will expire
    /// within `horizon_ms`; `None` turns the notices off (the default). Every process's
    /// flusher scans the keys at most once a minute while it is on.
    pub fn set_expiry_notice(&self, horizon_ms: Option<u64>) -> Result<()> {
        let inner = &*self.inner;
        inner.check_open()?;
        if horizon_ms == Some(0) || horizon_ms.is_some_and(|h| h > i64::MAX as u64) {
            return Err(Error::invalid(
                "the expiry notice horizon must be at least 1 ms",
            ));
        }
        inner.write(|tx| tx.put_event_mark(EXPIRY_HORIZON, horizon_ms))?;
        inner.events.next_expiry_scan.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// The expiry notice horizon (ms), if notices are on.
    pub fn expiry_notice(&self) -> Result<Option<u64>> {
        let inner = &*self.inner;
        inner.check_open()?;
        inner.read()?.event_mark(EXPIRY_HORIZON)
    }

    /// Scan the keys for expiry notices now (the flusher does it once a minute); returns
    /// how many `key_expiring` events were written.
    pub fn check_expiring_keys(&self) -> Result<usize> {
        self.inner.check_open()?;
        self.inner.scan_expiring()
    }

    /// Credits charged, granted calls and refusals of an account's keys between `since`
    /// and `until` (ms; both rounded down to the hour: hourly cells), grouped by key, by
    /// route or by UTC day, in group order. Counts of granted calls and refusals are as of
    /// the last usage flush (this call flushes this handle's first).
    pub fn usage_report(
        &self,
        account_id: &str,
        since: Millis,
        until: Millis,
        by: ReportBy,
    ) -> Result<Vec<UsageRow>> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_id(account_id, "account id")?;
        crate::times::check("since", since)?;
        crate::times::check("until", until)?;
        if since > until {
            return Err(Error::invalid("since must not be after until"));
        }
        inner.flush()?;
        let r = inner.read()?;
        if r.account(account_id)?.is_none() {
            return Err(Error::NotFound(format!("account {account_id:?}")));
        }
        let cells = r.report_cells(account_id, hour_of(since), hour_of(until))?;
        let mut rows: BTreeMap<String, UsageRow> = BTreeMap::new();
        // Charged calls of keys (a management debit is no call of a key).
        let key_charged_calls: u64 = cells
            .iter()
            .filter(|c| !c.key_id.is_empty())
            .map(|c| c.charged_calls)
            .sum();
        for c in cells {
            let group = match by {
                ReportBy::Key => c.key_id.clone(),
                ReportBy::Day => day_of(c.hour),
                ReportBy::Route if c.route == ALL_ROUTES => UNCHARGED_ROUTE.to_string(),
                ReportBy::Route => c.route.clone(),
            };
            let row = rows.entry(group.clone()).or_insert_with(|| UsageRow {
                group,
                ..UsageRow::default()
            });
            row.charged = row.charged.saturating_add(c.charged);
            row.refusals = row.refusals.saturating_add(c.refused);
            match by {
                // Every granted call is in the key's all-routes cell; by route, the charged
                // calls are on their route and the rest on the uncharged row.
                ReportBy::Route if c.route == ALL_ROUTES => {
                    row.calls = row.calls.saturating_add(c.calls);
                }
                ReportBy::Route => {
                    row.calls = row.calls.saturating_add(c.charged_calls);
                }
                _ => row.calls = row.calls.saturating_add(c.calls),
            }
        }
        if by == ReportBy::Route {
            if let Some(u) = rows.get_mut(UNCHARGED_ROUTE) {
                // The flush counts a call up to a second after its debit committed.
                u.calls = u.calls.saturating_sub(key_charged_calls);
            }
            rows.retain(|_, r| r.calls > 0 || r.charged > 0 || r.refusals > 0);
        }
        Ok(rows.into_values().collect())
    }
}

impl Inner {
    /// Write one event in `tx`; returns its number.
    pub(super) fn record_event(
        &self,
        tx: &mut WriteTx<'_>,
        now: Millis,
        kind: &str,
        account_id: Option<&str>,
        key_id: Option<&str>,
        data: Value,
    ) -> Result<u64> {
        let rec = StoredEvent {
            kind: kind.to_string(),
            time: now,
            account_id: account_id.map(str::to_string),
            key_id: key_id.map(str::to_string),
            data,
        };
        tx.append_event(&rec.encode())
    }

    /// A committed credit movement of `account` from `before` to `after`: one
    /// `balance_below` event per alert threshold crossed downwards, in `tx`.
    pub(super) fn credits_moved(
        &self,
        tx: &mut WriteTx<'_>,
        account: &str,
        before: u64,
        after: u64,
        now: Millis,
    ) -> Result<()> {
        if after >= before {
            return Ok(());
        }
        for threshold in tx.alerts(account)? {
            if before >= threshold && after < threshold {
                self.record_event(
                    tx,
                    now,
                    "balance_below",
                    Some(account),
                    None,
                    json!({ "threshold": threshold, "credits": after, "previous": before }),
                )?;
            }
        }
        Ok(())
    }

    /// The usage cell of one charged call, in the debit's transaction.
    pub(super) fn charged_cell(
        &self,
        tx: &mut WriteTx<'_>,
        account: &str,
        key_id: &str,
        route: &str,
        cost: u64,
        now: Millis,
    ) -> Result<()> {
        tx.add_report_cell(&ReportCell {
            account_id: account.to_string(),
            hour: hour_of(now),
            key_id: key_id.to_string(),
            route: route.to_string(),
            charged: cost,
            charged_calls: 1,
            calls: 0,
            refused: 0,
        })
    }

    /// The usage flush's part of the cells: granted calls per key (all routes) and
    /// refusals per key and route.
    pub(super) fn flushed_cells(
        &self,
        tx: &mut WriteTx<'_>,
        usage: &[(String, Option<Millis>, u64, u64)],
        events: &[(EventKey, crate::usage::EventAgg)],
    ) -> Result<()> {
        for (key_id, last, granted, _refused) in usage {
            if *granted == 0 {
                continue;
            }
            let Some(rec) = tx.key(key_id)? else { continue };
            tx.add_report_cell(&ReportCell {
                account_id: rec.account_id,
                hour: hour_of(last.unwrap_or(0)),
                key_id: key_id.clone(),
                route: ALL_ROUTES.to_string(),
                calls: *granted,
                ..ReportCell::default()
            })?;
        }
        for (k, agg) in events {
            if k.action != crate::audit::AuditAction::AuthRefused {
                continue;
            }
            let (Some(account), Some(key_id)) = (&k.account_id, &k.key_id) else {
                continue;
            };
            tx.add_report_cell(&ReportCell {
                account_id: account.clone(),
                hour: hour_of(agg.first),
                key_id: key_id.clone(),
                route: k.route.clone(),
                refused: agg.count,
                ..ReportCell::default()
            })?;
        }
        Ok(())
    }

    /// The flusher's tick: scan for expiring keys at most once a minute while notices are
    /// on (one read of the horizon per minute when they are off).
    pub(super) fn expiry_tick(&self) -> Result<()> {
        let now = (self.settings.clock)();
        let next = self.events.next_expiry_scan.load(Ordering::Relaxed);
        if now < next {
            return Ok(());
        }
        self.events
            .next_expiry_scan
            .store(now.saturating_add(EXPIRY_SCAN_EVERY_MS), Ordering::Relaxed);
        self.scan_expiring().map(|_| ())
    }

    /// Write a `key_expiring` event for each live key expiring within the horizon that has
    /// no notice for its current expiry yet.
    pub(super) fn scan_expiring(&self) -> Result<usize> {
        let Some(horizon) = self.read()?.event_mark(EXPIRY_HORIZON)? else {
            return Ok(0);
        };
        let now = (self.settings.clock)();
        let until = now.saturating_add(Millis::try_from(horizon).unwrap_or(Millis::MAX));
        let due = |rec: &KeyRecord| {
            rec.revoked_at.is_none() && rec.expires_at.is_some_and(|e| e > now && e <= until)
        };
        // Find candidates on a snapshot; confirm and write under the writer lock.
        let candidates: Vec<String> = self
            .read()?
            .keys_of(None)?
            .into_iter()
            .filter(|r| due(r))
            .map(|r| r.key_id)
            .collect();
        if candidates.is_empty() {
            return Ok(0);
        }
        self.write(|tx| {
            let mut n = 0;
            for key_id in &candidates {
                let Some(rec) = tx.key(key_id)? else { continue };
                let Some(expires_at) = rec.expires_at.filter(|_| due(&rec)) else {
                    continue;
                };
                let mark = notice_mark(key_id);
                let stamp = expires_at as u64;
                if tx.event_mark(&mark)? == Some(stamp) {
                    continue;
                }
                tx.put_event_mark(&mark, Some(stamp))?;
                self.record_event(
                    tx,
                    now,
                    "key_expiring",
                    Some(&rec.account_id),
                    Some(key_id),
                    json!({ "expires_at": expires_at }),
                )?;
                n += 1;
            }
            Ok(n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_calendar_dates() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(86_400_000 - 1), "1970-01-01");
        assert_eq!(day_of(951_782_400_000), "2000-02-29");
        assert_eq!(day_of(1_764_979_200_000), "2025-12-06");
        assert_eq!(day_of(-1), "1969-12-31");
    }

    #[test]
    fn consumer_names_are_checked() {
        assert!(validate_consumer("webhook-1").is_ok());
        assert!(validate_consumer("").is_err());
        assert!(validate_consumer("a b").is_err());
        assert!(validate_consumer(&"x".repeat(65)).is_err());
    }
}
