//! The vault: open, authorize, manage.
//!
//! [`Vault`] and its shared state (`Inner`) live here with the transaction helpers; each
//! concern has its own child module: `authorize` (the pipeline), `hot` (the caches it
//! reads), `accounts`, `keys`, `ratelimits`, `routes`, `signing` (and the master key),
//! `debits` (group commit and refills), `audit`, `background` (the flusher) and `bulk`.
//! The children share this module's imports (`use super::*`).
//!
//! Storage is a `Box<dyn Backend>` (`crate::store`): management calls, debits and cache
//! misses go through it; the hot path (a cached, verified key) reads only the caches and
//! the generation slots the backend handed over at open.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Once, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::audit::AuditAction;
use crate::batch::GroupCommit;
use crate::cache::{self, BuildFast, Cache};
use crate::crypto::{
    self, Argon2Params, Budget, DigestKey, FailedSecrets, Limiter, Throttle, Verified,
};
use crate::error::{Error, Result};
use crate::idempotency::{self, Matched};
use crate::limits::{self, BoundLimit, Counters, LimitOwner, RateLimit, Taken};
use crate::model::{
    Account, AuditEntry, AuditQuery, AuthMethod, Balance, CacheMode, Grant, KeyInfo, Millis,
    NewKey, Refill, RefillInterval, SecretToken, Stats, Usage, WhoAmI,
};
use crate::policy::{self, RouteRule, Router};
use crate::secrets::{self, MasterKey};
use crate::shm::{Sidecar, SlotKind};
use crate::store::records::GrantRecord;
use crate::store::{
    file, AccountRecord, AuditRecord, Backend, Generations, HoldRecord, IdempotencyRecord,
    IdempotencyScope, KeyRecord, Meta, ReadTx, WriteTx,
};
use crate::times;
use crate::token;
use crate::usage::{EventKey, Pending, UsageCell};

mod accounts;
mod audit;
mod authorize;
mod background;
mod bulk;
// Debits over the cross-process combining queue (opt-in: KEYLEDGER_COMBINE=1).
mod combine_wire;
mod combining;
mod debits;
// Events and usage reports.
mod events;
// Holds.
mod holds;
mod hot;
mod import;
mod keys;
mod ratelimits;
mod routes;
mod signing;
#[cfg(test)]
mod tests;
mod view;

pub use self::authorize::{Attempt, WouldBlock};
use self::authorize::{Halt, Mode, Verifier};
use self::background::*;
pub(crate) use self::holds::validate_hold_args;
pub use self::holds::{Hold, HoldState, SettleOptions, DEFAULT_HOLD_TTL_MS, MAX_HOLD_TTL_MS};
use self::hot::*;
pub use self::import::{ImportReport, ImportedAccount, ImportedKey, IMPORT_METADATA_KEY};
use self::keys::*;
use self::signing::*;
pub use self::view::GrantView;
#[cfg(feature = "python")]
pub(crate) use self::view::SharedGrant;
use crate::credits::{next_refill, DebitReq, Debited};
use crate::validate::*;

pub use crate::clock::{system_now, Clock};
pub use crate::credits::IDEMPOTENCY_WINDOW_MS;
pub use crate::options::{
    default_argon2_concurrency, AuthorizeOptions, Durability, OnReplay, Target, VaultOptions,
};

/// Whether a vault location names a PostgreSQL database rather than a file.
fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgresql://") || location.starts_with("postgres://")
}

static FORK_GEN: AtomicU64 = AtomicU64::new(0);

static FORK_HOOK: Once = Once::new();

extern "C" fn after_fork_in_child() {
    FORK_GEN.fetch_add(1, Ordering::SeqCst);
}

fn fork_generation() -> u64 {
    FORK_HOOK.call_once(|| {
        // SAFETY: registering a child handler that only performs an atomic add, which is
        // async-signal-safe; the handler is a plain `extern "C"` function with no captures.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
    FORK_GEN.load(Ordering::SeqCst)
}

struct Inner {
    path: PathBuf,
    store: RwLock<Option<Box<dyn Backend>>>,
    closed: AtomicBool,
    fork_gen: u64,
    /// The caches of the hot path and what validates them.
    cache: Caches,
    /// Secret verification: digests, argon2 and its guards.
    verify: Verifier,
    /// Concurrent debits of this process, committed together.
    group: GroupCommit<DebitReq, Debited>,
    /// Batched bookkeeping and the background flusher's state.
    flushing: Flushing,
    master: RwLock<Option<MasterKey>>,
    settings: Settings,
    /// Events' per-handle state.
    events: self::events::EventsState,

    /// This handle's place in the cross-process combining queue, when in use.
    combining: Option<self::combining::Combining>,
}

/// What the vault was opened with that does not change while it is open.
struct Settings {
    clock: Clock,
    /// Recorded as `actor` on management audit entries.
    actor: Option<String>,
    /// Debits commit without fsync (`Durability::Eventual`).
    eventual: bool,
    signature_window_ms: Millis,
    refusal_retention: Option<Duration>,
    single_use_signatures: bool,
}

/// An open vault. `Send + Sync`: share it between threads with `Arc`. Open one per
/// process (after `fork()`, open a new one in the child): every process opening the same
/// file shares its keys, credits and caches' invalidations.
pub struct Vault {
    inner: Arc<Inner>,
    flusher: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.inner.path)
            .field("cache_mode", &self.inner.cache.mode)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Refuse options that cannot work, before anything is opened or created.
fn check_options(options: &VaultOptions) -> Result<()> {
    if options.durability == Durability::Eventual && !options.exclusive {
        return Err(Error::invalid(
                "durability \"eventual\" needs exclusive=true: a multi-process vault commits every debit durably",
            ));
    }
    if let Some(p) = options.argon2 {
        p.validate()?;
    }
    options.throttle.validate()?;
    if options.shm_slots == 0 || !options.shm_slots.is_power_of_two() {
        return Err(Error::invalid("shm_slots must be a power of two"));
    }
    if options.flush_interval.is_zero() {
        return Err(Error::invalid("flush_interval must be positive"));
    }
    if options.signature_window_ms <= 0 {
        return Err(Error::invalid("signature_window_ms must be positive"));
    }
    if options.master_key.is_some() && options.master_passphrase.is_some() {
        return Err(Error::invalid(
            "give master_key or master_passphrase, not both",
        ));
    }
    Ok(())
}

impl Vault {
    /// How many used request signatures the vault remembers (`single_use_signatures`):
    /// at most the signed calls of one window, older ones being pruned as calls come.
    pub fn signatures_recorded(&self) -> Result<u64> {
        let guard = self.inner.store()?;
        let store = guard
            .as_ref()
            .ok_or_else(|| Error::VaultClosed("the vault was closed".into()))?;
        store.read()?.signatures_recorded()
    }

    /// Open (or create) the vault at `path` with default options: shared by every process.
    pub fn open(path: impl AsRef<Path>) -> Result<Vault> {
        Vault::open_with(path, VaultOptions::default())
    }

    /// Open (or create) the vault at `path`.
    ///
    /// A new vault file is created with `O_EXCL` and mode 0600. An existing vault file, or
    /// its sidecar `<canonical path>.shm`, owned by another user or writable by group or
    /// others is refused with `invalid_argument` (the message names the path, owner and
    /// mode, and the fix); so is a symlink at `path` owned by another user.
    ///
    /// A location starting with `postgresql://` or `postgres://` opens a PostgreSQL vault
    /// instead (cargo feature `postgres`; without it such a location is refused with
    /// `invalid_argument`). `exclusive` and `Durability::Eventual` are refused for it.
    /// Its `path()` is the URL with any password replaced by `***`.
    pub fn open_with(path: impl AsRef<Path>, options: VaultOptions) -> Result<Vault> {
        let path = path.as_ref().to_path_buf();
        check_options(&options)?;
        if let Some(url) = path.to_str().filter(|p| is_postgres_url(p)) {
            return Vault::open_postgres(url, options);
        }
        let backend = file::RedbBackend::open(
            &path,
            &file::FileOptions {
                exclusive: options.exclusive,
                cache_bytes: options.storage_cache_bytes,
                shared_cache: options.shared_cache,
                shm_slots: options.shm_slots,
            },
        )?;
        let backend: Box<dyn Backend> = Box::new(backend);
        #[cfg(any(test, feature = "fault-injection"))]
        let backend = crate::store::fault::wrap_if_armed(&path, backend);
        Vault::open_with_backend(path, backend, options)
    }

    #[cfg(feature = "postgres")]
    fn open_postgres(url: &str, options: VaultOptions) -> Result<Vault> {
        if options.exclusive {
            return Err(Error::invalid(
                "exclusive=true is for a vault file owned by one process; a PostgreSQL vault is shared",
            ));
        }
        let backend: Box<dyn Backend> = Box::new(crate::store::postgres::PgBackend::open(
            url,
            options.shm_slots,
        )?);
        #[cfg(any(test, feature = "fault-injection"))]
        let backend = crate::store::fault::wrap_if_armed(Path::new(url), backend);
        let name = PathBuf::from(crate::store::postgres::redact(url));
        Vault::open_with_backend(name, backend, options)
    }

    #[cfg(not(feature = "postgres"))]
    fn open_postgres(_url: &str, _options: VaultOptions) -> Result<Vault> {
        Err(Error::invalid(
            "a postgresql:// vault needs keyledger built with the cargo feature \"postgres\"",
        ))
    }

    /// Open a vault over a storage backend already opened at `path` (which names it in
    /// `Vault::path` and `Debug`). Everything above storage (validation, caches, group
    /// commit, the flusher) is the same whatever the backend: see `crate::store`.
    pub(crate) fn open_with_backend(
        path: PathBuf,
        store: Box<dyn Backend>,
        options: VaultOptions,
    ) -> Result<Vault> {
        check_options(&options)?;
        let fork_gen = fork_generation();
        let argon2 = store
            .read()?
            .meta(Meta::Argon2)?
            .and_then(|v| Argon2Params::decode(&v));
        // The opener's parameters apply to a vault it creates, never to an existing one:
        // changing them is `set_argon2_params`, an audited management call.
        let argon2 = match argon2 {
            Some(stored) => stored.effective(),
            None if store.created() => {
                let p = options.argon2.unwrap_or_default();
                let mut tx = store.write()?;
                tx.put_meta(Meta::Argon2, &p.encode())?;
                tx.commit(Durability::Immediate)?;
                p
            }
            None => Argon2Params::default(),
        };
        let master = resolve_master_key(&*store, options.master_key, options.master_passphrase)?;
        let clock = options.clock.unwrap_or_else(|| Arc::new(system_now));
        let now_for_budget = clock();
        let Generations {
            slots: sidecar,
            mode,
            note: cache_note,
        } = store.generations();
        let ratelimit_share = store.ratelimit_share();
        let combining = self::combining::Combining::open(sidecar.as_deref(), &*store);
        let inner = Arc::new(Inner {
            combining,
            path,
            store: RwLock::new(Some(store)),
            closed: AtomicBool::new(false),
            fork_gen,
            cache: Caches {
                sidecar,
                mode,
                keys: Cache::new(options.cache_capacity),
                accounts: Cache::new(options.cache_capacity),
                routes: RwLock::new((NEVER, Arc::new(Router::default()))),
                counters: Counters::with_share(ratelimit_share),
                local_id: cache::new_owner(),
                cache_note,
            },
            verify: Verifier {
                digest_key: DigestKey::random()?,
                argon2: RwLock::new(argon2),
                limiter: Limiter::new(options.argon2_concurrency, options.argon2_queue),
                throttle: Throttle::new(options.throttle),
                budget: Budget::new(&options.throttle, now_for_budget),
                failed: FailedSecrets::new(),
                argon2_runs: AtomicU64::new(0),
                throttled: AtomicU64::new(0),
            },
            group: GroupCommit::new(),
            flushing: Flushing {
                pending: Pending::new(),
                unsynced: AtomicBool::new(false),
                flush_interval: options.flush_interval,
                flusher_panics: AtomicU64::new(0),
                flush_lock: Mutex::new(()),
                #[cfg(feature = "fault-injection")]
                injected_flusher_panics: AtomicU64::new(0),
            },
            master: RwLock::new(master),
            settings: Settings {
                clock,
                actor: options.actor,
                eventual: options.durability == Durability::Eventual,
                signature_window_ms: options.signature_window_ms,
                refusal_retention: options.refusal_retention,
                single_use_signatures: options.single_use_signatures,
            },
            events: Default::default(),
        });
        let flusher = spawn_flusher(&inner)?;
        Ok(Vault {
            inner,
            flusher: Mutex::new(Some(flusher)),
        })
    }

    /// The vault file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// How this process validates its caches. `Disabled` also when the vault file has
    /// more than one hard link, and while a removed or replaced sidecar could not be mapped
    /// again (see [`Vault::cache_disabled_reason`]).
    pub fn cache_mode(&self) -> CacheMode {
        match &self.inner.cache.sidecar {
            Some(sc) if !sc.is_trusted() => CacheMode::Disabled,
            _ => self.inner.cache.mode,
        }
    }

    /// Why [`Vault::cache_mode`] is `Disabled` (`None` when it is not).
    pub fn cache_disabled_reason(&self) -> Option<String> {
        if self.cache_mode() != CacheMode::Disabled {
            return None;
        }
        if let Some(why) = self
            .inner
            .store()
            .ok()
            .and_then(|s| s.as_ref()?.distrust_reason())
        {
            return Some(why);
        }
        Some(self.inner.cache.cache_note.clone().unwrap_or_else(|| {
            "the sidecar was removed or replaced and could not be mapped again".into()
        }))
    }

    /// The argon2id parameters new hashes get.
    pub fn argon2_params(&self) -> Argon2Params {
        *self.inner.verify.argon2.read()
    }

    /// Change the vault's argon2id parameters for new hashes, audited as
    /// `argon2_params_changed` (details: the old and new `m_kib`, `t`, `p`). Outside test
    /// builds, parameters below the OWASP minimum are refused with `invalid_argument`.
    /// Existing hashes are rehashed on their next verification only where the new
    /// parameters are strictly stronger (more memory or passes, neither fewer); other
    /// processes use them from their next open. Setting the current parameters is a no-op.
    pub fn set_argon2_params(&self, params: Argon2Params) -> Result<()> {
        self.inner.check_open()?;
        params.validate()?;
        let inner = &self.inner;
        let now = (inner.settings.clock)();
        inner.write(|tx| {
            let old = tx
                .meta(Meta::Argon2)?
                .and_then(|v| Argon2Params::decode(&v))
                .unwrap_or_default();
            if old == params {
                return Ok(());
            }
            tx.put_meta(Meta::Argon2, &params.encode())?;
            let p = |a: Argon2Params| json!({"m_kib": a.m_kib, "t": a.t, "p": a.p});
            inner.audit(
                tx,
                now,
                AuditAction::Argon2ParamsChanged,
                None,
                None,
                json!({"from": p(old), "to": p(params)}),
            )?;
            Ok(())
        })?;
        *inner.verify.argon2.write() = params;
        Ok(())
    }

    /// Counters of this handle (argon2 runs, store reads, commits).
    pub fn stats(&self) -> Stats {
        let store = self.inner.store.read();
        Stats {
            argon2_runs: self.inner.verify.argon2_runs.load(Ordering::Relaxed),
            read_txns: store.as_ref().map_or(0, |s| s.read_txns()),
            commits: store.as_ref().map_or(0, |s| s.commits()),
            throttled: self.inner.verify.throttled.load(Ordering::Relaxed),
            flusher_panics: self.inner.flushing.flusher_panics.load(Ordering::Relaxed),
        }
    }

    /// Test hook: the next `n` rounds of this vault's background flusher panic. Not API.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn inject_flusher_panics(&self, n: u64) {
        self.inner
            .flushing
            .injected_flusher_panics
            .store(n, Ordering::SeqCst);
    }

    /// Flush usage counters and request-path audit entries now (also done every second
    /// and on close).
    pub fn flush(&self) -> Result<()> {
        self.inner.check_open()?;
        self.inner.flush()
    }

    /// Flush and close. Later calls fail with `vault_closed`. Idempotent.
    pub fn close(&self) -> Result<()> {
        let forked = fork_generation() != self.inner.fork_gen;
        let was_closed = self.inner.closed.swap(true, Ordering::SeqCst);
        let flusher = self.flusher.lock().take();
        if forked {
            // The flusher thread and the file belong to the parent: touch neither.
            if let Some((tx, handle)) = flusher {
                std::mem::forget(tx);
                std::mem::forget(handle);
            }
            if let Some(store) = self.inner.store.write().take() {
                std::mem::forget(store);
            }
            return Ok(());
        }
        if let Some((tx, handle)) = flusher {
            drop(tx);
            let _ = handle.join();
        }
        if was_closed {
            return Ok(());
        }
        let flushed = self.inner.flush();
        let synced = self.inner.sync_if_needed();
        self.inner.store.write().take();
        self.inner.cache.keys.clear();
        self.inner.cache.accounts.clear();
        flushed.and(synced)
    }
}

impl Drop for Vault {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl Inner {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::VaultClosed("the vault was closed".into()));
        }
        if FORK_GEN.load(Ordering::Relaxed) != self.fork_gen {
            return Err(Error::VaultClosed(
                "this Vault was opened before fork(); open a new Vault in each worker process"
                    .into(),
            ));
        }
        Ok(())
    }

    fn store(&self) -> Result<RwLockReadGuard<'_, Option<Box<dyn Backend>>>> {
        let guard = self.store.read();
        if guard.is_none() {
            return Err(Error::VaultClosed("the vault was closed".into()));
        }
        Ok(guard)
    }

    fn read(&self) -> Result<ReadTx> {
        let guard = self.store()?;
        guard
            .as_ref()
            .ok_or_else(|| Error::VaultClosed("the vault was closed".into()))?
            .read()
    }

    /// One management transaction: `f` validates and writes; an error aborts it.
    fn write<T>(&self, f: impl FnOnce(&mut WriteTx<'_>) -> Result<T>) -> Result<T> {
        let guard = self.store()?;
        let store = guard
            .as_ref()
            .ok_or_else(|| Error::VaultClosed("the vault was closed".into()))?;
        let mut tx = store.write()?;
        let out = f(&mut tx)?;
        tx.commit(Durability::Immediate)?;
        Ok(out)
    }
}
