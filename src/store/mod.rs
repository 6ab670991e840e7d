//! Storage: the backend trait the vault is written against, once.
//!
//! The vault's logic (validation, check order, caches, group commit) never sees a
//! database type. It asks a [`Backend`] for a read snapshot ([`ReadTxn`]) or a write
//! transaction ([`WriteTxn`]) and calls typed operations on it (`key`, `put_key`,
//! `balance`, `append_audit`, …); every record is encoded by [`records`], so every backend
//! stores the same bytes. The redb backend (one file shared by every process on a host)
//! lives in `store/redb.rs`; nothing outside that file names a redb type.
//!
//! # Invalidation is a backend capability
//! Each process caches key records, account views and the route table, and validates
//! them on every call against *generation slots* ([`Sidecar`]): two atomic loads, no
//! storage call, no dynamic dispatch. The backend owns how those slots learn about
//! changes, and hands the vault the slots once, at open ([`Backend::generations`]):
//! - redb: a write transaction records what it touched (keys, accounts, the route table)
//!   and its commit bumps the touched slots of the shared-memory sidecar around the commit
//!   (a seqlock, `WriteTxn::commit`), so every process on the host sees it on its next call;
//! - a networked backend (PostgreSQL) publishes the same touched set in the transaction
//!   (`NOTIFY`), and a listener of its own bumps the slots of a private [`Sidecar`] in
//!   each process. While the listener is disconnected the backend distrusts the slots
//!   ([`Sidecar::distrust`]), so every call reads the database: never a stale grant.
//!   [`Backend::maintain`] runs every flusher tick for such upkeep.
//!
//! # Opening a vault over a backend
//! `Vault::open_with` opens the redb backend for a file path (or, with the
//! `fault-injection` feature, a failing one for an armed path, see [`fault`]); then
//! `Vault::open_with_backend` runs everything above storage over any boxed [`Backend`].
//! A second backend implements these traits and is chosen by the location given to
//! `Vault::open` (e.g. a `postgresql://` URL), so the whole Rust suite runs over it
//! unchanged.

#[cfg(any(test, feature = "fault-injection"))]
pub mod fault;
pub(crate) mod holds;
pub(crate) mod migrate;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
pub(crate) mod records;
pub(crate) mod redb;
mod slots;

use std::sync::Arc;

use crate::error::Result;
use crate::limits::{LimitOwner, RateLimit};
use crate::model::{CacheMode, Millis};
use crate::options::Durability;
use crate::policy::RouteRule;
use crate::shm::{Sidecar, SlotKind};

pub(crate) use self::holds::{HoldRecord, HoldStateRecord};
pub use self::records::fuzz_decode_records;
pub(crate) use self::records::{AccountRecord, AuditRecord, IdempotencyRecord, KeyRecord};
pub(crate) use self::redb as file;

/// A read snapshot. Never held across calls (a pinned snapshot stops redb from reusing
/// pages and grows the file).
pub(crate) type ReadTx = Box<dyn ReadTxn>;
/// A write transaction.
pub(crate) type WriteTx<'a> = Box<dyn WriteTxn + 'a>;

/// The vault-level settings stored beside the data (the backend names them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Meta {
    /// The argon2id parameters of new hashes.
    Argon2,
    /// The master key's check value.
    MasterCheck,
    /// The salt of a passphrase-derived master key.
    MasterSalt,
    /// The argon2id parameters of a passphrase-derived master key.
    MasterKdf,
}

impl Meta {
    /// The entry's stored name.
    fn name(self) -> &'static str {
        match self {
            Meta::Argon2 => "argon2",
            Meta::MasterCheck => "master_check",
            Meta::MasterSalt => "master_salt",
            Meta::MasterKdf => "master_kdf",
        }
    }
}

/// The stored name of a meta entry (backends store meta by name).
fn meta_key(m: Meta) -> &'static str {
    m.name()
}

/// The stored owner of a rate limit: `k:<key_id>` or `a:<account_id>`.
fn owner_key(owner: LimitOwner<'_>) -> String {
    match owner {
        LimitOwner::Key(k) => format!("k:{k}"),
        LimitOwner::Account(a) => format!("a:{a}"),
    }
}

/// Which call an idempotency key belongs to: each has its own key space per account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdempotencyScope {
    /// `Vault::authorize`.
    Authorize,
    /// The management `Vault::debit`.
    Debit,
}

/// The stored idempotency key: `a:<key>` (authorize) or `d:<key>` (debit).
fn idempotency_key(scope: IdempotencyScope, key: &str) -> String {
    match scope {
        IdempotencyScope::Authorize => format!("a:{key}"),
        IdempotencyScope::Debit => format!("d:{key}"),
    }
}

/// The generation slot a change to a rate limit's owner invalidates.
fn owner_slot(owner: LimitOwner<'_>) -> (SlotKind, &str) {
    match owner {
        LimitOwner::Key(k) => (SlotKind::Key, k),
        LimitOwner::Account(a) => (SlotKind::Account, a),
    }
}

/// The generation slots a backend hands the vault at open, and what they promise.
pub(crate) struct Generations {
    /// `None`: no slots, every call reads the store.
    pub slots: Option<Arc<Sidecar>>,
    /// How the caches are validated.
    pub mode: CacheMode,
    /// Why the shared cache is disabled, when it is.
    pub note: Option<String>,
}

/// A storage backend: transactions, counters, and cache invalidation.
pub(crate) trait Backend: Send + Sync {
    /// Begin a read snapshot (counted: the hot path must not open one).
    fn read(&self) -> Result<ReadTx>;
    /// Begin a write transaction (one at a time across every process).
    fn write(&self) -> Result<WriteTx<'_>>;
    /// Make every commit so far durable (after `Durability::Eventual` commits).
    fn sync(&self) -> Result<()>;
    /// Whether this open created the vault.
    fn created(&self) -> bool;
    /// Read snapshots begun by this handle.
    fn read_txns(&self) -> u64;
    /// Commits by this handle.
    fn commits(&self) -> u64;
    /// The generation slots the vault's caches are validated by (called once, at open).
    fn generations(&self) -> Generations;
    /// Periodic upkeep of the invalidation channel (every flusher tick).
    fn maintain(&self);
    /// Why the slots cannot be trusted now beyond what `generations` said, if so.
    fn distrust_reason(&self) -> Option<String>;
    /// How many processes count rate limits apart, each allowing its share (1: each the whole).
    fn ratelimit_share(&self) -> u64 {
        1
    }
    /// Rate limits counted in the store (PostgreSQL's exact mode); `None`: this backend
    /// leaves them to the process's counters.
    fn take_rate(
        &self,
        _key: u64,
        _def: &RateLimit,
        _weight: u64,
        _now: crate::model::Millis,
    ) -> Option<Result<std::result::Result<crate::limits::Taken, crate::limits::Exceeded>>> {
        None
    }
    /// Give back a limit taken by `take_rate`; `None` when rate limits are not counted here.
    fn give_back_rate(&self, _taken: &crate::limits::Taken) -> Option<Result<()>> {
        None
    }
    // Group commit across processes (the combining queue).
    /// Whether write transactions of this backend record `applied` outcomes, so that a
    /// combiner may commit other processes' debits (false: each process commits its own).
    fn records_applied(&self) -> bool {
        false
    }
    /// Begin a write transaction without waiting: `Ok(None)` while another is in progress
    /// (in this process or another). Backends that cannot tell wait, as `write` does.
    fn try_write(&self) -> Result<Option<WriteTx<'_>>> {
        self.write().map(Some)
    }
}

/// Typed reads, shared by both transaction kinds.
pub(crate) trait ReadTxn {
    fn meta(&self, name: Meta) -> Result<Option<Vec<u8>>>;
    fn account(&self, id: &str) -> Result<Option<AccountRecord>>;
    /// (credits, total_credits).
    fn balance(&self, id: &str) -> Result<Option<(u64, u64)>>;
    fn key(&self, key_id: &str) -> Result<Option<KeyRecord>>;
    /// Every account id, in order.
    fn account_ids(&self) -> Result<Vec<String>>;
    /// The keys of one account, or of all, ordered by key_id.
    fn keys_of(&self, account_id: Option<&str>) -> Result<Vec<KeyRecord>>;
    /// The rate limits of a key or an account, by name.
    fn limits(&self, owner: LimitOwner<'_>) -> Result<Vec<RateLimit>>;
    fn routes(&self) -> Result<Vec<RouteRule>>;
    /// The outcome stored under an idempotency key of an account, with its time.
    fn idempotent(
        &self,
        account_id: &str,
        scope: IdempotencyScope,
        key: &str,
    ) -> Result<Option<(Millis, IdempotencyRecord)>>;
    /// Audit entries newest first, filtered; stops after `limit` matches or at `since`.
    fn audit(
        &self,
        key_id: Option<&str>,
        account_id: Option<&str>,
        action: Option<&str>,
        since: Option<Millis>,
        limit: usize,
    ) -> Result<Vec<(u64, AuditRecord)>>;
    /// When a key was last used, as of the last usage flush.
    fn last_used(&self, key_id: &str) -> Result<Option<Millis>>;
    /// (last_used_at, granted, refused) and hourly buckets (oldest first).
    #[allow(clippy::type_complexity)]
    fn usage(&self, key_id: &str) -> Result<(Option<(i64, u64, u64)>, Vec<(i64, u64)>)>;
    /// How many used signatures are recorded (`single_use_signatures`).
    fn signatures_recorded(&self) -> Result<u64>;
    /// Every stored row, table by table, as stored (`keyledger::migrate`).
    fn export(&self, sink: &mut dyn FnMut(migrate::Row) -> Result<()>) -> Result<()>;

    // Events and usage reports (`crate::events`).
    /// The alert thresholds of an account, ascending.
    fn alerts(&self, account_id: &str) -> Result<Vec<u64>>;
    /// Stored events numbered above `after`, ascending, at most `limit`.
    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>>;
    /// A named event mark (a consumer's cursor, the expiry horizon, a key's notice).
    fn event_mark(&self, name: &str) -> Result<Option<u64>>;
    /// The usage cells of an account with `since <= hour < until`.
    fn report_cells(
        &self,
        account_id: &str,
        since: Millis,
        until: Millis,
    ) -> Result<Vec<crate::events::ReportCell>>;
    // Holds.
    /// A hold by id, whatever its state.
    fn hold(&self, id: &str) -> Result<Option<HoldRecord>>;
    /// The active holds of one account, or of all, ordered by (account, id).
    fn active_holds(&self, account_id: Option<&str>) -> Result<Vec<HoldRecord>>;
    /// Up to `max` active holds whose `expires_at` is at or before `now`, oldest first.
    fn holds_due(&self, now: Millis, max: usize) -> Result<Vec<HoldRecord>>;
}

/// One write transaction: every management change and every debit batch is exactly one.
/// It records what its changes touch, so its commit can invalidate the caches.
pub(crate) trait WriteTxn: ReadTxn {
    fn put_meta(&mut self, name: Meta, value: &[u8]) -> Result<()>;
    fn put_account(&mut self, id: &str, rec: &AccountRecord) -> Result<()>;
    fn put_balance(&mut self, id: &str, credits: u64, total: u64) -> Result<()>;
    /// Insert or replace a key record (and its account index entry).
    fn put_key(&mut self, rec: &KeyRecord) -> Result<()>;
    /// Set (insert or replace) a rate limit; returns the one it replaced.
    fn put_limit(&mut self, owner: LimitOwner<'_>, def: &RateLimit) -> Result<Option<RateLimit>>;
    /// Remove a rate limit; returns it if it existed.
    fn remove_limit(&mut self, owner: LimitOwner<'_>, name: &str) -> Result<Option<RateLimit>>;
    /// Insert a route; false if (method, pattern) already exists.
    fn insert_route(&mut self, rule: &RouteRule) -> Result<bool>;
    /// Remove a route; returns it if it existed.
    fn remove_route(&mut self, method: &str, pattern: &str) -> Result<Option<RouteRule>>;
    /// Remember an idempotent outcome (replacing an expired one with the same key).
    fn put_idempotent(
        &mut self,
        account_id: &str,
        scope: IdempotencyScope,
        key: &str,
        at: Millis,
        rec: &IdempotencyRecord,
    ) -> Result<()>;
    /// Delete up to `max` idempotency records created before `before`; returns how many.
    fn prune_idempotent(&mut self, before: Millis, max: usize) -> Result<usize>;
    /// Delete `auth_refused` audit entries older than `before`, scanning at most `max`
    /// entries from where the last pruning stopped. Non-zero means commit.
    fn prune_refusals(&mut self, before: Millis, max: usize) -> Result<usize>;
    /// Record a request signature as used; false when it was already recorded.
    fn record_signature(&mut self, t_seconds: i64, mac: &[u8]) -> Result<bool>;
    /// Forget up to `max` used signatures older than `before` (seconds).
    fn prune_signatures(&mut self, before: i64, max: usize) -> Result<usize>;
    /// Append an audit entry; returns its sequence number.
    fn append_audit(&mut self, rec: &AuditRecord) -> Result<u64>;
    /// Add usage deltas for one key.
    fn add_usage(
        &mut self,
        key_id: &str,
        last_used: Option<Millis>,
        granted: u64,
        refused: u64,
        hour: Millis,
    ) -> Result<()>;
    /// Store one exported row exactly as given (into a new, empty vault: `migrate`).
    fn import(&mut self, row: &migrate::Row) -> Result<()>;

    // Events and usage reports (`crate::events`).
    /// Replace an account's alert thresholds (empty: none).
    fn put_alerts(&mut self, account_id: &str, thresholds: &[u64]) -> Result<()>;
    /// Append an encoded event; returns its sequence number.
    fn append_event(&mut self, record: &[u8]) -> Result<u64>;
    /// Set (`Some`) or delete (`None`) a named event mark.
    fn put_event_mark(&mut self, name: &str, value: Option<u64>) -> Result<()>;
    /// Add a usage cell's counts to the stored cell (saturating).
    fn add_report_cell(&mut self, cell: &crate::events::ReportCell) -> Result<()>;
    /// Commit, invalidating every process's cached copies of what changed.
    fn commit(self: Box<Self>, durability: Durability) -> Result<()>;
    /// Test hook: commit as a writer killed between its two slot bumps would (the touched
    /// slots stay odd).
    #[cfg(test)]
    fn commit_and_die(self: Box<Self>) -> Result<()>;
    // Holds.
    /// Insert or replace a hold; its index entries follow its state (only an active hold
    /// is indexed by account and by expiry).
    fn put_hold(&mut self, rec: &HoldRecord) -> Result<()>;

    // Group commit across processes (the combining queue).
    /// The outcome a combiner recorded for request `id` (nonce, counter) in a committed
    /// transaction; `None`: that request was never committed. Only where
    /// [`Backend::records_applied`].
    fn applied(&mut self, _id: (u64, u64)) -> Result<Option<Vec<u8>>> {
        Err(crate::error::Error::Storage(
            "this backend records no applied requests".into(),
        ))
    }
    /// Record the outcome of request `id`, committed with this transaction.
    fn put_applied(&mut self, _id: (u64, u64), _at: Millis, _outcome: &[u8]) -> Result<()> {
        Err(crate::error::Error::Storage(
            "this backend records no applied requests".into(),
        ))
    }
    /// Forget up to `max` applied records written before `before`; returns how many.
    fn prune_applied(&mut self, _before: Millis, _max: usize) -> Result<usize> {
        Ok(0)
    }
}
