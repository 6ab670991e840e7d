//! A bounded, sharded, read-mostly map for the per-process caches of the hot path.
//!
//! Reads take a shard's read lock only. Eviction is CLOCK (second chance), an
//! approximation of LRU that needs no write on a hit: a hit sets the entry's
//! `referenced` bit (only when it is clear, so a hot entry causes no cache-line traffic);
//! a full shard drops the entries not referenced since the last sweep.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};

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
    fn with_mut_changes_the_entry_in_place() {
        let c = Cache::new(10);
        c.insert("a", 1);
        c.with_mut("a", |v| *v = 2);
        assert_eq!(c.with("a", |v| *v), Some(2));
        c.remove("a");
        assert_eq!(c.with("a", |v| *v), None);
    }
}
