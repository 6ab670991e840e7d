//! The hot path's caches: per-process and per-thread copies of key records, account
//! views and the route table, validated by the sidecar's generation slots.

use super::{
    cache, limits, next_refill, Arc, BoundLimit, BuildFast, Cache, CacheMode, Counters, Error,
    HashMap, Inner, KeyRecord, LimitOwner, Millis, Rc, Result, Router, RwLock, Sidecar, SlotKind,
    UsageCell,
};

/// The hot path's caches and what validates them.
pub(super) struct Caches {
    /// The generation slots (and rate-limit buckets); `None`: every call reads the store.
    pub(super) sidecar: Option<Arc<Sidecar>>,
    pub(super) mode: CacheMode,
    pub(super) keys: Cache<KeyEntry>,
    pub(super) accounts: Cache<AccountEntry>,
    pub(super) routes: RwLock<(u64, Arc<Router>)>,
    /// Rate-limit counters (in the sidecar's buckets, or private ones).
    pub(super) counters: Counters,
    /// Owner id of this vault's per-thread copies (`cache::with_local`).
    pub(super) local_id: u64,
    /// Why the shared cache is disabled, when it is (`Vault::cache_disabled_reason`).
    pub(super) cache_note: Option<String>,
}

/// A key record with the rate limits attached to it, as read in one transaction.
pub(super) struct KeyState {
    pub(super) rec: KeyRecord,
    pub(super) limits: Box<[BoundLimit]>,
}

pub(super) struct KeyEntry {
    pub(super) state: Arc<KeyState>,
    pub(super) gen: u64,
    pub(super) verified: Option<[u8; 32]>,
    pub(super) usage: Arc<UsageCell>,
}

/// What the hot path needs of an account, as read in one transaction.
#[derive(Clone)]
pub(super) struct AccountView {
    pub(super) credits: u64,
    pub(super) total: u64,
    /// Its rate limits (`None`: none).
    pub(super) limits: Option<Arc<[BoundLimit]>>,
    /// When its next refill is due (`None`: no refill plan).
    pub(super) next_refill: Option<Millis>,
}

pub(super) struct AccountEntry {
    pub(super) view: AccountView,
    pub(super) gen: u64,
}

/// What one call holds of its key: the record and the usage counters it bumps.
pub(super) struct HotKey {
    pub(super) state: Arc<KeyState>,
    pub(super) usage: Arc<UsageCell>,
}

/// This thread's copy of a verified key (see [`Local`]).
pub(super) struct LocalKey {
    pub(super) hot: Rc<HotKey>,
    pub(super) gen: u64,
    pub(super) verified: [u8; 32],
    /// Hit since the last sweep (CLOCK, as in the shared cache).
    pub(super) referenced: bool,
}

/// Verified keys this thread's copy holds at most.
pub(super) const LOCAL_KEYS: usize = 1024;

/// Per-thread copies of what the hot path reads on every call (`cache::with_local`):
/// two threads authorizing the same key then write no shared cache line — no shard lock
/// word, no `Arc` count, no usage counter. Entries are validated by the same generation
/// slots as the shared caches, so they are exactly as current.
#[derive(Default)]
pub(super) struct Local {
    pub(super) keys: HashMap<Box<str>, LocalKey, BuildFast>,
    /// Promotions refused since the last sweep of a full `keys`.
    pub(super) misses: usize,
    pub(super) accounts: HashMap<Box<str>, (AccountView, u64), BuildFast>,
    /// This thread's own copy of the route table (its own reference count).
    pub(super) router: Option<(u64, Arc<Router>)>,
}

/// A generation slot read before a store read, to decide whether what was read may be
/// cached (only if the slot was idle and unchanged across the read).
pub(super) struct Generation<'a> {
    pub(super) sidecar: Option<(&'a Sidecar, usize)>,
    pub(super) before: u64,
}

impl Generation<'_> {
    /// Whether an entry cached with `gen` is current.
    pub(super) fn current(&self, gen: u64) -> bool {
        Sidecar::is_idle(self.before) && gen == self.before
    }

    /// The generation to cache what was just read with (`NEVER`: do not trust it).
    pub(super) fn after_read(&self) -> u64 {
        match self.sidecar {
            Some((sc, slot)) if Sidecar::is_idle(self.before) && sc.load(slot) == self.before => {
                self.before
            }
            _ => NEVER,
        }
    }
}

/// A generation value no slot ever holds while idle: entries carrying it never hit.
pub(super) const NEVER: u64 = u64::MAX;

impl Inner {
    pub(super) fn generation(&self, kind: SlotKind, id: &str) -> Generation<'_> {
        match &self.cache.sidecar {
            Some(sc) => {
                let slot = sc.slot_of(kind, id);
                Generation {
                    sidecar: Some((sc, slot)),
                    before: sc.load(slot),
                }
            }
            None => Generation {
                sidecar: None,
                before: NEVER,
            },
        }
    }

    /// The key record (and its limits) for `key_id`: from this thread's copy or the
    /// process cache when its generation slot says nothing changed, else from the store
    /// (then cached with the generation seen before the read). With the verified digest of
    /// its secret, if any.
    #[allow(clippy::type_complexity)]
    pub(super) fn key_entry(&self, key_id: &str) -> Result<Option<(Rc<HotKey>, Option<[u8; 32]>)>> {
        let g = self.generation(SlotKind::Key, key_id);
        let local = cache::with_local(self.cache.local_id, |l: &mut Local| {
            let e = l.keys.get_mut(key_id)?;
            if !g.current(e.gen) {
                return None;
            }
            e.referenced = true;
            Some((e.hot.clone(), Some(e.verified)))
        });
        if let Some(Some(hit)) = local {
            return Ok(Some(hit));
        }
        let hit = self.cache.keys.with(key_id, |e| {
            g.current(e.gen)
                .then(|| (e.state.clone(), e.gen, e.verified, e.usage.clone()))
        });
        if let Some(Some((state, gen, verified, usage))) = hit {
            if let Some(digest) = verified {
                if let Some(hot) = self.promote(key_id, &state, gen, digest) {
                    return Ok(Some((hot, verified)));
                }
            }
            return Ok(Some((Rc::new(HotKey { state, usage }), verified)));
        }
        // Events: a miss, for `Vault::metrics` (the store is read next anyway).
        self.events
            .key_cache_misses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let state = {
            let r = self.read()?;
            match r.key(key_id)? {
                Some(rec) => {
                    let owner = LimitOwner::Key(key_id);
                    let limits = limits::bind(&owner.bucket_owner(), r.limits(owner)?);
                    Some(KeyState {
                        rec,
                        limits: limits.into_boxed_slice(),
                    })
                }
                None => None,
            }
        };
        let gen = g.after_read();
        let Some(state) = state else {
            self.cache.keys.remove(key_id);
            return Ok(None);
        };
        let state = Arc::new(state);
        let verified = self.cache.keys.with(key_id, |e| e.verified).flatten();
        let usage = self.flushing.pending.cell(key_id);
        self.cache.keys.insert(
            key_id,
            KeyEntry {
                state: state.clone(),
                gen,
                verified,
                usage: usage.clone(),
            },
        );
        Ok(Some((Rc::new(HotKey { state, usage }), verified)))
    }

    /// Copy a verified key into this thread's `Local` (its own usage cell), unless the
    /// copy is full of keys hit since its last sweep.
    pub(super) fn promote(
        &self,
        key_id: &str,
        state: &Arc<KeyState>,
        gen: u64,
        verified: [u8; 32],
    ) -> Option<Rc<HotKey>> {
        cache::with_local(self.cache.local_id, |l: &mut Local| {
            if l.keys.len() >= LOCAL_KEYS && !l.keys.contains_key(key_id) {
                // Sweep at most once per LOCAL_KEYS refusals: a thread serving far more
                // keys than it can hold pays one probe, not a sweep, per call.
                l.misses += 1;
                if l.misses < LOCAL_KEYS {
                    return None;
                }
                l.misses = 0;
                l.keys.retain(|_, e| std::mem::take(&mut e.referenced));
                if l.keys.len() >= LOCAL_KEYS {
                    return None;
                }
            }
            let hot = Rc::new(HotKey {
                state: state.clone(),
                usage: self.flushing.pending.thread_cell(key_id),
            });
            l.keys.insert(
                key_id.into(),
                LocalKey {
                    hot: hot.clone(),
                    gen,
                    verified,
                    referenced: false,
                },
            );
            Some(hot)
        })
        .flatten()
    }

    /// An account's balance, limits and refill due date, cached like key records (and
    /// copied per thread, like verified keys).
    pub(super) fn account_view(&self, account_id: &str) -> Result<AccountView> {
        let g = self.generation(SlotKind::Account, account_id);
        let local = cache::with_local(self.cache.local_id, |l: &mut Local| {
            l.accounts
                .get(account_id)
                .filter(|(_, gen)| g.current(*gen))
                .map(|(view, _)| view.clone())
        });
        if let Some(Some(hit)) = local {
            return Ok(hit);
        }
        if let Some(Some(hit)) = self
            .cache
            .accounts
            .with(account_id, |e| g.current(e.gen).then(|| e.view.clone()))
        {
            self.localize_account(account_id, &hit, g.before);
            return Ok(hit);
        }
        let view = {
            let r = self.read()?;
            let (credits, total) = r
                .balance(account_id)?
                .ok_or_else(|| Error::NotFound(format!("account {account_id:?}")))?;
            let rec = r.account(account_id)?;
            let owner = LimitOwner::Account(account_id);
            let limits = limits::bind(&owner.bucket_owner(), r.limits(owner)?);
            AccountView {
                credits,
                total,
                limits: (!limits.is_empty()).then(|| limits.into()),
                next_refill: rec.as_ref().and_then(next_refill),
            }
        };
        let gen = g.after_read();
        if gen != NEVER {
            self.cache.accounts.insert(
                account_id,
                AccountEntry {
                    view: view.clone(),
                    gen,
                },
            );
            self.localize_account(account_id, &view, gen);
        }
        Ok(view)
    }

    /// Keep a thread-private copy of an account view (its limits in an `Arc` of its own).
    pub(super) fn localize_account(&self, account_id: &str, view: &AccountView, gen: u64) {
        let copy = AccountView {
            limits: view.limits.as_deref().map(Arc::from),
            ..view.clone()
        };
        cache::with_local(self.cache.local_id, |l: &mut Local| {
            if l.accounts.len() >= LOCAL_KEYS && !l.accounts.contains_key(account_id) {
                l.accounts.clear();
            }
            l.accounts.insert(account_id.into(), (copy, gen));
        });
    }

    /// The route table, cached behind the global "routes" slot (and copied per thread,
    /// so its reference count is not shared between threads).
    pub(super) fn router(&self) -> Result<Arc<Router>> {
        let g = self.generation(SlotKind::Global, "routes");
        let local = cache::with_local(self.cache.local_id, |l: &mut Local| {
            l.router
                .as_ref()
                .filter(|(gen, _)| g.current(*gen))
                .map(|(_, r)| r.clone())
        });
        if let Some(Some(router)) = local {
            return Ok(router);
        }
        let shared = {
            let cached = self.cache.routes.read();
            g.current(cached.0).then(|| cached.1.clone())
        };
        let (router, gen) = match shared {
            Some(router) => (router, g.before),
            None => {
                let router = Arc::new(Router::new(self.read()?.routes()?));
                let gen = g.after_read();
                if gen != NEVER {
                    *self.cache.routes.write() = (gen, router.clone());
                }
                (router, gen)
            }
        };
        if gen != NEVER {
            let copy = Arc::new(Router::clone(&router));
            cache::with_local(self.cache.local_id, |l: &mut Local| {
                l.router = Some((gen, copy));
            });
        }
        Ok(router)
    }
}
