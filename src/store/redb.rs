//! The redb backend: one file shared by every process on the host
//! (`ConcurrencyMode::MultiWriter`), or owned by one (`ExclusiveWriter`), with the
//! shared-memory sidecar `<vault>.shm` beside it for cache invalidation.
//!
//! The only file that names redb. Tables (see `docs/format.md`): every record is a
//! version byte followed by its postcard encoding (`store/records.rs`); balances are a
//! fixed-width `(u64, u64)` tuple; integers stored by redb are little-endian. Rate-limit
//! owners are stored as `k:<key_id>` / `a:<account_id>`, meta entries by name.

#[cfg(any(test, feature = "fault-injection"))]
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ::redb::backends::FileBackend;
#[cfg(any(test, feature = "fault-injection"))]
use ::redb::{BackendError, StorageBackend};
use ::redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

use super::migrate::Row;
use super::records::{decode, encode, FORMAT_VERSION};
use super::slots::{FileIdentity, FileSlots};
use super::{
    idempotency_key, meta_key, owner_key, owner_slot, AccountRecord, AuditRecord, Backend,
    Generations, HoldRecord, IdempotencyRecord, IdempotencyScope, KeyRecord, Meta, ReadTx, ReadTxn,
    WriteTx, WriteTxn,
};
use crate::audit::AuditAction;
use crate::error::{Error, Result};
use crate::limits::{LimitOwner, RateLimit};
use crate::model::{CacheMode, Millis};
use crate::options::Durability;
use crate::policy::RouteRule;
use crate::shm::{Sidecar, SlotKind};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");
const BALANCES: TableDefinition<&str, (u64, u64)> = TableDefinition::new("balances");
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
const ACCOUNT_KEYS: TableDefinition<(&str, &str), ()> = TableDefinition::new("account_keys");
const ROUTES: TableDefinition<(&str, &str), (&str, u64)> = TableDefinition::new("routes");
const IDEMPOTENCY: TableDefinition<(&str, &str), (i64, &[u8])> =
    TableDefinition::new("idempotency");
const IDEMPOTENCY_BY_TIME: TableDefinition<(i64, &str, &str), ()> =
    TableDefinition::new("idempotency_by_time");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const AUDIT_BY_KEY: TableDefinition<(&str, u64), ()> = TableDefinition::new("audit_by_key");
const AUDIT_BY_ACCOUNT: TableDefinition<(&str, u64), ()> = TableDefinition::new("audit_by_account");
const USAGE_TOTALS: TableDefinition<&str, (i64, u64, u64)> = TableDefinition::new("usage_totals");
const USAGE_HOURLY: TableDefinition<(&str, i64), u64> = TableDefinition::new("usage_hourly");
/// `(owner, name) → (limit, duration_ms, auto_apply)`; owner is `k:<key_id>` or `a:<account>`.
const RATELIMITS: TableDefinition<(&str, &str), (u64, u64, bool)> =
    TableDefinition::new("ratelimits");
/// Signatures seen (`single_use_signatures`): (t seconds, MAC) → ().
const SIGNATURES_SEEN: TableDefinition<(i64, &[u8]), ()> = TableDefinition::new("signatures_seen");
// Events and usage reports (`crate::events`).
/// account_id → its alert thresholds (u64 little-endian, ascending).
const ALERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("alerts");
/// seq → an encoded event.
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// name → value: consumers' cursors, the expiry horizon, keys' expiry notices.
const EVENT_MARKS: TableDefinition<&str, u64> = TableDefinition::new("event_marks");
/// (account_id, hour, key_id, route) → (charged, charged_calls, calls, refused).
type ReportKey<'a> = (&'a str, i64, &'a str, &'a str);
const USAGE_REPORT: TableDefinition<ReportKey, (u64, u64, u64, u64)> =
    TableDefinition::new("usage_report");
// Holds: every hold record by id; the active ones indexed by (account, id) and by
// (expires_at, id).
const HOLDS: TableDefinition<&str, &[u8]> = TableDefinition::new("holds");
const HOLDS_BY_ACCOUNT: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("holds_by_account");
const HOLDS_BY_EXPIRY: TableDefinition<(i64, &str), ()> = TableDefinition::new("holds_by_expiry");

/// Outcomes of debits a combiner committed for other processes, by request id (nonce,
/// counter): (time written, outcome bytes). Read by a waiter whose combiner died.
const APPLIED: TableDefinition<(u64, u64), (i64, &[u8])> = TableDefinition::new("applied");
/// The same records by time, for pruning.
const APPLIED_BY_TIME: TableDefinition<(i64, u64, u64), ()> =
    TableDefinition::new("applied_by_time");

// redb's errors become the crate's `storage` error here (an already-open exclusive vault:
// `vault_locked`); nothing above the store sees them.
impl From<::redb::Error> for Error {
    fn from(e: ::redb::Error) -> Self {
        Error::storage(e)
    }
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::storage(e)
            }
        }
    )*};
}
storage_from!(
    ::redb::TransactionError,
    ::redb::TableError,
    ::redb::StorageError,
    ::redb::CommitError
);

impl From<::redb::DatabaseError> for Error {
    fn from(e: ::redb::DatabaseError) -> Self {
        match e {
            ::redb::DatabaseError::DatabaseAlreadyOpen => Error::VaultLocked,
            other => Error::storage(other),
        }
    }
}

/// How to open a vault file.
pub(crate) struct FileOptions {
    /// One process only (`ExclusiveWriter`): cheaper reads and commits, private slots.
    pub exclusive: bool,
    /// redb's page cache, in bytes.
    pub cache_bytes: usize,
    /// Map the shared sidecar (false: every call reads the file).
    pub shared_cache: bool,
    /// Generation slots in the sidecar.
    pub shm_slots: u32,
}

/// What every transaction of one open shares.
struct Shared {
    read_txns: AtomicU64,
    commits: AtomicU64,
    /// The generation slots bumped around each commit.
    sidecar: Option<Arc<Sidecar>>,
}

/// The redb backend.
pub(crate) struct RedbBackend {
    db: Database,
    shared: Arc<Shared>,
    /// This open created the vault (wrote its format marker and identity).
    created: bool,
    /// The generation slots (set once the vault's identity is read).
    slots: Option<FileSlots>,
}

impl RedbBackend {
    /// Open (or create) the vault file at `path`: never a planted file, never through a
    /// symlink to someone else's file (`crate::files`), then its sidecar.
    pub(crate) fn open(path: &Path, options: &FileOptions) -> Result<RedbBackend> {
        let vault_file = crate::files::open_vault_file(path)?;
        let identity = FileIdentity::of(&vault_file);
        let mode = if options.exclusive {
            ::redb::ConcurrencyMode::ExclusiveWriter
        } else {
            ::redb::ConcurrencyMode::MultiWriter
        };
        let mut builder = ::redb::Builder::new();
        builder
            .set_cache_size(options.cache_bytes)
            .set_concurrency_mode(mode);
        #[cfg(any(test, feature = "fault-injection"))]
        let db = match super::fault::armed_for(path) {
            Some(faults) => builder.create_with_backend(FailingBackend::open(path, faults)?)?,
            None => builder.create_with_backend(FileBackend::new(vault_file.file)?)?,
        };
        #[cfg(not(any(test, feature = "fault-injection")))]
        let db = builder.create_with_backend(FileBackend::new(vault_file.file)?)?;
        let mut backend = RedbBackend {
            db,
            shared: Arc::new(Shared {
                read_txns: AtomicU64::new(0),
                commits: AtomicU64::new(0),
                sidecar: None,
            }),
            created: false,
            slots: None,
        };
        backend.created = backend.init_tables()?;
        let vault_id: [u8; 16] = backend
            .begin_read()?
            .meta_raw("vault_id")?
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| Error::Storage("vault has no identity".into()))?;
        let slots = FileSlots::open(
            &identity,
            vault_id,
            options.exclusive,
            options.shared_cache,
            options.shm_slots,
        )?;
        backend.shared = Arc::new(Shared {
            read_txns: AtomicU64::new(backend.shared.read_txns.load(Ordering::Relaxed)),
            commits: AtomicU64::new(backend.shared.commits.load(Ordering::Relaxed)),
            sidecar: slots.sidecar.clone(),
        });
        backend.slots = Some(slots);
        Ok(backend)
    }

    /// Create the tables, format marker and identity of a new vault; `true` if this call
    /// did (`false`: the vault existed).
    fn init_tables(&self) -> Result<bool> {
        // Skip the write when the format marker is already there (the common reopen).
        if let Some(v) = self.begin_read()?.meta_raw("format")? {
            return check_format(&v).map(|()| false);
        }
        let mut tx = self.begin_write()?;
        if let Some(v) = tx.meta_raw("format")? {
            return check_format(&v).map(|()| false);
        }
        {
            let t = &tx.txn;
            t.open_table(ACCOUNTS)?;
            t.open_table(BALANCES)?;
            t.open_table(KEYS)?;
            t.open_table(ACCOUNT_KEYS)?;
            t.open_table(ROUTES)?;
            t.open_table(IDEMPOTENCY)?;
            t.open_table(IDEMPOTENCY_BY_TIME)?;
            t.open_table(AUDIT)?;
            t.open_table(AUDIT_BY_KEY)?;
            t.open_table(AUDIT_BY_ACCOUNT)?;
            t.open_table(USAGE_TOTALS)?;
            t.open_table(USAGE_HOURLY)?;
            t.open_table(RATELIMITS)?;
        }
        tx.put_meta_raw("format", &FORMAT_VERSION.to_le_bytes())?;
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(Error::storage)?;
        tx.put_meta_raw("vault_id", &id)?;
        Box::new(tx).commit(Durability::Immediate)?;
        Ok(true)
    }

    fn begin_read(&self) -> Result<RedbRead> {
        self.shared.read_txns.fetch_add(1, Ordering::Relaxed);
        Ok(RedbRead {
            txn: self.db.begin_read()?,
        })
    }

    fn begin_write(&self) -> Result<RedbWrite> {
        // No quick-repair: MultiWriter always records the allocator state, and in
        // exclusive mode it would add a second fsync (two-phase commit) to every commit.
        let txn = self.db.begin_write()?;
        Ok(RedbWrite {
            txn,
            touched: Vec::new(),
            shared: self.shared.clone(),
        })
    }
}

impl Backend for RedbBackend {
    fn read(&self) -> Result<ReadTx> {
        Ok(Box::new(self.begin_read()?))
    }

    fn write(&self) -> Result<WriteTx<'_>> {
        Ok(Box::new(self.begin_write()?))
    }

    fn sync(&self) -> Result<()> {
        Box::new(self.begin_write()?).commit(Durability::Immediate)
    }

    fn created(&self) -> bool {
        self.created
    }

    fn read_txns(&self) -> u64 {
        self.shared.read_txns.load(Ordering::Relaxed)
    }

    fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    fn generations(&self) -> Generations {
        match &self.slots {
            Some(slots) => slots.generations(),
            None => Generations {
                slots: None,
                mode: CacheMode::Disabled,
                note: None,
            },
        }
    }

    fn maintain(&self) {
        if let Some(slots) = &self.slots {
            slots.maintain();
        }
    }

    fn distrust_reason(&self) -> Option<String> {
        self.slots.as_ref().and_then(FileSlots::distrust_reason)
    }

    // Group commit across processes (the combining queue).
    fn records_applied(&self) -> bool {
        true
    }

    fn try_write(&self) -> Result<Option<WriteTx<'_>>> {
        match self.db.try_begin_write() {
            Ok(txn) => Ok(Some(Box::new(RedbWrite {
                txn,
                touched: Vec::new(),
                shared: self.shared.clone(),
            }))),
            Err(::redb::TransactionError::WouldBlock) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

fn check_format(v: &[u8]) -> Result<()> {
    let version = <[u8; 4]>::try_from(v)
        .map(u32::from_le_bytes)
        .map_err(|_| Error::Storage("corrupt format marker".into()))?;
    if version == FORMAT_VERSION {
        Ok(())
    } else {
        Err(Error::Storage(format!(
            "vault format {version} is not supported by this keyledger (expects {FORMAT_VERSION})"
        )))
    }
}

/// A read-only snapshot.
struct RedbRead {
    txn: ReadTransaction,
}

/// One write transaction; it records which generation slots its changes touch so the
/// commit can bump them.
struct RedbWrite {
    txn: WriteTransaction,
    touched: Vec<(SlotKind, String)>,
    shared: Arc<Shared>,
}

/// Reads that take a raw meta name (the backend's own entries) on both kinds.
macro_rules! raw_meta {
    () => {
        fn meta_raw(&self, name: &str) -> Result<Option<Vec<u8>>> {
            // A brand-new file has no tables yet: that reads as "no marker".
            let t = match self.txn.open_table(META) {
                Ok(t) => t,
                Err(::redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let v = t.get(name)?.map(|v| v.value().to_vec());
            Ok(v)
        }
    };
}

impl RedbRead {
    raw_meta!();
}

/// The read methods, shared by both transaction kinds.
macro_rules! read_methods {
    () => {
        fn meta(&self, name: Meta) -> Result<Option<Vec<u8>>> {
            self.meta_raw(meta_key(name))
        }

        fn account(&self, id: &str) -> Result<Option<AccountRecord>> {
            let t = self.txn.open_table(ACCOUNTS)?;
            let v = t.get(id)?.map(|v| decode(v.value(), "account")).transpose();
            v
        }

        fn balance(&self, id: &str) -> Result<Option<(u64, u64)>> {
            let t = self.txn.open_table(BALANCES)?;
            let v = t.get(id)?.map(|v| v.value());
            Ok(v)
        }

        fn key(&self, key_id: &str) -> Result<Option<KeyRecord>> {
            let t = self.txn.open_table(KEYS)?;
            let v = t.get(key_id)?.map(|v| decode(v.value(), "key")).transpose();
            v
        }

        fn account_ids(&self) -> Result<Vec<String>> {
            let t = self.txn.open_table(ACCOUNTS)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, _) = row?;
                out.push(k.value().to_string());
            }
            Ok(out)
        }

        fn keys_of(&self, account_id: Option<&str>) -> Result<Vec<KeyRecord>> {
            let keys = self.txn.open_table(KEYS)?;
            let mut out = Vec::new();
            match account_id {
                None => {
                    for row in keys.iter()? {
                        let (_, v) = row?;
                        out.push(decode(v.value(), "key")?);
                    }
                }
                Some(account) => {
                    let index = self.txn.open_table(ACCOUNT_KEYS)?;
                    for row in index.range((account, "")..)? {
                        let (k, _) = row?;
                        let (a, key_id) = k.value();
                        if a != account {
                            break;
                        }
                        if let Some(v) = keys.get(key_id)? {
                            out.push(decode(v.value(), "key")?);
                        }
                    }
                }
            }
            Ok(out)
        }

        /// The rate limits of an owner (`k:<key_id>` / `a:<account_id>`), by name.
        fn limits(&self, owner: LimitOwner<'_>) -> Result<Vec<RateLimit>> {
            let owner = owner_key(owner);
            let owner = owner.as_str();
            let t = self.txn.open_table(RATELIMITS)?;
            let mut out = Vec::new();
            for row in t.range((owner, "")..)? {
                let (k, v) = row?;
                let (o, name) = k.value();
                if o != owner {
                    break;
                }
                let (limit, duration_ms, auto_apply) = v.value();
                out.push(RateLimit {
                    name: name.to_string(),
                    limit,
                    duration_ms,
                    auto_apply,
                });
            }
            Ok(out)
        }

        fn routes(&self) -> Result<Vec<RouteRule>> {
            let t = self.txn.open_table(ROUTES)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                let (method, pattern) = k.value();
                let (scope, cost) = v.value();
                out.push(RouteRule {
                    method: method.to_string(),
                    pattern: pattern.to_string(),
                    scope: scope.to_string(),
                    cost,
                });
            }
            Ok(out)
        }

        fn idempotent(
            &self,
            account_id: &str,
            scope: IdempotencyScope,
            key: &str,
        ) -> Result<Option<(Millis, IdempotencyRecord)>> {
            let key = idempotency_key(scope, key);
            let t = self.txn.open_table(IDEMPOTENCY)?;
            let v = t.get((account_id, key.as_str()))?;
            let Some(v) = v else { return Ok(None) };
            let (at, bytes) = v.value();
            Ok(Some((at, IdempotencyRecord::decode(bytes)?)))
        }

        /// Audit entries newest first, filtered; stops after `limit` matches or at `since`.
        fn audit(
            &self,
            key_id: Option<&str>,
            account_id: Option<&str>,
            action: Option<&str>,
            since: Option<Millis>,
            limit: usize,
        ) -> Result<Vec<(u64, AuditRecord)>> {
            let audit = self.txn.open_table(AUDIT)?;
            let mut out = Vec::new();
            let accept = |seq: u64, rec: AuditRecord, out: &mut Vec<(u64, AuditRecord)>| -> bool {
                if since.is_some_and(|s| rec.time < s) {
                    return false;
                }
                let ok = key_id.is_none_or(|k| rec.key_id.as_deref() == Some(k))
                    && account_id.is_none_or(|a| rec.account_id.as_deref() == Some(a))
                    && action.is_none_or(|a| rec.action == a);
                if ok {
                    out.push((seq, rec));
                }
                out.len() < limit
            };
            // Walk the narrowest index available, newest first.
            let index = match (key_id, account_id) {
                (Some(k), _) => Some((self.txn.open_table(AUDIT_BY_KEY)?, k)),
                (None, Some(a)) => Some((self.txn.open_table(AUDIT_BY_ACCOUNT)?, a)),
                (None, None) => None,
            };
            if limit == 0 {
                return Ok(out);
            }
            match index {
                Some((table, id)) => {
                    for row in table.range((id, 0u64)..=(id, u64::MAX))?.rev() {
                        let (k, _) = row?;
                        let (_, seq) = k.value();
                        if let Some(v) = audit.get(seq)? {
                            if !accept(seq, decode(v.value(), "audit")?, &mut out) {
                                break;
                            }
                        }
                    }
                }
                None => {
                    for row in audit.iter()?.rev() {
                        let (k, v) = row?;
                        if !accept(k.value(), decode(v.value(), "audit")?, &mut out) {
                            break;
                        }
                    }
                }
            }
            Ok(out)
        }

        /// When a key was last used, as of the last usage flush (totals only, no buckets).
        fn last_used(&self, key_id: &str) -> Result<Option<Millis>> {
            let t = self.txn.open_table(USAGE_TOTALS)?;
            let last = t
                .get(key_id)?
                .map(|v| v.value().0)
                .filter(|&l| l != i64::MIN);
            Ok(last)
        }

        /// (last_used_at, granted, refused) and hourly buckets (oldest first).
        #[allow(clippy::type_complexity)]
        fn usage(&self, key_id: &str) -> Result<(Option<(i64, u64, u64)>, Vec<(i64, u64)>)> {
            let totals = self.txn.open_table(USAGE_TOTALS)?;
            let hourly = self.txn.open_table(USAGE_HOURLY)?;
            let total = totals.get(key_id)?.map(|v| v.value());
            let mut buckets = Vec::new();
            for row in hourly.range((key_id, i64::MIN)..=(key_id, i64::MAX))? {
                let (k, v) = row?;
                buckets.push((k.value().1, v.value()));
            }
            Ok((total, buckets))
        }

        fn signatures_recorded(&self) -> Result<u64> {
            match self.txn.open_table(SIGNATURES_SEEN) {
                Ok(t) => Ok(::redb::ReadableTableMetadata::len(&t)?),
                Err(::redb::TableError::TableDoesNotExist(_)) => Ok(0),
                Err(e) => Err(e.into()),
            }
        }

        fn export(&self, sink: &mut dyn FnMut(Row) -> Result<()>) -> Result<()> {
            // A table a file never created (an older vault) is empty.
            macro_rules! each {
                ($table:expr, |$k:ident, $v:ident| $row:expr) => {
                    match self.txn.open_table($table) {
                        Ok(t) => {
                            for entry in t.iter()? {
                                let (k, v) = entry?;
                                let ($k, $v) = (k.value(), v.value());
                                sink($row)?;
                            }
                        }
                        Err(::redb::TableError::TableDoesNotExist(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                };
            }
            each!(META, |k, v| Row::Meta {
                name: k.to_string(),
                value: v.to_vec()
            });
            each!(ACCOUNTS, |k, v| Row::Account {
                id: k.to_string(),
                record: v.to_vec()
            });
            each!(BALANCES, |k, v| Row::Balance {
                id: k.to_string(),
                credits: v.0,
                total: v.1
            });
            each!(KEYS, |k, v| Row::Key {
                key_id: k.to_string(),
                account_id: decode::<KeyRecord>(v, "key")?.account_id,
                record: v.to_vec(),
            });
            each!(ROUTES, |k, v| Row::Route {
                method: k.0.to_string(),
                pattern: k.1.to_string(),
                scope: v.0.to_string(),
                cost: v.1,
            });
            each!(IDEMPOTENCY, |k, v| Row::Idempotency {
                account_id: k.0.to_string(),
                key: k.1.to_string(),
                at: v.0,
                record: v.1.to_vec(),
            });
            each!(AUDIT, |k, v| Row::Audit {
                seq: k,
                record: v.to_vec()
            });
            each!(USAGE_TOTALS, |k, v| Row::UsageTotal {
                key_id: k.to_string(),
                last_used: v.0,
                granted: v.1,
                refused: v.2,
            });
            each!(USAGE_HOURLY, |k, v| Row::UsageHour {
                key_id: k.0.to_string(),
                hour: k.1,
                granted: v
            });
            each!(RATELIMITS, |k, v| Row::Limit {
                owner: k.0.to_string(),
                name: k.1.to_string(),
                limit: v.0,
                duration_ms: v.1,
                auto_apply: v.2,
            });
            each!(SIGNATURES_SEEN, |k, _v| Row::Signature {
                t: k.0,
                mac: k.1.to_vec()
            });
            each!(HOLDS, |k, v| Row::Hold {
                id: k.to_string(),
                record: v.to_vec()
            });
            Ok(())
        }

        // Events and usage reports. A table an older file never created reads as empty.
        fn alerts(&self, account_id: &str) -> Result<Vec<u64>> {
            let t = match self.txn.open_table(ALERTS) {
                Ok(t) => t,
                Err(::redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let v = t
                .get(account_id)?
                .map(|v| {
                    v.value()
                        .chunks_exact(8)
                        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                        .collect()
                })
                .unwrap_or_default();
            Ok(v)
        }

        fn events_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
            let t = match self.txn.open_table(EVENTS) {
                Ok(t) => t,
                Err(::redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            if after == u64::MAX {
                return Ok(out);
            }
            for row in t.range(after + 1..)? {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = row?;
                out.push((k.value(), v.value().to_vec()));
            }
            Ok(out)
        }

        fn event_mark(&self, name: &str) -> Result<Option<u64>> {
            let t = match self.txn.open_table(EVENT_MARKS) {
                Ok(t) => t,
                Err(::redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let v = t.get(name)?.map(|v| v.value());
            Ok(v)
        }

        fn report_cells(
            &self,
            account_id: &str,
            since: Millis,
            until: Millis,
        ) -> Result<Vec<crate::events::ReportCell>> {
            let t = match self.txn.open_table(USAGE_REPORT) {
                Ok(t) => t,
                Err(::redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            if since >= until {
                return Ok(out);
            }
            for row in t.range((account_id, since, "", "")..(account_id, until, "", ""))? {
                let (k, v) = row?;
                let (a, hour, key_id, route) = k.value();
                let (charged, charged_calls, calls, refused) = v.value();
                out.push(crate::events::ReportCell {
                    account_id: a.to_string(),
                    hour,
                    key_id: key_id.to_string(),
                    route: route.to_string(),
                    charged,
                    charged_calls,
                    calls,
                    refused,
                });
            }
            Ok(out)
        }

        // Holds. A file made before holds has none of their tables: that reads as empty.
        fn hold(&self, id: &str) -> Result<Option<HoldRecord>> {
            let t = match self.txn.open_table(HOLDS) {
                Ok(t) => t,
                Err(::redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let v = t
                .get(id)?
                .map(|v| HoldRecord::decode(v.value()))
                .transpose();
            v
        }

        fn active_holds(&self, account_id: Option<&str>) -> Result<Vec<HoldRecord>> {
            let (index, holds) = match (
                self.txn.open_table(HOLDS_BY_ACCOUNT),
                self.txn.open_table(HOLDS),
            ) {
                (Ok(i), Ok(h)) => (i, h),
                (Err(::redb::TableError::TableDoesNotExist(_)), _)
                | (_, Err(::redb::TableError::TableDoesNotExist(_))) => return Ok(Vec::new()),
                (Err(e), _) | (_, Err(e)) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for row in index.range((account_id.unwrap_or(""), "")..)? {
                let (k, _) = row?;
                let (a, id) = k.value();
                if account_id.is_some_and(|want| want != a) {
                    break;
                }
                if let Some(v) = holds.get(id)? {
                    out.push(HoldRecord::decode(v.value())?);
                }
            }
            Ok(out)
        }

        fn holds_due(&self, now: Millis, max: usize) -> Result<Vec<HoldRecord>> {
            let (index, holds) = match (
                self.txn.open_table(HOLDS_BY_EXPIRY),
                self.txn.open_table(HOLDS),
            ) {
                (Ok(i), Ok(h)) => (i, h),
                (Err(::redb::TableError::TableDoesNotExist(_)), _)
                | (_, Err(::redb::TableError::TableDoesNotExist(_))) => return Ok(Vec::new()),
                (Err(e), _) | (_, Err(e)) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for row in index.range((i64::MIN, "")..)? {
                let (k, _) = row?;
                let (at, id) = k.value();
                if at > now || out.len() >= max {
                    break;
                }
                if let Some(v) = holds.get(id)? {
                    out.push(HoldRecord::decode(v.value())?);
                }
            }
            Ok(out)
        }
    };
}

impl ReadTxn for RedbRead {
    read_methods!();
}

impl ReadTxn for RedbWrite {
    read_methods!();
}

impl RedbWrite {
    raw_meta!();

    fn touch(&mut self, kind: SlotKind, id: &str) {
        if !self.touched.iter().any(|(k, i)| *k == kind && i == id) {
            self.touched.push((kind, id.to_string()));
        }
    }

    fn put_meta_raw(&mut self, name: &str, value: &[u8]) -> Result<()> {
        self.txn.open_table(META)?.insert(name, value)?;
        Ok(())
    }

    fn commit_with(self, durability: Durability, finish: bool) -> Result<()> {
        let RedbWrite {
            mut txn,
            touched,
            shared,
        } = self;
        txn.set_durability(match durability {
            Durability::Immediate => ::redb::Durability::Immediate,
            Durability::Eventual => ::redb::Durability::None,
        })
        .map_err(Error::storage)?;
        let committed = match &shared.sidecar {
            Some(sc) if !touched.is_empty() => {
                // Bump the touched slots to odd before the commit and to a new even value
                // after it (when `guard` drops), so every process's cache sees the change.
                // Slot numbers from the guard: it may have remapped a replaced sidecar.
                let mut guard = sc.write();
                let slots: Vec<usize> = touched
                    .iter()
                    .map(|(k, id)| guard.slot_of(*k, id))
                    .collect();
                guard.begin(&slots);
                let r = txn.commit();
                if !finish {
                    // A writer "killed" here: no second bump.
                    #[cfg(test)]
                    guard.abandon();
                }
                r
            }
            _ => txn.commit(),
        };
        committed?;
        shared.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl WriteTxn for RedbWrite {
    fn put_meta(&mut self, name: Meta, value: &[u8]) -> Result<()> {
        self.put_meta_raw(meta_key(name), value)
    }

    fn put_account(&mut self, id: &str, rec: &AccountRecord) -> Result<()> {
        let bytes = encode(rec)?;
        self.txn
            .open_table(ACCOUNTS)?
            .insert(id, bytes.as_slice())?;
        self.touch(SlotKind::Account, id);
        Ok(())
    }

    fn put_balance(&mut self, id: &str, credits: u64, total: u64) -> Result<()> {
        self.txn
            .open_table(BALANCES)?
            .insert(id, (credits, total))?;
        self.touch(SlotKind::Account, id);
        Ok(())
    }

    /// Insert or replace a key record (and its account index entry).
    fn put_key(&mut self, rec: &KeyRecord) -> Result<()> {
        let bytes = encode(rec)?;
        self.txn
            .open_table(KEYS)?
            .insert(rec.key_id.as_str(), bytes.as_slice())?;
        self.txn
            .open_table(ACCOUNT_KEYS)?
            .insert((rec.account_id.as_str(), rec.key_id.as_str()), ())?;
        self.touch(SlotKind::Key, &rec.key_id);
        Ok(())
    }

    fn put_limit(&mut self, owner: LimitOwner<'_>, def: &RateLimit) -> Result<Option<RateLimit>> {
        let slot = owner_slot(owner);
        let owner = owner_key(owner);
        let owner = owner.as_str();
        let mut t = self.txn.open_table(RATELIMITS)?;
        let old = t
            .insert(
                (owner, def.name.as_str()),
                (def.limit, def.duration_ms, def.auto_apply),
            )?
            .map(|v| {
                let (limit, duration_ms, auto_apply) = v.value();
                RateLimit {
                    name: def.name.clone(),
                    limit,
                    duration_ms,
                    auto_apply,
                }
            });
        drop(t);
        self.touch(slot.0, slot.1);
        Ok(old)
    }

    /// Remove a rate limit; returns it if it existed.
    fn remove_limit(&mut self, owner: LimitOwner<'_>, name: &str) -> Result<Option<RateLimit>> {
        let slot = owner_slot(owner);
        let owner = owner_key(owner);
        let owner = owner.as_str();
        let mut t = self.txn.open_table(RATELIMITS)?;
        let old = t.remove((owner, name))?.map(|v| {
            let (limit, duration_ms, auto_apply) = v.value();
            RateLimit {
                name: name.to_string(),
                limit,
                duration_ms,
                auto_apply,
            }
        });
        drop(t);
        if old.is_some() {
            self.touch(slot.0, slot.1);
        }
        Ok(old)
    }

    /// Insert a route; false if (method, pattern) already exists.
    fn insert_route(&mut self, rule: &RouteRule) -> Result<bool> {
        let mut t = self.txn.open_table(ROUTES)?;
        let key = (rule.method.as_str(), rule.pattern.as_str());
        if t.get(key)?.is_some() {
            return Ok(false);
        }
        t.insert(key, (rule.scope.as_str(), rule.cost))?;
        drop(t);
        self.touch(SlotKind::Global, "routes");
        Ok(true)
    }

    /// Remove a route; returns it if it existed.
    fn remove_route(&mut self, method: &str, pattern: &str) -> Result<Option<RouteRule>> {
        let mut t = self.txn.open_table(ROUTES)?;
        let removed = t.remove((method, pattern))?.map(|v| {
            let (scope, cost) = v.value();
            RouteRule {
                method: method.to_string(),
                pattern: pattern.to_string(),
                scope: scope.to_string(),
                cost,
            }
        });
        drop(t);
        if removed.is_some() {
            self.touch(SlotKind::Global, "routes");
        }
        Ok(removed)
    }

    /// Remember an idempotent result (replacing an expired one with the same key).
    fn put_idempotent(
        &mut self,
        account_id: &str,
        scope: IdempotencyScope,
        key: &str,
        at: Millis,
        rec: &IdempotencyRecord,
    ) -> Result<()> {
        let key = idempotency_key(scope, key);
        let key = key.as_str();
        let bytes = rec.encode()?;
        let value = bytes.as_slice();
        let mut t = self.txn.open_table(IDEMPOTENCY)?;
        let old = t
            .insert((account_id, key), (at, value))?
            .map(|v| v.value().0);
        drop(t);
        let mut by_time = self.txn.open_table(IDEMPOTENCY_BY_TIME)?;
        if let Some(old_at) = old {
            by_time.remove((old_at, account_id, key))?;
        }
        by_time.insert((at, account_id, key), ())?;
        Ok(())
    }

    /// Delete up to `max` idempotency records created before `before`; returns how many.
    fn prune_idempotent(&mut self, before: Millis, max: usize) -> Result<usize> {
        let mut doomed = Vec::new();
        {
            let by_time = self.txn.open_table(IDEMPOTENCY_BY_TIME)?;
            for row in by_time.range((i64::MIN, "", "")..)? {
                let (k, _) = row?;
                let (at, account, key) = k.value();
                if at >= before || doomed.len() >= max {
                    break;
                }
                doomed.push((at, account.to_string(), key.to_string()));
            }
        }
        let mut by_time = self.txn.open_table(IDEMPOTENCY_BY_TIME)?;
        let mut idem = self.txn.open_table(IDEMPOTENCY)?;
        for (at, account, key) in &doomed {
            by_time.remove((*at, account.as_str(), key.as_str()))?;
            idem.remove((account.as_str(), key.as_str()))?;
        }
        Ok(doomed.len())
    }

    /// Delete request-path refusal entries (`auth_refused`) older than `before`, scanning
    /// at most `max` entries from where the last pruning stopped (a cursor kept in `meta`).
    /// Management entries, operator entries and anything newer are never touched, and the
    /// newest entry is kept so sequence numbers are never reused. Returns the number of
    /// entries deleted, plus one when the cursor moved: non-zero means commit.
    fn prune_refusals(&mut self, before: Millis, max: usize) -> Result<usize> {
        const CURSOR: &str = "audit_prune_cursor";
        let cursor = match self.meta_raw(CURSOR)? {
            Some(v) => <[u8; 8]>::try_from(v.as_slice())
                .map(u64::from_le_bytes)
                .map_err(|_| Error::Storage("corrupt audit prune cursor".into()))?,
            None => 0,
        };
        let mut doomed: Vec<(u64, Option<String>, Option<String>)> = Vec::new();
        let mut next = cursor;
        {
            let audit = self.txn.open_table(AUDIT)?;
            let Some(newest) = audit.last()?.map(|(k, _)| k.value()) else {
                return Ok(0);
            };
            for row in audit.range(cursor..newest)?.take(max) {
                let (k, v) = row?;
                let rec: AuditRecord = decode(v.value(), "audit")?;
                if rec.time >= before {
                    break;
                }
                next = k.value() + 1;
                if rec.action == AuditAction::AuthRefused.as_str() {
                    doomed.push((k.value(), rec.key_id, rec.account_id));
                }
            }
        }
        let moved = next != cursor;
        if moved {
            self.put_meta_raw(CURSOR, &next.to_le_bytes())?;
        }
        if doomed.is_empty() {
            return Ok(usize::from(moved));
        }
        let mut audit = self.txn.open_table(AUDIT)?;
        let mut by_key = self.txn.open_table(AUDIT_BY_KEY)?;
        let mut by_account = self.txn.open_table(AUDIT_BY_ACCOUNT)?;
        for (seq, key_id, account_id) in &doomed {
            audit.remove(*seq)?;
            if let Some(k) = key_id {
                by_key.remove((k.as_str(), *seq))?;
            }
            if let Some(a) = account_id {
                by_account.remove((a.as_str(), *seq))?;
            }
        }
        Ok(doomed.len() + usize::from(moved))
    }

    /// Record a request signature as used; false when it was already recorded.
    fn record_signature(&mut self, t_seconds: i64, mac: &[u8]) -> Result<bool> {
        let mut t = self.txn.open_table(SIGNATURES_SEEN)?;
        let fresh = t.insert((t_seconds, mac), ())?.is_none();
        Ok(fresh)
    }

    /// Forget up to `max` used signatures older than `before` (seconds): a signature that
    /// old is refused by the window anyway. Returns how many.
    fn prune_signatures(&mut self, before: i64, max: usize) -> Result<usize> {
        let mut t = self.txn.open_table(SIGNATURES_SEEN)?;
        let mut doomed = Vec::new();
        for row in t.range::<(i64, &[u8])>(..(before, &[][..]))? {
            if doomed.len() >= max {
                break;
            }
            let (k, _) = row?;
            let (at, mac) = k.value();
            doomed.push((at, mac.to_vec()));
        }
        for (at, mac) in &doomed {
            t.remove((*at, mac.as_slice()))?;
        }
        Ok(doomed.len())
    }

    /// Append an audit entry; returns its sequence number.
    fn append_audit(&mut self, rec: &AuditRecord) -> Result<u64> {
        let mut audit = self.txn.open_table(AUDIT)?;
        let seq = match audit.last()? {
            Some((k, _)) => k.value() + 1,
            None => 1,
        };
        let bytes = encode(rec)?;
        audit.insert(seq, bytes.as_slice())?;
        drop(audit);
        if let Some(k) = &rec.key_id {
            self.txn
                .open_table(AUDIT_BY_KEY)?
                .insert((k.as_str(), seq), ())?;
        }
        if let Some(a) = &rec.account_id {
            self.txn
                .open_table(AUDIT_BY_ACCOUNT)?
                .insert((a.as_str(), seq), ())?;
        }
        Ok(seq)
    }

    /// Add usage deltas for one key.
    fn add_usage(
        &mut self,
        key_id: &str,
        last_used: Option<Millis>,
        granted: u64,
        refused: u64,
        hour: Millis,
    ) -> Result<()> {
        let mut totals = self.txn.open_table(USAGE_TOTALS)?;
        let (old_last, old_granted, old_refused) = totals
            .get(key_id)?
            .map(|v| v.value())
            .unwrap_or((i64::MIN, 0, 0));
        let last = last_used.map_or(old_last, |l| l.max(old_last));
        totals.insert(
            key_id,
            (
                last,
                old_granted.saturating_add(granted),
                old_refused.saturating_add(refused),
            ),
        )?;
        drop(totals);
        if granted > 0 {
            let mut hourly = self.txn.open_table(USAGE_HOURLY)?;
            let old = hourly.get((key_id, hour))?.map_or(0, |v| v.value());
            hourly.insert((key_id, hour), old.saturating_add(granted))?;
        }
        Ok(())
    }

    fn import(&mut self, row: &Row) -> Result<()> {
        let t = &self.txn;
        match row {
            Row::Meta { name, value } => {
                t.open_table(META)?
                    .insert(name.as_str(), value.as_slice())?;
            }
            Row::Account { id, record } => {
                t.open_table(ACCOUNTS)?
                    .insert(id.as_str(), record.as_slice())?;
            }
            Row::Balance { id, credits, total } => {
                t.open_table(BALANCES)?
                    .insert(id.as_str(), (*credits, *total))?;
            }
            Row::Key {
                key_id,
                account_id,
                record,
            } => {
                t.open_table(KEYS)?
                    .insert(key_id.as_str(), record.as_slice())?;
                t.open_table(ACCOUNT_KEYS)?
                    .insert((account_id.as_str(), key_id.as_str()), ())?;
            }
            Row::Route {
                method,
                pattern,
                scope,
                cost,
            } => {
                t.open_table(ROUTES)?
                    .insert((method.as_str(), pattern.as_str()), (scope.as_str(), *cost))?;
            }
            Row::Idempotency {
                account_id,
                key,
                at,
                record,
            } => {
                t.open_table(IDEMPOTENCY)?.insert(
                    (account_id.as_str(), key.as_str()),
                    (*at, record.as_slice()),
                )?;
                t.open_table(IDEMPOTENCY_BY_TIME)?
                    .insert((*at, account_id.as_str(), key.as_str()), ())?;
            }
            Row::Audit { seq, record } => {
                let rec: AuditRecord = decode(record, "audit")?;
                t.open_table(AUDIT)?.insert(*seq, record.as_slice())?;
                if let Some(k) = &rec.key_id {
                    t.open_table(AUDIT_BY_KEY)?.insert((k.as_str(), *seq), ())?;
                }
                if let Some(a) = &rec.account_id {
                    t.open_table(AUDIT_BY_ACCOUNT)?
                        .insert((a.as_str(), *seq), ())?;
                }
            }
            Row::UsageTotal {
                key_id,
                last_used,
                granted,
                refused,
            } => {
                t.open_table(USAGE_TOTALS)?
                    .insert(key_id.as_str(), (*last_used, *granted, *refused))?;
            }
            Row::UsageHour {
                key_id,
                hour,
                granted,
            } => {
                t.open_table(USAGE_HOURLY)?
                    .insert((key_id.as_str(), *hour), *granted)?;
            }
            Row::Limit {
                owner,
                name,
                limit,
                duration_ms,
                auto_apply,
            } => {
                t.open_table(RATELIMITS)?.insert(
                    (owner.as_str(), name.as_str()),
                    (*limit, *duration_ms, *auto_apply),
                )?;
            }
            Row::Signature { t: secs, mac } => {
                t.open_table(SIGNATURES_SEEN)?
                    .insert((*secs, mac.as_slice()), ())?;
            }
            Row::Hold { id, record } => {
                let rec = HoldRecord::decode(record)?;
                if rec.id != *id {
                    return Err(Error::Storage(format!("hold {id:?} holds another id")));
                }
                self.put_hold(&rec)?;
            }
        }
        Ok(())
    }

    // Events and usage reports.
    fn put_alerts(&mut self, account_id: &str, thresholds: &[u64]) -> Result<()> {
        let mut t = self.txn.open_table(ALERTS)?;
        if thresholds.is_empty() {
            t.remove(account_id)?;
        } else {
            let bytes: Vec<u8> = thresholds.iter().flat_map(|v| v.to_le_bytes()).collect();
            t.insert(account_id, bytes.as_slice())?;
        }
        Ok(())
    }

    fn append_event(&mut self, record: &[u8]) -> Result<u64> {
        let mut t = self.txn.open_table(EVENTS)?;
        let seq = match t.last()? {
            Some((k, _)) => k.value() + 1,
            None => 1,
        };
        t.insert(seq, record)?;
        Ok(seq)
    }

    fn put_event_mark(&mut self, name: &str, value: Option<u64>) -> Result<()> {
        let mut t = self.txn.open_table(EVENT_MARKS)?;
        match value {
            Some(v) => {
                t.insert(name, v)?;
            }
            None => {
                t.remove(name)?;
            }
        }
        Ok(())
    }

    fn add_report_cell(&mut self, c: &crate::events::ReportCell) -> Result<()> {
        let mut t = self.txn.open_table(USAGE_REPORT)?;
        let key = (
            c.account_id.as_str(),
            c.hour,
            c.key_id.as_str(),
            c.route.as_str(),
        );
        let (a, b, d, e) = t.get(key)?.map_or((0, 0, 0, 0), |v| v.value());
        t.insert(
            key,
            (
                a.saturating_add(c.charged),
                b.saturating_add(c.charged_calls),
                d.saturating_add(c.calls),
                e.saturating_add(c.refused),
            ),
        )?;
        Ok(())
    }

    fn commit(self: Box<Self>, durability: Durability) -> Result<()> {
        self.commit_with(durability, true)
    }

    #[cfg(test)]
    fn commit_and_die(self: Box<Self>) -> Result<()> {
        self.commit_with(Durability::Immediate, false)
    }

    // Holds.
    fn put_hold(&mut self, rec: &HoldRecord) -> Result<()> {
        let bytes = rec.encode()?;
        let (id, account) = (rec.id.as_str(), rec.account_id.as_str());
        self.txn.open_table(HOLDS)?.insert(id, bytes.as_slice())?;
        let mut by_account = self.txn.open_table(HOLDS_BY_ACCOUNT)?;
        let mut by_expiry = self.txn.open_table(HOLDS_BY_EXPIRY)?;
        if rec.active() {
            by_account.insert((account, id), ())?;
            by_expiry.insert((rec.expires_at, id), ())?;
        } else {
            by_account.remove((account, id))?;
            by_expiry.remove((rec.expires_at, id))?;
        }
        Ok(())
    }

    // Group commit across processes (the combining queue).
    fn applied(&mut self, id: (u64, u64)) -> Result<Option<Vec<u8>>> {
        let t = self.txn.open_table(APPLIED)?;
        let got = t.get(id)?.map(|v| v.value().1.to_vec());
        Ok(got)
    }

    fn put_applied(&mut self, id: (u64, u64), at: Millis, outcome: &[u8]) -> Result<()> {
        let mut t = self.txn.open_table(APPLIED)?;
        let old = t.insert(id, (at, outcome))?.map(|v| v.value().0);
        drop(t);
        let mut by_time = self.txn.open_table(APPLIED_BY_TIME)?;
        if let Some(old_at) = old {
            by_time.remove((old_at, id.0, id.1))?;
        }
        by_time.insert((at, id.0, id.1), ())?;
        Ok(())
    }

    fn prune_applied(&mut self, before: Millis, max: usize) -> Result<usize> {
        let mut doomed = Vec::new();
        {
            let by_time = self.txn.open_table(APPLIED_BY_TIME)?;
            for row in by_time.range((i64::MIN, 0u64, 0u64)..)? {
                let (k, _) = row?;
                let (at, nonce, counter) = k.value();
                if at >= before || doomed.len() >= max {
                    break;
                }
                doomed.push((at, nonce, counter));
            }
        }
        let mut by_time = self.txn.open_table(APPLIED_BY_TIME)?;
        let mut applied = self.txn.open_table(APPLIED)?;
        for &(at, nonce, counter) in &doomed {
            by_time.remove((at, nonce, counter))?;
            applied.remove((nonce, counter))?;
        }
        Ok(doomed.len())
    }
}

/// redb's file backend with faults on demand (`store/fault.rs`).
#[cfg(any(test, feature = "fault-injection"))]
#[derive(Debug)]
struct FailingBackend {
    inner: FileBackend,
    faults: Arc<super::fault::Faults>,
}

#[cfg(any(test, feature = "fault-injection"))]
impl FailingBackend {
    fn open(path: &Path, faults: Arc<super::fault::Faults>) -> Result<FailingBackend> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::Storage(format!("cannot open {}: {e}", path.display())))?;
        Ok(FailingBackend {
            inner: FileBackend::new(file)?,
            faults,
        })
    }
}

#[cfg(any(test, feature = "fault-injection"))]
impl StorageBackend for FailingBackend {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.faults.check("set_len")?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.faults.check("sync")?;
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.faults.check("write")?;
        self.inner.write(offset, data)
    }
    fn close(&self) -> std::io::Result<()> {
        self.inner.close()
    }
    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }
    fn lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }
    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }
    fn unlock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }
    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

#[cfg(test)]
#[path = "redb_applied_tests.rs"]
mod applied_tests;
