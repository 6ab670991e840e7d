//! Storage: the narrow interface the vault needs, implemented over one redb file.
//!
//! The vault's logic (validation, check order, caches) never touches redb directly. It
//! opens a [`ReadTx`] or a [`WriteTx`] and calls typed methods (`key`, `put_key`,
//! `balance`, `append_audit`, …). A second backend (for deployments that outgrow one
//! machine) implements these same methods; nothing above this module changes.
//!
//! Layout (see `docs/format.md`): every record is a version byte followed by a postcard
//! encoding of a `*Record` struct; balances are a fixed-width `(u64, u64)` tuple; integers
//! stored by redb are little-endian.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::audit::AuditAction;
use crate::error::{Error, Result};
use crate::model::Millis;
use crate::policy::RouteRule;
use crate::shm::SlotKind;

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

/// The on-disk format version, stored under `meta["format"]`.
pub(crate) const FORMAT_VERSION: u32 = 1;
const RECORD_VERSION: u8 = 1;

/// A stored account (its balance lives in its own fixed-width table).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct AccountRecord {
    pub created_at: Millis,
    /// Serialized JSON object.
    pub metadata: String,
    /// Credits set back to an amount each period (SPEC §13).
    pub refill: Option<crate::model::Refill>,
    /// Start of the last period whose refill was applied.
    pub refilled_at: Option<Millis>,
}

/// A stored key. Holds the argon2 hash: never printed (Debug is hand-written).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct KeyRecord {
    pub key_id: String,
    pub prefix: String,
    pub account_id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub operator: bool,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub disabled: bool,
    pub revoked_at: Option<Millis>,
    pub secret_hash: String,
    /// Encrypted signing secret (SPEC §7), reserved for request signing.
    pub signing_secret: Option<Vec<u8>>,
    pub rotated_from: Option<String>,
    /// Serialized JSON object.
    pub metadata: String,
}

impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("key_id", &self.key_id)
            .field("prefix", &self.prefix)
            .field("account_id", &self.account_id)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("operator", &self.operator)
            .field("expires_at", &self.expires_at)
            .field("disabled", &self.disabled)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// A stored audit entry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct AuditRecord {
    pub time: Millis,
    pub action: String,
    pub key_id: Option<String>,
    pub account_id: Option<String>,
    pub actor: Option<String>,
    /// Serialized JSON object.
    pub details: String,
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut out = vec![RECORD_VERSION];
    let body = postcard::to_allocvec(value).map_err(Error::storage)?;
    out.extend_from_slice(&body);
    Ok(out)
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, body)) => {
            postcard::from_bytes(body).map_err(|_| Error::Storage(format!("corrupt {what} record")))
        }
        _ => Err(Error::Storage(format!(
            "{what} record has an unknown format version"
        ))),
    }
}

/// Decode one stored record of each kind from raw bytes, for the fuzzer: corrupt bytes must
/// give a `storage` error, never a panic. Returns which decodes succeeded.
#[doc(hidden)]
pub fn fuzz_decode_records(bytes: &[u8]) -> [bool; 3] {
    [
        decode::<AccountRecord>(bytes, "account").is_ok(),
        decode::<KeyRecord>(bytes, "key").is_ok(),
        decode::<AuditRecord>(bytes, "audit").is_ok(),
    ]
}

/// Storage that fails on demand (STYLE habit 10): a vault opened on a path armed here goes
/// through a redb backend that wraps the real file and, once its countdown runs out, fails
/// every write, `set_len` and `fsync` with an I/O error, until healed. Compiled only in unit
/// tests and with the `fault-injection` feature (the integration tests and the fuzzer turn
/// it on); a release build has none of it.
#[cfg(any(test, feature = "fault-injection"))]
#[doc(hidden)]
pub mod fault {
    use std::fs::OpenOptions;
    use std::ops::Bound;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use redb::backends::FileBackend;
    use redb::{BackendError, StorageBackend};

    use crate::error::{Error, Result};

    /// The switch shared by a test and the backends opened on its path.
    #[derive(Debug, Default)]
    pub struct Faults {
        /// Mutating operations still allowed before failing; negative: never fail.
        countdown: AtomicI64,
        failures: AtomicU64,
        operations: AtomicU64,
    }

    impl Faults {
        /// Let `n` more writes/syncs succeed, then fail every one until [`Faults::heal`].
        pub fn fail_after(&self, n: u64) {
            self.countdown
                .store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::SeqCst);
        }
        /// Fail from the next write or sync on.
        pub fn fail_now(&self) {
            self.fail_after(0);
        }
        /// Stop failing.
        pub fn heal(&self) {
            self.countdown.store(-1, Ordering::SeqCst);
        }
        /// How many operations failed so far.
        pub fn failures(&self) -> u64 {
            self.failures.load(Ordering::SeqCst)
        }
        /// How many mutating operations (write, set_len, sync) were attempted.
        pub fn operations(&self) -> u64 {
            self.operations.load(Ordering::SeqCst)
        }

        fn check(&self, what: &str) -> std::io::Result<()> {
            self.operations.fetch_add(1, Ordering::SeqCst);
            let left = self
                .countdown
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                    (c > 0).then(|| c - 1)
                });
            match left {
                // Disarmed (negative) or still counting down.
                Err(c) if c < 0 => Ok(()),
                Ok(_) => Ok(()),
                Err(_) => {
                    self.failures.fetch_add(1, Ordering::SeqCst);
                    Err(std::io::Error::other(format!("injected fault: {what}")))
                }
            }
        }
    }

    static ARMED: Mutex<Vec<(PathBuf, Arc<Faults>)>> = Mutex::new(Vec::new());

    fn canonical(path: &Path) -> PathBuf {
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
    }

    /// Every later open of `path` (in this process) goes through a failing backend driven
    /// by the returned switch, which starts healed.
    pub fn arm(path: &Path) -> Arc<Faults> {
        let faults = Arc::new(Faults::default());
        faults.heal();
        let mut armed = ARMED.lock().unwrap_or_else(|e| e.into_inner());
        armed.retain(|(p, _)| *p != canonical(path));
        armed.push((canonical(path), faults.clone()));
        faults
    }

    /// Later opens of `path` use the plain file again.
    pub fn disarm(path: &Path) {
        let mut armed = ARMED.lock().unwrap_or_else(|e| e.into_inner());
        armed.retain(|(p, _)| *p != canonical(path));
    }

    pub(crate) fn armed_for(path: &Path) -> Option<Arc<Faults>> {
        let armed = ARMED.lock().unwrap_or_else(|e| e.into_inner());
        if armed.is_empty() {
            return None;
        }
        let path = canonical(path);
        armed
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, f)| f.clone())
    }

    /// redb's file backend with faults on demand.
    #[derive(Debug)]
    pub(crate) struct FailingBackend {
        inner: FileBackend,
        faults: Arc<Faults>,
    }

    impl FailingBackend {
        pub(crate) fn open(path: &Path, faults: Arc<Faults>) -> Result<FailingBackend> {
            let file = OpenOptions::new()
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
}

/// Whether the store may hold other processes (MultiWriter) or only this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sharing {
    MultiProcess,
    Exclusive,
}

/// The redb-backed store.
pub(crate) struct Store {
    db: Database,
    read_txns: AtomicU64,
    commits: AtomicU64,
    /// This open created the vault (wrote its format marker and identity).
    created: bool,
}

impl Store {
    /// Open the store in `file`, the vault file at `path` already opened and checked by
    /// `crate::files::open_vault_file` (redb uses that very descriptor).
    pub(crate) fn open(
        path: &Path,
        file: std::fs::File,
        sharing: Sharing,
        cache_bytes: usize,
    ) -> Result<Store> {
        let mode = match sharing {
            Sharing::MultiProcess => redb::ConcurrencyMode::MultiWriter,
            Sharing::Exclusive => redb::ConcurrencyMode::ExclusiveWriter,
        };
        let mut builder = redb::Builder::new();
        builder
            .set_cache_size(cache_bytes)
            .set_concurrency_mode(mode);
        #[cfg(any(test, feature = "fault-injection"))]
        let db = match fault::armed_for(path) {
            Some(faults) => {
                builder.create_with_backend(fault::FailingBackend::open(path, faults)?)?
            }
            None => builder.create_with_backend(redb::backends::FileBackend::new(file)?)?,
        };
        #[cfg(not(any(test, feature = "fault-injection")))]
        let db = {
            let _ = path;
            builder.create_with_backend(redb::backends::FileBackend::new(file)?)?
        };
        let mut store = Store {
            db,
            read_txns: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            created: false,
        };
        store.created = store.init_tables()?;
        Ok(store)
    }

    /// Whether this open created the vault.
    pub(crate) fn created(&self) -> bool {
        self.created
    }

    /// Create the tables, format marker and identity of a new vault; `true` if this call
    /// did (`false`: the vault existed).
    fn init_tables(&self) -> Result<bool> {
        // Skip the write when the format marker is already there (the common reopen).
        if let Some(v) = self.read()?.meta("format")? {
            return check_format(&v).map(|()| false);
        }
        let mut tx = self.write()?;
        if let Some(v) = tx.meta("format")? {
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
        tx.put_meta("format", &FORMAT_VERSION.to_le_bytes())?;
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(Error::storage)?;
        tx.put_meta("vault_id", &id)?;
        tx.commit(Durability::Immediate)?;
        Ok(true)
    }

    /// Begin a read transaction (counted: the hot path must not open one).
    pub(crate) fn read(&self) -> Result<ReadTx> {
        self.read_txns.fetch_add(1, Ordering::Relaxed);
        Ok(ReadTx {
            txn: self.db.begin_read()?,
        })
    }

    /// Begin a write transaction. One at a time across every process.
    pub(crate) fn write(&self) -> Result<WriteTx<'_>> {
        // No quick-repair: MultiWriter always records the allocator state, and in
        // exclusive mode it would add a second fsync (two-phase commit) to every commit.
        let txn = self.db.begin_write()?;
        Ok(WriteTx {
            txn,
            touched: Vec::new(),
            commits: &self.commits,
        })
    }

    pub(crate) fn read_txns(&self) -> u64 {
        self.read_txns.load(Ordering::Relaxed)
    }

    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
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

/// Read methods shared by both transaction kinds.
macro_rules! read_methods {
    () => {
        pub(crate) fn meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
            // A brand-new file has no tables yet: that reads as "no marker".
            let t = match self.txn.open_table(META) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let v = t.get(name)?.map(|v| v.value().to_vec());
            Ok(v)
        }

        pub(crate) fn account(&self, id: &str) -> Result<Option<AccountRecord>> {
            let t = self.txn.open_table(ACCOUNTS)?;
            let v = t.get(id)?.map(|v| decode(v.value(), "account")).transpose();
            v
        }

        pub(crate) fn balance(&self, id: &str) -> Result<Option<(u64, u64)>> {
            let t = self.txn.open_table(BALANCES)?;
            let v = t.get(id)?.map(|v| v.value());
            Ok(v)
        }

        pub(crate) fn key(&self, key_id: &str) -> Result<Option<KeyRecord>> {
            let t = self.txn.open_table(KEYS)?;
            let v = t.get(key_id)?.map(|v| decode(v.value(), "key")).transpose();
            v
        }

        pub(crate) fn account_ids(&self) -> Result<Vec<String>> {
            let t = self.txn.open_table(ACCOUNTS)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, _) = row?;
                out.push(k.value().to_string());
            }
            Ok(out)
        }

        pub(crate) fn keys_of(&self, account_id: Option<&str>) -> Result<Vec<KeyRecord>> {
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
        pub(crate) fn limits(&self, owner: &str) -> Result<Vec<crate::limits::RateLimit>> {
            let t = self.txn.open_table(RATELIMITS)?;
            let mut out = Vec::new();
            for row in t.range((owner, "")..)? {
                let (k, v) = row?;
                let (o, name) = k.value();
                if o != owner {
                    break;
                }
                let (limit, duration_ms, auto_apply) = v.value();
                out.push(crate::limits::RateLimit {
                    name: name.to_string(),
                    limit,
                    duration_ms,
                    auto_apply,
                });
            }
            Ok(out)
        }

        pub(crate) fn routes(&self) -> Result<Vec<RouteRule>> {
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

        pub(crate) fn idempotent(
            &self,
            account_id: &str,
            key: &str,
        ) -> Result<Option<(Millis, Vec<u8>)>> {
            let t = self.txn.open_table(IDEMPOTENCY)?;
            let v = t.get((account_id, key))?.map(|v| {
                let (at, bytes) = v.value();
                (at, bytes.to_vec())
            });
            Ok(v)
        }

        /// Audit entries newest first, filtered; stops after `limit` matches or at `since`.
        pub(crate) fn audit(
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
        pub(crate) fn last_used(&self, key_id: &str) -> Result<Option<Millis>> {
            let t = self.txn.open_table(USAGE_TOTALS)?;
            let last = t
                .get(key_id)?
                .map(|v| v.value().0)
                .filter(|&l| l != i64::MIN);
            Ok(last)
        }

        /// (last_used_at, granted, refused) and hourly buckets (oldest first).
        pub(crate) fn usage(
            &self,
            key_id: &str,
        ) -> Result<(Option<(i64, u64, u64)>, Vec<(i64, u64)>)> {
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
    };
}

/// A read-only snapshot. Never held across calls (SPEC §4: a pinned snapshot stops redb
/// from reusing pages).
pub(crate) struct ReadTx {
    txn: ReadTransaction,
}

#[allow(dead_code)] // each transaction kind uses a different subset of the read methods
impl ReadTx {
    read_methods!();

    /// How many used signatures are recorded (`single_use_signatures`).
    pub(crate) fn signatures_recorded(&self) -> Result<u64> {
        match self.txn.open_table(SIGNATURES_SEEN) {
            Ok(t) => Ok(redb::ReadableTableMetadata::len(&t)?),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }
}

/// One write transaction: every management change and every debit batch is exactly one.
/// It records which generation slots its changes touch so the commit can bump them.
pub(crate) struct WriteTx<'s> {
    txn: WriteTransaction,
    touched: Vec<(SlotKind, String)>,
    commits: &'s AtomicU64,
}

#[allow(dead_code)]
impl<'s> WriteTx<'s> {
    read_methods!();

    fn touch(&mut self, kind: SlotKind, id: &str) {
        if !self.touched.iter().any(|(k, i)| *k == kind && i == id) {
            self.touched.push((kind, id.to_string()));
        }
    }

    pub(crate) fn put_meta(&mut self, name: &str, value: &[u8]) -> Result<()> {
        self.txn.open_table(META)?.insert(name, value)?;
        Ok(())
    }

    pub(crate) fn put_account(&mut self, id: &str, rec: &AccountRecord) -> Result<()> {
        let bytes = encode(rec)?;
        self.txn
            .open_table(ACCOUNTS)?
            .insert(id, bytes.as_slice())?;
        self.touch(SlotKind::Account, id);
        Ok(())
    }

    pub(crate) fn put_balance(&mut self, id: &str, credits: u64, total: u64) -> Result<()> {
        self.txn
            .open_table(BALANCES)?
            .insert(id, (credits, total))?;
        self.touch(SlotKind::Account, id);
        Ok(())
    }

    /// Insert or replace a key record (and its account index entry).
    pub(crate) fn put_key(&mut self, rec: &KeyRecord) -> Result<()> {
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

    /// Set (insert or replace) a rate limit; `kind`/`id` name the owner's generation slot.
    pub(crate) fn put_limit(
        &mut self,
        owner: &str,
        slot: (SlotKind, &str),
        def: &crate::limits::RateLimit,
    ) -> Result<Option<crate::limits::RateLimit>> {
        let mut t = self.txn.open_table(RATELIMITS)?;
        let old = t
            .insert(
                (owner, def.name.as_str()),
                (def.limit, def.duration_ms, def.auto_apply),
            )?
            .map(|v| {
                let (limit, duration_ms, auto_apply) = v.value();
                crate::limits::RateLimit {
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
    pub(crate) fn remove_limit(
        &mut self,
        owner: &str,
        slot: (SlotKind, &str),
        name: &str,
    ) -> Result<Option<crate::limits::RateLimit>> {
        let mut t = self.txn.open_table(RATELIMITS)?;
        let old = t.remove((owner, name))?.map(|v| {
            let (limit, duration_ms, auto_apply) = v.value();
            crate::limits::RateLimit {
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
    pub(crate) fn insert_route(&mut self, rule: &RouteRule) -> Result<bool> {
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
    pub(crate) fn remove_route(
        &mut self,
        method: &str,
        pattern: &str,
    ) -> Result<Option<RouteRule>> {
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
    pub(crate) fn put_idempotent(
        &mut self,
        account_id: &str,
        key: &str,
        at: Millis,
        value: &[u8],
    ) -> Result<()> {
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
    pub(crate) fn prune_idempotent(&mut self, before: Millis, max: usize) -> Result<usize> {
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
    pub(crate) fn prune_refusals(&mut self, before: Millis, max: usize) -> Result<usize> {
        const CURSOR: &str = "audit_prune_cursor";
        let cursor = match self.meta(CURSOR)? {
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
            self.put_meta(CURSOR, &next.to_le_bytes())?;
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
    pub(crate) fn record_signature(&mut self, t_seconds: i64, mac: &[u8]) -> Result<bool> {
        let mut t = self.txn.open_table(SIGNATURES_SEEN)?;
        let fresh = t.insert((t_seconds, mac), ())?.is_none();
        Ok(fresh)
    }

    /// Forget up to `max` used signatures older than `before` (seconds): a signature that
    /// old is refused by the window anyway. Returns how many.
    pub(crate) fn prune_signatures(&mut self, before: i64, max: usize) -> Result<usize> {
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
    pub(crate) fn append_audit(&mut self, rec: &AuditRecord) -> Result<u64> {
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
    pub(crate) fn add_usage(
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

    /// Commit without bumping generation slots (only for changes no cache reads, such as
    /// usage counters, batched audit entries and the format marker).
    pub(crate) fn commit(self, durability: Durability) -> Result<()> {
        self.into_parts().1.commit(durability)
    }

    /// Consume the transaction for a commit the caller wraps (the vault bumps generation
    /// slots around it): returns the touched slots and a committer.
    pub(crate) fn into_parts(self) -> (Vec<(SlotKind, String)>, Committer<'s>) {
        let WriteTx {
            txn,
            touched,
            commits,
        } = self;
        (touched, Committer { txn, commits })
    }
}

/// The commit half of a [`WriteTx`].
pub(crate) struct Committer<'s> {
    txn: WriteTransaction,
    commits: &'s AtomicU64,
}

impl Committer<'_> {
    pub(crate) fn commit(mut self, durability: Durability) -> Result<()> {
        self.txn
            .set_durability(durability)
            .map_err(Error::storage)?;
        self.txn.commit()?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
