//! Usage counters and request-path audit entries, batched off the hot path.
//!
//! The hot path only bumps two atomics in a [`UsageCell`] shared with its cache entry.
//! Refusals and operator authorizations are coalesced in memory: identical
//! (key_id, account_id, action, code, route) events within one flush window become one
//! audit entry with a `count`. The vault flushes everything in one transaction at least
//! every second and on close; a crash loses at most that window of counters, never a debit.
//!
//! Refusals an attacker can vary at will are folded further, so a flood cannot grow the
//! audit log faster than a few entries per window:
//! - a token whose key_id is unknown (or that is malformed): one entry per (code, window),
//!   whatever the key_id and route, with a `count` and a few `samples`;
//! - a request that no route rule matches: one entry per (key, window), whatever the path;
//! - beyond [`MAX_EVENTS`] distinct entries in one window, every further event folds into
//!   one overflow entry per (action, code).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::audit::AuditAction;
use crate::model::Millis;

/// Distinct coalesced events kept per window; beyond it events fold into one overflow
/// entry per (action, code), so a flood cannot grow memory or the file.
pub(crate) const MAX_EVENTS: usize = 1_000;
/// Samples kept with a folded entry (the first distinct ones of the window).
pub(crate) const MAX_SAMPLES: usize = 5;
/// The route text of a folded entry whose requests matched no rule.
pub(crate) const UNMATCHED_ROUTES: &str = "(unmatched routes)";
/// The route text of a folded entry of tokens with unknown key ids or a bad format.
pub(crate) const UNKNOWN_KEYS: &str = "(unknown or malformed keys)";
/// The route text of the overflow entry of a window.
pub(crate) const OVERFLOW: &str = "(overflow: too many distinct events in one window)";
/// Longest route text kept in an audit entry.
const MAX_ROUTE: usize = 200;

/// Per-key counters touched by the hot path.
pub(crate) struct UsageCell {
    granted: AtomicU64,
    last_used: AtomicI64,
}

impl UsageCell {
    fn new() -> UsageCell {
        UsageCell {
            granted: AtomicU64::new(0),
            last_used: AtomicI64::new(i64::MIN),
        }
    }

    pub(crate) fn granted(&self, now: Millis) {
        self.granted.fetch_add(1, Ordering::Relaxed);
        if self.last_used.load(Ordering::Relaxed) < now {
            self.last_used.fetch_max(now, Ordering::Relaxed);
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct EventKey {
    pub action: AuditAction,
    pub key_id: Option<String>,
    pub account_id: Option<String>,
    pub code: Option<&'static str>,
    pub route: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EventAgg {
    pub first: Millis,
    pub last: Millis,
    pub count: u64,
    /// Up to [`MAX_SAMPLES`] distinct examples of what was folded into this entry (a route,
    /// or `key_id route`); empty for an entry that folds nothing.
    pub samples: Vec<String>,
}

impl EventAgg {
    fn new(now: Millis) -> EventAgg {
        EventAgg {
            first: now,
            last: now,
            count: 0,
            samples: Vec::new(),
        }
    }

    fn add(&mut self, first: Millis, last: Millis, count: u64, sample: Option<&str>) {
        self.count = self.count.saturating_add(count);
        self.first = self.first.min(first);
        self.last = self.last.max(last);
        if let Some(sample) = sample {
            self.sample(sample);
        }
    }

    fn sample(&mut self, sample: &str) {
        if self.samples.len() < MAX_SAMPLES && !self.samples.iter().any(|s| s == sample) {
            self.samples.push(clip_route(sample));
        }
    }
}

/// What one flush writes.
#[derive(Default)]
pub(crate) struct Drained {
    /// key_id → (last_used_at, granted, refused)
    pub usage: Vec<(String, Option<Millis>, u64, u64)>,
    pub events: Vec<(EventKey, EventAgg)>,
}

pub(crate) struct Pending {
    cells: Mutex<HashMap<String, Arc<UsageCell>>>,
    /// Cells private to one thread's hot-path copy of a key (see `thread_cell`).
    thread_cells: Mutex<Vec<(String, Arc<UsageCell>)>>,
    refused: Mutex<HashMap<String, u64>>,
    events: Mutex<HashMap<EventKey, EventAgg>>,
}

/// Cut a route description to at most `MAX_ROUTE` bytes on a char boundary.
pub(crate) fn clip_route(route: &str) -> String {
    if route.len() <= MAX_ROUTE {
        return route.to_string();
    }
    let mut end = MAX_ROUTE;
    while !route.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &route[..end])
}

impl Pending {
    pub(crate) fn new() -> Pending {
        Pending {
            cells: Mutex::new(HashMap::new()),
            thread_cells: Mutex::new(Vec::new()),
            refused: Mutex::new(HashMap::new()),
            events: Mutex::new(HashMap::new()),
        }
    }

    /// The counters of `key_id` (created on first use; cold path only).
    pub(crate) fn cell(&self, key_id: &str) -> Arc<UsageCell> {
        self.cells
            .lock()
            .entry(key_id.to_string())
            .or_insert_with(|| Arc::new(UsageCell::new()))
            .clone()
    }

    /// A new cell for `key_id` owned by one thread's hot-path copy of the key, so threads
    /// counting calls of the same key never write the same cache line. Drained with the
    /// others (their counts add up); forgotten once its thread drops it and it is flushed.
    pub(crate) fn thread_cell(&self, key_id: &str) -> Arc<UsageCell> {
        let cell = Arc::new(UsageCell::new());
        self.thread_cells
            .lock()
            .push((key_id.to_string(), cell.clone()));
        cell
    }

    pub(crate) fn refused(&self, key_id: &str) {
        *self.refused.lock().entry(key_id.to_string()).or_insert(0) += 1;
    }

    /// Count one event. `sample` is what was folded away to build `key` (the real route of
    /// an unmatched request, the key id and route of an unknown key), kept as an example.
    pub(crate) fn event(&self, mut key: EventKey, now: Millis, sample: Option<&str>) {
        let mut events = self.events.lock();
        let mut overflow_sample = None;
        if events.len() >= MAX_EVENTS && !events.contains_key(&key) {
            overflow_sample = Some(match &key.key_id {
                Some(k) => format!("{k} {}", key.route),
                None => key.route.clone(),
            });
            key.key_id = None;
            key.account_id = None;
            key.route = OVERFLOW.into();
        }
        let sample = overflow_sample.as_deref().or(sample);
        events
            .entry(key)
            .or_insert_with(|| EventAgg::new(now))
            .add(now, now, 1, sample);
    }

    /// Take everything accumulated since the last drain.
    pub(crate) fn drain(&self) -> Drained {
        let mut out = Drained::default();
        let mut refused = std::mem::take(&mut *self.refused.lock());
        // key_id → (latest use, granted) over the shared cell and every thread's cell.
        let mut totals: HashMap<String, (i64, u64)> = HashMap::new();
        let mut take = |key_id: &String, cell: &Arc<UsageCell>| -> bool {
            let granted = cell.granted.swap(0, Ordering::Relaxed);
            let last = cell.last_used.load(Ordering::Relaxed);
            if granted > 0 || last != i64::MIN {
                let t = totals.entry(key_id.clone()).or_insert((i64::MIN, 0));
                t.0 = t.0.max(last);
                t.1 += granted;
            }
            // Forget cells nobody else holds once they are flushed.
            Arc::strong_count(cell) > 1 || granted > 0
        };
        self.cells.lock().retain(|key_id, cell| take(key_id, cell));
        self.thread_cells
            .lock()
            .retain(|(key_id, cell)| take(key_id, cell));
        for (key_id, (last, granted)) in totals {
            let r = refused.remove(&key_id).unwrap_or(0);
            if granted > 0 || r > 0 {
                out.usage
                    .push((key_id, (last != i64::MIN).then_some(last), granted, r));
            }
        }
        for (key_id, r) in refused {
            out.usage.push((key_id, None, 0, r));
        }
        out.events = std::mem::take(&mut *self.events.lock())
            .into_iter()
            .collect();
        out
    }

    /// Put a drained batch back after a failed flush, so the next flush retries it.
    pub(crate) fn restore(&self, drained: Drained) {
        for (key_id, last, granted, refused) in drained.usage {
            if granted > 0 || last.is_some() {
                let cell = self.cell(&key_id);
                cell.granted.fetch_add(granted, Ordering::Relaxed);
                if let Some(l) = last {
                    cell.last_used.fetch_max(l, Ordering::Relaxed);
                }
            }
            if refused > 0 {
                *self.refused.lock().entry(key_id).or_insert(0) += refused;
            }
        }
        let mut events = self.events.lock();
        for (k, agg) in drained.events {
            let e = events.entry(k).or_insert_with(|| EventAgg::new(agg.first));
            e.add(agg.first, agg.last, agg.count, None);
            for s in &agg.samples {
                e.sample(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(key: &str) -> EventKey {
        EventKey {
            action: AuditAction::AuthRefused,
            key_id: Some(key.into()),
            account_id: None,
            code: Some("invalid_api_key"),
            route: "GET /x".into(),
        }
    }

    #[test]
    fn identical_refusals_in_one_window_coalesce_into_one_event_with_a_count() {
        let p = Pending::new();
        for t in 0..50 {
            p.event(refusal("aaaaaaaa"), 1000 + t, None);
        }
        let d = p.drain();
        assert_eq!(d.events.len(), 1);
        assert_eq!(d.events[0].1.count, 50);
        assert_eq!(d.events[0].1.first, 1000);
        assert_eq!(d.events[0].1.last, 1049);
        assert!(p.drain().events.is_empty());
    }

    #[test]
    fn a_flood_of_distinct_refusals_stays_bounded() {
        let p = Pending::new();
        for i in 0..(MAX_EVENTS + 5000) {
            p.event(refusal(&format!("k{i}")), 1, None);
        }
        let d = p.drain();
        assert!(d.events.len() <= MAX_EVENTS + 1);
        let total: u64 = d.events.iter().map(|(_, a)| a.count).sum();
        assert_eq!(total, (MAX_EVENTS + 5000) as u64);
        let overflow = d
            .events
            .iter()
            .find(|(k, _)| k.route == OVERFLOW)
            .expect("an overflow entry");
        assert_eq!(overflow.1.count, 5000);
        assert_eq!(overflow.1.samples.len(), MAX_SAMPLES);
        assert_eq!(overflow.0.key_id, None);
    }

    #[test]
    fn a_folded_entry_keeps_a_few_distinct_samples() {
        let p = Pending::new();
        let key = EventKey {
            action: AuditAction::AuthRefused,
            key_id: None,
            account_id: None,
            code: Some("invalid_api_key"),
            route: UNKNOWN_KEYS.into(),
        };
        for i in 0..100 {
            p.event(key.clone(), 5, Some(&format!("k{} GET /x", i % 3)));
        }
        let d = p.drain();
        assert_eq!(d.events.len(), 1);
        assert_eq!(d.events[0].1.count, 100);
        assert_eq!(
            d.events[0].1.samples,
            vec!["k0 GET /x", "k1 GET /x", "k2 GET /x"]
        );
    }

    #[test]
    fn a_failed_flush_puts_counts_and_samples_back() {
        let p = Pending::new();
        p.event(refusal("aaaaaaaa"), 1, Some("GET /a"));
        let d = p.drain();
        p.restore(d);
        p.event(refusal("aaaaaaaa"), 2, Some("GET /b"));
        let d = p.drain();
        assert_eq!(d.events.len(), 1);
        assert_eq!(d.events[0].1.count, 2);
        assert_eq!(d.events[0].1.samples, vec!["GET /a", "GET /b"]);
    }

    #[test]
    fn usage_counts_drain_once_and_keep_the_latest_use() {
        let p = Pending::new();
        let c = p.cell("aaaaaaaa");
        c.granted(10);
        c.granted(30);
        c.granted(20);
        p.refused("aaaaaaaa");
        let d = p.drain();
        assert_eq!(d.usage, vec![("aaaaaaaa".to_string(), Some(30), 3, 1)]);
        assert!(p.drain().usage.is_empty());
    }

    #[test]
    fn thread_cells_add_up_with_the_shared_cell_and_are_forgotten_when_dropped() {
        let p = Pending::new();
        let shared = p.cell("aaaaaaaa");
        let mine = p.thread_cell("aaaaaaaa");
        shared.granted(10);
        mine.granted(40);
        mine.granted(20);
        assert_eq!(
            p.drain().usage,
            vec![("aaaaaaaa".to_string(), Some(40), 3, 0)]
        );
        drop(mine);
        assert!(p.drain().usage.is_empty());
        assert_eq!(p.thread_cells.lock().len(), 0);
    }

    #[test]
    fn long_routes_are_clipped_on_a_char_boundary() {
        let r = "é".repeat(300);
        let c = clip_route(&r);
        assert!(c.len() <= MAX_ROUTE + '…'.len_utf8());
    }
}
