//! The exclusive writer section: begin/end bumps of the generation slots (the seqlock's
//! writer side).

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::MutexGuard;

use super::layout::index_of;
use super::mapping::{Backing, Mapping};
use super::open::flock;
use super::{Sidecar, SlotKind, INDEX_BITS};

/// The exclusive writer section returned by [`Sidecar::write`].
pub(crate) struct WriteGuard<'a> {
    pub(super) sidecar: &'a Sidecar,
    /// The mapping this guard locked (`None`: private slots).
    pub(super) mapping: Option<&'a Mapping>,
    /// Slots bumped to busy by this guard (deduplicated).
    pub(super) begun: Vec<usize>,
    /// Whether this guard holds the flock.
    pub(super) flocked: bool,
    /// Released after `Drop::drop` (fields drop after it).
    pub(super) _mutex: MutexGuard<'a, ()>,
}

impl WriteGuard<'_> {
    fn slots(&self) -> &[AtomicU64] {
        match (&self.sidecar.backing, self.mapping) {
            (_, Some(m)) => m.slots(),
            (Backing::Heap(slots, _), None) => slots,
            (Backing::Mapped(_), None) => &[],
        }
    }

    /// The slot of `id` in the file this guard locked (use these numbers with `begin`).
    pub(crate) fn slot_of(&self, kind: SlotKind, id: &str) -> usize {
        match self.mapping {
            Some(m) => index_of(kind, id, m.len) | (m.seq << INDEX_BITS),
            None => self.sidecar.slot_of(kind, id),
        }
    }

    /// The index inside this guard's slots, if `slot` belongs to its mapping.
    fn index(&self, slot: usize) -> Option<usize> {
        match self.mapping {
            Some(m) if slot >> INDEX_BITS == m.seq => Some(slot & ((1 << INDEX_BITS) - 1)),
            Some(_) => None,
            None => Some(slot),
        }
    }

    /// Mark slots busy (even → +1, odd → +2). A slot is bumped at most once per guard, even
    /// when it is named again here or in a later call.
    pub(crate) fn begin(&mut self, slots: &[usize]) {
        for &slot in slots {
            if self.begun.contains(&slot) {
                continue;
            }
            let Some(cell) = self.index(slot).and_then(|i| self.slots().get(i)) else {
                debug_assert!(false, "slot {slot} out of range");
                continue;
            };
            // Writers are serialized; the read-modify-write keeps the count exact regardless.
            let _ = cell.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                Some(v.wrapping_add(if Sidecar::is_idle(v) { 1 } else { 2 }))
            });
            self.begun.push(slot);
        }
    }
}

#[cfg(test)]
impl WriteGuard<'_> {
    /// Simulates a writer killed between its bumps: release locks without finishing.
    pub(crate) fn abandon(mut self) {
        self.begun.clear();
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        for &slot in &self.begun {
            if let Some(cell) = self.index(slot).and_then(|i| self.slots().get(i)) {
                cell.fetch_add(1, Ordering::SeqCst);
            }
        }
        if self.flocked {
            if let Some(m) = self.mapping {
                // Closing the fd would release it too; an unlock of a held flock does not fail.
                let _ = flock(&m.file, libc::LOCK_UN);
            }
        }
        // `_mutex` is released after this.
    }
}
