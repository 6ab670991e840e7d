//! How a vault is opened ([`VaultOptions`], [`Durability`]) and what an authorization
//! asks for ([`Target`], [`AuthorizeOptions`], [`OnReplay`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::clock::Clock;
use crate::crypto::{Argon2Params, ThrottleConfig};
use crate::model::Millis;
use crate::secrets::{self, MasterKey};
use crate::shm::Sidecar;
use crate::usage::clip_route;
#[allow(unused_imports)] // doc links
use crate::{Error, Vault};

/// When a debit is durable.
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
    /// The master key for signing secrets. `None`: a passphrase, else
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

    pub(crate) fn describe(&self) -> String {
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
    /// Rate limits to apply besides the auto-applied ones, by name.
    pub limits: Option<&'a [&'a str]>,
    /// How much this call weighs against every applied limit (default 1).
    pub limit_cost: Option<u64>,
    /// What a repeat of an idempotency key answers (default: the first grant, replayed).
    pub on_replay: OnReplay,
    /// The request's query string exactly as sent, without the `?` (`to=A` for
    /// `/send?to=A`), for signatures: a signature covers `path?query`. Routes only; `None`
    /// when the path given carries its own query or there is none.
    pub query: Option<&'a str>,
    // Holds.
    /// Reserve this many credits (> 0) instead of charging a cost: the grant carries the
    /// new hold's `hold_id`, to settle with [`crate::Vault::settle`] once the real cost is
    /// known. Not with `cost` (`invalid_argument`), nor with an operator key. The
    /// idempotency key, if any, is the hold's.
    pub hold: Option<u64>,
    /// The hold's TTL in ms (default [`crate::DEFAULT_HOLD_TTL_MS`], at most
    /// [`crate::MAX_HOLD_TTL_MS`]); only with `hold`.
    pub hold_ttl_ms: Option<u64>,
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
