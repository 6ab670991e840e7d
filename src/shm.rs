//! The shared-memory sidecar `<vault>.shm`: generation slots that tell every process
//! whether its cached key records and account balances are current (SPEC §4).
//!
//! # Protocol (a seqlock; writers are serialized)
//!
//! The sidecar holds a fixed array of `u64` generation slots. A key id, an account id or a
//! vault-wide name (the route table) hashes to one slot ([`Sidecar::slot_of`]).
//!
//! * A writer takes [`Sidecar::write`]: the in-process mutex, then `flock(LOCK_EX)` on the
//!   sidecar's file (threads of one process share an open file description, so they need the
//!   mutex; other processes are excluded by the flock, which the kernel releases when a
//!   process dies). Under the flock it checks that its mapping is still live and still the
//!   file at the path (one `stat`, next to the commit's fsync); if not, it remaps first.
//! * Before its commit, the writer calls [`WriteGuard::begin`] on every slot it touches (slot
//!   numbers from [`WriteGuard::slot_of`]): an even (idle) value becomes `+1` (odd = busy); a
//!   value that is already odd (a writer died between its bumps) becomes `+2`, so it stays
//!   busy but still changes. Slots are bumped once per write even when several ids share one.
//! * Dropping the guard (after the commit, or after a failed commit: an extra bump is
//!   harmless) adds `+1` to every begun slot, so it becomes even again with a value never seen
//!   before, then releases the flock and the mutex.
//! * A reader [`Sidecar::load`]s the slot. The cache entry is current only when the value is
//!   even ([`Sidecar::is_idle`]) and equal to the value recorded when the entry was read from
//!   storage (a reader records the value it loaded *before* reading storage, and keeps the entry
//!   only if a second load after the read returns the same even value).
//! * A writer killed between its bumps leaves its slot odd: readers of that slot go to storage
//!   (slower, never wrong) until the next write to it moves it odd → odd (+2) → even.
//!
//! Values only ever grow, so an even value is never reused by a later write. Hash collisions
//! only cost extra storage reads.
//!
//! # Epochs, retirement and remapping
//!
//! Every sidecar file gets a random non-zero **epoch** in its header when it is made. A file
//! is never rebuilt in place: an invalid one is replaced by a new file built beside it
//! (`<name>.<random>.tmp`, `O_EXCL`, 0600) and renamed over it, and the old file's epoch word
//! is then overwritten with 0 (**retired**), under the old file's flock. Nothing is ever
//! truncated, so a process that maps the old file never gets SIGBUS from us.
//!
//! A process checks its mapping's epoch word on every [`Sidecar::load`] (one atomic load): a
//! retired or overwritten header means "not current", so every cached entry is re-read from
//! storage. Independently, [`Sidecar::check_path`] (run about once a second by the vault's
//! background thread) checks that the file at the path is still the mapped one (same device
//! and inode, link count > 0). When either check fails, the process maps the file now at
//! the path (creating it if it is gone). A value returned by `load` carries the mapping's
//! sequence number in its top bits (`seq << 48`), so an entry cached from an older mapping
//! can never equal a value of a newer one: cached entries record the epoch they were read
//! in, and a remap invalidates them all. Old mappings stay mapped until the `Sidecar` is
//! dropped (a thread may still read them); after [`MAX_MAPPINGS`] the process stops
//! trusting the sidecar and reads storage on every call. A revocation made in a process
//! that maps a *new* sidecar after the old one was removed is thus seen by the others
//! within about one second; a rebuild is seen on the next call.
//!
//! Truncating the sidecar externally under live processes is not supported (as SQLite says
//! of its `-shm` file): they get SIGBUS.
//!
//! # File layout (version 2, little-endian, fixed width)
//!
//! ```text
//! offset 0     magic            [u8; 8]  = b"KLSHM\0\0\x01"
//! offset 8     version          u32      = 2
//! offset 12    header_len       u32      = 4096
//! offset 16    vault_id         [u8; 16] identity of the redb vault this sidecar belongs to
//! offset 32    slot_count       u32      power of two, 1 ..= 2^24 (default 65 536)
//! offset 36    reserved         u32      written as 0, ignored on read
//! offset 40    slots_offset     u64      = 4096
//! offset 48    ratelimit_offset u64      = 4096 + slot_count * 8 (0: no region, an older file)
//! offset 56    ratelimit_len    u64      = 65 536 × 16 (0: no region)
//! offset 64    epoch            u64      random, non-zero; 0 = retired (replaced by a newer
//!                                        file). Accessed only as `AtomicU64`.
//! offset 72    reserved         up to 4096, written as zero, ignored on read
//! offset 4096  slots            slot_count × u64, accessed only as `AtomicU64`
//! ratelimit_offset  buckets      ratelimit_len / 16 × { key: u64, tat: u64 } (SPEC §13;
//!                                see `src/limits.rs`), accessed only as `AtomicU64`
//! ```
//!
//! The file length is exactly `ratelimit_offset + ratelimit_len` (a rate-limit region
//! `ratelimit_offset` ≥ end of the slots, 8-aligned, `ratelimit_len` > 0), or
//! `4096 + slot_count * 8` for a file without a region: opening such a file appends the
//! region under the lock (growing a file never disturbs a process that maps the shorter
//! one). A region of another size is used as it is (`ratelimit_len / 16` buckets). A change
//! that breaks the slot protocol must raise `version`. A version-1 file (no epoch) is
//! replaced by a new one (by rename, like any invalid file); version-1 processes that still
//! map it do not see the retirement, so upgrade every process of a vault together. A
//! sidecar with a *newer* version is refused (the caller runs without a cache, which is
//! correct) rather than replaced under the feet of the newer processes.
//!
//! Slot index: FNV-1a 64 over one kind byte (`k` key, `a` account, `g` global) followed by
//! the id's UTF-8 bytes, finalized with the MurmurHash3 `fmix64` mixer, modulo `slot_count`.
//! The function is part of the format: every process must compute the same index.
//!
//! # Opening
//!
//! [`Sidecar::open`] opens the file (`O_NOFOLLOW`, `O_CLOEXEC`), refuses anything that is
//! not a regular file, refuses a file owned by another user or writable by group or others
//! (an [`UnsafeFile`] error: the vault refuses to open), tightens read bits to 0600, takes
//! `flock(LOCK_EX)`, checks that the locked file is still the one at the path, and validates
//! the header and the length. A missing file is built under a temporary name and linked
//! into place (failing if another process got there first, which is then used). An invalid
//! file (empty, truncated, garbage, retired, another vault's sidecar, an older version) is
//! replaced by rename as described above. A valid sidecar of the same vault with a
//! different slot count is *adopted* as it is (its slot count wins). The file is mapped
//! `MAP_SHARED` while the lock is still held, then the lock is released.
//!
//! Caveat: a `Sidecar` inherited through `fork()` shares the parent's open file
//! description, so its flock does not exclude the parent: a child must open its own.

use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, Ordering};

use memmap2::{MmapMut, MmapOptions};
use parking_lot::{Mutex, MutexGuard};

use crate::files::check_owner_and_mode;

/// File magic (offset 0).
const MAGIC: [u8; 8] = *b"KLSHM\0\0\x01";
/// Format version written and understood by this module.
const VERSION: u32 = 2;
/// Length of the header; the slots start right after it.
const HEADER_LEN: u32 = 4096;
/// Offset of the slot array (page-aligned mapping + 4096 keeps `AtomicU64` alignment).
const SLOTS_OFFSET: u64 = HEADER_LEN as u64;
/// Offset of the epoch word in the header.
const EPOCH_OFFSET: usize = 64;
/// Bytes of the header that carry fields (the rest of the 4096 is reserved).
const HEADER_FIELDS: usize = 72;
/// The epoch word of a retired file.
const RETIRED: u64 = 0;
/// Largest slot count accepted (128 MiB of slots).
const MAX_SLOTS: u32 = 1 << 24;
/// Bits of a slot number that index the slot; the mapping's sequence number is above them.
const INDEX_BITS: u32 = 24;
/// A `load`ed value carries its mapping's sequence number from this bit up.
const TAG_SHIFT: u32 = 48;
/// Raw slot values above this are never trusted (they would reach the tag bits).
const RAW_MAX: u64 = (1 << TAG_SHIFT) - 1;
/// Mappings one `Sidecar` makes at most (the first one and its remaps); beyond, the
/// process stops trusting the sidecar (every call reads storage: slower, still correct).
pub(crate) const MAX_MAPPINGS: usize = 64;
/// What `load` returns for a slot it cannot vouch for: odd, so never "current".
const NOT_CURRENT: u64 = u64::MAX;

/// An existing sidecar that must not be used: owned by another user, or writable by group
/// or others. The message names the path, owner and mode, and says how to fix it.
#[derive(Debug)]
pub(crate) struct UnsafeFile(pub(crate) String);

impl std::fmt::Display for UnsafeFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UnsafeFile {}

/// The message of an [`UnsafeFile`] error, if `err` is one.
pub(crate) fn unsafe_file(err: &io::Error) -> Option<String> {
    err.get_ref()
        .and_then(|e| e.downcast_ref::<UnsafeFile>())
        .map(|u| u.0.clone())
}

/// What a slot protects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotKind {
    /// A key record, by key id.
    Key,
    /// An account record (balance), by account id.
    Account,
    /// A vault-wide item, by name (e.g. `"routes"`).
    Global,
}

impl SlotKind {
    fn tag(self) -> u8 {
        match self {
            SlotKind::Key => b'k',
            SlotKind::Account => b'a',
            SlotKind::Global => b'g',
        }
    }
}

/// Where the slots live.
enum Backing {
    /// Process-private arrays (`Sidecar::private`).
    Heap(Box<[AtomicU64]>, Box<[RateBucket]>),
    /// The mapped sidecar file (and its successors).
    Mapped(Box<Shared>),
}

/// One mapping of one sidecar file.
struct Mapping {
    /// Position of this mapping in `Shared::mappings` (tags slot numbers and values).
    seq: usize,
    /// Start of the slot array inside `_map` (derived from `as_mut_ptr`, so writes through
    /// the atomics are allowed).
    slots: *const AtomicU64,
    /// Number of slots.
    len: usize,
    /// Start of the rate-limit buckets (null when the file has no usable region).
    buckets: *const RateBucket,
    /// Number of rate-limit buckets.
    bucket_count: usize,
    /// The header's epoch word.
    epoch_word: *const AtomicU64,
    /// The epoch the file had when it was mapped.
    epoch: u64,
    /// Device and inode of the file (to recognise it at the path).
    dev: u64,
    ino: u64,
    /// Keeps the mapping alive; never accessed except through the pointers above.
    _map: MmapMut,
    /// The open file, for flock.
    file: File,
}

impl Mapping {
    fn slots(&self) -> &[AtomicU64] {
        // SAFETY: `slots` points `SLOTS_OFFSET` bytes into the live mapping owned by `self`,
        // which is at least `SLOTS_OFFSET + len * 8` bytes long, 8-byte aligned (checked in
        // `map_file`) and never unmapped while `self` lives. Every bit pattern is a valid
        // `u64`, and the memory is only accessed atomically.
        unsafe { std::slice::from_raw_parts(self.slots, self.len) }
    }

    fn buckets(&self) -> &[RateBucket] {
        if self.buckets.is_null() {
            return &[];
        }
        // SAFETY: `buckets` points into the live mapping owned by `self`, which covers
        // `bucket_count * 16` bytes from it (validated in `map_file`), 8-byte aligned, never
        // unmapped while `self` lives; `RateBucket` is two `AtomicU64`s (`repr(C)`), valid
        // for every bit pattern, only accessed atomically.
        unsafe { std::slice::from_raw_parts(self.buckets, self.bucket_count) }
    }

    /// Still the live file: its epoch word holds the epoch it was mapped with (not retired,
    /// not overwritten).
    fn live(&self) -> bool {
        // SAFETY: `epoch_word` points at offset 64 of the live mapping (8-aligned, inside the
        // 4096-byte header), only accessed atomically.
        unsafe { &*self.epoch_word }.load(Ordering::Acquire) == self.epoch
    }

    fn tag(&self) -> u64 {
        (self.seq as u64) << TAG_SHIFT
    }

    /// The file at `path` is this mapping's file, and that file is still linked.
    fn at_path(&self, path: &Path) -> bool {
        let Ok(there) = std::fs::symlink_metadata(path) else {
            return false;
        };
        let linked = self.file.metadata().is_ok_and(|m| m.nlink() > 0);
        linked && there.dev() == self.dev && there.ino() == self.ino
    }
}

/// The mapped sidecar and what it takes to map its successor.
struct Shared {
    path: PathBuf,
    vault_id: [u8; 16],
    /// Slot count for a new file.
    requested: u32,
    /// The mapping in use (one of `mappings`).
    current: AtomicPtr<Mapping>,
    /// Every mapping made, oldest first, from `Box::into_raw`; never shrinks while `self`
    /// lives (threads may still read an older one), freed in `Drop`. Its lock serializes
    /// remaps.
    mappings: Mutex<Vec<*mut Mapping>>,
    /// The file at the path is not the current mapping and no new one could be mapped:
    /// trust nothing until a remap succeeds.
    stale: AtomicBool,
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
    fn current(&self) -> &Mapping {
        // SAFETY: `current` always holds one of the `mappings` pointers, which stay valid
        // (never freed, never moved) until `self` is dropped.
        unsafe { &*self.current.load(Ordering::Acquire) }
    }

    fn load(&self, slot: usize) -> u64 {
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
    fn remap(&self, seen: *const Mapping) -> bool {
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
    fn lock_for_write(&self) -> (&Mapping, bool) {
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

/// One rate-limit counter (SPEC §13) in the sidecar: `key` identifies the limit (0 =
/// free), `tat` is its GCRA theoretical arrival time in unix nanoseconds.
#[repr(C)]
pub(crate) struct RateBucket {
    pub(crate) key: AtomicU64,
    pub(crate) tat: AtomicU64,
}

/// Rate-limit buckets created with a new sidecar (16 bytes each: 1 MiB).
pub(crate) const RATE_BUCKETS: u64 = 65_536;
const BUCKET_LEN: u64 = 16;

/// Generation slots shared by every process of a vault (or private to one process).
pub(crate) struct Sidecar {
    backing: Backing,
    /// Excludes writers of this process from each other (flock is per open file description).
    writers: Mutex<()>,
    /// Set if `flock` ever failed in `write`, or by [`Sidecar::distrust`]: this process then
    /// trusts no slot (its writers still bump them, for the other processes).
    untrusted: AtomicBool,
}

// SAFETY: the only non-Send/Sync fields are the raw pointers of each `Mapping` into its own
// `MmapMut`, and `Shared`'s pointers to the mappings it owns (`current`, `mappings`); mappings
// live as long as the `Sidecar`, are never unmapped or moved before it drops, and their
// memory is only accessed through atomics, which are safe to share between threads.
unsafe impl Send for Sidecar {}
// SAFETY: see `Send` above; all shared access goes through atomics, the mutexes or the fds.
unsafe impl Sync for Sidecar {}

impl std::fmt::Debug for Sidecar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sidecar")
            .field("shared", &self.is_shared())
            .field("slots", &self.slot_count())
            .finish()
    }
}

impl Sidecar {
    /// Default number of slots.
    pub(crate) const DEFAULT_SLOTS: u32 = 65_536;

    /// Map (creating or replacing) the sidecar at `path` for the vault `vault_id`.
    ///
    /// `slot_count` is rounded up to a power of two within `1 ..= 2^24`; it is used when the
    /// file is created or replaced. A valid sidecar of the same vault keeps its own slot count
    /// (see the module docs). Errors: the path is a symlink or not a regular file, the file
    /// is owned by another user or writable by group or others ([`UnsafeFile`]), it cannot
    /// be created, opened, locked, resized or mapped, or it has a newer format version.
    pub(crate) fn open(path: &Path, vault_id: [u8; 16], slot_count: u32) -> io::Result<Sidecar> {
        let requested = normalize_slot_count(slot_count);
        let first = Box::into_raw(map_path(path, &vault_id, requested, 0)?);
        Ok(Sidecar {
            backing: Backing::Mapped(Box::new(Shared {
                path: path.to_path_buf(),
                vault_id,
                requested,
                current: AtomicPtr::new(first),
                mappings: Mutex::new(vec![first]),
                stale: AtomicBool::new(false),
            })),
            writers: Mutex::new(()),
            untrusted: AtomicBool::new(false),
        })
    }

    /// A process-private slot array (for `exclusive` vaults opened by one process only): same
    /// protocol, no file, writers excluded by the in-process mutex alone.
    pub(crate) fn private(slot_count: u32) -> Sidecar {
        let n = normalize_slot_count(slot_count);
        let slots: Box<[AtomicU64]> = (0..n).map(|_| AtomicU64::new(0)).collect();
        let buckets: Box<[RateBucket]> = (0..RATE_BUCKETS)
            .map(|_| RateBucket {
                key: AtomicU64::new(0),
                tat: AtomicU64::new(0),
            })
            .collect();
        Sidecar {
            backing: Backing::Heap(slots, buckets),
            writers: Mutex::new(()),
            untrusted: AtomicBool::new(false),
        }
    }

    /// True for the mapped file, false for a private array.
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self.backing, Backing::Mapped(_))
    }

    /// Stop trusting the slots for good (e.g. the vault file got a second hard link, so
    /// processes may open it under a name whose sidecar is another file). Every call then
    /// reads storage; writes still bump the slots.
    pub(crate) fn distrust(&self) {
        self.untrusted.store(true, Ordering::SeqCst);
    }

    /// Trust the slots again after [`Sidecar::distrust`]: only for private slots whose
    /// owner invalidated every entry first ([`Sidecar::bump_all`]), e.g. the PostgreSQL
    /// backend once its change listener has reconnected and confirmed its position.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn trust_again(&self) {
        debug_assert!(!self.is_shared(), "a shared sidecar is never trusted again");
        if !self.is_shared() {
            self.untrusted.store(false, Ordering::SeqCst);
        }
    }

    /// Invalidate every private slot (+2 each, under this process's writer lock, so no slot
    /// is mid-commit): every entry cached before is stale. No-op for a mapped sidecar.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn bump_all(&self) {
        let _mutex = self.writers.lock();
        if let Backing::Heap(slots, _) = &self.backing {
            for slot in slots.iter() {
                slot.fetch_add(2, Ordering::SeqCst);
            }
        }
    }

    /// False once this process has stopped trusting the slots (a failed flock, or no
    /// usable sidecar at the path after a removal): every call then reads storage.
    pub(crate) fn is_trusted(&self) -> bool {
        if self.untrusted.load(Ordering::Relaxed) {
            return false;
        }
        match &self.backing {
            Backing::Heap(..) => true,
            Backing::Mapped(sh) => !sh.stale.load(Ordering::Relaxed),
        }
    }

    /// Number of slots in use (may differ from the requested count, see [`Sidecar::open`]).
    pub(crate) fn slot_count(&self) -> usize {
        match &self.backing {
            Backing::Heap(slots, _) => slots.len(),
            Backing::Mapped(sh) => sh.current().len,
        }
    }

    /// The slot protecting `id` of the given kind (same index in every process; for a
    /// mapped sidecar the number also names the current mapping, see the module docs).
    pub(crate) fn slot_of(&self, kind: SlotKind, id: &str) -> usize {
        match &self.backing {
            Backing::Heap(slots, _) => index_of(kind, id, slots.len()),
            Backing::Mapped(sh) => {
                let m = sh.current();
                index_of(kind, id, m.len) | (m.seq << INDEX_BITS)
            }
        }
    }

    /// Current value of a slot (Acquire). An out-of-range slot, a slot number of another
    /// mapping, a retired or overwritten file, or a raw value past `RAW_MAX` reads as an
    /// odd value ("not current").
    pub(crate) fn load(&self, slot: usize) -> u64 {
        // Keeps a reader's earlier storage reads from moving after this load (the seqlock
        // re-check after reading storage); Acquire keeps later reads after it.
        fence(Ordering::Acquire);
        if self.untrusted.load(Ordering::Relaxed) {
            return NOT_CURRENT;
        }
        match &self.backing {
            Backing::Heap(slots, _) => slots
                .get(slot)
                .map_or(NOT_CURRENT, |s| s.load(Ordering::Acquire)),
            Backing::Mapped(sh) => sh.load(slot),
        }
    }

    /// True when `value` is idle (even).
    pub(crate) fn is_idle(value: u64) -> bool {
        value & 1 == 0
    }

    /// Exclusive writer section: takes the in-process mutex, then `flock(LOCK_EX)` when
    /// shared (remapping first if the mapped file was retired or removed).
    pub(crate) fn write(&self) -> WriteGuard<'_> {
        let mutex = self.writers.lock();
        let (mapping, flocked) = match &self.backing {
            Backing::Heap(..) => (None, false),
            Backing::Mapped(sh) => {
                let (m, flocked) = sh.lock_for_write();
                if !flocked {
                    // Practically unreachable for a local regular file (ENOLCK). Writers of
                    // other processes may now interleave with ours, so this process stops
                    // trusting the slots; the bumps are still made so others see the change.
                    self.untrusted.store(true, Ordering::SeqCst);
                }
                (Some(m), flocked)
            }
        };
        WriteGuard {
            sidecar: self,
            mapping,
            begun: Vec::new(),
            flocked,
            _mutex: mutex,
        }
    }

    /// Called about once a second (by the vault's background thread): when the mapped file
    /// was retired, or is no longer the file at the path (removed, replaced, unlinked), map
    /// the file now at the path. True when this call changed the mapping (or could not).
    pub(crate) fn check_path(&self) -> bool {
        let Backing::Mapped(sh) = &self.backing else {
            return false;
        };
        let m = sh.current();
        if !sh.stale.load(Ordering::Relaxed) && m.live() && m.at_path(&sh.path) {
            return false;
        }
        sh.remap(m);
        true
    }

    /// The rate-limit buckets (empty when the sidecar file has no usable region).
    pub(crate) fn rate_buckets(&self) -> &[RateBucket] {
        match &self.backing {
            Backing::Heap(_, buckets) => buckets,
            Backing::Mapped(sh) => sh.current().buckets(),
        }
    }
}

/// The exclusive writer section returned by [`Sidecar::write`].
pub(crate) struct WriteGuard<'a> {
    sidecar: &'a Sidecar,
    /// The mapping this guard locked (`None`: private slots).
    mapping: Option<&'a Mapping>,
    /// Slots bumped to busy by this guard (deduplicated).
    begun: Vec<usize>,
    /// Whether this guard holds the flock.
    flocked: bool,
    /// Released after `Drop::drop` (fields drop after it).
    _mutex: MutexGuard<'a, ()>,
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

/// Rounds a requested slot count to a power of two in `1 ..= MAX_SLOTS`.
fn normalize_slot_count(n: u32) -> u32 {
    n.clamp(1, MAX_SLOTS).next_power_of_two()
}

/// `slot_hash` modulo `len` (≤ 2^24, so it fits a usize).
fn index_of(kind: SlotKind, id: &str, len: usize) -> usize {
    (slot_hash(kind, id) % len.max(1) as u64) as usize
}

/// File length of the header and `slot_count` slots (where the rate-limit region starts).
fn file_len(slot_count: u32) -> u64 {
    SLOTS_OFFSET + u64::from(slot_count) * 8
}

/// File length with the rate-limit region this version creates.
fn full_len(slot_count: u32) -> u64 {
    file_len(slot_count) + RATE_BUCKETS * BUCKET_LEN
}

/// FNV-1a 64 over the kind tag and the id, then `fmix64`. Part of the file format.
fn slot_hash(kind: SlotKind, id: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for &b in std::iter::once(&kind.tag()).chain(id.as_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// `flock(2)`, retried on EINTR.
fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: `flock` on a file descriptor owned by `file`, which outlives the call.
        let r = unsafe { libc::flock(file.as_raw_fd(), op) };
        if r == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Outcome of inspecting an existing file.
enum Inspection {
    /// A valid version-2 sidecar of this vault: slot count, rate-limit region
    /// `(offset, len)` (`(0, 0)`: none yet), epoch.
    Valid(u32, u64, u64, u64),
    /// Anything we must not trust.
    Rebuild,
}

fn u32_at(buf: &[u8; HEADER_FIELDS], off: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[off..off + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(buf: &[u8; HEADER_FIELDS], off: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[off..off + 8]);
    u64::from_le_bytes(b)
}

/// Validates the header and length of the locked file.
fn inspect(file: &File, len: u64, vault_id: &[u8; 16]) -> io::Result<Inspection> {
    if len < SLOTS_OFFSET {
        return Ok(Inspection::Rebuild);
    }
    let mut h = [0u8; HEADER_FIELDS];
    file.read_exact_at(&mut h, 0)?;
    if h[0..8] != MAGIC {
        return Ok(Inspection::Rebuild);
    }
    let version = u32_at(&h, 8);
    if version > VERSION {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("sidecar has a newer format version ({version})"),
        ));
    }
    if version != VERSION || u32_at(&h, 12) != HEADER_LEN || u64_at(&h, 40) != SLOTS_OFFSET {
        return Ok(Inspection::Rebuild);
    }
    let slot_count = u32_at(&h, 32);
    if slot_count == 0 || slot_count > MAX_SLOTS || !slot_count.is_power_of_two() {
        return Ok(Inspection::Rebuild);
    }
    let slots_end = file_len(slot_count);
    let (rl_off, rl_len) = (u64_at(&h, 48), u64_at(&h, 56));
    let expected = match (rl_off, rl_len) {
        (0, 0) => Some(slots_end),
        (off, rl_len) if off >= slots_end && off % 8 == 0 && rl_len > 0 => off.checked_add(rl_len),
        _ => None,
    };
    let epoch = u64_at(&h, EPOCH_OFFSET);
    if expected != Some(len) || h[16..32] != vault_id[..] || epoch == RETIRED {
        return Ok(Inspection::Rebuild);
    }
    Ok(Inspection::Valid(slot_count, rl_off, rl_len, epoch))
}

/// Header bytes (the first 72; the rest of the 4096 is zero).
fn encode_header(vault_id: &[u8; 16], slot_count: u32, epoch: u64) -> [u8; HEADER_FIELDS] {
    let mut h = [0u8; HEADER_FIELDS];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&HEADER_LEN.to_le_bytes());
    h[16..32].copy_from_slice(vault_id);
    h[32..36].copy_from_slice(&slot_count.to_le_bytes());
    h[40..48].copy_from_slice(&SLOTS_OFFSET.to_le_bytes());
    h[48..56].copy_from_slice(&file_len(slot_count).to_le_bytes());
    h[56..64].copy_from_slice(&(RATE_BUCKETS * BUCKET_LEN).to_le_bytes());
    h[EPOCH_OFFSET..EPOCH_OFFSET + 8].copy_from_slice(&epoch.to_le_bytes());
    h
}

/// A random non-zero u64.
fn random_nonzero() -> io::Result<u64> {
    loop {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(|e| io::Error::other(e.to_string()))?;
        let v = u64::from_le_bytes(b);
        if v != RETIRED {
            return Ok(v);
        }
    }
}

/// Opens an existing sidecar without following a symlink (`O_NONBLOCK`: a FIFO planted at
/// the path does not block the open).
fn open_existing(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

/// A new, valid sidecar file beside `path` under a random temporary name (`O_EXCL`, 0600),
/// flocked, with a fresh epoch. The caller links or renames it into place.
fn build_new(path: &Path, vault_id: &[u8; 16], slot_count: u32) -> io::Result<(PathBuf, File)> {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{:016x}.tmp", random_nonzero()?));
    let tmp = PathBuf::from(name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)?;
    let built = (|| {
        flock(&file, libc::LOCK_EX)?;
        file.set_len(full_len(slot_count))?;
        file.write_all_at(&encode_header(vault_id, slot_count, random_nonzero()?), 0)
    })();
    match built {
        Ok(()) => Ok((tmp, file)),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// The file at `path` has this device and inode.
fn still_at(path: &Path, dev: u64, ino: u64) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// Map the sidecar at `path` as mapping number `seq`: open, check, lock, validate, and
/// create or replace it when needed (see the module docs).
fn map_path(
    path: &Path,
    vault_id: &[u8; 16],
    requested: u32,
    seq: usize,
) -> io::Result<Box<Mapping>> {
    for _ in 0..16 {
        let file = match open_existing(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let (tmp, file) = build_new(path, vault_id, requested)?;
                // `link` fails if another process created the name meanwhile: use theirs.
                let linked = std::fs::hard_link(&tmp, path);
                let _ = std::fs::remove_file(&tmp);
                match linked {
                    Ok(()) => {
                        let mapped = map_locked(&file, vault_id, seq);
                        let _ = flock(&file, libc::LOCK_UN);
                        return mapped?.ok_or_else(|| io::Error::other("new sidecar is invalid"));
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        if !meta.file_type().is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "sidecar path is not a regular file",
            ));
        }
        check_owner_and_mode("sidecar", path, &meta)
            .map_err(|m| io::Error::new(io::ErrorKind::PermissionDenied, UnsafeFile(m)))?;
        if meta.mode() & 0o077 != 0 {
            // Only read bits are left: nobody else needs to see the slots either.
            file.set_permissions(Permissions::from_mode(0o600))?;
        }
        flock(&file, libc::LOCK_EX)?;
        // Under the lock: still the file at the path? (It may have been replaced while we
        // waited for the lock; then start over with the new one.)
        if !still_at(path, meta.dev(), meta.ino()) {
            let _ = flock(&file, libc::LOCK_UN);
            continue;
        }
        let mapped = match map_locked(&file, vault_id, seq) {
            Ok(Some(m)) => Ok(m),
            Ok(None) => replace(path, &file, vault_id, requested, seq),
            Err(e) => Err(e),
        };
        let _ = flock(&file, libc::LOCK_UN);
        return mapped;
    }
    Err(io::Error::other(
        "the sidecar kept changing while it was opened",
    ))
}

/// Under the old file's flock: build a new sidecar beside it, rename it over the path,
/// retire the old one, map the new one.
fn replace(
    path: &Path,
    old: &File,
    vault_id: &[u8; 16],
    requested: u32,
    seq: usize,
) -> io::Result<Box<Mapping>> {
    let (tmp, file) = build_new(path, vault_id, requested)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // Retire the old file: every process that maps it stops trusting it on its next call.
    // Only a file long enough to have been mapped can be mapped by anyone.
    if old.metadata()?.len() >= SLOTS_OFFSET {
        old.write_all_at(&RETIRED.to_le_bytes(), EPOCH_OFFSET as u64)?;
    }
    let mapped = map_locked(&file, vault_id, seq);
    let _ = flock(&file, libc::LOCK_UN);
    mapped?.ok_or_else(|| io::Error::other("new sidecar is invalid"))
}

/// Under the flock: validate the file (appending a missing rate-limit region) and map it.
/// `None`: the file is not a valid sidecar of this vault.
fn map_locked(file: &File, vault_id: &[u8; 16], seq: usize) -> io::Result<Option<Box<Mapping>>> {
    let meta = file.metadata()?;
    let (slot_count, rl_off, rl_len, epoch) = match inspect(file, meta.len(), vault_id)? {
        Inspection::Valid(n, 0, 0, epoch) => {
            // A sidecar without a rate-limit region: append it. Growing never disturbs a
            // process that maps the shorter file.
            let off = file_len(n);
            let rl_len = RATE_BUCKETS * BUCKET_LEN;
            file.set_len(off + rl_len)?;
            let mut fields = [0u8; 16];
            fields[..8].copy_from_slice(&off.to_le_bytes());
            fields[8..].copy_from_slice(&rl_len.to_le_bytes());
            file.write_all_at(&fields, 48)?;
            (n, off, rl_len, epoch)
        }
        Inspection::Valid(n, off, rl_len, epoch) => (n, off, rl_len, epoch),
        Inspection::Rebuild => return Ok(None),
    };
    let too_big = || io::Error::new(io::ErrorKind::InvalidData, "sidecar too large to map");
    let map_len = usize::try_from(rl_off + rl_len).map_err(|_| too_big())?;
    let offset = usize::try_from(SLOTS_OFFSET).map_err(|_| too_big())?;
    let slots = usize::try_from(slot_count).map_err(|_| too_big())?;
    // SAFETY: maps `map_len` bytes of a regular file that is at least that long (validated or
    // just sized under the flock). Other processes modify it concurrently, which is why the
    // slots are only ever accessed as atomics; the bytes are never read as a plain `&[u8]`.
    let mut map = unsafe { MmapOptions::new().len(map_len).map_mut(file)? };
    if map.len() < map_len {
        return Err(io::Error::other(
            "sidecar mapping is shorter than requested",
        ));
    }
    let base = map.as_mut_ptr();
    if !(base as usize).is_multiple_of(std::mem::align_of::<AtomicU64>()) {
        return Err(io::Error::other("sidecar mapping is misaligned"));
    }
    // SAFETY: `offset` (4096) < `map_len`, so the result stays inside the mapping.
    let ptr = unsafe { base.add(offset) }.cast::<AtomicU64>();
    // SAFETY: `EPOCH_OFFSET` (64) + 8 ≤ 4096 < `map_len`, inside the mapping, 8-aligned.
    let epoch_word = unsafe { base.add(EPOCH_OFFSET) }.cast::<AtomicU64>();
    // The rate-limit buckets: a whole number of 16-byte buckets, or none (the generation
    // slots still work; rate limits then fall back to per-process counters).
    let bucket_count = usize::try_from(rl_len / BUCKET_LEN).map_err(|_| too_big())?;
    let rl_start = usize::try_from(rl_off).map_err(|_| too_big())?;
    let buckets = if bucket_count > 0 && rl_start % 8 == 0 {
        // SAFETY: `rl_start + bucket_count * 16 <= map_len`, inside the mapping.
        unsafe { base.add(rl_start) }
            .cast::<RateBucket>()
            .cast_const()
    } else {
        std::ptr::null()
    };
    Ok(Some(Box::new(Mapping {
        seq,
        slots: ptr.cast_const(),
        len: slots,
        buckets,
        bucket_count,
        epoch_word: epoch_word.cast_const(),
        epoch,
        dev: meta.dev(),
        ino: meta.ino(),
        _map: map,
        file: file.try_clone()?,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const VID: [u8; 16] = *b"vault-id-0000001";
    const OTHER: [u8; 16] = *b"vault-id-0000002";

    fn header(path: &Path) -> [u8; HEADER_FIELDS] {
        let bytes = std::fs::read(path).unwrap();
        let mut h = [0u8; HEADER_FIELDS];
        h.copy_from_slice(&bytes[..HEADER_FIELDS]);
        h
    }

    fn assert_valid_file(path: &Path, vault_id: &[u8; 16], slots: u32) {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(
            bytes.len() as u64,
            4096 + u64::from(slots) * 8 + RATE_BUCKETS * 16
        );
        assert_eq!(&bytes[0..8], b"KLSHM\0\0\x01");
        let h = header(path);
        assert_eq!(u32_at(&h, 8), 2);
        assert_eq!(u32_at(&h, 12), 4096);
        assert_eq!(&h[16..32], vault_id);
        assert_eq!(u32_at(&h, 32), slots);
        assert_eq!(u32_at(&h, 36), 0);
        assert_eq!(u64_at(&h, 40), 4096);
        assert_eq!(u64_at(&h, 48), 4096 + u64::from(slots) * 8);
        assert_eq!(u64_at(&h, 56), RATE_BUCKETS * 16);
        assert_ne!(u64_at(&h, 64), 0, "a live epoch");
        assert!(
            bytes[72..].iter().all(|&b| b == 0),
            "reserved and slots zero"
        );
    }

    fn one_write(sc: &Sidecar, slots: &[usize]) {
        let mut g = sc.write();
        g.begin(slots);
    }

    #[test]
    fn sidecar_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Sidecar>();
    }

    #[test]
    fn fresh_sidecar_has_mode_0600_and_documented_header_and_is_shared_between_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.shm");
        let a = Sidecar::open(&path, VID, 1024).unwrap();
        assert!(a.is_shared());
        assert_eq!(a.slot_count(), 1024);
        let mode = std::fs::metadata(&path).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_valid_file(&path, &VID, 1024);

        let b = Sidecar::open(&path, VID, 1024).unwrap();
        let slot = a.slot_of(SlotKind::Key, "key_1");
        assert_eq!(slot, b.slot_of(SlotKind::Key, "key_1"));
        {
            let mut g = a.write();
            g.begin(&[slot]);
            assert_eq!(
                b.load(slot),
                1,
                "busy value visible through the other mapping"
            );
        }
        assert_eq!(b.load(slot), 2);
        one_write(&b, &[slot]);
        assert_eq!(a.load(slot), 4);
        // The values are in the file itself.
        drop((a, b));
        let c = Sidecar::open(&path, VID, 1024).unwrap();
        assert_eq!(c.load(slot), 4);
    }

    #[test]
    fn begin_makes_slot_odd_and_drop_makes_it_even_and_larger() {
        let dir = tempfile::tempdir().unwrap();
        let sc = Sidecar::open(&dir.path().join("v.shm"), VID, 64).unwrap();
        let slot = sc.slot_of(SlotKind::Account, "acct");
        let before = sc.load(slot);
        assert!(Sidecar::is_idle(before));
        let mut g = sc.write();
        g.begin(&[slot]);
        let busy = sc.load(slot);
        assert!(!Sidecar::is_idle(busy));
        drop(g);
        let after = sc.load(slot);
        assert!(Sidecar::is_idle(after));
        assert!(after > before);
    }

    #[test]
    fn colliding_ids_in_one_write_bump_their_slot_once() {
        let dir = tempfile::tempdir().unwrap();
        let sc = Sidecar::open(&dir.path().join("v.shm"), VID, 4).unwrap();
        let first = sc.slot_of(SlotKind::Key, "k0");
        let other = (1..100)
            .map(|i| format!("k{i}"))
            .find(|id| sc.slot_of(SlotKind::Key, id) == first)
            .expect("a collision among 100 ids in 4 slots");
        let b = sc.slot_of(SlotKind::Key, &other);
        {
            let mut g = sc.write();
            g.begin(&[first, b]);
            g.begin(&[b]);
            assert_eq!(sc.load(first), 1);
        }
        assert_eq!(sc.load(first), 2);
    }

    #[test]
    fn abandoned_writer_leaves_slot_odd_and_next_write_makes_it_even_and_new() {
        let dir = tempfile::tempdir().unwrap();
        let sc = Sidecar::open(&dir.path().join("v.shm"), VID, 64).unwrap();
        let slot = sc.slot_of(SlotKind::Key, "k");
        let mut seen = vec![sc.load(slot)];
        one_write(&sc, &[slot]);
        seen.push(sc.load(slot));
        let mut g = sc.write();
        g.begin(&[slot]);
        seen.push(sc.load(slot));
        g.abandon();
        let stuck = sc.load(slot);
        assert!(!Sidecar::is_idle(stuck), "abandoned slot stays busy");
        // The lock was released: a new write proceeds, odd → odd (+2) → even.
        let mut g = sc.write();
        g.begin(&[slot]);
        assert_eq!(sc.load(slot), stuck + 2);
        drop(g);
        let now = sc.load(slot);
        assert!(Sidecar::is_idle(now));
        assert!(seen.iter().all(|&v| v < now), "{seen:?} vs {now}");
    }

    #[test]
    fn writer_killed_in_another_process_leaves_slot_odd_and_releases_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.shm");
        let sc = Sidecar::open(&path, VID, 256).unwrap();
        let slot = sc.slot_of(SlotKind::Key, "victim");
        one_write(&sc, &[slot]);
        let before = sc.load(slot);

        // SAFETY: the child only opens its own sidecar, bumps a slot and `_exit`s; it never
        // returns into the test harness (panics are caught), and glibc's malloc is fork-safe.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let ok = std::panic::catch_unwind(|| {
                let Ok(child) = Sidecar::open(&path, VID, 256) else {
                    return false;
                };
                let mut g = child.write();
                g.begin(&[slot]);
                // Die between the bumps: no Drop runs.
                std::mem::forget(g);
                std::mem::forget(child);
                true
            })
            .unwrap_or(false);
            // SAFETY: terminates the child immediately, without running destructors/atexit.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        loop {
            // SAFETY: waits for our own child; `status` is a valid out-pointer.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r == pid {
                break;
            }
            assert_eq!(
                io::Error::last_os_error().kind(),
                io::ErrorKind::Interrupted
            );
        }
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);

        let stuck = sc.load(slot);
        assert!(!Sidecar::is_idle(stuck));
        assert_eq!(stuck, before + 1);
        // The kernel released the dead child's flock.
        let probe = File::open(&path).unwrap();
        flock(&probe, libc::LOCK_EX | libc::LOCK_NB).expect("lock is free");
        flock(&probe, libc::LOCK_UN).unwrap();
        drop(probe);
        one_write(&sc, &[slot]);
        let now = sc.load(slot);
        assert!(Sidecar::is_idle(now));
        assert_eq!(now, stuck + 3);
    }

    fn rebuilt_from(contents: &[u8], open_slots: u32) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.shm");
        std::fs::write(&path, contents).unwrap();
        let sc = Sidecar::open(&path, VID, open_slots).unwrap();
        assert_eq!(sc.slot_count(), open_slots as usize);
        assert!((0..sc.slot_count()).all(|s| sc.load(s) == 0));
        drop(sc);
        assert_valid_file(&path, &VID, open_slots);
    }

    /// A valid file for `vault_id` whose slots hold a recognisable value.
    fn valid_file(vault_id: &[u8; 16], slots: u32) -> Vec<u8> {
        let mut bytes = vec![0u8; full_len(slots) as usize];
        bytes[..HEADER_FIELDS].copy_from_slice(&encode_header(vault_id, slots, 0x5eed));
        for s in 0..slots as usize {
            let off = 4096 + s * 8;
            bytes[off..off + 8].copy_from_slice(&42u64.to_le_bytes());
        }
        bytes
    }

    #[test]
    fn empty_truncated_and_garbage_files_are_rebuilt() {
        rebuilt_from(b"", 64);
        let full = valid_file(&VID, 64);
        rebuilt_from(&full[..100], 64);
        rebuilt_from(&full[..full.len() - 8], 64);
        let mut longer = full.clone();
        longer.extend_from_slice(&[7u8; 8]);
        rebuilt_from(&longer, 64);
        let mut garbage = vec![0u8; full.len()];
        getrandom::fill(&mut garbage).unwrap();
        rebuilt_from(&garbage, 64);
        // Right magic, garbage elsewhere.
        garbage[..8].copy_from_slice(&MAGIC);
        garbage[8..12].copy_from_slice(&2u32.to_le_bytes());
        rebuilt_from(&garbage, 64);
        // Older (zero) version, bad header_len, bad slot count, overlapping rate-limit region.
        for (off, val) in [(8usize, 0u64), (12, 8192), (32, 3), (48, 8)] {
            let mut bad = full.clone();
            if off == 48 {
                bad[off..off + 8].copy_from_slice(&val.to_le_bytes());
                bad[56..64].copy_from_slice(&8u64.to_le_bytes());
            } else {
                bad[off..off + 4].copy_from_slice(&(val as u32).to_le_bytes());
            }
            rebuilt_from(&bad, 64);
        }
    }

    #[test]
    fn another_vaults_sidecar_is_rebuilt_with_zero_slots() {
        rebuilt_from(&valid_file(&OTHER, 64), 64);
        // Different size too.
        rebuilt_from(&valid_file(&OTHER, 128), 64);
    }

    #[test]
    fn same_vault_sidecar_with_another_slot_count_is_adopted_not_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.shm");
        let a = Sidecar::open(&path, VID, 128).unwrap();
        one_write(&a, &[5]);
        let b = Sidecar::open(&path, VID, 1024).unwrap();
        assert_eq!(b.slot_count(), 128);
        assert_eq!(b.load(5), 2, "live generations survive");
        assert_eq!(
            a.slot_of(SlotKind::Global, "routes"),
            b.slot_of(SlotKind::Global, "routes")
        );
        drop((a, b));
        assert_valid_file_len(&path, 128);
    }

    fn assert_valid_file_len(path: &Path, slots: u32) {
        assert_eq!(std::fs::metadata(path).unwrap().len(), full_len(slots));
    }

    #[test]
    fn a_sidecar_made_before_rate_limits_gets_its_region_appended_and_keeps_its_slots() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.shm");
        let mut bytes = valid_file(&VID, 64);
        bytes.truncate(file_len(64) as usize);
        bytes[48..64].fill(0); // no region: the layout before rate limits
        std::fs::write(&path, &bytes).unwrap();
        let sc = Sidecar::open(&path, VID, 64).unwrap();
        assert_eq!(sc.load(3), 42, "not rebuilt");
        assert_eq!(sc.rate_buckets().len() as u64, RATE_BUCKETS);
        drop(sc);
        assert_valid_file_len(&path, 64);
        let h = header(&path);
        assert_eq!(u64_at(&h, 48), file_len(64));
        assert_eq!(u64_at(&h, 56), RATE_BUCKETS * 16);
    }

    #[test]
    fn a_rate_limit_region_of_another_size_is_accepted_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.shm");
        let mut bytes = valid_file(&VID, 64);
        bytes.truncate(file_len(64) as usize);
        let rl_off = file_len(64);
        bytes[48..56].copy_from_slice(&rl_off.to_le_bytes());
        bytes[56..64].copy_from_slice(&4096u64.to_le_bytes());
        bytes.extend(std::iter::repeat_n(9u8, 4096));
        std::fs::write(&path, &bytes).unwrap();
        let sc = Sidecar::open(&path, VID, 64).unwrap();
        assert_eq!(sc.load(3), 42, "not rebuilt");
        assert_eq!(sc.rate_buckets().len(), 4096 / 16);
        one_write(&sc, &[3]);
        drop(sc);
        let after = std::fs::read(&path).unwrap();
        assert_eq!(after.len(), bytes.len());
        assert!(after[rl_off as usize..].iter().all(|&b| b == 9));
    }

    #[test]
    fn newer_format_version_is_refused_not_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.shm");
        let mut bytes = valid_file(&VID, 64);
        bytes[8..12].copy_from_slice(&3u32.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let err = Sidecar::open(&path, VID, 64).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn symlink_and_non_regular_paths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.shm");
        let link = dir.path().join("link.shm");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(Sidecar::open(&link, VID, 64).is_err());
        assert!(!target.exists(), "nothing created through the link");
        let sub = dir.path().join("adir");
        std::fs::create_dir(&sub).unwrap();
        assert!(Sidecar::open(&sub, VID, 64).is_err());
    }

    #[test]
    fn read_only_directory_is_an_error() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            return; // root bypasses directory permissions
        }
        let dir = tempfile::tempdir().unwrap();
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, Permissions::from_mode(0o555)).unwrap();
        let res = Sidecar::open(&ro.join("v.shm"), VID, 64);
        std::fs::set_permissions(&ro, Permissions::from_mode(0o755)).unwrap();
        assert!(res.is_err());
    }

    /// Readable by group or others only: tightened to 0600 and used. Writable by group or
    /// others: refused, named, and left alone (someone else may still hold it open for
    /// writing, so a chmod would not make it safe). Until this change, both were chmodded
    /// and used.
    #[test]
    fn readable_sidecar_is_tightened_and_writable_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.shm");
        std::fs::write(&path, valid_file(&VID, 64)).unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let sc = Sidecar::open(&path, VID, 64).unwrap();
        assert_eq!(sc.load(0), 42);
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        drop(sc);
        for mode in [0o666, 0o620, 0o602] {
            std::fs::set_permissions(&path, Permissions::from_mode(mode)).unwrap();
            let err = Sidecar::open(&path, VID, 64).unwrap_err();
            let msg = unsafe_file(&err).expect("an UnsafeFile error");
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
            assert!(msg.contains("chmod 600"), "{msg}");
            assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, mode);
        }
    }

    #[test]
    fn concurrent_writers_in_threads_and_two_opens_are_serialized() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.shm");
        // Two opens = two open file descriptions: threads of different handles are excluded
        // by flock alone, threads of one handle by the mutex.
        let a = Arc::new(Sidecar::open(&path, VID, 64).unwrap());
        let b = Arc::new(Sidecar::open(&path, VID, 64).unwrap());
        let slot = a.slot_of(SlotKind::Account, "shared");
        let handles: Vec<_> = [&a, &a, &b, &b]
            .into_iter()
            .map(|sc| {
                let sc = Arc::clone(sc);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        let mut g = sc.write();
                        assert!(Sidecar::is_idle(sc.load(slot)), "another writer is inside");
                        g.begin(&[slot]);
                        assert!(!Sidecar::is_idle(sc.load(slot)));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(a.load(slot), 2 * 4000);
    }

    #[test]
    fn private_sidecar_follows_the_same_protocol() {
        let sc = Sidecar::private(100);
        assert!(!sc.is_shared());
        assert_eq!(sc.slot_count(), 128);
        let slot = sc.slot_of(SlotKind::Key, "k");
        let mut g = sc.write();
        g.begin(&[slot, slot]);
        assert_eq!(sc.load(slot), 1);
        g.abandon();
        assert_eq!(sc.load(slot), 1);
        one_write(&sc, &[slot]);
        assert_eq!(sc.load(slot), 4);

        let sc = Arc::new(Sidecar::private(8));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let sc = Arc::clone(&sc);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        one_write(&sc, &[3]);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(sc.load(3), 8000);
    }

    #[test]
    fn out_of_range_slot_reads_as_not_current() {
        let sc = Sidecar::private(16);
        assert!(!Sidecar::is_idle(sc.load(16)));
        assert!(!Sidecar::is_idle(sc.load(usize::MAX)));
    }

    #[test]
    fn slot_index_is_a_fixed_function_of_kind_and_id() {
        // Pinned: every process (and every future version of this format) must agree.
        assert_eq!(slot_hash(SlotKind::Key, "abc"), GOLDEN_KEY_ABC);
        assert_eq!(slot_hash(SlotKind::Global, "routes"), GOLDEN_GLOBAL_ROUTES);
        assert_ne!(
            slot_hash(SlotKind::Key, "abc"),
            slot_hash(SlotKind::Account, "abc")
        );
        let sc = Sidecar::private(Sidecar::DEFAULT_SLOTS);
        assert_eq!(
            sc.slot_of(SlotKind::Key, "abc"),
            (GOLDEN_KEY_ABC % 65_536) as usize
        );
        assert!(sc.slot_of(SlotKind::Key, "") < 65_536);
    }

    // Computed independently (Python) from the documented definition.
    const GOLDEN_KEY_ABC: u64 = 9_248_732_256_079_076_433;
    const GOLDEN_GLOBAL_ROUTES: u64 = 14_662_535_630_251_098_684;

    fn ino(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().ino()
    }

    /// The bug: a garbage header made the next opener rebuild the file in place (zeroed,
    /// or truncated with `set_len(0)` under the feet of processes mapping it), so slot
    /// values went back to ones a running process had cached. Now the file is replaced by
    /// rename, the old one is retired, and its mappers stop trusting it on their next load.
    #[test]
    fn an_invalid_sidecar_is_replaced_by_rename_and_the_old_one_retired() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.shm");
        let a = Sidecar::open(&path, VID, 64).unwrap();
        let slot = a.slot_of(SlotKind::Key, "k");
        one_write(&a, &[slot]);
        let cached = a.load(slot);
        assert!(Sidecar::is_idle(cached));
        let (old_ino, old_len) = (ino(&path), std::fs::metadata(&path).unwrap().len());
        // Garbage over the first fields only (the epoch word survives): only the
        // retirement by the next opener can tell `a`.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0xA5; 64], 0).unwrap();
        assert_eq!(a.load(slot), cached, "nothing happened yet");
        let b = Sidecar::open(&path, VID, 64).unwrap();
        assert_ne!(ino(&path), old_ino, "replaced, not rebuilt in place");
        assert_eq!(
            f.metadata().unwrap().len(),
            old_len,
            "the old file was not truncated"
        );
        assert_valid_file(&path, &VID, 64);
        assert_eq!(b.load(b.slot_of(SlotKind::Key, "k")), 0);
        // `a` sees the retirement on its next load: nothing it cached is current.
        assert!(!Sidecar::is_idle(a.load(slot)));
        // Its background check maps the new file; values differ from every older one.
        assert!(a.check_path());
        let slot2 = a.slot_of(SlotKind::Key, "k");
        assert_eq!(
            a.load(slot),
            NOT_CURRENT,
            "a slot number of the old mapping"
        );
        let fresh = a.load(slot2);
        assert!(Sidecar::is_idle(fresh));
        assert_ne!(fresh, cached);
        one_write(&b, &[b.slot_of(SlotKind::Key, "k")]);
        assert_eq!(a.load(slot2), fresh + 2, "both map the same file again");
        assert!(!a.check_path(), "nothing to do");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    }

    /// The whole header overwritten (epoch word included): the mapper notices at once,
    /// before anyone rebuilds, and maps a replacement when it checks the path.
    #[test]
    fn an_overwritten_epoch_is_noticed_on_the_next_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.shm");
        let a = Sidecar::open(&path, VID, 64).unwrap();
        let slot = a.slot_of(SlotKind::Account, "acct");
        assert!(Sidecar::is_idle(a.load(slot)));
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0x5A; 4096], 0).unwrap();
        assert!(!Sidecar::is_idle(a.load(slot)));
        assert!(a.check_path());
        let slot = a.slot_of(SlotKind::Account, "acct");
        assert!(Sidecar::is_idle(a.load(slot)));
        assert_valid_file(&path, &VID, 64);
    }

    /// The bug: a sidecar deleted while processes run split them from the processes that
    /// made a new one. Now `check_path` (run about once a second) maps the new file.
    #[test]
    fn a_removed_sidecar_is_remapped_by_check_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.shm");
        let a = Sidecar::open(&path, VID, 64).unwrap();
        let slot = a.slot_of(SlotKind::Key, "k");
        let cached = a.load(slot);
        std::fs::remove_file(&path).unwrap();
        let b = Sidecar::open(&path, VID, 64).unwrap();
        one_write(&b, &[b.slot_of(SlotKind::Key, "k")]);
        assert_eq!(a.load(slot), cached, "not noticed before the check");
        assert!(a.check_path());
        let slot = a.slot_of(SlotKind::Key, "k");
        let now = a.load(slot);
        assert!(Sidecar::is_idle(now));
        assert_ne!(now, cached);
        assert_eq!(now & RAW_MAX, 2, "the new file's value");
        // Removed with nobody to make a new one: the check makes it.
        std::fs::remove_file(&path).unwrap();
        assert!(a.check_path());
        assert!(path.exists());
        assert!(a.is_trusted());
    }

    /// A writer whose file was removed (and not yet noticed) bumps the file now at the
    /// path, so processes that map the new file see its change.
    #[test]
    fn a_writer_on_a_removed_sidecar_bumps_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.shm");
        let a = Sidecar::open(&path, VID, 64).unwrap();
        std::fs::remove_file(&path).unwrap();
        let b = Sidecar::open(&path, VID, 64).unwrap();
        let before = b.load(b.slot_of(SlotKind::Key, "k"));
        {
            let mut g = a.write();
            let s = g.slot_of(SlotKind::Key, "k");
            g.begin(&[s]);
        }
        assert_eq!(b.load(b.slot_of(SlotKind::Key, "k")), before + 2);
    }

    #[test]
    fn a_version_1_sidecar_is_replaced_by_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.shm");
        let mut bytes = valid_file(&VID, 64);
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        bytes[64..72].fill(0); // version 1 had no epoch
        std::fs::write(&path, &bytes).unwrap();
        let old = ino(&path);
        let sc = Sidecar::open(&path, VID, 64).unwrap();
        assert_ne!(ino(&path), old);
        assert_eq!(sc.load(3), 0);
        assert_valid_file(&path, &VID, 64);
    }

    #[test]
    fn a_sidecar_owned_by_another_user_is_refused() {
        if crate::files::euid() != 0 {
            eprintln!("skipped: needs root to chown a file to another user");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.shm");
        std::fs::write(&path, valid_file(&VID, 64)).unwrap();
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        let err = Sidecar::open(&path, VID, 64).unwrap_err();
        let msg = unsafe_file(&err).expect("an UnsafeFile error");
        assert!(msg.contains("uid 65534"), "{msg}");
        assert_eq!(std::fs::read(&path).unwrap(), valid_file(&VID, 64));
    }

    #[test]
    fn a_new_sidecar_is_created_0600_without_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.shm");
        let _sc = Sidecar::open(&path, VID, 64).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
