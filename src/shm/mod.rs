//! The shared-memory sidecar `<vault>.shm`: generation slots that tell every process
//! whether its cached key records and account balances are current.
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
//! # File layout (version 3, little-endian, fixed width)
//!
//! ```text
//! offset 0     magic            [u8; 8]  = b"KLSHM\0\0\x01"
//! offset 8     version          u32      = 3
//! offset 12    header_len       u32      = 4096
//! offset 16    vault_id         [u8; 16] identity of the redb vault this sidecar belongs to
//! offset 32    slot_count       u32      power of two, 1 ..= 2^24 (default 65 536)
//! offset 36    reserved         u32      written as 0, ignored on read
//! offset 40    slots_offset     u64      = 4096
//! offset 48    ratelimit_offset u64      = 4096 + slot_count * 8
//! offset 56    ratelimit_len    u64      = 65 536 × 16
//! offset 64    epoch            u64      random, non-zero; 0 = retired (replaced by a newer
//!                                        file). Accessed only as `AtomicU64`.
//! offset 72    combine_offset   u64      = ratelimit_offset + ratelimit_len
//! offset 80    combine_len      u64      = (4 + 256 × 101) × 8 (the combining queue,
//!                                        `combine.rs`)
//! offset 88    reserved         up to 4096, written as zero, ignored on read
//! offset 4096  slots            slot_count × u64, accessed only as `AtomicU64`
//! ratelimit_offset  buckets      ratelimit_len / 16 × { key: u64, tat: u64 } (see
//!                                `src/limits.rs`), accessed only as `AtomicU64`
//! combine_offset    queue        the combining queue's region (see `combine.rs`), accessed
//!                                only as `AtomicU64`
//! ```
//!
//! The file length is exactly `combine_offset + combine_len`, with the rate-limit region
//! at or after the end of the slots and the queue at or after the end of the rate-limit
//! region, both 8-aligned and non-empty. A region of another size is used as it is
//! (`ratelimit_len / 16` buckets; the queue's own header gives its slot count). A change
//! that breaks the slot protocol must raise `version`. An older file (version 1, no epoch;
//! version 2, no combining queue) is replaced by a new one (by rename, like any invalid
//! file); processes of an older version that still map it do not see the retirement (a
//! version-1 process) or refuse the new file and run without a cache (a version-2 process:
//! correct, slower), so upgrade every process of a vault together. A sidecar with a
//! *newer* version is refused (the caller runs without a cache, which is correct) rather
//! than replaced under the feet of the newer processes.
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

// The cross-process combining queue (used by debits when opted in; some of its protocol,
// such as explicit orphan checks by liveness, only by tests).
#[allow(dead_code)]
pub(crate) mod combine;
mod guard;
mod layout;
mod mapping;
mod open;
#[cfg(test)]
mod tests;

use std::io;
use std::path::Path;
use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, Ordering};

use parking_lot::Mutex;

pub(crate) use guard::WriteGuard;
use layout::{index_of, normalize_slot_count};
use mapping::{Backing, Shared};
use open::map_path;

/// File magic (offset 0).
const MAGIC: [u8; 8] = *b"KLSHM\0\0\x01";
/// Format version written and understood by this module.
const VERSION: u32 = 3;
/// Length of the header; the slots start right after it.
const HEADER_LEN: u32 = 4096;
/// Offset of the slot array (page-aligned mapping + 4096 keeps `AtomicU64` alignment).
const SLOTS_OFFSET: u64 = HEADER_LEN as u64;
/// Offset of the epoch word in the header.
const EPOCH_OFFSET: usize = 64;
/// Bytes of the header that carry fields (the rest of the 4096 is reserved).
const HEADER_FIELDS: usize = 88;
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

/// One rate-limit counter in the sidecar: `key` identifies the limit (0 =
/// free), `tat` is its GCRA theoretical arrival time in unix nanoseconds.
#[repr(C)]
pub(crate) struct RateBucket {
    pub(crate) key: AtomicU64,
    pub(crate) tat: AtomicU64,
}

/// Rate-limit buckets created with a new sidecar (16 bytes each: 1 MiB).
pub(crate) const RATE_BUCKETS: u64 = 65_536;
const BUCKET_LEN: u64 = 16;

/// Slots of the combining queue created with a new sidecar (832 bytes each: 208 KiB).
const COMBINE_SLOTS: usize = 256;

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

    /// The combining queue of the mapped sidecar (`None`: private slots, or a region that
    /// is not a valid queue).
    pub(crate) fn combine_queue(&self) -> Option<combine::Queue<'_>> {
        match &self.backing {
            Backing::Heap(..) => None,
            Backing::Mapped(sh) => combine::Queue::new(sh.current().queue_words()).ok(),
        }
    }

    /// The path of the mapped sidecar file (`None`: private slots).
    pub(crate) fn file_path(&self) -> Option<&Path> {
        match &self.backing {
            Backing::Heap(..) => None,
            Backing::Mapped(sh) => Some(&sh.path),
        }
    }

    /// The rate-limit buckets (empty when the sidecar file has no usable region).
    pub(crate) fn rate_buckets(&self) -> &[RateBucket] {
        match &self.backing {
            Backing::Heap(_, buckets) => buckets,
            Backing::Mapped(sh) => sh.current().buckets(),
        }
    }
}
