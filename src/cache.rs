//! A bounded, sharded, read-mostly map for the per-process caches of the hot path.
//!
//! Reads take a shard's read lock only. Eviction is CLOCK (second chance), an
//! approximation of LRU that needs no write on a hit: a hit sets the entry's
//! `referenced` bit (only when it is clear, so a hot entry causes no cache-line traffic);
//! a full shard drops the entries not referenced since the last sweep.

use std::any::Any;
use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::RwLock;

const SHARDS: usize = 64;

struct Slot<V> {
    value: V,
    referenced: AtomicBool,
}

type Shard<V> = RwLock<HashMap<Box<str>, Slot<V>>>;

pub(crate) struct Cache<V> {
    shards: Box<[Shard<V>]>,
    per_shard: usize,
    hasher: RandomState,
}

impl<V> Cache<V> {
    /// A cache holding about `capacity` entries (at least one per shard).
    pub(crate) fn new(capacity: usize) -> Cache<V> {
        Cache {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, key: &str) -> &Shard<V> {
        // The high bits pick the shard; HashMap uses its own hash inside.
        let h = self.hasher.hash_one(key);
        #[allow(clippy::cast_possible_truncation)]
        let i = (h >> 58) as usize % SHARDS;
        &self.shards[i]
    }

    /// Run `f` on the entry for `key`, if present.
    pub(crate) fn with<R>(&self, key: &str, f: impl FnOnce(&V) -> R) -> Option<R> {
        let shard = self.shard(key).read();
        let slot = shard.get(key)?;
        if !slot.referenced.load(Ordering::Relaxed) {
            slot.referenced.store(true, Ordering::Relaxed);
        }
        Some(f(&slot.value))
    }

    /// Run `f` on the entry for `key` with exclusive access, if present.
    pub(crate) fn with_mut<R>(&self, key: &str, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        let mut shard = self.shard(key).write();
        shard.get_mut(key).map(|slot| f(&mut slot.value))
    }

    /// Insert or replace.
    pub(crate) fn insert(&self, key: &str, value: V) {
        let mut shard = self.shard(key).write();
        if shard.len() >= self.per_shard && !shard.contains_key(key) {
            shard.retain(|_, s| s.referenced.swap(false, Ordering::Relaxed));
            if shard.len() >= self.per_shard {
                if let Some(victim) = shard.keys().next().cloned() {
                    shard.remove(&victim);
                }
            }
        }
        shard.insert(
            key.into(),
            Slot {
                value,
                // Earns its second chance with its first hit.
                referenced: AtomicBool::new(false),
            },
        );
    }

    pub(crate) fn remove(&self, key: &str) {
        self.shard(key).write().remove(key);
    }

    pub(crate) fn clear(&self) {
        for s in &*self.shards {
            s.write().clear();
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }
}

// ------------------------------------------------------------------ per-thread copies

/// Owners of per-thread state ([`with_local`]) kept per thread; the oldest is dropped
/// beyond this (a thread that served many vaults keeps the latest ones).
const LOCAL_OWNERS: usize = 8;

static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static LOCALS: RefCell<Vec<(u64, Box<dyn Any>)>> = const { RefCell::new(Vec::new()) };
}

/// A process-unique id for an owner of per-thread state (one per open vault).
pub(crate) fn new_owner() -> u64 {
    NEXT_OWNER.fetch_add(1, Ordering::Relaxed)
}

/// Run `f` on this thread's `T` for `owner` (created with `T::default()` on first use).
///
/// The hot path keeps thread-private copies of what it reads on every call, so two
/// threads authorizing the same key share no written cache line (no lock word, no
/// reference count, no counter). `f` must not call `with_local` again. `None` when the
/// thread's locals are gone (during thread exit): the caller takes its shared path.
pub(crate) fn with_local<T: Default + 'static, R>(
    owner: u64,
    f: impl FnOnce(&mut T) -> R,
) -> Option<R> {
    LOCALS
        .try_with(|cell| {
            let mut locals = cell.try_borrow_mut().ok()?;
            let i = match locals.iter().position(|(o, _)| *o == owner) {
                Some(i) => i,
                None => {
                    if locals.len() >= LOCAL_OWNERS {
                        locals.remove(0);
                    }
                    locals.push((owner, Box::new(T::default())));
                    locals.len() - 1
                }
            };
            locals[i].1.downcast_mut::<T>().map(f)
        })
        .ok()
        .flatten()
}

/// A fast hasher for the per-thread maps, whose keys (key ids and account ids of keys
/// that passed a secret check) are not chosen by an anonymous caller.
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// `HashMap` state for [`FastHasher`].
pub(crate) type BuildFast = BuildHasherDefault<FastHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_stays_within_its_bound() {
        let c = Cache::new(128);
        for i in 0..10_000 {
            c.insert(&format!("k{i}"), i);
        }
        assert!(c.len() <= 128, "len {}", c.len());
    }

    #[test]
    fn a_recently_read_entry_survives_a_sweep() {
        let c = Cache::new(256); // four entries per shard
        c.insert("hot", 1);
        // Fill, touching "hot" between inserts: it keeps its second chance.
        for i in 0..1000 {
            assert_eq!(c.with("hot", |v| *v), Some(1), "evicted at {i}");
            c.insert(&format!("cold{i}"), i);
        }
    }

    #[test]
    fn thread_locals_are_per_owner_and_per_thread() {
        let (a, b) = (new_owner(), new_owner());
        with_local(a, |v: &mut Vec<u32>| v.push(1));
        with_local(b, |v: &mut Vec<u32>| v.push(2));
        assert_eq!(with_local(a, |v: &mut Vec<u32>| v.clone()), Some(vec![1]));
        assert_eq!(with_local(b, |v: &mut Vec<u32>| v.clone()), Some(vec![2]));
        let other = std::thread::spawn(move || with_local(a, |v: &mut Vec<u32>| v.len()))
            .join()
            .unwrap();
        assert_eq!(other, Some(0));
        // Re-entry is refused, not a panic.
        let inner = with_local(a, |_: &mut Vec<u32>| with_local(a, |_: &mut Vec<u32>| ()));
        assert_eq!(inner, Some(None));
    }

    #[test]
    fn with_mut_changes_the_entry_in_place() {
        let c = Cache::new(10);
        c.insert("a", 1);
        c.with_mut("a", |v| *v = 2);
        assert_eq!(c.with("a", |v| *v), Some(2));
        c.remove("a");
        assert_eq!(c.with("a", |v| *v), None);
    }
}
