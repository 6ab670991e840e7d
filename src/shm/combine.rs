//! The combining queue: fixed request slots in shared memory, so that the process holding
//! the writer lock (the **combiner**) can commit the pending debits of every process in one
//! transaction and hand each outcome back to the process that asked.
//!
//! This module is the queue's memory protocol: the slot state machine, request ids,
//! payload and outcome areas, the wake word, and per-process owner liveness through OFD
//! byte-range locks. The sidecar file (version 3) carries one region of it
//! ([`super::Sidecar::combine_queue`]); the debit path uses it when opted in (see "Use"
//! below). It runs over any `[AtomicU64]` region, so its unit tests use heap memory.
//!
//! # Region layout (little-endian `u64` words, accessed only as `AtomicU64`)
//!
//! ```text
//! word 0        magic      b"KLCQ\0\0\0\x01"
//! word 1        slot_count number of slots (≥ 1)
//! word 2        wake       a counter bumped after every completion; its low 32 bits are the
//!                          futex word
//! word 3        reserved   zero
//! word 4 ...    slot_count × SLOT_WORDS words, one slot each:
//!   +0  state      see below
//!   +1  nonce      request id, first half: the submitting process's random nonce
//!   +2  counter    request id, second half: that process's request counter
//!   +3  req_len    bytes of the encoded request (≤ REQ_BYTES)
//!   +4  out_len    bytes of the encoded outcome (≤ OUT_BYTES)
//!   +5  request    REQ_BYTES bytes
//!   +5+REQ_WORDS   outcome   OUT_BYTES bytes
//! ```
//!
//! # The state word
//!
//! `state` (bits 0..4) | `owner` (bits 4..24) | `combiner` (bits 24..44) | `generation`
//! (bits 44..64). Owners and combiners are owner numbers `1 ..= MAX_OWNERS` (0 = none).
//! Every transition is one compare-and-swap of the whole word and adds one to the
//! generation, so a stale view of a slot can never act on a reused one.
//!
//! ```text
//! FREE ──claim(o)──▶ CLAIMED(o) ──submit──▶ SUBMITTED(o) ──take(c)──▶ TAKEN(o, c)
//!   ▲                    │  ▲                                           │
//!   │                 release  └──────── orphan (c dead; o re-checks) ───┤
//!   │                    ▼                                           complete(c)
//!   └──────────── release(o) ◀────────────── DONE(o) ◀──────────────────┘
//! ```
//!
//! The payload of a slot is written only by its owner in CLAIMED and read by the combiner
//! after its `take` CAS (Acquire pairs with the owner's Release store of SUBMITTED); the
//! outcome is written only by the combiner in TAKEN and read by the owner after it sees
//! DONE (Acquire pairs with the combiner's Release CAS).
//!
//! # Dead processes
//!
//! Each process holds an OFD write lock on one byte of the sidecar file (its owner number;
//! [`OwnerLock`]); the kernel drops it when the process dies. [`Queue::reclaim`] frees the
//! slots of a dead owner that no live combiner is working on: CLAIMED, SUBMITTED (never
//! taken, so never applied) and DONE go back to FREE; TAKEN goes back to FREE only when its
//! combiner is dead too. A process that acquires an owner number reclaims that number's
//! slots first (their previous holder is dead, since the lock was free). A TAKEN slot whose
//! combiner died while its owner lives is an **orphan**: [`Queue::adopt_orphan`] moves it
//! back to CLAIMED for its owner, who must then take the writer lock and look up whether the
//! request id was committed (the `applied` record the combiner writes in its transaction)
//! before running it again. So each request is applied exactly once or not at all.
//!
//! # Use
//!
//! The debit path uses the queue only when opted in (`KEYLEDGER_COMBINE=1` at open; see
//! `crate::vault`'s `combining` module), which records `applied(request_id → outcome)` in
//! the combiner's transaction and encodes requests and outcomes (`combine_wire`).

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Region magic (word 0).
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"KLCQ\0\0\0\x01");
/// Words before the first slot.
const HEADER_WORDS: usize = 4;
/// Bytes of an encoded request at most.
pub(crate) const REQ_BYTES: usize = 512;
/// Bytes of an encoded outcome at most.
pub(crate) const OUT_BYTES: usize = 256;
const REQ_WORDS: usize = REQ_BYTES / 8;
const OUT_WORDS: usize = OUT_BYTES / 8;
/// Words per slot.
pub(crate) const SLOT_WORDS: usize = 5 + REQ_WORDS + OUT_WORDS;
/// Largest owner number (20 bits).
pub(crate) const MAX_OWNERS: u32 = (1 << 20) - 1;

const WAKE: usize = 2;
const STATE_MASK: u64 = 0xf;
const ID_BITS: u32 = 20;
const ID_MASK: u64 = (1 << ID_BITS) - 1;
const OWNER_SHIFT: u32 = 4;
const COMBINER_SHIFT: u32 = 24;
const GEN_SHIFT: u32 = 44;

/// A slot's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Free = 0,
    Claimed = 1,
    Submitted = 2,
    Taken = 3,
    Done = 4,
}

impl State {
    fn from_bits(b: u64) -> Option<State> {
        Some(match b {
            0 => State::Free,
            1 => State::Claimed,
            2 => State::Submitted,
            3 => State::Taken,
            4 => State::Done,
            _ => return None,
        })
    }
}

/// A decoded state word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Word {
    pub(crate) state: State,
    pub(crate) owner: u32,
    pub(crate) combiner: u32,
    generation: u64,
}

impl Word {
    fn decode(raw: u64) -> Option<Word> {
        Some(Word {
            state: State::from_bits(raw & STATE_MASK)?,
            owner: ((raw >> OWNER_SHIFT) & ID_MASK) as u32,
            combiner: ((raw >> COMBINER_SHIFT) & ID_MASK) as u32,
            generation: raw >> GEN_SHIFT,
        })
    }

    /// The next word: `state`, `owner`, `combiner`, one generation later.
    fn next(self, state: State, owner: u32, combiner: u32) -> u64 {
        let generation = (self.generation + 1) & ((1 << (64 - GEN_SHIFT)) - 1);
        state as u64
            | (u64::from(owner) & ID_MASK) << OWNER_SHIFT
            | (u64::from(combiner) & ID_MASK) << COMBINER_SHIFT
            | generation << GEN_SHIFT
    }
}

/// A request id: the submitting process's random nonce and its request counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct RequestId {
    pub(crate) nonce: u64,
    pub(crate) counter: u64,
}

/// Why a queue operation was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum QueueError {
    /// The region is too short, or its header is not a queue's.
    BadRegion,
    /// The owner or combiner number is 0 or above [`MAX_OWNERS`].
    BadOwner,
    /// Every slot is in use.
    Full,
    /// The encoded request or outcome is longer than its area.
    TooLong,
    /// The slot is not in the state (or not held by the owner) the operation needs: it was
    /// reclaimed, or the caller's view is stale.
    WrongState,
}

/// A slot a process holds: index and the state word it last set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub(crate) index: usize,
    word: u64,
}

/// A request taken by a combiner.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Taken {
    pub(crate) ticket: Ticket,
    pub(crate) id: RequestId,
    pub(crate) request: Vec<u8>,
}

/// What the owner of a submitted slot finds there.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Poll {
    /// Not taken yet.
    Submitted,
    /// A combiner is running it.
    Taken { combiner: u32 },
    /// Finished: the outcome's bytes (the slot is still the owner's until `release`).
    Done(Vec<u8>),
}

/// The region needed for `slots` slots, in words.
pub(crate) fn region_words(slots: usize) -> usize {
    HEADER_WORDS + slots * SLOT_WORDS
}

/// The first 16 bytes of a new region of `slots` slots, as written into a new file (the
/// rest of the region is zero).
pub(crate) fn header_bytes(slots: usize) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&MAGIC.to_le_bytes());
    b[8..].copy_from_slice(&(slots as u64).to_le_bytes());
    b
}

/// Initialize a zeroed region (by its creator, before any other process sees it).
pub(crate) fn init(words: &[AtomicU64]) -> Result<(), QueueError> {
    if words.len() < region_words(1) {
        return Err(QueueError::BadRegion);
    }
    let slots = (words.len() - HEADER_WORDS) / SLOT_WORDS;
    words[1].store(slots as u64, Ordering::Relaxed);
    words[0].store(MAGIC, Ordering::Release);
    Ok(())
}

fn check_id(id: u32) -> Result<(), QueueError> {
    if id == 0 || id > MAX_OWNERS {
        return Err(QueueError::BadOwner);
    }
    Ok(())
}

/// A view of a combining-queue region.
pub(crate) struct Queue<'a> {
    words: &'a [AtomicU64],
    slots: usize,
}

impl<'a> Queue<'a> {
    /// A view of an initialized region (magic and slot count checked against its length).
    pub(crate) fn new(words: &'a [AtomicU64]) -> Result<Queue<'a>, QueueError> {
        if words.len() < region_words(1) || words[0].load(Ordering::Acquire) != MAGIC {
            return Err(QueueError::BadRegion);
        }
        let slots =
            usize::try_from(words[1].load(Ordering::Relaxed)).map_err(|_| QueueError::BadRegion)?;
        let needed = slots
            .checked_mul(SLOT_WORDS)
            .and_then(|w| w.checked_add(HEADER_WORDS));
        if slots == 0 || needed.is_none_or(|n| n > words.len()) {
            return Err(QueueError::BadRegion);
        }
        Ok(Queue { words, slots })
    }

    /// Number of slots.
    pub(crate) fn slot_count(&self) -> usize {
        self.slots
    }

    fn base(&self, index: usize) -> usize {
        HEADER_WORDS + index * SLOT_WORDS
    }

    fn state_cell(&self, index: usize) -> &AtomicU64 {
        &self.words[self.base(index)]
    }

    /// The decoded state word of slot `index` (None: out of range or an unknown state).
    pub(crate) fn word(&self, index: usize) -> Option<Word> {
        if index >= self.slots {
            return None;
        }
        Word::decode(self.state_cell(index).load(Ordering::Acquire))
    }

    fn cas(&self, index: usize, from: u64, to: u64) -> bool {
        self.state_cell(index)
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn write_bytes(&self, at: usize, bytes: &[u8]) {
        for (i, chunk) in bytes.chunks(8).enumerate() {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.words[at + i].store(u64::from_le_bytes(w), Ordering::Relaxed);
        }
    }

    fn read_bytes(&self, at: usize, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        for i in 0..len.div_ceil(8) {
            let w = self.words[at + i].load(Ordering::Relaxed).to_le_bytes();
            let take = (len - i * 8).min(8);
            out.extend_from_slice(&w[..take]);
        }
        out
    }

    /// Take a FREE slot for `owner` (FREE → CLAIMED). Scans from a position derived from
    /// the owner number, so processes rarely contend for the same slot.
    pub(crate) fn claim(&self, owner: u32) -> Result<Ticket, QueueError> {
        check_id(owner)?;
        let start = owner as usize % self.slots;
        for k in 0..self.slots {
            let index = (start + k) % self.slots;
            let raw = self.state_cell(index).load(Ordering::Relaxed);
            let Some(w) = Word::decode(raw) else { continue };
            if w.state != State::Free {
                continue;
            }
            let word = w.next(State::Claimed, owner, 0);
            if self.cas(index, raw, word) {
                return Ok(Ticket { index, word });
            }
        }
        Err(QueueError::Full)
    }

    /// Write the request into a CLAIMED slot and publish it (CLAIMED → SUBMITTED).
    pub(crate) fn submit(
        &self,
        ticket: Ticket,
        id: RequestId,
        request: &[u8],
    ) -> Result<Ticket, QueueError> {
        if request.len() > REQ_BYTES {
            return Err(QueueError::TooLong);
        }
        let w = Word::decode(ticket.word).ok_or(QueueError::WrongState)?;
        if w.state != State::Claimed
            || self.state_cell(ticket.index).load(Ordering::Acquire) != ticket.word
        {
            return Err(QueueError::WrongState);
        }
        let b = self.base(ticket.index);
        self.words[b + 1].store(id.nonce, Ordering::Relaxed);
        self.words[b + 2].store(id.counter, Ordering::Relaxed);
        self.words[b + 3].store(request.len() as u64, Ordering::Relaxed);
        self.words[b + 4].store(0, Ordering::Relaxed);
        self.write_bytes(b + 5, request);
        let word = w.next(State::Submitted, w.owner, 0);
        if !self.cas(ticket.index, ticket.word, word) {
            return Err(QueueError::WrongState);
        }
        Ok(Ticket {
            index: ticket.index,
            word,
        })
    }

    /// The combiner `combiner` takes up to `max` SUBMITTED slots (→ TAKEN), in slot order,
    /// with their request ids and bytes.
    pub(crate) fn take(&self, combiner: u32, max: usize) -> Result<Vec<Taken>, QueueError> {
        check_id(combiner)?;
        let mut out = Vec::new();
        for index in 0..self.slots {
            if out.len() >= max {
                break;
            }
            let raw = self.state_cell(index).load(Ordering::Acquire);
            let Some(w) = Word::decode(raw) else { continue };
            if w.state != State::Submitted {
                continue;
            }
            let word = w.next(State::Taken, w.owner, combiner);
            if !self.cas(index, raw, word) {
                continue;
            }
            let b = self.base(index);
            let id = RequestId {
                nonce: self.words[b + 1].load(Ordering::Relaxed),
                counter: self.words[b + 2].load(Ordering::Relaxed),
            };
            // Written by the owner before its Release of SUBMITTED, and bounded by `submit`;
            // a hostile value cannot read past the slot.
            let len = (self.words[b + 3].load(Ordering::Relaxed) as usize).min(REQ_BYTES);
            out.push(Taken {
                ticket: Ticket { index, word },
                id,
                request: self.read_bytes(b + 5, len),
            });
        }
        Ok(out)
    }

    /// Write the outcome of a taken request and hand it back (TAKEN → DONE). Refused when
    /// the slot is no longer this combiner's (its owner died and the slot was reclaimed, or
    /// it was adopted as an orphan): the outcome is then dropped.
    pub(crate) fn complete(&self, ticket: Ticket, outcome: &[u8]) -> Result<(), QueueError> {
        if outcome.len() > OUT_BYTES {
            return Err(QueueError::TooLong);
        }
        let w = Word::decode(ticket.word).ok_or(QueueError::WrongState)?;
        if w.state != State::Taken
            || self.state_cell(ticket.index).load(Ordering::Acquire) != ticket.word
        {
            return Err(QueueError::WrongState);
        }
        let b = self.base(ticket.index);
        self.words[b + 4].store(outcome.len() as u64, Ordering::Relaxed);
        self.write_bytes(b + 5 + REQ_WORDS, outcome);
        if !self.cas(ticket.index, ticket.word, w.next(State::Done, w.owner, 0)) {
            return Err(QueueError::WrongState);
        }
        Ok(())
    }

    /// What the owner of `ticket` (a submitted slot) finds there now.
    pub(crate) fn poll(&self, ticket: Ticket) -> Result<Poll, QueueError> {
        let mine = Word::decode(ticket.word).ok_or(QueueError::WrongState)?;
        let w = self.word(ticket.index).ok_or(QueueError::WrongState)?;
        if w.owner != mine.owner {
            return Err(QueueError::WrongState);
        }
        match w.state {
            State::Submitted if w.generation == mine.generation => Ok(Poll::Submitted),
            State::Taken => Ok(Poll::Taken {
                combiner: w.combiner,
            }),
            State::Done => {
                let b = self.base(ticket.index);
                let len = (self.words[b + 4].load(Ordering::Relaxed) as usize).min(OUT_BYTES);
                Ok(Poll::Done(self.read_bytes(b + 5 + REQ_WORDS, len)))
            }
            _ => Err(QueueError::WrongState),
        }
    }

    /// The owner gives its slot back (CLAIMED or DONE → FREE).
    pub(crate) fn release(&self, index: usize, owner: u32) -> Result<(), QueueError> {
        check_id(owner)?;
        let raw = self.state_cell(index).load(Ordering::Acquire);
        let w = Word::decode(raw).ok_or(QueueError::WrongState)?;
        if w.owner != owner || !matches!(w.state, State::Claimed | State::Done) {
            return Err(QueueError::WrongState);
        }
        if !self.cas(index, raw, w.next(State::Free, 0, 0)) {
            return Err(QueueError::WrongState);
        }
        Ok(())
    }

    /// The owner of a TAKEN slot whose combiner is dead takes it back (TAKEN → CLAIMED):
    /// it must now find out under the writer lock whether the request was committed. The
    /// returned ticket can be submitted again or released.
    pub(crate) fn adopt_orphan(&self, index: usize, owner: u32) -> Result<Ticket, QueueError> {
        check_id(owner)?;
        let raw = self.state_cell(index).load(Ordering::Acquire);
        let w = Word::decode(raw).ok_or(QueueError::WrongState)?;
        if w.owner != owner || w.state != State::Taken {
            return Err(QueueError::WrongState);
        }
        let word = w.next(State::Claimed, owner, 0);
        if !self.cas(index, raw, word) {
            return Err(QueueError::WrongState);
        }
        Ok(Ticket { index, word })
    }

    /// Free every slot of a dead owner that no live combiner works on (see the module
    /// docs). `alive(n)` tells whether owner number `n` is held by a live process. Returns
    /// the number of slots freed.
    pub(crate) fn reclaim(&self, alive: &dyn Fn(u32) -> bool) -> usize {
        let mut freed = 0;
        for index in 0..self.slots {
            let raw = self.state_cell(index).load(Ordering::Acquire);
            let Some(w) = Word::decode(raw) else { continue };
            let dead_owner = w.owner != 0 && !alive(w.owner);
            let free_it = match w.state {
                State::Free => false,
                State::Claimed | State::Submitted | State::Done => dead_owner,
                State::Taken => dead_owner && !alive(w.combiner),
            };
            if free_it && self.cas(index, raw, w.next(State::Free, 0, 0)) {
                freed += 1;
            }
        }
        freed
    }

    /// Free every slot held by owner number `owner` except TAKEN ones of a live combiner:
    /// called by a process that just acquired that number (the previous holder is dead).
    pub(crate) fn reclaim_owner(&self, owner: u32, alive: &dyn Fn(u32) -> bool) -> usize {
        self.reclaim(&|n| n != owner && alive(n))
    }

    /// Wake every waiter (after completions).
    pub(crate) fn wake(&self) {
        self.words[WAKE].fetch_add(1, Ordering::Release);
        futex::wake(&self.words[WAKE]);
    }

    /// The wake counter, to pass to [`Queue::wait`] (read it before checking the slot).
    pub(crate) fn wake_seen(&self) -> u64 {
        self.words[WAKE].load(Ordering::Acquire)
    }

    /// Sleep until [`Queue::wake`] runs after `seen` was read, or `timeout` passes (a
    /// spurious return is possible: callers re-check their slot).
    pub(crate) fn wait(&self, seen: u64, timeout: Duration) {
        if self.words[WAKE].load(Ordering::Acquire) != seen {
            return;
        }
        futex::wait(&self.words[WAKE], seen, timeout);
    }
}

#[cfg(target_os = "linux")]
mod futex {
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    /// The futex word: the low 32 bits of the counter.
    fn addr(word: &AtomicU64) -> *const u32 {
        let p = word.as_ptr().cast::<u32>().cast_const();
        // SAFETY: both halves lie inside the 8-byte `AtomicU64`.
        let low_half_index = usize::from(cfg!(target_endian = "big"));
        unsafe { p.add(low_half_index) }
    }

    pub(super) fn wake(word: &AtomicU64) {
        // SAFETY: FUTEX_WAKE on an aligned 4-byte word inside a live `AtomicU64` (shared
        // futex: the region may be a MAP_SHARED mapping seen by other processes).
        unsafe {
            libc::syscall(libc::SYS_futex, addr(word), libc::FUTEX_WAKE, i32::MAX);
        }
    }

    pub(super) fn wait(word: &AtomicU64, seen: u64, timeout: Duration) {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
        };
        // SAFETY: FUTEX_WAIT on an aligned 4-byte word inside a live `AtomicU64`, with a
        // valid relative timeout; the kernel only reads the word and the timespec.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                addr(word),
                libc::FUTEX_WAIT,
                seen as u32,
                &ts as *const libc::timespec,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod futex {
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    pub(super) fn wake(_word: &AtomicU64) {}

    /// Without futexes: a bounded sleep (callers re-check their slot).
    pub(super) fn wait(_word: &AtomicU64, _seen: u64, timeout: Duration) {
        std::thread::sleep(timeout.min(Duration::from_micros(200)));
    }
}

/// Where owner numbers' lock bytes start in the sidecar file: far past its end (a lock may
/// cover bytes a file does not have), so they never meet anything else.
pub(crate) const OWNER_LOCK_BASE: u64 = 1 << 40;

/// A process's owner number: an OFD write lock on byte `base + n` of the sidecar file,
/// held as long as this value (and its open file description) lives. The kernel drops it
/// when the process dies, which is how other processes tell a dead owner.
pub(crate) struct OwnerLock {
    file: File,
    base: u64,
    number: u32,
}

impl OwnerLock {
    /// Take the first free owner number in `1 ..= max` on a new open file description of
    /// `file`'s path (OFD locks belong to the description, so each `OwnerLock` needs its
    /// own). `Ok(None)`: every number is held.
    pub(crate) fn acquire(path: &std::path::Path, base: u64, max: u32) -> io::Result<Option<Self>> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        for number in 1..=max.min(MAX_OWNERS) {
            if ofd::try_lock(&file, base + u64::from(number))? {
                return Ok(Some(OwnerLock { file, base, number }));
            }
        }
        Ok(None)
    }

    /// This process's owner number.
    pub(crate) fn number(&self) -> u32 {
        self.number
    }

    /// Whether owner number `n` is held by a live open file description (this one
    /// included). An error reading the lock counts as alive: never reclaim on doubt.
    pub(crate) fn is_alive(&self, n: u32) -> bool {
        if n == self.number {
            return true;
        }
        ofd::is_locked(&self.file, self.base + u64::from(n)).unwrap_or(true)
    }
}

#[cfg(target_os = "linux")]
mod ofd {
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;

    fn lock_at(byte: u64, kind: libc::c_int) -> io::Result<libc::flock> {
        // SAFETY: `flock` is a plain C struct for which all-zero bytes are valid.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = kind as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = libc::off_t::try_from(byte).map_err(io::Error::other)?;
        fl.l_len = 1;
        Ok(fl)
    }

    /// Take an OFD write lock on one byte, without waiting: false when held elsewhere.
    pub(super) fn try_lock(file: &File, byte: u64) -> io::Result<bool> {
        let mut fl = lock_at(byte, libc::F_WRLCK)?;
        // SAFETY: F_OFD_SETLK with a valid `flock` on a descriptor `file` owns.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
        if r == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
            _ => Err(e),
        }
    }

    /// True when another open file description holds a lock on the byte.
    pub(super) fn is_locked(file: &File, byte: u64) -> io::Result<bool> {
        let mut fl = lock_at(byte, libc::F_WRLCK)?;
        // SAFETY: F_OFD_GETLK with a valid `flock` on a descriptor `file` owns; the kernel
        // writes the conflicting lock (or F_UNLCK) back into `fl`.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
    }
}

#[cfg(not(target_os = "linux"))]
mod ofd {
    use std::fs::File;
    use std::io;

    /// Without OFD locks: owner numbers are not exclusive and never found dead.
    pub(super) fn try_lock(_file: &File, _byte: u64) -> io::Result<bool> {
        Ok(true)
    }

    pub(super) fn is_locked(_file: &File, _byte: u64) -> io::Result<bool> {
        Ok(true)
    }
}

#[cfg(test)]
#[path = "combine_tests.rs"]
mod tests;
