//! One mapping of a sidecar file, and the set of mappings a `Sidecar` made (epochs,
//! retirement and remapping).

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use memmap2::MmapMut;
use parking_lot::Mutex;

use super::open::{flock, map_path};
use super::{RateBucket, INDEX_BITS, MAX_MAPPINGS, NOT_CURRENT, RAW_MAX, TAG_SHIFT};

/// Where the slots live.
pub(super) enum Backing {
    /// Process-private arrays (`Sidecar::private`).
    Heap(Box<[AtomicU64]>, Box<[RateBucket]>),
    /// The mapped sidecar file (and its successors).
    Mapped(Box<Shared>),
}

/// One mapping of one sidecar file.
pub(super) struct Mapping {
    /// Position of this mapping in `Shared::mappings` (tags slot numbers and values).
    pub(super) seq: usize,
    /// Start of the slot array inside `_map` (derived from `as_mut_ptr`, so writes through
    /// the atomics are allowed).
    pub(super) slots: *const AtomicU64,
    /// Number of slots.
    pub(super) len: usize,
    /// Start of the rate-limit buckets (null when the file has no usable region).
    pub(super) buckets: *const RateBucket,
    /// Number of rate-limit buckets.
    pub(super) bucket_count: usize,
    /// Start of the combining-queue region.
    pub(super) queue: *const AtomicU64,
    /// Its length in words.
    pub(super) queue_words: usize,
    /// The header's epoch word.
    pub(super) epoch_word: *const AtomicU64,
    /// The epoch the file had when it was mapped.
    pub(super) epoch: u64,
    /// Device and inode of the file (to recognise it at the path).
    pub(super) dev: u64,
    pub(super) ino: u64,
    /// Keeps the mapping alive; never accessed except through the pointers above.
    pub(super) _map: MmapMut,
    /// The open file, for flock.
    pub(super) file: File,
}

impl Mapping {
    pub(super) fn slots(&self) -> &[AtomicU64] {
        // SAFETY: `slots` points `SLOTS_OFFSET` bytes into the live mapping owned by `self`,
        // which is at least `SLOTS_OFFSET + len * 8` bytes long, 8-byte aligned (checked in
        // `map_file`) and never unmapped while `self` lives. Every bit pattern is a valid
        // `u64`, and the memory is only accessed atomically.
        unsafe { std::slice::from_raw_parts(self.slots, self.len) }
    }

    pub(super) fn buckets(&self) -> &[RateBucket] {
        if self.buckets.is_null() {
            return &[];
        }
        // SAFETY: `buckets` points into the live mapping owned by `self`, which covers
        // `bucket_count * 16` bytes from it (validated in `map_file`), 8-byte aligned, never
        // unmapped while `self` lives; `RateBucket` is two `AtomicU64`s (`repr(C)`), valid
        // for every bit pattern, only accessed atomically.
        unsafe { std::slice::from_raw_parts(self.buckets, self.bucket_count) }
    }

    pub(super) fn queue_words(&self) -> &[AtomicU64] {
        // SAFETY: `queue` points into the live mapping owned by `self`, which covers
        // `queue_words * 8` bytes from it (validated in `map_file`), 8-byte aligned, never
        // unmapped while `self` lives; only accessed atomically.
        unsafe { std::slice::from_raw_parts(self.queue, self.queue_words) }
    }

    /// Still the live file: its epoch word holds the epoch it was mapped with (not retired,
    /// not overwritten).
    pub(super) fn live(&self) -> bool {
        // SAFETY: `epoch_word` points at offset 64 of the live mapping (8-aligned, inside the
        // 4096-byte header), only accessed atomically.
        unsafe { &*self.epoch_word }.load(Ordering::Acquire) == self.epoch
    }

    fn tag(&self) -> u64 {
        (self.seq as u64) << TAG_SHIFT
    }

    /// The file at `path` is this mapping's file, and that file is still linked.
    pub(super) fn at_path(&self, path: &Path) -> bool {
        let Ok(there) = std::fs::symlink_metadata(path) else {
            return false;
        };
        let linked = self.file.metadata().is_ok_and(|m| m.nlink() > 0);
        linked && there.dev() == self.dev && there.ino() == self.ino
    }
}

/// The mapped sidecar and what it takes to map its successor.
pub(super) struct Shared {
    pub(super) path: PathBuf,
    pub(super) vault_id: [u8; 16],
    /// Slot count for a new file.
    pub(super) requested: u32,
    /// The mapping in use (one of `mappings`).
    pub(super) current: AtomicPtr<Mapping>,
    /// Every mapping made, oldest first, from `Box::into_raw`; never shrinks while `self`
    /// lives (threads may still read an older one), freed in `Drop`. Its lock serializes
    /// remaps.
    pub(super) mappings: Mutex<Vec<*mut Mapping>>,
    /// The file at the path is not the current mapping and no new one could be mapped:
    /// trust nothing until a remap succeeds.
    pub(super) stale: AtomicBool,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for &m in self.mappings.get_mut().iter() {
            // SAFETY: each pointer came from `Box::into_raw` and is freed once, here; no
            // reference into it outlives `self` (they all borrow the `Sidecar`).
            drop(unsafe { Box::from_raw(m) });
        }
    }
}

impl Shared {
    pub(super) fn current(&self) -> &Mapping {
        // SAFETY: `current` always holds one of the `mappings` pointers, which stay valid
        // (never freed, never moved) until `self` is dropped.
        unsafe { &*self.current.load(Ordering::Acquire) }
    }

    pub(super) fn load(&self, slot: usize) -> u64 {
        let m = self.current();
        if slot >> INDEX_BITS != m.seq || self.stale.load(Ordering::Relaxed) || !m.live() {
            return NOT_CURRENT;
        }
        match m.slots().get(slot & ((1 << INDEX_BITS) - 1)) {
            Some(s) => {
                let v = s.load(Ordering::Acquire);
                if v > RAW_MAX {
                    NOT_CURRENT
                } else {
                    v | m.tag()
                }
            }
            None => NOT_CURRENT,
        }
    }

    /// Map the file now at the path in place of `seen` (unless another thread already did).
    /// False when no new mapping could be made (then `stale` is set).
    pub(super) fn remap(&self, seen: *const Mapping) -> bool {
        let mut all = self.mappings.lock();
        if !std::ptr::eq(self.current.load(Ordering::Acquire), seen) {
            return true;
        }
        if all.len() >= MAX_MAPPINGS {
            self.stale.store(true, Ordering::SeqCst);
            return false;
        }
        match map_path(&self.path, &self.vault_id, self.requested, all.len()) {
            Ok(m) => {
                let ptr = Box::into_raw(m);
                all.push(ptr);
                self.current.store(ptr, Ordering::Release);
                self.stale.store(false, Ordering::SeqCst);
                true
            }
            Err(_) => {
                self.stale.store(true, Ordering::SeqCst);
                false
            }
        }
    }

    /// Lock the current mapping's file for a write, remapping first when it is retired or
    /// no longer the file at the path. Returns the mapping and whether the flock is held.
    pub(super) fn lock_for_write(&self) -> (&Mapping, bool) {
        for _ in 0..4 {
            let m = self.current();
            if flock(&m.file, libc::LOCK_EX).is_err() {
                return (m, false);
            }
            if m.live() && m.at_path(&self.path) {
                return (m, true);
            }
            // Never hold our flock while mapping the path: it may be the same file.
            let _ = flock(&m.file, libc::LOCK_UN);
            if !self.remap(m) {
                break;
            }
        }
        // No usable file at the path: bump the current one anyway (best effort); this
        // process trusts nothing meanwhile (`stale`).
        let m = self.current();
        (m, flock(&m.file, libc::LOCK_EX).is_ok())
    }
}
