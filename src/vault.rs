//! The vault: open, authorize, manage (SPEC §4–§6, §9, §10).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Once, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::batch::GroupCommit;
use crate::cache::{self, BuildFast, Cache};
use crate::crypto::{
    self, Argon2Params, Budget, DigestKey, FailedSecrets, Limiter, Throttle, ThrottleConfig,
    Verified,
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
use crate::store::{AccountRecord, AuditRecord, KeyRecord, Sharing, Store, WriteTx};
use crate::times;
use crate::token;
use crate::usage::{clip_route, EventKey, Pending, UsageCell};

// The bulk key path (`create_keys_bulk`) lives beside the vault and uses its private helpers.
#[path = "bulk.rs"]
mod bulk;

/// A source of "now" in unix milliseconds. Tests pin it; the default reads the system clock.
pub type Clock = Arc<dyn Fn() -> Millis + Send + Sync>;

/// The system clock in unix milliseconds.
pub fn system_now() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Idempotency keys replay for this long.
pub const IDEMPOTENCY_WINDOW_MS: Millis = 24 * 3_600_000;
const MAX_ID: usize = 128;
const MAX_NAME: usize = 128;
const MAX_METADATA: usize = 4096;
const MAX_SCOPES: usize = 64;
const MAX_IDEMPOTENCY_KEY: usize = 255;
const MAX_PATH: usize = 8192;
const HOUR_MS: Millis = 3_600_000;

/// When a debit is durable (SPEC §10).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Every debit and management change is on disk when the call returns.
    #[default]
    Immediate,
    /// `exclusive` vaults only: debits commit without fsync and are made durable at least
    /// every 100 ms and on close; a machine crash may lose the last 100 ms of debits.
    /// Management changes stay immediate.
    Eventual,
}

/// How long refusal audit entries are kept by default.
pub const DEFAULT_REFUSAL_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// How to open a vault.
#[derive(Clone)]
pub struct VaultOptions {
    /// One process only (`ConcurrencyMode::ExclusiveWriter`): cheaper reads and commits; a
    /// second opener gets `vault_locked`. Default false: every worker process may open it.
    pub exclusive: bool,
    /// Debit durability; `Eventual` requires `exclusive`.
    pub durability: Durability,
    /// argon2id parameters of a vault this open creates (`None`: the defaults). An existing
    /// vault keeps its stored ones: change them with [`Vault::set_argon2_params`]. Outside
    /// test builds, parameters below the OWASP minimum are refused
    /// ([`Argon2Params::meets_floor`]).
    pub argon2: Option<Argon2Params>,
    /// Keys (records + verified-secret digests) and balances cached per process.
    pub cache_capacity: usize,
    /// redb's page cache, in bytes.
    pub storage_cache_bytes: usize,
    /// Failed-secret throttle per key_id and the process budget of failed verifications.
    pub throttle: ThrottleConfig,
    /// Concurrent argon2 computations at most (default: half the cores, at least 1, so
    /// a flood of cold verifications always leaves the host a core).
    pub argon2_concurrency: usize,
    /// Generation slots in the shared-memory sidecar.
    pub shm_slots: u32,
    /// Use the shared-memory sidecar (default true). False forces a redb read per call.
    pub shared_cache: bool,
    /// How often usage counters and request-path audit entries are flushed.
    pub flush_interval: Duration,
    /// Recorded as `actor` on the audit entries of this handle's management changes.
    pub actor: Option<String>,
    /// The clock (tests pin it).
    pub clock: Option<Clock>,
    /// The master key for signing secrets (SPEC §7). `None`: a passphrase, else
    /// `KEYLEDGER_MASTER_KEY`, else none (a vault without signing keys needs none).
    pub master_key: Option<MasterKey>,
    /// Derive the master key from this passphrase (argon2id; salt stored in the vault).
    pub master_passphrase: Option<Zeroizing<String>>,
    /// Request signatures are accepted this far from now, each side (default 300 s).
    pub signature_window_ms: Millis,
    /// How long `auth_refused` audit entries are kept (default 30 days); `None` keeps them
    /// forever. Older ones are deleted in the background, a bounded batch at a time.
    /// Management entries and `operator_authorized` entries are never pruned.
    pub refusal_retention: Option<Duration>,
    /// Authorizations that may wait for an argon2 slot at once (default 32); beyond that a
    /// cold verification is refused at once with `too_many_attempts` (429).
    pub argon2_queue: usize,
    /// Accept each request signature once (default false): every signed call then records
    /// its signature in the vault (one durable write transaction, shared by every process
    /// opening the file) and a replay within the window is `invalid_signature`. Records
    /// older than the window are pruned as calls come.
    pub single_use_signatures: bool,
}

/// The default `argon2_concurrency`: half the cores, at least 1.
pub fn default_argon2_concurrency() -> usize {
    (std::thread::available_parallelism().map_or(2, usize::from) / 2).max(1)
}

impl Default for VaultOptions {
    fn default() -> Self {
        VaultOptions {
            exclusive: false,
            durability: Durability::Immediate,
            argon2: None,
            cache_capacity: 100_000,
            storage_cache_bytes: 64 * 1024 * 1024,
            throttle: ThrottleConfig::default(),
            argon2_concurrency: default_argon2_concurrency(),
            shm_slots: Sidecar::DEFAULT_SLOTS,
            shared_cache: true,
            flush_interval: Duration::from_secs(1),
            actor: None,
            clock: None,
            master_key: None,
            master_passphrase: None,
            signature_window_ms: secrets::DEFAULT_SIGNATURE_WINDOW_MS,
            refusal_retention: Some(DEFAULT_REFUSAL_RETENTION),
            argon2_queue: 32,
            single_use_signatures: false,
        }
    }
}

impl std::fmt::Debug for VaultOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultOptions")
            .field("exclusive", &self.exclusive)
            .field("durability", &self.durability)
            .field("argon2", &self.argon2)
            .field("cache_capacity", &self.cache_capacity)
            .field("actor", &self.actor)
            .field("master_key", &self.master_key.as_ref().map(|_| "…"))
            .field("signature_window_ms", &self.signature_window_ms)
            .field("refusal_retention", &self.refusal_retention)
            .field("single_use_signatures", &self.single_use_signatures)
            .finish_non_exhaustive()
    }
}

/// What an authorization is for: a route (method and path, matched against the vault's
/// route rules) or a scope named directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// An HTTP request: the most specific route rule decides scope and cost.
    Route {
        /// HTTP method (case-insensitive).
        method: &'a str,
        /// Request path; a query string is ignored.
        path: &'a str,
    },
    /// A scope, for non-HTTP work; costs 0 unless `cost` is given.
    Scope(&'a str),
    /// An HTTP request as the server received it: what every HTTP gate passes. The raw
    /// request target is read by [`crate::http`] (decoded once; ambiguous targets are
    /// refused with [`Error::AmbiguousPath`]); `HEAD` is charged like `GET`.
    /// [`Target::Route`] is the older form, for callers that hold an already decoded path.
    Request {
        /// HTTP method (case-insensitive).
        method: &'a str,
        /// The request target as sent: `/a/b%20c?x=1` or `http://host/a?x=1`.
        target: &'a str,
        /// Match rule literals ignoring ASCII case (Express's default routing).
        case_insensitive: bool,
    },
}

impl<'a> Target<'a> {
    /// `Target::Route`.
    pub fn route(method: &'a str, path: &'a str) -> Target<'a> {
        Target::Route { method, path }
    }

    /// `Target::Scope`.
    pub fn scope(scope: &'a str) -> Target<'a> {
        Target::Scope(scope)
    }

    /// `Target::Request`, matched case-sensitively: the raw request target as sent.
    pub fn request(method: &'a str, target: &'a str) -> Target<'a> {
        Target::Request {
            method,
            target,
            case_insensitive: false,
        }
    }

    /// This target with case-insensitive matching on or off (only a `Request` has it).
    #[must_use]
    pub fn case_insensitive(self, on: bool) -> Target<'a> {
        match self {
            Target::Request { method, target, .. } => Target::Request {
                method,
                target,
                case_insensitive: on,
            },
            other => other,
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Route { method, path } => clip_route(&format!("{method} {path}")),
            Target::Scope(s) => clip_route(&format!("scope {s}")),
            // The path only: a query string may carry what an audit entry must not keep.
            Target::Request { method, target, .. } => {
                clip_route(&format!("{method} {}", crate::http::path_of(target)))
            }
        }
    }
}

/// Optional parts of an authorization.
#[derive(Clone, Copy, Debug, Default)]
pub struct AuthorizeOptions<'a> {
    /// Credits to charge; default: the matched route's cost (0 for a scope).
    pub cost: Option<u64>,
    /// At most 255 bytes, per account: a repeat of the same request (account, route rule
    /// or scope, cost, limit cost) within 24 h is answered per `on_replay` and charges
    /// nothing; a reuse for another request is [`Error::IdempotencyConflict`].
    pub idempotency_key: Option<&'a str>,
    /// `t=<unix seconds>,v2=<hex>` for keys that require signing (format in
    /// [`crate::sign_request`]); `v1=` signatures are refused.
    pub signature: Option<&'a str>,
    /// The request body, for signatures.
    pub body: Option<&'a [u8]>,
    /// The time of the request (default: the vault's clock), in
    /// `MIN_TIME_MS ..= MAX_TIME_MS`; outside it the call is `invalid_argument`.
    pub now: Option<Millis>,
    /// Rate limits to apply besides the auto-applied ones, by name (SPEC §13).
    pub limits: Option<&'a [&'a str]>,
    /// How much this call weighs against every applied limit (default 1).
    pub limit_cost: Option<u64>,
    /// What a repeat of an idempotency key answers (default: the first grant, replayed).
    pub on_replay: OnReplay,
    /// The request's query string exactly as sent, without the `?` (`to=A` for
    /// `/send?to=A`), for signatures: a signature covers `path?query`. Routes only; `None`
    /// when the path given carries its own query or there is none.
    pub query: Option<&'a str>,
}

/// What [`Vault::authorize`] answers when an idempotency key repeats an earlier call
/// (same account, route rule or scope, cost and limit cost, within 24 h). A repeat with
/// other parameters is always refused with [`Error::IdempotencyConflict`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnReplay {
    /// The first call's grant, marked `replayed`, with `charged` 0 (for a caller that
    /// serves its stored response itself).
    #[default]
    Grant,
    /// [`Error::DuplicateRequest`] with the first call's charge and time: the request was
    /// already served, do not run it again. Nothing is charged either way.
    Refuse,
}

/// A key record with the rate limits attached to it, as read in one transaction.
struct KeyState {
    rec: KeyRecord,
    limits: Box<[BoundLimit]>,
}

struct KeyEntry {
    state: Arc<KeyState>,
    gen: u64,
    verified: Option<[u8; 32]>,
    usage: Arc<UsageCell>,
}

/// What the hot path needs of an account, as read in one transaction.
#[derive(Clone)]
struct AccountView {
    credits: u64,
    total: u64,
    /// Its rate limits (`None`: none).
    limits: Option<Arc<[BoundLimit]>>,
    /// When its next refill is due (`None`: no refill plan).
    next_refill: Option<Millis>,
}

struct AccountEntry {
    view: AccountView,
    gen: u64,
}

/// What one call holds of its key: the record and the usage counters it bumps.
struct HotKey {
    state: Arc<KeyState>,
    usage: Arc<UsageCell>,
}

/// This thread's copy of a verified key (see [`Local`]).
struct LocalKey {
    hot: Rc<HotKey>,
    gen: u64,
    verified: [u8; 32],
    /// Hit since the last sweep (CLOCK, as in the shared cache).
    referenced: bool,
}

/// Verified keys this thread's copy holds at most.
const LOCAL_KEYS: usize = 1024;

/// Per-thread copies of what the hot path reads on every call (`cache::with_local`):
/// two threads authorizing the same key then write no shared cache line — no shard lock
/// word, no `Arc` count, no usage counter. Entries are validated by the same generation
/// slots as the shared caches, so they are exactly as current.
#[derive(Default)]
struct Local {
    keys: HashMap<Box<str>, LocalKey, BuildFast>,
    /// Promotions refused since the last sweep of a full `keys`.
    misses: usize,
    accounts: HashMap<Box<str>, (AccountView, u64), BuildFast>,
    /// This thread's own copy of the route table (its own reference count).
    router: Option<(u64, Arc<Router>)>,
}

/// A generation slot read before a store read, to decide whether what was read may be
/// cached (only if the slot was idle and unchanged across the read).
struct Generation<'a> {
    sidecar: Option<(&'a Sidecar, usize)>,
    before: u64,
}

impl Generation<'_> {
    /// Whether an entry cached with `gen` is current.
    fn current(&self, gen: u64) -> bool {
        Sidecar::is_idle(self.before) && gen == self.before
    }

    /// The generation to cache what was just read with (`NEVER`: do not trust it).
    fn after_read(&self) -> u64 {
        match self.sidecar {
            Some((sc, slot)) if Sidecar::is_idle(self.before) && sc.load(slot) == self.before => {
                self.before
            }
            _ => NEVER,
        }
    }
}

/// A generation value no slot ever holds while idle: entries carrying it never hit.
const NEVER: u64 = u64::MAX;

struct DebitReq {
    account_id: String,
    cost: u64,
    /// Namespaced idempotency key (`a:` authorize, `d:` management debit) and the
    /// request's fingerprint.
    idempotency: Option<(String, [u8; 32])>,
    now: Millis,
    /// The grant to complete (authorize) — `None` for a management debit.
    grant: Option<Grant>,
}

/// Result of one debit inside a batch.
struct Debited {
    charged: u64,
    credits: u64,
    total: u64,
    /// The first call's grant and time, for a replay.
    replayed: Option<(Grant, Millis)>,
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
    store: RwLock<Option<Store>>,
    closed: AtomicBool,
    fork_gen: u64,
    sidecar: Option<Sidecar>,
    mode: CacheMode,
    keys: Cache<KeyEntry>,
    accounts: Cache<AccountEntry>,
    routes: RwLock<(u64, Arc<Router>)>,
    digest_key: DigestKey,
    argon2: RwLock<Argon2Params>,
    limiter: Limiter,
    throttle: Throttle,
    budget: Budget,
    failed: FailedSecrets,
    group: GroupCommit<DebitReq, Debited>,
    pending: Pending,
    clock: Clock,
    actor: Option<String>,
    eventual: bool,
    unsynced: AtomicBool,
    argon2_runs: AtomicU64,
    throttled: AtomicU64,
    flush_interval: Duration,
    master: RwLock<Option<MasterKey>>,
    signature_window_ms: Millis,
    refusal_retention: Option<Duration>,
    single_use_signatures: bool,
    counters: Counters,
    /// Owner id of this vault's per-thread copies (`cache::with_local`).
    local_id: u64,
    /// Why the shared cache is disabled, when it is (`Vault::cache_disabled_reason`).
    cache_note: Option<String>,
    /// Background flusher rounds that panicked (caught; see `spawn_flusher`).
    flusher_panics: AtomicU64,
    /// Serializes flushes (see `Inner::flush`).
    flush_lock: Mutex<()>,
    /// Flusher rounds still to panic on purpose (test hook).
    #[cfg(feature = "fault-injection")]
    injected_flusher_panics: AtomicU64,
    /// The vault file's canonical path, device and inode while the shared cache is in use:
    /// the background thread watches its hard-link count (by path: a kept descriptor
    /// would keep redb's open-file-description locks alive after `close`).
    vault_file: Option<(PathBuf, u64, u64)>,
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
            .field("cache_mode", &self.inner.mode)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn sidecar_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".shm");
    PathBuf::from(s)
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
    pub fn open_with(path: impl AsRef<Path>, options: VaultOptions) -> Result<Vault> {
        let path = path.as_ref().to_path_buf();
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
        let fork_gen = fork_generation();
        let sharing = if options.exclusive {
            Sharing::Exclusive
        } else {
            Sharing::MultiProcess
        };
        // Never a planted file, never through a symlink to someone else's file (src/files.rs).
        let vault_file = crate::files::open_vault_file(&path)?;
        let watched = {
            use std::os::unix::fs::MetadataExt;
            let meta = vault_file.file.metadata().ok();
            meta.map(|m| (vault_file.canonical.clone(), m.dev(), m.ino()))
        };
        let store = Store::open(&path, vault_file.file, sharing, options.storage_cache_bytes)?;
        let (vault_id, argon2) = {
            let r = store.read()?;
            let id: [u8; 16] = r
                .meta("vault_id")?
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| Error::Storage("vault has no identity".into()))?;
            (id, r.meta("argon2")?.and_then(|v| Argon2Params::decode(&v)))
        };
        // The opener's parameters apply to a vault it creates, never to an existing one:
        // changing them is `set_argon2_params`, an audited management call.
        let argon2 = match argon2 {
            Some(stored) => stored.effective(),
            None if store.created() => {
                let p = options.argon2.unwrap_or_default();
                let mut tx = store.write()?;
                tx.put_meta("argon2", &p.encode())?;
                tx.commit(redb::Durability::Immediate)?;
                p
            }
            None => Argon2Params::default(),
        };
        let master = resolve_master_key(&store, options.master_key, options.master_passphrase)?;
        let clock = options.clock.unwrap_or_else(|| Arc::new(system_now));
        let now_for_budget = clock();
        let (sidecar, mode, cache_note) = if options.exclusive {
            (
                Some(Sidecar::private(options.shm_slots)),
                CacheMode::Private,
                None,
            )
        } else if !options.shared_cache {
            (
                None,
                CacheMode::Disabled,
                Some("shared_cache is off".into()),
            )
        } else if vault_file.links > 1 {
            // Another name for the same file would get another sidecar: processes opening
            // it by that name would never see our writes. Trust no shared cache.
            let note = format!(
                "the vault file has {} hard links; a shared cache is not trusted",
                vault_file.links
            );
            (None, CacheMode::Disabled, Some(note))
        } else {
            // Named from the canonical path: every name (symlink) of the file shares it.
            let shm = sidecar_path(&vault_file.canonical);
            match Sidecar::open(&shm, vault_id, options.shm_slots) {
                Ok(s) => (Some(s), CacheMode::Shared, None),
                Err(e) => match crate::shm::unsafe_file(&e) {
                    Some(msg) => return Err(Error::InvalidArgument(msg)),
                    None => (
                        None,
                        CacheMode::Disabled,
                        Some(format!("cannot map {}: {e}", shm.display())),
                    ),
                },
            }
        };
        let inner = Arc::new(Inner {
            path,
            store: RwLock::new(Some(store)),
            closed: AtomicBool::new(false),
            fork_gen,
            sidecar,
            mode,
            keys: Cache::new(options.cache_capacity),
            accounts: Cache::new(options.cache_capacity),
            routes: RwLock::new((NEVER, Arc::new(Router::default()))),
            digest_key: DigestKey::random()?,
            argon2: RwLock::new(argon2),
            limiter: Limiter::new(options.argon2_concurrency, options.argon2_queue),
            throttle: Throttle::new(options.throttle),
            budget: Budget::new(&options.throttle, now_for_budget),
            failed: FailedSecrets::new(),
            group: GroupCommit::new(),
            pending: Pending::new(),
            clock,
            actor: options.actor,
            eventual: options.durability == Durability::Eventual,
            unsynced: AtomicBool::new(false),
            argon2_runs: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            flusher_panics: AtomicU64::new(0),
            flush_lock: Mutex::new(()),
            #[cfg(feature = "fault-injection")]
            injected_flusher_panics: AtomicU64::new(0),
            flush_interval: options.flush_interval,
            master: RwLock::new(master),
            signature_window_ms: options.signature_window_ms,
            refusal_retention: options.refusal_retention,
            single_use_signatures: options.single_use_signatures,
            counters: Counters::new(),
            local_id: cache::new_owner(),
            cache_note,
            vault_file: if mode == CacheMode::Shared {
                watched
            } else {
                None
            },
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
        match &self.inner.sidecar {
            Some(sc) if !sc.is_trusted() => CacheMode::Disabled,
            _ => self.inner.mode,
        }
    }

    /// Why [`Vault::cache_mode`] is `Disabled` (`None` when it is not).
    pub fn cache_disabled_reason(&self) -> Option<String> {
        if self.cache_mode() != CacheMode::Disabled {
            return None;
        }
        let links = self.inner.vault_links();
        if links > 1 {
            return Some(format!(
                "the vault file has {links} hard links; a shared cache is not trusted"
            ));
        }
        Some(self.inner.cache_note.clone().unwrap_or_else(|| {
            "the sidecar was removed or replaced and could not be mapped again".into()
        }))
    }

    /// The argon2id parameters new hashes get.
    pub fn argon2_params(&self) -> Argon2Params {
        *self.inner.argon2.read()
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
        let now = (inner.clock)();
        inner.write(|tx| {
            let old = tx
                .meta("argon2")?
                .and_then(|v| Argon2Params::decode(&v))
                .unwrap_or_default();
            if old == params {
                return Ok(());
            }
            tx.put_meta("argon2", &params.encode())?;
            let p = |a: Argon2Params| json!({"m_kib": a.m_kib, "t": a.t, "p": a.p});
            inner.audit(
                tx,
                now,
                "argon2_params_changed",
                None,
                None,
                json!({"from": p(old), "to": p(params)}),
            )?;
            Ok(())
        })?;
        *inner.argon2.write() = params;
        Ok(())
    }

    /// Counters of this handle (argon2 runs, store reads, commits).
    pub fn stats(&self) -> Stats {
        let store = self.inner.store.read();
        Stats {
            argon2_runs: self.inner.argon2_runs.load(Ordering::Relaxed),
            read_txns: store.as_ref().map_or(0, Store::read_txns),
            commits: store.as_ref().map_or(0, Store::commits),
            throttled: self.inner.throttled.load(Ordering::Relaxed),
            flusher_panics: self.inner.flusher_panics.load(Ordering::Relaxed),
        }
    }

    /// Test hook: the next `n` rounds of this vault's background flusher panic. Not API.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn inject_flusher_panics(&self, n: u64) {
        self.inner
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
        self.inner.keys.clear();
        self.inner.accounts.clear();
        flushed.and(synced)
    }

    // ----------------------------------------------------------------- authorize

    /// Authorize a request (SPEC §6): a [`Grant`] or a typed refusal ([`Error`] with
    /// `status()`, `code()`, `body()`).
    ///
    /// Checks, in order: format/checksum → key exists → secret → revoked → disabled →
    /// expired → signature → scope/route → credits. A call with cost 0 and no idempotency
    /// key answers from this process's caches when nothing changed (no redb transaction,
    /// no argon2 after the key's first success in this process).
    pub fn authorize(
        &self,
        token: &str,
        target: Target<'_>,
        options: &AuthorizeOptions<'_>,
    ) -> Result<Grant> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_authorize_args(&target, options)?;
        let now = options.now.unwrap_or_else(|| (inner.clock)());
        let authed = inner.authenticate(token, now, &target, options)?;
        let rec = &authed.state.rec;
        // Scope or route.
        let router;
        let (required, route_cost, matched): (&str, u64, Matched<'_>) = match target {
            Target::Route { method, path } => {
                router = inner.router()?;
                match router.find(method, path) {
                    Some(rule) => (
                        &rule.scope,
                        rule.cost,
                        Matched::Rule {
                            method: &rule.method,
                            pattern: &rule.pattern,
                        },
                    ),
                    None => {
                        return Err(inner.refuse(Some(rec), &target, now, Error::RouteNotAllowed));
                    }
                }
            }
            Target::Request {
                method,
                target: raw,
                case_insensitive,
            } => {
                router = inner.router()?;
                match crate::http::find(&router, method, raw, case_insensitive) {
                    Ok(Some(rule)) => (
                        &rule.scope,
                        rule.cost,
                        Matched::Rule {
                            method: &rule.method,
                            pattern: &rule.pattern,
                        },
                    ),
                    Ok(None) => {
                        return Err(inner.refuse(Some(rec), &target, now, Error::RouteNotAllowed));
                    }
                    Err(e) => return Err(inner.refuse(Some(rec), &target, now, e)),
                }
            }
            Target::Scope(s) => (s, 0, Matched::Scope(s)),
        };
        let operator = rec.operator;
        if !operator && !policy::scopes_grant(&rec.scopes, required) {
            let required = required.to_string();
            return Err(inner.refuse(Some(rec), &target, now, Error::MissingScope { required }));
        }
        // Rate limits, then credits: what a refused call took is given back.
        let account = inner.account_view(&rec.account_id)?;
        let taken = inner.take_limits(&authed.state, &account, &target, options, now)?;
        let result = inner.charge(
            &authed.state,
            &account,
            (route_cost, &matched),
            &target,
            options,
            now,
        );
        let mut grant = match result {
            Ok(grant) => grant,
            Err(e) => {
                inner.give_back(&taken);
                return Err(e);
            }
        };
        grant.ratelimits = taken.into_iter().map(|t| t.status).collect();
        authed.usage.granted(now);
        if operator {
            inner.pending.event(
                EventKey {
                    action: "operator_authorized",
                    key_id: Some(rec.key_id.clone()),
                    account_id: Some(rec.account_id.clone()),
                    code: None,
                    route: target.describe(),
                },
                now,
                None,
            );
        }
        Ok(grant)
    }
}

impl Inner {
    /// The credits step of `authorize`: debit (with group commit) or read the balance.
    fn charge(
        &self,
        state: &KeyState,
        account: &AccountView,
        (route_cost, matched): (u64, &Matched<'_>),
        target: &Target<'_>,
        options: &AuthorizeOptions<'_>,
        now: Millis,
    ) -> Result<Grant> {
        let inner = self;
        let rec = &state.rec;
        let operator = rec.operator;
        let cost = if operator {
            0
        } else {
            options.cost.unwrap_or(route_cost)
        };
        let mut grant = Grant {
            account_id: rec.account_id.clone(),
            key_id: rec.key_id.clone(),
            key_name: rec.name.clone(),
            prefix: rec.prefix.clone(),
            auth_method: if operator {
                AuthMethod::Operator
            } else {
                AuthMethod::Apikey
            },
            scopes: rec.scopes.clone(),
            charged: 0,
            credits: 0,
            total_credits: 0,
            replayed: false,
            ratelimits: Vec::new(),
        };
        let idem = if operator {
            None
        } else {
            options.idempotency_key
        };
        let refill_due = account.next_refill.is_some_and(|due| now >= due);
        if cost == 0 && idem.is_none() && !refill_due {
            grant.credits = account.credits;
            grant.total_credits = account.total;
        } else {
            let req = DebitReq {
                account_id: rec.account_id.clone(),
                cost,
                idempotency: idem.map(|k| {
                    let limit_cost = options.limit_cost.unwrap_or(1);
                    let fp = idempotency::fingerprint(&rec.account_id, matched, cost, limit_cost);
                    (format!("a:{k}"), fp)
                }),
                now,
                grant: Some(grant.clone()),
            };
            match inner.submit_debit(req) {
                Ok(d) => {
                    if let Some((first, first_at)) = d.replayed {
                        if options.on_replay == OnReplay::Refuse {
                            // Not a refusal of the key: the request was already served.
                            return Err(Error::DuplicateRequest {
                                charged: first.charged,
                                first_at,
                            });
                        }
                        // The first call's grant; this call charged nothing.
                        grant = first;
                        grant.replayed = true;
                        grant.charged = 0;
                    } else {
                        grant.charged = d.charged;
                        grant.credits = d.credits;
                        grant.total_credits = d.total;
                    }
                }
                Err(e) => return Err(inner.refuse(Some(rec), target, now, e)),
            }
        }
        Ok(grant)
    }

    /// The rate-limit step of `authorize`: every auto-applied limit of the key and its
    /// account, and those named in `options.limits`. All or nothing: a refusal gives back
    /// what the earlier limits took.
    fn take_limits(
        &self,
        state: &KeyState,
        account: &AccountView,
        target: &Target<'_>,
        options: &AuthorizeOptions<'_>,
        now: Millis,
    ) -> Result<Vec<Taken>> {
        let rec = &state.rec;
        let account_limits: &[BoundLimit] = account.limits.as_deref().unwrap_or(&[]);
        let named = options.limits.unwrap_or(&[]);
        if state.limits.is_empty() && account_limits.is_empty() {
            if let Some(name) = named.first() {
                return Err(Error::invalid(format!("unknown rate limit {name:?}")));
            }
            return Ok(Vec::new());
        }
        for name in named {
            if !state
                .limits
                .iter()
                .chain(account_limits)
                .any(|l| l.def.name == *name)
            {
                return Err(Error::invalid(format!("unknown rate limit {name:?}")));
            }
        }
        let weight = options.limit_cost.unwrap_or(1);
        let buckets = self
            .sidecar
            .as_ref()
            .map_or(&[][..], |sc| sc.rate_buckets());
        let applicable = state
            .limits
            .iter()
            .chain(account_limits)
            .filter(|l| l.def.auto_apply || named.contains(&l.def.name.as_str()));
        let mut taken: Vec<Taken> = Vec::new();
        for l in applicable {
            match self.counters.take(buckets, l.key, &l.def, weight, now) {
                Ok(t) => taken.push(t),
                Err(x) => {
                    self.give_back(&taken);
                    return Err(self.refuse(
                        Some(rec),
                        target,
                        now,
                        Error::RateLimited {
                            limit: x.name,
                            max: x.max,
                            remaining: 0,
                            reset_ms: x.reset_ms,
                            retry_after: x.retry_after_s,
                        },
                    ));
                }
            }
        }
        Ok(taken)
    }

    fn give_back(&self, taken: &[Taken]) {
        let buckets = self
            .sidecar
            .as_ref()
            .map_or(&[][..], |sc| sc.rate_buckets());
        for t in taken {
            self.counters.give_back(buckets, t);
        }
    }
}

impl Vault {
    /// Who a token belongs to and what its account has left (the seeds'
    /// `/api/v1/account`). Runs the key checks of `authorize` (format, secret, revoked,
    /// disabled, expired) but no scope, route or credit check.
    pub fn whoami(&self, token: &str) -> Result<WhoAmI> {
        let inner = &*self.inner;
        inner.check_open()?;
        let now = (inner.clock)();
        let target = Target::Scope("whoami");
        let authed = inner.authenticate(token, now, &target, &AuthorizeOptions::default())?;
        let rec = &authed.state.rec;
        let (credits, total) = inner.balance_now(&rec.account_id, now)?;
        Ok(WhoAmI {
            account_id: rec.account_id.clone(),
            key_id: rec.key_id.clone(),
            key_name: rec.name.clone(),
            auth_method: if rec.operator {
                AuthMethod::Operator
            } else {
                AuthMethod::Apikey
            },
            scopes: rec.scopes.clone(),
            credits,
            total_credits: total,
        })
    }

    // ----------------------------------------------------------------- accounts

    /// Create an account with `credits` (≥ 0) and optional metadata (a JSON object).
    pub fn create_account(
        &self,
        id: &str,
        credits: u64,
        metadata: Option<Value>,
    ) -> Result<Account> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_id(id, "account id")?;
        let metadata = metadata_string(metadata)?;
        let now = (inner.clock)();
        inner.write(|tx| {
            if tx.account(id)?.is_some() {
                return Err(Error::AlreadyExists(format!("account {id:?}")));
            }
            tx.put_account(
                id,
                &AccountRecord {
                    created_at: now,
                    metadata: metadata.clone(),
                    refill: None,
                    refilled_at: None,
                },
            )?;
            tx.put_balance(id, credits, credits)?;
            inner.audit(
                tx,
                now,
                "account_created",
                None,
                Some(id),
                json!({ "credits": credits }),
            )?;
            Ok(())
        })?;
        self.account(id)
    }

    /// An account with its balance.
    pub fn account(&self, id: &str) -> Result<Account> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_id(id, "account id")?;
        let r = inner.read()?;
        let rec = r
            .account(id)?
            .ok_or_else(|| Error::NotFound(format!("account {id:?}")))?;
        let (credits, total) = r.balance(id)?.unwrap_or((0, 0));
        Ok(account_from(id, &rec, credits, total))
    }

    /// Every account, ordered by id.
    pub fn list_accounts(&self) -> Result<Vec<Account>> {
        let inner = &*self.inner;
        inner.check_open()?;
        let r = inner.read()?;
        let mut out = Vec::new();
        for id in r.account_ids()? {
            if let Some(rec) = r.account(&id)? {
                let (credits, total) = r.balance(&id)?.unwrap_or((0, 0));
                out.push(account_from(&id, &rec, credits, total));
            }
        }
        Ok(out)
    }

    /// Add `amount` (> 0) credits; `reference` (≤ 255 bytes) is kept in the audit entry.
    pub fn top_up(&self, id: &str, amount: u64, reference: Option<&str>) -> Result<Balance> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_id(id, "account id")?;
        if amount == 0 {
            return Err(Error::invalid("amount must be positive"));
        }
        if reference.is_some_and(|r| r.len() > MAX_IDEMPOTENCY_KEY) {
            return Err(Error::invalid("reference is longer than 255 bytes"));
        }
        let now = (inner.clock)();
        inner.write(|tx| {
            let (credits, total) = tx
                .balance(id)?
                .ok_or_else(|| Error::NotFound(format!("account {id:?}")))?;
            let (Some(credits), Some(total)) =
                (credits.checked_add(amount), total.checked_add(amount))
            else {
                return Err(Error::invalid(
                    "top-up would overflow the account's credits",
                ));
            };
            tx.put_balance(id, credits, total)?;
            inner.audit(
                tx,
                now,
                "credits_added",
                None,
                Some(id),
                json!({ "amount": amount, "reference": reference, "credits": credits }),
            )?;
            Ok(Balance {
                account_id: id.to_string(),
                credits,
                total_credits: total,
            })
        })
    }

    /// Debit `amount` (> 0) credits for a caller authenticated some other way (e.g. a
    /// dashboard session). Refuses with `insufficient_credits` (402) and changes nothing
    /// when the balance is short. An `idempotency_key` repeat within 24 h charges nothing;
    /// reused with another amount it is [`Error::IdempotencyConflict`].
    pub fn debit(&self, id: &str, amount: u64, idempotency_key: Option<&str>) -> Result<Balance> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_id(id, "account id")?;
        if amount == 0 {
            return Err(Error::invalid("amount must be positive"));
        }
        if let Some(k) = idempotency_key {
            validate_idempotency_key(k)?;
        }
        let d = inner.submit_debit(DebitReq {
            account_id: id.to_string(),
            cost: amount,
            idempotency: idempotency_key.map(|k| {
                let fp = idempotency::fingerprint(id, &Matched::Debit, amount, 0);
                (format!("d:{k}"), fp)
            }),
            now: (inner.clock)(),
            grant: None,
        })?;
        Ok(Balance {
            account_id: id.to_string(),
            credits: d.credits,
            total_credits: d.total,
        })
    }

    /// An account's credits.
    pub fn balance(&self, id: &str) -> Result<Balance> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_id(id, "account id")?;
        let (credits, total) = inner.balance_now(id, (inner.clock)())?;
        Ok(Balance {
            account_id: id.to_string(),
            credits,
            total_credits: total,
        })
    }

    // ----------------------------------------------------------------- keys

    /// Mint a key. Returns the token — shown once, never stored, never retrievable — and
    /// the key's public info.
    pub fn create_key(&self, new: NewKey) -> Result<(SecretToken, KeyInfo)> {
        let inner = &*self.inner;
        inner.check_open()?;
        let now = (inner.clock)();
        validate_id(&new.account_id, "account id")?;
        validate_name(&new.name)?;
        let scopes = normalize_scopes(&new.scopes)?;
        token::validate_prefix(&new.prefix)?;
        let expires_at = match (new.expires_at, new.expires_in_ms) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid("give expires_at or expires_in, not both"));
            }
            (Some(at), None) => Some(validate_expiry(at, now)?),
            (None, Some(ms)) => {
                if ms <= 0 {
                    return Err(Error::invalid("expires_in must be positive"));
                }
                Some(validate_expiry(
                    now.checked_add(ms)
                        .ok_or_else(|| Error::invalid("expires_in is too large"))?,
                    now,
                )?)
            }
            (None, None) => None,
        };
        let master = if new.signing {
            Some(inner.master_for_signing()?)
        } else {
            None
        };
        let metadata = metadata_string(new.metadata)?;
        let (mut secret, hash, key_id) = inner.mint(&new.prefix)?;
        let signing_secret = seal_signing_secret(master.as_ref(), &key_id, &mut secret)?;
        let rec = KeyRecord {
            key_id,
            prefix: new.prefix,
            account_id: new.account_id,
            name: new.name,
            scopes,
            operator: new.operator,
            created_at: now,
            expires_at,
            disabled: false,
            revoked_at: None,
            secret_hash: hash,
            signing_secret,
            rotated_from: None,
            metadata,
        };
        inner.write(|tx| {
            if tx.account(&rec.account_id)?.is_none() {
                return Err(Error::NotFound(format!("account {:?}", rec.account_id)));
            }
            if tx.key(&rec.key_id)?.is_some() {
                return Err(Error::Storage("key id collision; retry".into()));
            }
            tx.put_key(&rec)?;
            inner.audit(
                tx,
                now,
                "key_created",
                Some(&rec.key_id),
                Some(&rec.account_id),
                json!({ "name": rec.name, "prefix": rec.prefix, "scopes": rec.scopes, "operator": rec.operator, "signing": rec.signing_secret.is_some(), "expires_at": rec.expires_at }),
            )?;
            Ok(())
        })?;
        Ok((secret, key_info(&rec, None)))
    }

    /// A key's public info.
    pub fn key(&self, key_id: &str) -> Result<KeyInfo> {
        let inner = &*self.inner;
        inner.check_open()?;
        let r = inner.read()?;
        let rec = r.key(key_id)?.ok_or_else(|| not_found_key(key_id))?;
        Ok(key_info(&rec, r.last_used(key_id)?))
    }

    /// Keys, of one account or of all, ordered by key_id.
    pub fn list_keys(&self, account_id: Option<&str>) -> Result<Vec<KeyInfo>> {
        let inner = &*self.inner;
        inner.check_open()?;
        if let Some(a) = account_id {
            validate_id(a, "account id")?;
        }
        let r = inner.read()?;
        let mut out = Vec::new();
        for rec in r.keys_of(account_id)? {
            let last = r.last_used(&rec.key_id)?;
            out.push(key_info(&rec, last));
        }
        Ok(out)
    }

    /// Revoke a key for good: it is refused as `invalid_api_key` from the next call in
    /// every process. Revoking a revoked key changes nothing.
    pub fn revoke_key(&self, key_id: &str) -> Result<KeyInfo> {
        let now = (self.inner.clock)();
        self.inner.update_key(key_id, now, |rec| {
            if rec.revoked_at.is_some() {
                return Ok(None);
            }
            rec.revoked_at = Some(now);
            Ok(Some(("key_revoked", json!({}))))
        })
    }

    /// Disable a key (refused as `api_key_inactive` until enabled).
    pub fn disable_key(&self, key_id: &str) -> Result<KeyInfo> {
        let now = (self.inner.clock)();
        self.inner.update_key(key_id, now, |rec| {
            live(rec)?;
            if rec.disabled {
                return Ok(None);
            }
            rec.disabled = true;
            Ok(Some(("key_disabled", json!({}))))
        })
    }

    /// Enable a disabled key.
    pub fn enable_key(&self, key_id: &str) -> Result<KeyInfo> {
        let now = (self.inner.clock)();
        self.inner.update_key(key_id, now, |rec| {
            live(rec)?;
            if !rec.disabled {
                return Ok(None);
            }
            rec.disabled = false;
            Ok(Some(("key_enabled", json!({}))))
        })
    }

    /// Replace a key's scopes.
    pub fn set_scopes<S: AsRef<str>>(&self, key_id: &str, scopes: &[S]) -> Result<KeyInfo> {
        let scopes = normalize_scopes(scopes)?;
        let now = (self.inner.clock)();
        self.inner.update_key(key_id, now, |rec| {
            live(rec)?;
            let old = std::mem::replace(&mut rec.scopes, scopes);
            Ok(Some((
                "key_scopes_changed",
                json!({ "from": old, "to": rec.scopes }),
            )))
        })
    }

    /// Set (or with `None`, clear) a key's expiry.
    pub fn set_expiry(&self, key_id: &str, expires_at: Option<Millis>) -> Result<KeyInfo> {
        let now = (self.inner.clock)();
        if let Some(at) = expires_at {
            if at <= 0 {
                return Err(Error::invalid(
                    "expires_at must be a positive unix time in milliseconds",
                ));
            }
            times::check("expires_at", at)?;
        }
        self.inner.update_key(key_id, now, |rec| {
            live(rec)?;
            let old = std::mem::replace(&mut rec.expires_at, expires_at);
            Ok(Some((
                "key_expiry_changed",
                json!({ "from": old, "to": expires_at }),
            )))
        })
    }

    /// Zero-downtime rotation: mint a new key with the same account, name, prefix,
    /// scopes, operator flag and metadata; the old key keeps working for `grace_ms`
    /// (0: it stops now) and then expires.
    ///
    /// The new key carries every restriction of the old one: its expiry, its own rate
    /// limits (fresh windows) and the signing requirement (a new signing secret, which
    /// needs the master key). A revoked, disabled or expired key is refused
    /// (`invalid_argument`): rotation never lifts a suspension or an expiry. So is a key
    /// already rotated (in its grace period): rotate its successor instead.
    pub fn rotate_key(&self, key_id: &str, grace_ms: Millis) -> Result<(SecretToken, KeyInfo)> {
        let inner = &*self.inner;
        inner.check_open()?;
        if grace_ms < 0 {
            return Err(Error::invalid("grace must not be negative"));
        }
        let now = (inner.clock)();
        let ends = now
            .checked_add(grace_ms)
            .filter(|&at| at <= times::MAX_TIME_MS)
            .ok_or_else(|| Error::invalid("grace is too long"))?;
        let old = inner
            .read()?
            .key(key_id)?
            .ok_or_else(|| not_found_key(key_id))?;
        rotatable(&old, now)?;
        let master = if old.signing_secret.is_some() {
            Some(inner.master_for_signing()?)
        } else {
            None
        };
        let (mut secret, hash, new_id) = inner.mint(&old.prefix)?;
        let signing_secret = seal_signing_secret(master.as_ref(), &new_id, &mut secret)?;
        let created = inner.write(|tx| {
            let mut old = tx.key(key_id)?.ok_or_else(|| not_found_key(key_id))?;
            rotatable(&old, now)?;
            if let Some(next) = tx
                .keys_of(Some(&old.account_id))?
                .into_iter()
                .find(|k| k.rotated_from.as_deref() == Some(key_id))
            {
                return Err(Error::invalid(format!(
                    "key {key_id} was already rotated to {}: rotate that key instead",
                    next.key_id
                )));
            }
            if tx.key(&new_id)?.is_some() {
                return Err(Error::Storage("key id collision; retry".into()));
            }
            let new = KeyRecord {
                key_id: new_id.clone(),
                created_at: now,
                revoked_at: None,
                secret_hash: hash.clone(),
                signing_secret: signing_secret.clone(),
                rotated_from: Some(old.key_id.clone()),
                ..old.clone()
            };
            old.expires_at = Some(old.expires_at.map_or(ends, |at| at.min(ends)));
            tx.put_key(&old)?;
            tx.put_key(&new)?;
            // The key's own rate limits go with it (fresh windows: a new bucket key).
            let from = LimitOwner::Key(&old.key_id).storage_key();
            let to = LimitOwner::Key(&new.key_id).storage_key();
            for def in tx.limits(&from)? {
                tx.put_limit(&to, (SlotKind::Key, &new.key_id), &def)?;
            }
            inner.audit(
                tx,
                now,
                "key_rotated",
                Some(&old.key_id),
                Some(&old.account_id),
                json!({ "new_key_id": new.key_id, "grace_ms": grace_ms, "old_expires_at": old.expires_at }),
            )?;
            inner.audit(
                tx,
                now,
                "key_created",
                Some(&new.key_id),
                Some(&new.account_id),
                json!({ "rotated_from": old.key_id, "name": new.name, "prefix": new.prefix, "scopes": new.scopes }),
            )?;
            Ok(new)
        })?;
        Ok((secret, key_info(&created, None)))
    }

    /// Usage of a key: last use, totals and hourly buckets (flushes pending counters first).
    pub fn usage(&self, key_id: &str) -> Result<Usage> {
        let inner = &*self.inner;
        inner.check_open()?;
        inner.flush()?;
        let r = inner.read()?;
        if r.key(key_id)?.is_none() {
            return Err(not_found_key(key_id));
        }
        let (totals, hourly) = r.usage(key_id)?;
        let (last, granted, refused) = totals.unwrap_or((i64::MIN, 0, 0));
        Ok(Usage {
            key_id: key_id.to_string(),
            last_used_at: (last != i64::MIN).then_some(last),
            granted,
            refused,
            hourly,
        })
    }

    /// The signing secret of a signing key, for an admin who lost it (audited as
    /// `signing_secret_revealed`). Needs the master key.
    pub fn reveal_signing_secret(&self, key_id: &str) -> Result<Zeroizing<String>> {
        let inner = &*self.inner;
        inner.check_open()?;
        if !token::is_valid_key_id(key_id) {
            return Err(Error::invalid("key_id must be 8 characters of [a-z0-9]"));
        }
        let master = inner.master.read().clone().ok_or_else(no_master_key)?;
        let now = (inner.clock)();
        inner.write(|tx| {
            let rec = tx.key(key_id)?.ok_or_else(|| not_found_key(key_id))?;
            let sealed = rec
                .signing_secret
                .as_ref()
                .ok_or_else(|| Error::invalid(format!("key {key_id} is not a signing key")))?;
            let plain = master
                .open(&secrets::signing_aad(key_id), sealed)
                .ok_or_else(|| undecryptable(key_id))?;
            let text = String::from_utf8(plain.to_vec()).map_err(|_| undecryptable(key_id))?;
            inner.audit(
                tx,
                now,
                "signing_secret_revealed",
                Some(key_id),
                Some(&rec.account_id),
                json!({}),
            )?;
            Ok(Zeroizing::new(text))
        })
    }

    /// Set a rate limit (SPEC §13): `limit` units per `duration_ms`, on a key or on an
    /// account (shared by all its keys). `auto_apply`: checked by every `authorize`; else
    /// only when the call names it. Setting an existing name replaces it.
    pub fn set_ratelimit(
        &self,
        owner: LimitOwner<'_>,
        name: &str,
        limit: u64,
        duration_ms: u64,
        auto_apply: bool,
    ) -> Result<RateLimit> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_limit_name(name)?;
        if limit == 0 {
            return Err(Error::invalid("limit must be positive"));
        }
        if duration_ms == 0 || duration_ms > MAX_LIMIT_WINDOW_MS {
            return Err(Error::invalid("duration must be between 1 ms and 366 days"));
        }
        let def = RateLimit {
            name: name.to_string(),
            limit,
            duration_ms,
            auto_apply,
        };
        let now = (inner.clock)();
        inner.write(|tx| {
            let (slot, key_id, account_id) = limit_owner(tx, owner)?;
            let storage = owner.storage_key();
            let existing = tx.limits(&storage)?;
            if existing.len() >= MAX_LIMITS && !existing.iter().any(|l| l.name == name) {
                return Err(Error::invalid(format!("at most {MAX_LIMITS} rate limits per key or account")));
            }
            let old = tx.put_limit(&storage, slot, &def)?;
            inner.audit(
                tx,
                now,
                "ratelimit_set",
                key_id.as_deref(),
                account_id.as_deref(),
                json!({ "name": def.name, "limit": def.limit, "duration_ms": def.duration_ms, "auto_apply": def.auto_apply, "replaced": old.is_some() }),
            )?;
            Ok(())
        })?;
        Ok(def)
    }

    /// Remove a rate limit by name.
    pub fn remove_ratelimit(&self, owner: LimitOwner<'_>, name: &str) -> Result<RateLimit> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_limit_name(name)?;
        let now = (inner.clock)();
        inner.write(|tx| {
            let (slot, key_id, account_id) = limit_owner(tx, owner)?;
            let old = tx
                .remove_limit(&owner.storage_key(), slot, name)?
                .ok_or_else(|| Error::NotFound(format!("rate limit {name:?}")))?;
            inner.audit(
                tx,
                now,
                "ratelimit_removed",
                key_id.as_deref(),
                account_id.as_deref(),
                json!({ "name": old.name }),
            )?;
            Ok(old)
        })
    }

    /// The rate limits of a key or an account, by name.
    pub fn ratelimits(&self, owner: LimitOwner<'_>) -> Result<Vec<RateLimit>> {
        let inner = &*self.inner;
        inner.check_open()?;
        let r = inner.read()?;
        match owner {
            LimitOwner::Key(k) => {
                r.key(k)?.ok_or_else(|| not_found_key(k))?;
            }
            LimitOwner::Account(a) => {
                r.account(a)?
                    .ok_or_else(|| Error::NotFound(format!("account {a:?}")))?;
            }
        }
        r.limits(&owner.storage_key())
    }

    /// Give an account a quota that refills (SPEC §13): at the first call after each
    /// period boundary its credits are set to `amount`. `day` (1–28) is the day of the
    /// month for monthly refills (ignored, and stored as 1, for daily ones). The first
    /// refill happens at the next boundary.
    pub fn set_refill(
        &self,
        account_id: &str,
        amount: u64,
        interval: RefillInterval,
        day: u8,
    ) -> Result<Account> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_id(account_id, "account id")?;
        if interval == RefillInterval::Monthly && !(1..=28).contains(&day) {
            return Err(Error::invalid("day must be between 1 and 28"));
        }
        let refill = Refill {
            amount,
            interval,
            day: if interval == RefillInterval::Daily {
                1
            } else {
                day
            },
        };
        let now = (inner.clock)();
        inner.write(|tx| {
            let mut rec = tx
                .account(account_id)?
                .ok_or_else(|| Error::NotFound(format!("account {account_id:?}")))?;
            rec.refill = Some(refill);
            rec.refilled_at = Some(
                limits::calendar::period_start(&refill, now)
                    .ok_or_else(|| Error::invalid("the clock is outside the supported range"))?,
            );
            tx.put_account(account_id, &rec)?;
            inner.audit(
                tx,
                now,
                "refill_set",
                None,
                Some(account_id),
                json!({ "amount": amount, "interval": refill.interval, "day": refill.day }),
            )?;
            Ok(())
        })?;
        self.account(account_id)
    }

    /// Remove an account's refill plan (its credits stay as they are).
    pub fn clear_refill(&self, account_id: &str) -> Result<Account> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_id(account_id, "account id")?;
        let now = (inner.clock)();
        inner.write(|tx| {
            let mut rec = tx
                .account(account_id)?
                .ok_or_else(|| Error::NotFound(format!("account {account_id:?}")))?;
            if rec.refill.take().is_some() {
                rec.refilled_at = None;
                tx.put_account(account_id, &rec)?;
                inner.audit(tx, now, "refill_cleared", None, Some(account_id), json!({}))?;
            }
            Ok(())
        })?;
        self.account(account_id)
    }

    /// Whether this handle holds a master key.
    pub fn has_master_key(&self) -> bool {
        self.inner.master.read().is_some()
    }

    /// Master-key rotation: re-encrypt every signing secret under `new` in one transaction
    /// (all or nothing) and replace the check value. Returns how many secrets were
    /// re-encrypted. Other processes must reopen with the new key.
    pub fn rekey(&self, new: MasterKey) -> Result<usize> {
        self.inner.rekey(new, None)
    }

    /// [`Vault::rekey`] to a key derived from a new passphrase (a fresh salt is stored).
    pub fn rekey_passphrase(&self, passphrase: &str) -> Result<usize> {
        let mut salt = vec![0u8; 16];
        getrandom::fill(&mut salt).map_err(Error::storage)?;
        let kdf = Argon2Params::default();
        let new = MasterKey::from_passphrase(passphrase.as_bytes(), &salt, kdf)?;
        self.inner.rekey(new, Some((salt, kdf)))
    }

    // ----------------------------------------------------------------- routes

    /// Add a route rule `(method, pattern) → (scope, cost)`. `already_exists` if the
    /// (method, pattern) pair has a rule.
    pub fn add_route(
        &self,
        method: &str,
        pattern: &str,
        scope: &str,
        cost: u64,
    ) -> Result<RouteRule> {
        let inner = &*self.inner;
        inner.check_open()?;
        let rule = RouteRule {
            method: policy::normalize_method(method)?,
            pattern: policy::normalize_pattern(pattern)?,
            scope: {
                policy::validate_required_scope(scope)?;
                scope.to_string()
            },
            cost,
        };
        let now = (inner.clock)();
        inner.write(|tx| {
            if !tx.insert_route(&rule)? {
                return Err(Error::AlreadyExists(format!("route {} {}", rule.method, rule.pattern)));
            }
            inner.audit(
                tx,
                now,
                "route_added",
                None,
                None,
                json!({ "method": rule.method, "pattern": rule.pattern, "scope": rule.scope, "cost": rule.cost }),
            )?;
            Ok(())
        })?;
        Ok(rule)
    }

    /// Remove the rule for `(method, pattern)`.
    pub fn remove_route(&self, method: &str, pattern: &str) -> Result<RouteRule> {
        let inner = &*self.inner;
        inner.check_open()?;
        let method = policy::normalize_method(method)?;
        let pattern = policy::normalize_pattern(pattern)?;
        let now = (inner.clock)();
        inner.write(|tx| {
            let rule = tx
                .remove_route(&method, &pattern)?
                .ok_or_else(|| Error::NotFound(format!("route {method} {pattern}")))?;
            inner.audit(
                tx,
                now,
                "route_removed",
                None,
                None,
                json!({ "method": rule.method, "pattern": rule.pattern, "scope": rule.scope, "cost": rule.cost }),
            )?;
            Ok(rule)
        })
    }

    /// Every route rule, most specific first.
    pub fn list_routes(&self) -> Result<Vec<RouteRule>> {
        self.inner.check_open()?;
        Ok(self.inner.router()?.rules().to_vec())
    }

    /// The rule that would decide a request (the dashboard's "which rule matches").
    pub fn match_route(&self, method: &str, path: &str) -> Result<Option<RouteRule>> {
        self.inner.check_open()?;
        Ok(self.inner.router()?.find(method, path).cloned())
    }

    /// The rule that would decide an HTTP request, read from its raw request target as
    /// [`Target::Request`] reads it: [`Error::AmbiguousPath`] for a target the gate
    /// refuses, `None` when no rule matches.
    pub fn match_request(
        &self,
        method: &str,
        target: &str,
        case_insensitive: bool,
    ) -> Result<Option<RouteRule>> {
        self.inner.check_open()?;
        let router = self.inner.router()?;
        Ok(crate::http::find(&router, method, target, case_insensitive)?.cloned())
    }

    // ----------------------------------------------------------------- audit

    /// Audit entries, newest first (flushes pending request-path entries first).
    pub fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let inner = &*self.inner;
        inner.check_open()?;
        let limit = query.limit.unwrap_or(100);
        if limit > 10_000 {
            return Err(Error::invalid("limit must be at most 10000"));
        }
        if let Some(since) = query.since {
            times::check("since", since)?;
        }
        inner.flush()?;
        let r = inner.read()?;
        let rows = r.audit(
            query.key_id.as_deref(),
            query.account_id.as_deref(),
            query.action.as_deref(),
            query.since,
            limit,
        )?;
        Ok(rows
            .into_iter()
            .map(|(seq, rec)| AuditEntry {
                seq,
                time: rec.time,
                action: rec.action,
                key_id: rec.key_id,
                account_id: rec.account_id,
                actor: rec.actor,
                details: serde_json::from_str(&rec.details).unwrap_or(Value::Null),
            })
            .collect())
    }
}

impl Drop for Vault {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

fn spawn_flusher(inner: &Arc<Inner>) -> Result<(mpsc::Sender<()>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel::<()>();
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let interval = inner.flush_interval;
    let tick = if inner.eventual {
        Duration::from_millis(100).min(interval)
    } else {
        interval
    }
    // At least once a second: the sidecar check below bounds how long a removed sidecar
    // goes unnoticed.
    .min(Duration::from_secs(1));
    let handle = std::thread::Builder::new()
        .name("keyledger-flush".into())
        .spawn(move || {
            let mut since_flush = Duration::ZERO;
            loop {
                match rx.recv_timeout(tick) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return, // closed
                }
                let Some(inner) = weak.upgrade() else { return };
                since_flush += tick;
                let full = since_flush >= interval;
                if full {
                    since_flush = Duration::ZERO;
                }
                // A panic in one round (a bug) must not stop every later flush: count it
                // and go on; what that round drained is retried or lost, never wrapped.
                let round = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    #[cfg(feature = "fault-injection")]
                    if inner
                        .injected_flusher_panics
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        panic!("injected flusher panic");
                    }
                    if let Some(sc) = &inner.sidecar {
                        // Removed, replaced or retired: map the file now at the path.
                        sc.check_path();
                        if inner.vault_links() > 1 {
                            // A hard link made since the open: its name has another sidecar.
                            sc.distrust();
                        }
                    }
                    let _ = inner.sync_if_needed();
                    if full {
                        let _ = inner.flush();
                        let _ = inner.prune_idempotency();
                    }
                }));
                if round.is_err() {
                    inner.flusher_panics.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .map_err(|e| Error::Storage(format!("cannot start the flush thread: {e}")))?;
    Ok((tx, handle))
}

struct Authed {
    hot: Rc<HotKey>,
}

impl std::ops::Deref for Authed {
    type Target = HotKey;

    fn deref(&self) -> &HotKey {
        &self.hot
    }
}

impl Inner {
    /// The vault file's hard-link count now (0 when not watched, gone or replaced).
    fn vault_links(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let Some((path, dev, ino)) = &self.vault_file else {
            return 0;
        };
        std::fs::metadata(path)
            .ok()
            .filter(|m| m.dev() == *dev && m.ino() == *ino)
            .map_or(0, |m| m.nlink())
    }

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

    fn store(&self) -> Result<RwLockReadGuard<'_, Option<Store>>> {
        let guard = self.store.read();
        if guard.is_none() {
            return Err(Error::VaultClosed("the vault was closed".into()));
        }
        Ok(guard)
    }

    fn read(&self) -> Result<crate::store::ReadTx> {
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
        self.commit(tx, redb::Durability::Immediate)?;
        Ok(out)
    }

    /// Commit, bumping the generation slots of what the transaction changed around it
    /// (odd before the commit, a new even value after), so every process's cache sees it.
    fn commit(&self, tx: WriteTx<'_>, durability: redb::Durability) -> Result<()> {
        let (touched, committer) = tx.into_parts();
        match &self.sidecar {
            Some(sc) if !touched.is_empty() => {
                // Slot numbers from the guard: it may have remapped a replaced sidecar.
                let mut guard = sc.write();
                let slots: Vec<usize> = touched
                    .iter()
                    .map(|(k, id)| guard.slot_of(*k, id))
                    .collect();
                guard.begin(&slots);
                committer.commit(durability)
                // guard drops here: the slots become idle with new values
            }
            _ => committer.commit(durability),
        }
    }

    fn audit(
        &self,
        tx: &mut WriteTx<'_>,
        now: Millis,
        action: &str,
        key_id: Option<&str>,
        account_id: Option<&str>,
        details: Value,
    ) -> Result<u64> {
        tx.append_audit(&AuditRecord {
            time: now,
            action: action.to_string(),
            key_id: key_id.map(str::to_string),
            account_id: account_id.map(str::to_string),
            actor: self.actor.clone(),
            details: details.to_string(),
        })
    }

    /// Record a refusal (usage + coalesced audit entry) and hand the error back. Requests
    /// that match no rule fold into one entry per key and window, whatever their path (the
    /// paths are kept as samples), so varying the path cannot grow the log.
    fn refuse(
        &self,
        rec: Option<&KeyRecord>,
        target: &Target<'_>,
        now: Millis,
        err: Error,
    ) -> Error {
        if let Some(r) = rec {
            self.pending.refused(&r.key_id);
        }
        let described = target.describe();
        let (route, sample) = if matches!(err, Error::RouteNotAllowed) {
            (crate::usage::UNMATCHED_ROUTES.to_string(), Some(described))
        } else {
            (described, None)
        };
        self.pending.event(
            EventKey {
                action: "auth_refused",
                key_id: rec.map(|r| r.key_id.clone()),
                account_id: rec.map(|r| r.account_id.clone()),
                code: Some(err.code()),
                route,
            },
            now,
            sample.as_deref(),
        );
        err
    }

    /// Refusal before a key record is known (a malformed token, or a key_id that names no
    /// key). Key ids and routes are the attacker's to choose, so all such refusals of one
    /// window fold into one entry, with the first few `key_id route` pairs as samples.
    fn refuse_unknown(&self, key_id: Option<&str>, target: &Target<'_>, now: Millis) -> Error {
        let described = target.describe();
        let sample = match key_id {
            Some(k) => format!("{k} {described}"),
            None => format!("(malformed) {described}"),
        };
        self.pending.event(
            EventKey {
                action: "auth_refused",
                key_id: None,
                account_id: None,
                code: Some("invalid_api_key"),
                route: crate::usage::UNKNOWN_KEYS.to_string(),
            },
            now,
            Some(&sample),
        );
        Error::InvalidApiKey
    }

    /// Format → key exists → secret → revoked → disabled → expired → signature.
    fn authenticate(
        &self,
        token: &str,
        now: Millis,
        target: &Target<'_>,
        options: &AuthorizeOptions<'_>,
    ) -> Result<Authed> {
        if token.len() > token::MAX_TOKEN_LEN {
            return Err(self.refuse_unknown(None, target, now));
        }
        let Some(parsed) = token::parse(token) else {
            return Err(self.refuse_unknown(None, target, now));
        };
        let Some((hot, verified)) = self.key_entry(parsed.key_id)? else {
            return Err(self.refuse_unknown(Some(parsed.key_id), target, now));
        };
        let state = &hot.state;
        let rec = &state.rec;
        if parsed.prefix != rec.prefix {
            return Err(self.refuse(Some(rec), target, now, Error::InvalidApiKey));
        }
        let digest = self.digest_key.digest(parsed.secret.as_bytes());
        let secret_ok = match verified {
            // A key's secret never changes: a verified digest decides without argon2.
            Some(v) => crypto::digest_eq(&v, &digest),
            // Too many attempts: the secret was not checked, so never `invalid_api_key`.
            None => self
                .verify_cold(state, parsed.secret, digest)
                .map_err(|e| self.refuse(Some(rec), target, now, e))?,
        };
        if !secret_ok || rec.revoked_at.is_some() {
            return Err(self.refuse(Some(rec), target, now, Error::InvalidApiKey));
        }
        if rec.disabled {
            return Err(self.refuse(Some(rec), target, now, Error::ApiKeyInactive));
        }
        if rec.expires_at.is_some_and(|at| now >= at) {
            return Err(self.refuse(Some(rec), target, now, Error::ApiKeyExpired));
        }
        if let Some(sealed) = &rec.signing_secret {
            let secret = {
                let master = self.master.read();
                let Some(master) = master.as_ref() else {
                    return Err(no_master_key());
                };
                master
                    .open(&secrets::signing_aad(&rec.key_id), sealed)
                    .ok_or_else(|| undecryptable(&rec.key_id))?
            };
            let signed = self.check_signature(&secret, target, options, now)?;
            if !signed {
                return Err(self.refuse(Some(rec), target, now, Error::InvalidSignature));
            }
        }
        Ok(Authed { hot })
    }

    /// Whether the call's signature is a valid version-2 signature of this request (and,
    /// with `single_use_signatures`, its first use).
    fn check_signature(
        &self,
        secret: &[u8],
        target: &Target<'_>,
        options: &AuthorizeOptions<'_>,
        now: Millis,
    ) -> Result<bool> {
        let (method, signed) = match *target {
            Target::Route { method, path } => (method, secrets::signed_target(path, options.query)),
            // The path and query exactly as sent: a client signs what it sends.
            Target::Request { method, target, .. } => (
                method,
                secrets::signed_target(
                    crate::http::path_of(target),
                    options.query.or(crate::http::query_of(target)),
                ),
            ),
            Target::Scope(s) => ("SCOPE", s.into()),
        };
        let Some(sig) = options.signature else {
            return Ok(false);
        };
        let Some(verified) = secrets::verify_request(
            secret,
            sig,
            now,
            self.signature_window_ms,
            method,
            &signed,
            options.body.unwrap_or_default(),
        ) else {
            return Ok(false);
        };
        if !self.single_use_signatures {
            return Ok(true);
        }
        let oldest = now
            .saturating_sub(self.signature_window_ms)
            .div_euclid(1000);
        self.write(|tx| {
            tx.prune_signatures(oldest, 64)?;
            tx.record_signature(verified.t_seconds, &verified.mac)
        })
    }

    /// argon2 check of a secret not yet verified in this process. `Ok(false)`: the secret
    /// is wrong (argon2 said so, now or before: a secret that failed once is refused again
    /// without argon2). `Err(TooManyAttempts)`: the secret was not checked, because the
    /// process budget of failed verifications is spent or the argon2 queue is full. A
    /// key_id past its own burst of failures may only use the upper half of the budget.
    fn verify_cold(&self, state: &Arc<KeyState>, secret: &str, digest: [u8; 32]) -> Result<bool> {
        let rec = &state.rec;
        let failed = self
            .digest_key
            .failed_digest(&rec.secret_hash, secret.as_bytes());
        if self.failed.contains(&failed) {
            self.throttled.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        let now = (self.clock)();
        let own = self.throttle.allows(&rec.key_id, now);
        if let Err(retry_after) = self.budget.take(now, !own) {
            self.throttled.fetch_add(1, Ordering::Relaxed);
            return Err(Error::TooManyAttempts { retry_after });
        }
        let current = *self.argon2.read();
        let outcome = {
            let Some(_permit) = self.limiter.try_acquire() else {
                self.budget.refund();
                self.throttled.fetch_add(1, Ordering::Relaxed);
                return Err(Error::TooManyAttempts { retry_after: 1 });
            };
            self.argon2_runs.fetch_add(1, Ordering::Relaxed);
            crypto::verify_secret(secret.as_bytes(), &rec.secret_hash, current)
        };
        match outcome {
            Verified::No => {
                self.throttle.failed(&rec.key_id, now);
                self.failed.insert(failed);
                Ok(false)
            }
            Verified::Yes | Verified::YesRehash => {
                self.budget.refund();
                let found = self
                    .keys
                    .with_mut(&rec.key_id, |e| e.verified = Some(digest));
                if found.is_none() {
                    self.keys.insert(
                        &rec.key_id,
                        KeyEntry {
                            state: state.clone(),
                            gen: NEVER,
                            verified: Some(digest),
                            usage: self.pending.cell(&rec.key_id),
                        },
                    );
                }
                if outcome == Verified::YesRehash {
                    // Best effort: a failed rehash leaves the old (still valid) hash.
                    let _ = self.rehash(&rec.key_id, secret);
                }
                Ok(true)
            }
        }
    }

    /// Rehash a verified secret whose hash is strictly weaker than the current parameters
    /// (never towards weaker ones). Skipped when the argon2 queue is full.
    fn rehash(&self, key_id: &str, secret: &str) -> Result<()> {
        let current = *self.argon2.read();
        let hash = {
            let Some(_permit) = self.limiter.try_acquire() else {
                return Ok(());
            };
            crypto::hash_secret(secret.as_bytes(), current)?
        };
        self.write(|tx| {
            if let Some(mut rec) = tx.key(key_id)? {
                if crypto::verify_secret(secret.as_bytes(), &rec.secret_hash, current)
                    == Verified::YesRehash
                {
                    rec.secret_hash = hash;
                    tx.put_key(&rec)?;
                }
            }
            Ok(())
        })
    }

    fn generation(&self, kind: SlotKind, id: &str) -> Generation<'_> {
        match &self.sidecar {
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
    fn key_entry(&self, key_id: &str) -> Result<Option<(Rc<HotKey>, Option<[u8; 32]>)>> {
        let g = self.generation(SlotKind::Key, key_id);
        let local = cache::with_local(self.local_id, |l: &mut Local| {
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
        let hit = self.keys.with(key_id, |e| {
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
        let state = {
            let r = self.read()?;
            match r.key(key_id)? {
                Some(rec) => {
                    let owner = LimitOwner::Key(key_id).storage_key();
                    let limits = limits::bind(&owner, r.limits(&owner)?);
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
            self.keys.remove(key_id);
            return Ok(None);
        };
        let state = Arc::new(state);
        let verified = self.keys.with(key_id, |e| e.verified).flatten();
        let usage = self.pending.cell(key_id);
        self.keys.insert(
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
    fn promote(
        &self,
        key_id: &str,
        state: &Arc<KeyState>,
        gen: u64,
        verified: [u8; 32],
    ) -> Option<Rc<HotKey>> {
        cache::with_local(self.local_id, |l: &mut Local| {
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
                usage: self.pending.thread_cell(key_id),
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
    fn account_view(&self, account_id: &str) -> Result<AccountView> {
        let g = self.generation(SlotKind::Account, account_id);
        let local = cache::with_local(self.local_id, |l: &mut Local| {
            l.accounts
                .get(account_id)
                .filter(|(_, gen)| g.current(*gen))
                .map(|(view, _)| view.clone())
        });
        if let Some(Some(hit)) = local {
            return Ok(hit);
        }
        if let Some(Some(hit)) = self
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
            let owner = LimitOwner::Account(account_id).storage_key();
            let limits = limits::bind(&owner, r.limits(&owner)?);
            AccountView {
                credits,
                total,
                limits: (!limits.is_empty()).then(|| limits.into()),
                next_refill: rec.as_ref().and_then(next_refill),
            }
        };
        let gen = g.after_read();
        if gen != NEVER {
            self.accounts.insert(
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
    fn localize_account(&self, account_id: &str, view: &AccountView, gen: u64) {
        let copy = AccountView {
            limits: view.limits.as_deref().map(Arc::from),
            ..view.clone()
        };
        cache::with_local(self.local_id, |l: &mut Local| {
            if l.accounts.len() >= LOCAL_KEYS && !l.accounts.contains_key(account_id) {
                l.accounts.clear();
            }
            l.accounts.insert(account_id.into(), (copy, gen));
        });
    }

    /// (credits, total_credits) of an account, applying a due refill first.
    fn balance_now(&self, account_id: &str, now: Millis) -> Result<(u64, u64)> {
        let view = self.account_view(account_id)?;
        if view.next_refill.is_some_and(|due| now >= due) {
            let d = self.submit_debit(DebitReq {
                account_id: account_id.to_string(),
                cost: 0,
                idempotency: None,
                now,
                grant: None,
            })?;
            return Ok((d.credits, d.total));
        }
        Ok((view.credits, view.total))
    }

    /// The route table, cached behind the global "routes" slot (and copied per thread,
    /// so its reference count is not shared between threads).
    fn router(&self) -> Result<Arc<Router>> {
        let g = self.generation(SlotKind::Global, "routes");
        let local = cache::with_local(self.local_id, |l: &mut Local| {
            l.router
                .as_ref()
                .filter(|(gen, _)| g.current(*gen))
                .map(|(_, r)| r.clone())
        });
        if let Some(Some(router)) = local {
            return Ok(router);
        }
        let shared = {
            let cached = self.routes.read();
            g.current(cached.0).then(|| cached.1.clone())
        };
        let (router, gen) = match shared {
            Some(router) => (router, g.before),
            None => {
                let router = Arc::new(Router::new(self.read()?.routes()?));
                let gen = g.after_read();
                if gen != NEVER {
                    *self.routes.write() = (gen, router.clone());
                }
                (router, gen)
            }
        };
        if gen != NEVER {
            let copy = Arc::new(Router::clone(&router));
            cache::with_local(self.local_id, |l: &mut Local| {
                l.router = Some((gen, copy));
            });
        }
        Ok(router)
    }

    /// A fresh key id (unused as far as the store knows), a token and its hash. argon2
    /// runs here, outside any write transaction.
    fn mint(&self, prefix: &str) -> Result<(SecretToken, String, String)> {
        let r = self.read()?;
        let mut key_id = token::try_new_key_id()?;
        while r.key(&key_id)?.is_some() {
            key_id = token::try_new_key_id()?;
        }
        drop(r);
        let secret = token::mint(prefix, &key_id)?;
        let parsed = token::parse(&secret)
            .ok_or_else(|| Error::Storage("minted token does not parse".into()))?;
        let hash = {
            let _permit = self.limiter.acquire();
            crypto::hash_secret(parsed.secret.as_bytes(), *self.argon2.read())?
        };
        Ok((
            SecretToken {
                token: secret,
                signing: None,
            },
            hash,
            key_id,
        ))
    }

    /// Load a key, let `change` edit it, write it with its audit entry. `change` returns
    /// `None` when there is nothing to do (the call is then a no-op).
    fn update_key(
        &self,
        key_id: &str,
        now: Millis,
        change: impl FnOnce(&mut KeyRecord) -> Result<Option<(&'static str, Value)>>,
    ) -> Result<KeyInfo> {
        self.check_open()?;
        if !token::is_valid_key_id(key_id) {
            return Err(Error::invalid("key_id must be 8 characters of [a-z0-9]"));
        }
        let rec = self.write(|tx| {
            let mut rec = tx.key(key_id)?.ok_or_else(|| not_found_key(key_id))?;
            if let Some((action, details)) = change(&mut rec)? {
                tx.put_key(&rec)?;
                self.audit(
                    tx,
                    now,
                    action,
                    Some(&rec.key_id),
                    Some(&rec.account_id),
                    details,
                )?;
            }
            Ok(rec)
        })?;
        Ok(key_info(&rec, self.read()?.last_used(key_id)?))
    }

    fn rekey(&self, new: MasterKey, kdf: Option<(Vec<u8>, Argon2Params)>) -> Result<usize> {
        self.check_open()?;
        let current = self.master.read().clone();
        let now = (self.clock)();
        let count = self.write(|tx| {
            if let Some(check) = tx.meta("master_check")? {
                if !current.as_ref().is_some_and(|c| c.matches(&check)) {
                    return Err(Error::WrongMasterKey);
                }
            }
            let mut count = 0usize;
            for mut rec in tx.keys_of(None)? {
                let Some(sealed) = &rec.signing_secret else {
                    continue;
                };
                let aad = secrets::signing_aad(&rec.key_id);
                let cur = current.as_ref().ok_or(Error::WrongMasterKey)?;
                let plain = cur
                    .open(&aad, sealed)
                    .ok_or_else(|| undecryptable(&rec.key_id))?;
                #[cfg(test)]
                if count >= tests::REKEY_FAIL_AFTER.load(Ordering::SeqCst) {
                    return Err(Error::Storage("injected failure during rekey".into()));
                }
                rec.signing_secret = Some(new.seal(&aad, &plain)?);
                tx.put_key(&rec)?;
                count += 1;
            }
            tx.put_meta("master_check", &new.check_value()?)?;
            if let Some((salt, params)) = &kdf {
                tx.put_meta("master_salt", salt)?;
                tx.put_meta("master_kdf", &params.encode())?;
            }
            self.audit(
                tx,
                now,
                "master_key_rotated",
                None,
                None,
                json!({ "reencrypted": count, "passphrase": kdf.is_some() }),
            )?;
            Ok(count)
        })?;
        *self.master.write() = Some(new);
        Ok(count)
    }

    /// The master key, required to create a signing key.
    fn master_for_signing(&self) -> Result<MasterKey> {
        self.master.read().clone().ok_or_else(|| {
            Error::invalid(
                "signing keys need a master key: open the vault with master_key, a passphrase or KEYLEDGER_MASTER_KEY",
            )
        })
    }

    fn submit_debit(&self, req: DebitReq) -> Result<Debited> {
        self.group.submit(req, &|batch| self.run_debits(batch))
    }

    /// One transaction for a batch of debits; each request succeeds or fails on its own,
    /// and a failed commit fails them all (no balance moves).
    fn run_debits(&self, batch: Vec<DebitReq>) -> Vec<Result<Debited>> {
        let n = batch.len();
        let fail_all = |e: Error| (0..n).map(|_| Err(e.clone())).collect::<Vec<_>>();
        let guard = match self.store() {
            Ok(g) => g,
            Err(e) => return fail_all(e),
        };
        let Some(store) = guard.as_ref() else {
            return fail_all(Error::VaultClosed("the vault was closed".into()));
        };
        let mut tx = match store.write() {
            Ok(tx) => tx,
            Err(e) => return fail_all(e),
        };
        let mut results = Vec::with_capacity(n);
        for req in batch {
            let r = self.apply_debit(&mut tx, req);
            if let Err(e @ Error::Storage(_)) = &r {
                return fail_all(e.clone());
            }
            results.push(r);
        }
        let durability = if self.eventual {
            redb::Durability::None
        } else {
            redb::Durability::Immediate
        };
        if let Err(e) = self.commit(tx, durability) {
            return fail_all(e);
        }
        if self.eventual {
            self.unsynced.store(true, Ordering::Release);
        }
        results
    }

    fn apply_debit(&self, tx: &mut WriteTx<'_>, req: DebitReq) -> Result<Debited> {
        let account = req.account_id.as_str();
        if let Some((k, fingerprint)) = &req.idempotency {
            if let Some((at, bytes)) = tx.idempotent(account, k)? {
                if req.now.saturating_sub(at) < IDEMPOTENCY_WINDOW_MS {
                    let stored = idempotency::decode(&bytes)?;
                    // Another request under the same key (or a record from before
                    // fingerprints, which cannot prove it is the same): refuse, charge nothing.
                    if stored.fingerprint.as_ref() != Some(fingerprint) {
                        return Err(Error::IdempotencyConflict);
                    }
                    let first = stored.grant.unwrap_or(Grant {
                        account_id: account.to_string(),
                        key_id: String::new(),
                        key_name: String::new(),
                        prefix: String::new(),
                        auth_method: AuthMethod::Apikey,
                        scopes: Vec::new(),
                        charged: stored.charged,
                        credits: stored.credits,
                        total_credits: stored.total,
                        replayed: true,
                        ratelimits: Vec::new(),
                    });
                    return Ok(Debited {
                        charged: 0,
                        credits: stored.credits,
                        total: stored.total,
                        replayed: Some((first, at)),
                    });
                }
            }
        }
        let (credits, total) = self.refill_if_due(tx, account, req.now)?;
        if credits < req.cost {
            return Err(Error::InsufficientCredits {
                credits,
                required: req.cost,
            });
        }
        let left = credits - req.cost;
        if req.cost > 0 {
            tx.put_balance(account, left, total)?;
        }
        if let Some((k, fingerprint)) = &req.idempotency {
            let grant = req.grant.clone().map(|mut g| {
                g.charged = req.cost;
                g.credits = left;
                g.total_credits = total;
                g
            });
            let bytes = idempotency::StoredV2 {
                fingerprint: *fingerprint,
                charged: req.cost,
                credits: left,
                total,
                grant,
            }
            .encode()?;
            tx.put_idempotent(account, k, req.now, &bytes)?;
        }
        if req.grant.is_none() {
            self.audit(
                tx,
                req.now,
                "credits_debited",
                None,
                Some(account),
                json!({ "amount": req.cost, "credits": left }),
            )?;
        }
        Ok(Debited {
            charged: req.cost,
            credits: left,
            total,
            replayed: None,
        })
    }

    /// The balance of `account`, after applying its refill if a period boundary has passed
    /// since the last one: credits are *set* to the plan's amount, in this transaction,
    /// audited as `credits_refilled`. Exactly once per period, whatever the number of
    /// processes: the transaction re-reads `refilled_at`.
    fn refill_if_due(
        &self,
        tx: &mut WriteTx<'_>,
        account: &str,
        now: Millis,
    ) -> Result<(u64, u64)> {
        let (credits, total) = tx
            .balance(account)?
            .ok_or_else(|| Error::NotFound(format!("account {account:?}")))?;
        let Some(mut rec) = tx.account(account)? else {
            return Ok((credits, total));
        };
        let Some(refill) = rec.refill else {
            return Ok((credits, total));
        };
        // `None` only far outside the range of accepted instants: no refill then.
        let Some(start) = limits::calendar::period_start(&refill, now) else {
            return Ok((credits, total));
        };
        if rec.refilled_at.is_some_and(|at| at >= start) {
            return Ok((credits, total));
        }
        let total = total.saturating_add(refill.amount.saturating_sub(credits));
        tx.put_balance(account, refill.amount, total)?;
        rec.refilled_at = Some(start);
        tx.put_account(account, &rec)?;
        tx.append_audit(&AuditRecord {
            time: now,
            action: "credits_refilled".into(),
            key_id: None,
            account_id: Some(account.to_string()),
            actor: None,
            details: json!({ "amount": refill.amount, "previous": credits, "period_start": start })
                .to_string(),
        })?;
        Ok((refill.amount, total))
    }

    /// Write batched usage counters and request-path audit entries in one transaction.
    fn flush(&self) -> Result<()> {
        // One flush at a time: a caller's `Vault::flush` returns only once whatever a
        // concurrent background round drained is committed too.
        let _one = self.flush_lock.lock();
        let drained = self.pending.drain();
        if drained.usage.is_empty() && drained.events.is_empty() {
            return Ok(());
        }
        let result = (|| {
            let guard = self.store()?;
            let store = guard
                .as_ref()
                .ok_or_else(|| Error::VaultClosed("the vault was closed".into()))?;
            let mut tx = store.write()?;
            for (key_id, last, granted, refused) in &drained.usage {
                // Instants are range-checked where they enter, so the product always
                // fits; were it not to, the counts go to the epoch's bucket, not a
                // wrapped one.
                let hour = last
                    .unwrap_or(0)
                    .div_euclid(HOUR_MS)
                    .checked_mul(HOUR_MS)
                    .unwrap_or(0);
                tx.add_usage(key_id, *last, *granted, *refused, hour)?;
            }
            for (k, agg) in &drained.events {
                let mut details = json!({ "route": k.route, "count": agg.count });
                if let Some(code) = k.code {
                    details["code"] = json!(code);
                }
                if agg.count > 1 {
                    details["last"] = json!(agg.last);
                }
                if !agg.samples.is_empty() {
                    details["samples"] = json!(agg.samples);
                }
                tx.append_audit(&AuditRecord {
                    time: agg.first,
                    action: k.action.to_string(),
                    key_id: k.key_id.clone(),
                    account_id: k.account_id.clone(),
                    actor: None,
                    details: details.to_string(),
                })?;
            }
            tx.commit(redb::Durability::Immediate)
        })();
        if result.is_err() {
            self.pending.restore(drained);
        }
        result
    }

    /// `Eventual` durability: make the non-durable commits durable.
    fn sync_if_needed(&self) -> Result<()> {
        if !self.unsynced.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let guard = self.store()?;
        let Some(store) = guard.as_ref() else {
            return Ok(());
        };
        let r = store.write()?.commit(redb::Durability::Immediate);
        if r.is_err() {
            self.unsynced.store(true, Ordering::Release);
        }
        r
    }

    fn prune_idempotency(&self) -> Result<()> {
        let now = (self.clock)();
        let guard = self.store()?;
        let Some(store) = guard.as_ref() else {
            return Ok(());
        };
        // Only open a write transaction when something is due.
        let mut tx = store.write()?;
        let mut n = tx.prune_idempotent(now.saturating_sub(IDEMPOTENCY_WINDOW_MS), 1000)?;
        if let Some(keep) = self.refusal_retention {
            let keep = Millis::try_from(keep.as_millis()).unwrap_or(Millis::MAX);
            n += tx.prune_refusals(now.saturating_sub(keep), 5000)?;
        }
        if n > 0 {
            tx.commit(redb::Durability::Immediate)?;
        }
        Ok(())
    }
}

fn key_info(rec: &KeyRecord, last_used_at: Option<Millis>) -> KeyInfo {
    KeyInfo {
        key_id: rec.key_id.clone(),
        prefix: rec.prefix.clone(),
        account_id: rec.account_id.clone(),
        name: rec.name.clone(),
        scopes: rec.scopes.clone(),
        operator: rec.operator,
        created_at: rec.created_at,
        expires_at: rec.expires_at,
        disabled: rec.disabled,
        revoked_at: rec.revoked_at,
        signing: rec.signing_secret.is_some(),
        rotated_from: rec.rotated_from.clone(),
        metadata: serde_json::from_str(&rec.metadata).unwrap_or_else(|_| json!({})),
        last_used_at,
    }
}

/// When the next refill of an account is due (`None`: no refill plan).
fn next_refill(rec: &AccountRecord) -> Option<Millis> {
    let refill = rec.refill.as_ref()?;
    Some(match rec.refilled_at {
        // Not representable: never due.
        Some(start) => limits::calendar::next_period(refill, start).unwrap_or(Millis::MAX),
        None => Millis::MIN,
    })
}

fn account_from(id: &str, rec: &AccountRecord, credits: u64, total: u64) -> Account {
    Account {
        refill: rec.refill,
        id: id.to_string(),
        credits,
        total_credits: total,
        created_at: rec.created_at,
        metadata: serde_json::from_str(&rec.metadata).unwrap_or_else(|_| json!({})),
    }
}

fn not_found_key(key_id: &str) -> Error {
    // Echo only what can be a key id: a host that passes a whole token where a key id is
    // expected must not find its secret in an error message (and then in its logs).
    if crate::token::is_valid_key_id(key_id) {
        Error::NotFound(format!("key {key_id:?}"))
    } else {
        Error::NotFound(format!(
            "key {:?} (not a key id)",
            crate::token::redact(key_id)
        ))
    }
}

/// A revoked key can no longer be changed (only revoked again, which is a no-op).
/// A key that may be rotated: live, enabled and not expired (rotation must not lift a
/// suspension or an expiry).
fn rotatable(rec: &KeyRecord, now: Millis) -> Result<()> {
    live(rec)?;
    let id = &rec.key_id;
    if rec.disabled {
        return Err(Error::invalid(format!(
            "key {id} is disabled: enable it first if its owner may keep access (rotating does not lift a suspension)"
        )));
    }
    if rec.expires_at.is_some_and(|at| at <= now) {
        return Err(Error::invalid(format!(
            "key {id} has expired: extend its expiry first if its owner may keep access (rotating does not renew a key)"
        )));
    }
    Ok(())
}

fn live(rec: &KeyRecord) -> Result<()> {
    if rec.revoked_at.is_some() {
        Err(Error::invalid(format!("key {} is revoked", rec.key_id)))
    } else {
        Ok(())
    }
}

fn validate_id(id: &str, what: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID {
        return Err(Error::invalid(format!("{what} must be 1–{MAX_ID} bytes")));
    }
    if id.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(())
}

/// Most rate limits on one key or account.
const MAX_LIMITS: usize = 16;
/// Longest rate-limit window.
const MAX_LIMIT_WINDOW_MS: u64 = 366 * 86_400_000;

fn validate_limit_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_:.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "a rate limit name is 1–64 characters of [a-z0-9_:.-]",
        ))
    }
}

/// Check that a limit's owner exists; its generation slot and audit ids.
#[allow(clippy::type_complexity)]
fn limit_owner<'o>(
    tx: &WriteTx<'_>,
    owner: LimitOwner<'o>,
) -> Result<((SlotKind, &'o str), Option<String>, Option<String>)> {
    match owner {
        LimitOwner::Key(k) => {
            if !token::is_valid_key_id(k) {
                return Err(Error::invalid("key_id must be 8 characters of [a-z0-9]"));
            }
            let rec = tx.key(k)?.ok_or_else(|| not_found_key(k))?;
            Ok(((SlotKind::Key, k), Some(rec.key_id), Some(rec.account_id)))
        }
        LimitOwner::Account(a) => {
            validate_id(a, "account id")?;
            tx.account(a)?
                .ok_or_else(|| Error::NotFound(format!("account {a:?}")))?;
            Ok(((SlotKind::Account, a), None, Some(a.to_string())))
        }
    }
}

fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(Error::invalid(format!(
            "key name must be 1–{MAX_NAME} bytes"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "key name must not contain control characters",
        ));
    }
    Ok(())
}

fn validate_expiry(at: Millis, now: Millis) -> Result<Millis> {
    times::check("expires_at", at)?;
    if at <= now {
        return Err(Error::invalid("expires_at must be in the future"));
    }
    Ok(at)
}

fn validate_idempotency_key(k: &str) -> Result<()> {
    if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY {
        return Err(Error::invalid("idempotency_key must be 1–255 bytes"));
    }
    Ok(())
}

fn validate_authorize_args(target: &Target<'_>, options: &AuthorizeOptions<'_>) -> Result<()> {
    match target {
        Target::Route { method, path } => {
            if method.is_empty() || method.len() > 16 || path.len() > MAX_PATH {
                return Err(Error::invalid(
                    "method must be 1–16 bytes and path at most 8192 bytes",
                ));
            }
        }
        Target::Request { method, target, .. } => {
            if method.is_empty() || method.len() > 16 || target.len() > MAX_PATH {
                return Err(Error::invalid(
                    "method must be 1–16 bytes and request target at most 8192 bytes",
                ));
            }
        }
        Target::Scope(s) => policy::validate_required_scope(s)?,
    }
    if let Some(k) = options.idempotency_key {
        validate_idempotency_key(k)?;
    }
    if let Some(now) = options.now {
        times::check("now", now)?;
    }
    if options.limit_cost == Some(0) {
        return Err(Error::invalid("limit_cost must be positive"));
    }
    if let Some(q) = options.query {
        match target {
            Target::Route { path, .. } if path.contains('?') => {
                return Err(Error::invalid(
                    "give the query string in the path or in query, not both",
                ));
            }
            Target::Route { path, .. } if path.len().saturating_add(q.len()) > MAX_PATH => {
                return Err(Error::invalid(
                    "path and query must be at most 8192 bytes together",
                ));
            }
            Target::Route { .. } => {}
            Target::Request { target, .. } if target.contains('?') => {
                return Err(Error::invalid(
                    "give the query string in the target or in query, not both",
                ));
            }
            Target::Request { target, .. } if target.len().saturating_add(q.len()) > MAX_PATH => {
                return Err(Error::invalid(
                    "target and query must be at most 8192 bytes together",
                ));
            }
            Target::Request { .. } => {}
            Target::Scope(_) => {
                return Err(Error::invalid("query is for routes, not scopes"));
            }
        }
    }
    if let Some(names) = options.limits {
        if names.len() > MAX_LIMITS * 2 {
            return Err(Error::invalid("too many rate limit names"));
        }
        for name in names {
            validate_limit_name(name)?;
        }
    }
    Ok(())
}

fn normalize_scopes<S: AsRef<str>>(scopes: &[S]) -> Result<Vec<String>> {
    if scopes.len() > MAX_SCOPES {
        return Err(Error::invalid(format!("at most {MAX_SCOPES} scopes")));
    }
    let mut out = Vec::with_capacity(scopes.len());
    for s in scopes {
        policy::validate_scope(s.as_ref())?;
        out.push(s.as_ref().to_string());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// For a signing key: a fresh signing secret, handed to `token` (shown once) and returned
/// sealed under the master key for storage. `None` for other keys.
fn seal_signing_secret(
    master: Option<&MasterKey>,
    key_id: &str,
    token: &mut SecretToken,
) -> Result<Option<Vec<u8>>> {
    let Some(master) = master else {
        return Ok(None);
    };
    let plain = secrets::new_signing_secret()?;
    let sealed = master.seal(&secrets::signing_aad(key_id), plain.as_bytes())?;
    token.signing = Some(plain);
    Ok(Some(sealed))
}

fn no_master_key() -> Error {
    Error::WrongMasterKey
}

fn undecryptable(key_id: &str) -> Error {
    Error::Storage(format!(
        "the signing secret of key {key_id} does not decrypt: the record was altered or moved"
    ))
}

/// The master key for this handle: the one given, else derived from the passphrase (salt
/// and parameters stored in the vault, created on first use), else `KEYLEDGER_MASTER_KEY`.
/// It must match the vault's check value, which the first key given creates.
fn resolve_master_key(
    store: &Store,
    key: Option<MasterKey>,
    passphrase: Option<Zeroizing<String>>,
) -> Result<Option<MasterKey>> {
    let key = match (key, passphrase) {
        (Some(k), _) => Some(k),
        (None, Some(p)) => {
            let mut tx = store.write()?;
            let salt = tx.meta("master_salt")?;
            let kdf = tx
                .meta("master_kdf")?
                .and_then(|v| Argon2Params::decode(&v));
            let (salt, kdf) = match (salt, kdf) {
                (Some(salt), Some(kdf)) => {
                    drop(tx);
                    (salt, kdf)
                }
                _ => {
                    let mut salt = vec![0u8; 16];
                    getrandom::fill(&mut salt).map_err(Error::storage)?;
                    let kdf = Argon2Params::default();
                    tx.put_meta("master_salt", &salt)?;
                    tx.put_meta("master_kdf", &kdf.encode())?;
                    tx.commit(redb::Durability::Immediate)?;
                    (salt, kdf)
                }
            };
            Some(MasterKey::from_passphrase(p.as_bytes(), &salt, kdf)?)
        }
        (None, None) => MasterKey::from_env()?,
    };
    let Some(key) = key else {
        return Ok(None);
    };
    if let Some(check) = store.read()?.meta("master_check")? {
        return if key.matches(&check) {
            Ok(Some(key))
        } else {
            Err(Error::WrongMasterKey)
        };
    }
    let mut tx = store.write()?;
    match tx.meta("master_check")? {
        Some(check) if !key.matches(&check) => return Err(Error::WrongMasterKey),
        Some(_) => {}
        None => {
            tx.put_meta("master_check", &key.check_value()?)?;
            tx.commit(redb::Durability::Immediate)?;
        }
    }
    Ok(Some(key))
}

fn metadata_string(metadata: Option<Value>) -> Result<String> {
    let m = metadata.unwrap_or_else(|| json!({}));
    if !m.is_object() {
        return Err(Error::invalid("metadata must be a JSON object"));
    }
    // Stored metadata is read back with serde_json's parser, which stops at 128 levels of
    // nesting, and serializing a value nested thousands deep recurses as deep. So the
    // depth is measured first, without recursion (metadata nested 128 levels deep used
    // to be accepted and then read back as `{}`).
    if json_depth(&m) > MAX_METADATA_DEPTH {
        return Err(Error::invalid(format!(
            "metadata is nested too deeply (at most {MAX_METADATA_DEPTH} levels)"
        )));
    }
    let s = m.to_string();
    if s.len() > MAX_METADATA {
        return Err(Error::invalid("metadata must be at most 4 KiB as JSON"));
    }
    Ok(s)
}

/// Nesting levels of arrays and objects that serde_json reads back (its limit is 128).
const MAX_METADATA_DEPTH: usize = 127;

/// The nesting depth of a JSON value (an object or array is one level), iteratively.
fn json_depth(v: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(o) => Box::new(o.values()),
            _ => continue,
        };
        max = max.max(d);
        if max > MAX_METADATA_DEPTH {
            break;
        }
        stack.extend(children.map(|c| (c, d + 1)));
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fault injection for `rekey`: fail before re-encrypting the secret with this index.
    pub(super) static REKEY_FAIL_AFTER: std::sync::atomic::AtomicUsize =
        std::sync::atomic::AtomicUsize::new(usize::MAX);

    fn vault(dir: &tempfile::TempDir) -> Vault {
        Vault::open_with(
            dir.path().join("v.redb"),
            VaultOptions {
                argon2: Some(Argon2Params::INSECURE_FAST),
                ..VaultOptions::default()
            },
        )
        .unwrap()
    }

    fn signing_vault(dir: &tempfile::TempDir, master: &MasterKey) -> Vault {
        Vault::open_with(
            dir.path().join("v.redb"),
            VaultOptions {
                argon2: Some(Argon2Params::INSECURE_FAST),
                master_key: Some(master.clone()),
                ..VaultOptions::default()
            },
        )
        .unwrap()
    }

    fn rewrite_key(v: &Vault, key_id: &str, f: impl FnOnce(&mut KeyRecord)) {
        v.inner
            .write(|tx| {
                let mut rec = tx.key(key_id)?.unwrap();
                f(&mut rec);
                tx.put_key(&rec)
            })
            .unwrap();
    }

    #[test]
    fn a_tampered_or_swapped_signing_secret_never_decrypts() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::generate().unwrap();
        let v = signing_vault(&dir, &master);
        v.create_account("a", 0, None).unwrap();
        let (_, k1) = v
            .create_key(NewKey::new("a", "k1", ["x"]).signing(true))
            .unwrap();
        let (_, k2) = v
            .create_key(NewKey::new("a", "k2", ["x"]).signing(true))
            .unwrap();
        // Flip one byte of k1's ciphertext.
        rewrite_key(&v, &k1.key_id, |r| {
            let s = r.signing_secret.as_mut().unwrap();
            let last = s.len() - 1;
            s[last] ^= 0x01;
        });
        assert!(matches!(
            v.reveal_signing_secret(&k1.key_id),
            Err(Error::Storage(_))
        ));
        // Copy k2's (valid) ciphertext onto k1: bound to k2's key_id, it does not open.
        let k2_blob = v
            .inner
            .read()
            .unwrap()
            .key(&k2.key_id)
            .unwrap()
            .unwrap()
            .signing_secret;
        rewrite_key(&v, &k1.key_id, |r| r.signing_secret = k2_blob.clone());
        assert!(matches!(
            v.reveal_signing_secret(&k1.key_id),
            Err(Error::Storage(_))
        ));
        // Truncated.
        rewrite_key(&v, &k1.key_id, |r| r.signing_secret = Some(vec![1, 2, 3]));
        assert!(matches!(
            v.reveal_signing_secret(&k1.key_id),
            Err(Error::Storage(_))
        ));
        assert!(v.reveal_signing_secret(&k2.key_id).is_ok());
    }

    #[test]
    fn an_interrupted_rekey_leaves_the_old_master_key_working() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::generate().unwrap();
        let v = signing_vault(&dir, &master);
        v.create_account("a", 0, None).unwrap();
        let mut secrets = Vec::new();
        for i in 0..3 {
            let (t, info) = v
                .create_key(NewKey::new("a", format!("k{i}"), ["x"]).signing(true))
                .unwrap();
            secrets.push((info.key_id, t.signing_secret().unwrap().to_string()));
        }
        tests::REKEY_FAIL_AFTER.store(1, Ordering::SeqCst);
        let r = v.rekey(MasterKey::generate().unwrap());
        tests::REKEY_FAIL_AFTER.store(usize::MAX, Ordering::SeqCst);
        assert!(matches!(r, Err(Error::Storage(_))));
        for (key_id, secret) in &secrets {
            assert_eq!(v.reveal_signing_secret(key_id).unwrap().as_str(), secret);
        }
        v.close().unwrap();
        drop(v);
        // The old key still matches the vault's check value.
        let v = signing_vault(&dir, &master);
        assert_eq!(
            v.reveal_signing_secret(&secrets[2].0).unwrap().as_str(),
            secrets[2].1
        );
    }

    /// A writer that dies between its two slot bumps (after its commit) leaves the slot
    /// odd. Readers must then go to the store — never trust their cache — until the next
    /// write to that slot makes it idle again.
    #[test]
    fn a_writer_killed_between_its_slot_bumps_leaves_readers_correct() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(&dir);
        v.create_account("a", 10, None).unwrap();
        let (t, info) = v.create_key(NewKey::new("a", "k", ["x"])).unwrap();
        let call = || v.authorize(t.expose(), Target::scope("x"), &AuthorizeOptions::default());
        call().unwrap();
        call().unwrap();

        let inner = &*v.inner;
        let sc = inner.sidecar.as_ref().unwrap();
        let slot = sc.slot_of(SlotKind::Key, &info.key_id);
        {
            let guard = inner.store.read();
            let store = guard.as_ref().unwrap();
            let mut tx = store.write().unwrap();
            let mut rec = tx.key(&info.key_id).unwrap().unwrap();
            rec.disabled = true;
            tx.put_key(&rec).unwrap();
            let (_, committer) = tx.into_parts();
            let mut w = sc.write();
            w.begin(&[slot]);
            committer.commit(redb::Durability::Immediate).unwrap();
            w.abandon(); // "killed" here: no second bump
        }
        assert!(!Sidecar::is_idle(sc.load(slot)));
        assert_eq!(call().unwrap_err(), Error::ApiKeyInactive);
        let reads = v.stats().read_txns;
        assert_eq!(call().unwrap_err(), Error::ApiKeyInactive);
        assert!(v.stats().read_txns > reads, "an odd slot was trusted");

        v.enable_key(&info.key_id).unwrap();
        assert!(Sidecar::is_idle(sc.load(slot)));
        call().unwrap();
        let reads = v.stats().read_txns;
        call().unwrap();
        assert_eq!(v.stats().read_txns, reads, "the cache did not recover");
    }

    #[test]
    fn each_debit_in_a_batch_succeeds_or_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(&dir);
        v.create_account("a", 10, None).unwrap();
        // A batch with one request for an account that does not exist and one that
        // overdraws: each fails alone, neither moves the balance.
        let results = v.inner.run_debits(vec![
            DebitReq {
                account_id: "nobody".into(),
                cost: 1,
                idempotency: None,
                now: 0,
                grant: None,
            },
            DebitReq {
                account_id: "a".into(),
                cost: 11,
                idempotency: None,
                now: 0,
                grant: None,
            },
            DebitReq {
                account_id: "a".into(),
                cost: 4,
                idempotency: None,
                now: 0,
                grant: None,
            },
        ]);
        assert!(matches!(results[0], Err(Error::NotFound(_))));
        assert!(matches!(
            results[1],
            Err(Error::InsufficientCredits {
                credits: 10,
                required: 11
            })
        ));
        assert!(matches!(results[2], Ok(Debited { credits: 6, .. })));
        assert_eq!(v.balance("a").unwrap().credits, 6);
    }
}
