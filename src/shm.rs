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
//!   process dies).
//! * Before its commit, the writer calls [`WriteGuard::begin`] on every slot it touches: an
//!   even (idle) value becomes `+1` (odd = busy); a value that is already odd (a writer died
//!   between its bumps) becomes `+2`, so it stays busy but still changes. Slots are bumped once
//!   per write even when several ids share a slot.
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
//! # File layout (version 1, little-endian, fixed width)
//!
//! ```text
//! offset 0     magic            [u8; 8]  = b"KLSHM\0\0\x01"
//! offset 8     version          u32      = 1
//! offset 12    header_len       u32      = 4096
//! offset 16    vault_id         [u8; 16] identity of the redb vault this sidecar belongs to
//! offset 32    slot_count       u32      power of two, 1 ..= 2^24 (default 65 536)
//! offset 36    reserved         u32      written as 0, ignored on read
//! offset 40    slots_offset     u64      = 4096
//! offset 48    ratelimit_offset u64      = 4096 + slot_count * 8 (0: no region, an older file)
//! offset 56    ratelimit_len    u64      = 65 536 × 16 (0: no region)
//! offset 64    reserved         up to 4096, written as zero, ignored on read
//! offset 4096  slots            slot_count × u64, accessed only as `AtomicU64`
//! ratelimit_offset  buckets      ratelimit_len / 16 × { key: u64, tat: u64 } (SPEC §13;
//!                                see `src/limits.rs`), accessed only as `AtomicU64`
//! ```
//!
//! The file length is exactly `ratelimit_offset + ratelimit_len` (a rate-limit region
//! `ratelimit_offset` ≥ end of the slots, 8-aligned, `ratelimit_len` > 0), or
//! `4096 + slot_count * 8` for a file made before rate limits: opening such a file appends
//! the region under the lock (growing a file never disturbs a process that maps the shorter
//! one). A region of another size is used as it is (`ratelimit_len / 16` buckets). A change
//! that breaks the slot protocol must raise `version`; a sidecar with a *newer* version is
//! refused (the caller runs without a cache, which is correct) rather than rebuilt under
//! the feet of the newer processes.
//!
//! Slot index: FNV-1a 64 over one kind byte (`k` key, `a` account, `g` global) followed by
//! the id's UTF-8 bytes, finalized with the MurmurHash3 `fmix64` mixer, modulo `slot_count`.
//! The function is part of the format: every process must compute the same index.
//!
//! # Opening
//!
//! [`Sidecar::open`] opens or creates the file (mode 0600, `O_NOFOLLOW`, `O_CLOEXEC`),
//! refuses anything that is not a regular file, tightens group/other permission bits to 0600
//! (and fails when it cannot), takes `flock(LOCK_EX)` and validates the header and the length.
//! An invalid file (missing, empty, truncated, garbage, another vault's sidecar, an older
//! version) is rebuilt in place under the lock: zeroed, then the header is written last. A
//! valid sidecar of the same vault with a different slot count is *adopted* as it is (its
//! slot count wins): rebuilding it would shrink or zero a file that running processes have
//! mapped (SIGBUS past the new end, or generations going back to values their caches hold).
//! The file is mapped `MAP_SHARED` while the lock is still held, then the lock is released.
//!
//! Caveats: a sidecar that is deleted or replaced while processes have it mapped splits them
//! into two groups that no longer see each other's bumps; rebuilding another vault's sidecar
//! resets generations that processes of that (replaced) vault may still hold. A `Sidecar`
//! inherited through `fork()` shares the parent's open file description, so its flock does
//! not exclude the parent: a child must open its own.

use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};

use memmap2::{MmapMut, MmapOptions};
use parking_lot::{Mutex, MutexGuard};

/// File magic (offset 0).
const MAGIC: [u8; 8] = *b"KLSHM\0\0\x01";
/// Format version written and understood by this module.
const VERSION: u32 = 1;
/// Length of the header; the slots start right after it.
const HEADER_LEN: u32 = 4096;
/// Offset of the slot array (page-aligned mapping + 4096 keeps `AtomicU64` alignment).
const SLOTS_OFFSET: u64 = HEADER_LEN as u64;
/// Bytes of the header that carry fields (the rest of the 4096 is reserved).
const HEADER_FIELDS: usize = 64;
/// Largest slot count accepted (128 MiB of slots).
const MAX_SLOTS: u32 = 1 << 24;
/// What `load` returns for a slot it cannot vouch for: odd, so never "current".
const NOT_CURRENT: u64 = u64::MAX;

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
    /// The mapped sidecar file.
    Mapped {
        /// Start of the slot array inside `_map` (derived from `as_mut_ptr`, so writes through
        /// the atomics are allowed).
        slots: *const AtomicU64,
        /// Number of slots.
        len: usize,
        /// Start of the rate-limit buckets (null when the file has no usable region).
        buckets: *const RateBucket,
        /// Number of rate-limit buckets.
        bucket_count: usize,
        /// Keeps the mapping alive; never accessed except through `slots`.
        _map: MmapMut,
        /// The open file, for flock.
        file: File,
    },
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
    /// Set if `flock` ever failed in `write`: this process then trusts no slot.
    lock_failed: AtomicBool,
}

// SAFETY: the only non-Send/Sync field is the raw `slots` pointer into the `MmapMut` owned by
// the same struct; the mapping lives as long as the `Sidecar`, is never unmapped or remapped,
// and is only accessed through `AtomicU64`, which is safe to share between threads.
unsafe impl Send for Sidecar {}
// SAFETY: see `Send` above; all shared access goes through atomics, the mutex or the fd.
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

    /// Map (creating or rebuilding) the sidecar at `path` for the vault `vault_id`.
    ///
    /// `slot_count` is rounded up to a power of two within `1 ..= 2^24`; it is used when the
    /// file is created or rebuilt. A valid sidecar of the same vault keeps its own slot count
    /// (see the module docs). Errors: the path is a symlink or not a regular file, the file
    /// cannot be created, opened, locked, resized or mapped, its permissions cannot be
    /// restricted to 0600, or it has a newer format version. The caller then runs uncached.
    pub(crate) fn open(path: &Path, vault_id: [u8; 16], slot_count: u32) -> io::Result<Sidecar> {
        let requested = normalize_slot_count(slot_count);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)?;
        let meta = file.metadata()?;
        if !meta.file_type().is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "sidecar path is not a regular file",
            ));
        }
        if meta.mode() & 0o077 != 0 {
            // Anyone else able to write the slots could make stale caches look current.
            file.set_permissions(Permissions::from_mode(0o600))?;
        }
        flock(&file, libc::LOCK_EX)?;
        let mapped = prepare_and_map(&file, vault_id, requested);
        let unlocked = flock(&file, libc::LOCK_UN);
        let (map, slots, len, buckets, bucket_count) = mapped?;
        unlocked?;
        Ok(Sidecar {
            backing: Backing::Mapped {
                slots,
                len,
                buckets,
                bucket_count,
                _map: map,
                file,
            },
            writers: Mutex::new(()),
            lock_failed: AtomicBool::new(false),
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
            lock_failed: AtomicBool::new(false),
        }
    }

    /// True for the mapped file, false for a private array.
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self.backing, Backing::Mapped { .. })
    }

    /// Number of slots in use (may differ from the requested count, see [`Sidecar::open`]).
    pub(crate) fn slot_count(&self) -> usize {
        self.slots().len()
    }

    /// The slot protecting `id` of the given kind (same in every process).
    pub(crate) fn slot_of(&self, kind: SlotKind, id: &str) -> usize {
        let n = self.slots().len().max(1) as u64;
        // `n` ≤ 2^24, so the remainder fits a usize.
        (slot_hash(kind, id) % n) as usize
    }

    /// Current value of a slot (Acquire). An out-of-range slot reads as an odd value
    /// ("not current").
    pub(crate) fn load(&self, slot: usize) -> u64 {
        // Keeps a reader's earlier storage reads from moving after this load (the seqlock
        // re-check after reading storage); Acquire keeps later reads after it.
        fence(Ordering::Acquire);
        if self.lock_failed.load(Ordering::Relaxed) {
            return NOT_CURRENT;
        }
        self.slots()
            .get(slot)
            .map_or(NOT_CURRENT, |s| s.load(Ordering::Acquire))
    }

    /// True when `value` is idle (even).
    pub(crate) fn is_idle(value: u64) -> bool {
        value & 1 == 0
    }

    /// Exclusive writer section: takes the in-process mutex, then `flock(LOCK_EX)` when shared.
    pub(crate) fn write(&self) -> WriteGuard<'_> {
        let mutex = self.writers.lock();
        let mut flocked = false;
        if let Backing::Mapped { file, .. } = &self.backing {
            match flock(file, libc::LOCK_EX) {
                Ok(()) => flocked = true,
                // Practically unreachable for a local regular file (ENOLCK). Writers of other
                // processes may now interleave with ours, so this process stops trusting the
                // slots; the bumps are still made so other processes see the change.
                Err(_) => self.lock_failed.store(true, Ordering::SeqCst),
            }
        }
        WriteGuard {
            sidecar: self,
            begun: Vec::new(),
            flocked,
            _mutex: mutex,
        }
    }

    /// The rate-limit buckets (empty when the sidecar file has no usable region).
    pub(crate) fn rate_buckets(&self) -> &[RateBucket] {
        match &self.backing {
            Backing::Heap(_, buckets) => buckets,
            Backing::Mapped {
                buckets,
                bucket_count,
                ..
            } => {
                if buckets.is_null() {
                    return &[];
                }
                // SAFETY: `buckets` points into the live mapping owned by `self`, which covers
                // `bucket_count * 16` bytes from it (validated in `prepare_and_map`), 8-byte
                // aligned, never unmapped while `self` lives; `RateBucket` is two `AtomicU64`s
                // (`repr(C)`), valid for every bit pattern, only accessed atomically.
                unsafe { std::slice::from_raw_parts(*buckets, *bucket_count) }
            }
        }
    }

    fn slots(&self) -> &[AtomicU64] {
        match &self.backing {
            Backing::Heap(slots, _) => slots,
            Backing::Mapped { slots, len, .. } => {
                // SAFETY: `slots` points `SLOTS_OFFSET` bytes into the live mapping owned by
                // `self`, which is at least `SLOTS_OFFSET + len * 8` bytes long, 8-byte aligned
                // (checked in `prepare_and_map`) and never unmapped while `self` lives. Every
                // bit pattern is a valid `u64`, and the memory is only accessed atomically.
                unsafe { std::slice::from_raw_parts(*slots, *len) }
            }
        }
    }
}

/// The exclusive writer section returned by [`Sidecar::write`].
pub(crate) struct WriteGuard<'a> {
    sidecar: &'a Sidecar,
    /// Slots bumped to busy by this guard (deduplicated).
    begun: Vec<usize>,
    /// Whether this guard holds the flock.
    flocked: bool,
    /// Released after `Drop::drop` (fields drop after it).
    _mutex: MutexGuard<'a, ()>,
}

impl WriteGuard<'_> {
    /// Mark slots busy (even → +1, odd → +2). A slot is bumped at most once per guard, even
    /// when it is named again here or in a later call.
    pub(crate) fn begin(&mut self, slots: &[usize]) {
        let all = self.sidecar.slots();
        for &slot in slots {
            if self.begun.contains(&slot) {
                continue;
            }
            let Some(cell) = all.get(slot) else {
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
        let all = self.sidecar.slots();
        for &slot in &self.begun {
            if let Some(cell) = all.get(slot) {
                cell.fetch_add(1, Ordering::SeqCst);
            }
        }
        if self.flocked {
            if let Backing::Mapped { file, .. } = &self.sidecar.backing {
                // Closing the fd would release it too; an unlock of a held flock does not fail.
                let _ = flock(file, libc::LOCK_UN);
            }
        }
        // `_mutex` is released after this.
    }
}

/// Rounds a requested slot count to a power of two in `1 ..= MAX_SLOTS`.
fn normalize_slot_count(n: u32) -> u32 {
    n.clamp(1, MAX_SLOTS).next_power_of_two()
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
    /// A valid version-1 sidecar of this vault with this many slots and its rate-limit
    /// region `(offset, len)` (`(0, 0)`: none yet).
    Valid(u32, u64, u64),
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
    if expected != Some(len) || h[16..32] != vault_id[..] {
        return Ok(Inspection::Rebuild);
    }
    Ok(Inspection::Valid(slot_count, rl_off, rl_len))
}

/// Header bytes (the first 64; the rest of the 4096 is zero).
fn encode_header(vault_id: &[u8; 16], slot_count: u32) -> [u8; HEADER_FIELDS] {
    let mut h = [0u8; HEADER_FIELDS];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&HEADER_LEN.to_le_bytes());
    h[16..32].copy_from_slice(vault_id);
    h[32..36].copy_from_slice(&slot_count.to_le_bytes());
    h[40..48].copy_from_slice(&SLOTS_OFFSET.to_le_bytes());
    h[48..56].copy_from_slice(&file_len(slot_count).to_le_bytes());
    h[56..64].copy_from_slice(&(RATE_BUCKETS * BUCKET_LEN).to_le_bytes());
    h
}

/// Zeroes the locked file to the size for `slot_count` and writes the header last.
fn rebuild(file: &File, len: u64, vault_id: &[u8; 16], slot_count: u32) -> io::Result<()> {
    let total = full_len(slot_count);
    if len == total {
        // Same size: zero in place rather than truncating, so a process that still maps this
        // file (another vault's) never touches memory past the end of the file.
        let zeros = vec![0u8; 64 * 1024];
        let mut off = 0u64;
        while off < total {
            let n = usize::try_from((total - off).min(zeros.len() as u64)).unwrap_or(zeros.len());
            file.write_all_at(&zeros[..n], off)?;
            off += n as u64;
        }
    } else {
        file.set_len(0)?;
        file.set_len(total)?;
    }
    file.write_all_at(&encode_header(vault_id, slot_count), 0)
}

/// Under the flock: validate or rebuild, then map the header and slots.
fn prepare_and_map(
    file: &File,
    vault_id: [u8; 16],
    requested: u32,
) -> io::Result<(MmapMut, *const AtomicU64, usize, *const RateBucket, usize)> {
    let len = file.metadata()?.len();
    let (slot_count, rl_off, rl_len) = match inspect(file, len, &vault_id)? {
        Inspection::Valid(n, 0, 0) => {
            // A sidecar made before rate limits: append the region. Growing never disturbs
            // a process that maps the shorter file.
            let off = file_len(n);
            let rl_len = RATE_BUCKETS * BUCKET_LEN;
            file.set_len(off + rl_len)?;
            let mut fields = [0u8; 16];
            fields[..8].copy_from_slice(&off.to_le_bytes());
            fields[8..].copy_from_slice(&rl_len.to_le_bytes());
            file.write_all_at(&fields, 48)?;
            (n, off, rl_len)
        }
        Inspection::Valid(n, off, rl_len) => (n, off, rl_len),
        Inspection::Rebuild => {
            rebuild(file, len, &vault_id, requested)?;
            (requested, file_len(requested), RATE_BUCKETS * BUCKET_LEN)
        }
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
    // SAFETY: `offset` (4096) < `map_len`, so the result stays inside the mapping.
    let ptr = unsafe { map.as_mut_ptr().add(offset) }.cast::<AtomicU64>();
    if !(ptr as usize).is_multiple_of(std::mem::align_of::<AtomicU64>()) {
        return Err(io::Error::other("sidecar mapping is misaligned"));
    }
    // The rate-limit buckets: a whole number of 16-byte buckets, or none (the generation
    // slots still work; rate limits then fall back to per-process counters).
    let bucket_count = usize::try_from(rl_len / BUCKET_LEN).map_err(|_| too_big())?;
    let rl_start = usize::try_from(rl_off).map_err(|_| too_big())?;
    let buckets = if bucket_count > 0 && rl_start % 8 == 0 {
        // SAFETY: `rl_start + bucket_count * 16 <= map_len`, inside the mapping.
        unsafe { map.as_mut_ptr().add(rl_start) }
            .cast::<RateBucket>()
            .cast_const()
    } else {
        std::ptr::null()
    };
    Ok((map, ptr.cast_const(), slots, buckets, bucket_count))
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
        assert_eq!(u32_at(&h, 8), 1);
        assert_eq!(u32_at(&h, 12), 4096);
        assert_eq!(&h[16..32], vault_id);
        assert_eq!(u32_at(&h, 32), slots);
        assert_eq!(u32_at(&h, 36), 0);
        assert_eq!(u64_at(&h, 40), 4096);
        assert_eq!(u64_at(&h, 48), 4096 + u64::from(slots) * 8);
        assert_eq!(u64_at(&h, 56), RATE_BUCKETS * 16);
        assert!(
            bytes[64..].iter().all(|&b| b == 0),
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
        bytes[..HEADER_FIELDS].copy_from_slice(&encode_header(vault_id, slots));
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
        garbage[8..12].copy_from_slice(&1u32.to_le_bytes());
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
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
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

    #[test]
    fn loose_permissions_are_tightened_to_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.shm");
        std::fs::write(&path, valid_file(&VID, 64)).unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o666)).unwrap();
        let sc = Sidecar::open(&path, VID, 64).unwrap();
        assert_eq!(sc.load(0), 42);
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
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
}
