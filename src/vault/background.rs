//! The background flusher: usage counters and request-path audit entries in batches,
//! eventual-durability syncs, idempotency and refusal pruning.

use super::{
    json, mpsc, Arc, AtomicBool, AtomicU64, AuditRecord, Durability, Duration, Error, Inner,
    JoinHandle, Millis, Mutex, Ordering, Pending, Result, Weak, IDEMPOTENCY_WINDOW_MS,
};

/// Usage counters and request-path audit entries waiting for the flusher, and its state.
pub(super) struct Flushing {
    pub(super) pending: Pending,
    /// `Eventual` debits committed since the last sync.
    pub(super) unsynced: AtomicBool,
    pub(super) flush_interval: Duration,
    /// Background flusher rounds that panicked (caught; see `spawn_flusher`).
    pub(super) flusher_panics: AtomicU64,
    /// Serializes flushes (see `Inner::flush`).
    pub(super) flush_lock: Mutex<()>,
    /// Flusher rounds still to panic on purpose (test hook).
    #[cfg(feature = "fault-injection")]
    pub(super) injected_flusher_panics: AtomicU64,
}

pub(super) const HOUR_MS: Millis = 3_600_000;

pub(super) fn spawn_flusher(inner: &Arc<Inner>) -> Result<(mpsc::Sender<()>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel::<()>();
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let interval = inner.flushing.flush_interval;
    let tick = if inner.settings.eventual {
        Duration::from_millis(100).min(interval)
    } else {
        interval
    }
    // At least once a second: the sidecar check below bounds how long a removed sidecar
    // goes unnoticed.
    .min(Duration::from_secs(1));
    let handle = std::thread::Builder::new()
        .name("keyledger-flush".into())
        .spawn(move || {
            let mut since_flush = Duration::ZERO;
            loop {
                match rx.recv_timeout(tick) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return, // closed
                }
                let Some(inner) = weak.upgrade() else { return };
                since_flush += tick;
                let full = since_flush >= interval;
                if full {
                    since_flush = Duration::ZERO;
                }
                // A panic in one round (a bug) must not stop every later flush: count it
                // and go on; what that round drained is retried or lost, never wrapped.
                let round = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    #[cfg(feature = "fault-injection")]
                    if inner
                        .flushing
                        .injected_flusher_panics
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        panic!("injected flusher panic");
                    }
                    // The invalidation channel's upkeep (redb: remap a removed or replaced
                    // sidecar, distrust it when the file gained a hard link).
                    if let Ok(store) = inner.store() {
                        if let Some(store) = store.as_ref() {
                            store.maintain();
                        }
                    }
                    let _ = inner.sync_if_needed();
                    if full {
                        let _ = inner.flush();
                        let _ = inner.prune_idempotency();
                        // Events: expiry notices (at most one scan a minute).
                        let _ = inner.expiry_tick();
                        // Holds past their TTL, released exactly once whichever process
                        // gets there first.
                        let _ = inner.expire_due_holds((inner.settings.clock)());
                    }
                }));
                if round.is_err() {
                    inner
                        .flushing
                        .flusher_panics
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .map_err(|e| Error::Storage(format!("cannot start the flush thread: {e}")))?;
    Ok((tx, handle))
}

impl Inner {
    /// Write batched usage counters and request-path audit entries in one transaction.
    pub(super) fn flush(&self) -> Result<()> {
        // One flush at a time: a caller's `Vault::flush` returns only once whatever a
        // concurrent background round drained is committed too.
        let _one = self.flushing.flush_lock.lock();
        let drained = self.flushing.pending.drain();
        if drained.usage.is_empty() && drained.events.is_empty() {
            return Ok(());
        }
        let result = (|| {
            let guard = self.store()?;
            let store = guard
                .as_ref()
                .ok_or_else(|| Error::VaultClosed("the vault was closed".into()))?;
            let mut tx = store.write()?;
            for (key_id, last, granted, refused) in &drained.usage {
                // Instants are range-checked where they enter, so the product always
                // fits; were it not to, the counts go to the epoch's bucket, not a
                // wrapped one.
                let hour = last
                    .unwrap_or(0)
                    .div_euclid(HOUR_MS)
                    .checked_mul(HOUR_MS)
                    .unwrap_or(0);
                tx.add_usage(key_id, *last, *granted, *refused, hour)?;
            }
            // Usage reports: calls per key, refusals per key and route.
            self.flushed_cells(&mut tx, &drained.usage, &drained.events)?;
            for (k, agg) in &drained.events {
                let mut details = json!({ "route": k.route, "count": agg.count });
                if let Some(code) = k.code {
                    details["code"] = json!(code);
                }
                if agg.count > 1 {
                    details["last"] = json!(agg.last);
                }
                if !agg.samples.is_empty() {
                    details["samples"] = json!(agg.samples);
                }
                tx.append_audit(&AuditRecord {
                    time: agg.first,
                    action: k.action.as_str().to_string(),
                    key_id: k.key_id.clone(),
                    account_id: k.account_id.clone(),
                    actor: None,
                    details: details.to_string(),
                })?;
            }
            tx.commit(Durability::Immediate)
        })();
        if result.is_err() {
            self.flushing.pending.restore(drained);
        } else {
            // Events: the process counters of `Vault::metrics`.
            self.events.flushed(&drained);
        }
        result
    }

    /// `Eventual` durability: make the non-durable commits durable.
    pub(super) fn sync_if_needed(&self) -> Result<()> {
        if !self.flushing.unsynced.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let guard = self.store()?;
        let Some(store) = guard.as_ref() else {
            return Ok(());
        };
        let r = store.sync();
        if r.is_err() {
            self.flushing.unsynced.store(true, Ordering::Release);
        }
        r
    }

    pub(super) fn prune_idempotency(&self) -> Result<()> {
        let now = (self.settings.clock)();
        let guard = self.store()?;
        let Some(store) = guard.as_ref() else {
            return Ok(());
        };
        // Only open a write transaction when something is due.
        let mut tx = store.write()?;
        let mut n = tx.prune_idempotent(now.saturating_sub(IDEMPOTENCY_WINDOW_MS), 1000)?;
        if let Some(keep) = self.settings.refusal_retention {
            let keep = Millis::try_from(keep.as_millis()).unwrap_or(Millis::MAX);
            n += tx.prune_refusals(now.saturating_sub(keep), 5000)?;
        }
        if n > 0 {
            tx.commit(Durability::Immediate)?;
        }
        Ok(())
    }
}
