//! Storage that fails on demand (STYLE habit 10): a vault opened on a path armed here goes
//! through storage that, once a countdown runs out, fails every mutating operation until
//! healed. Two layers can be armed:
//! - [`arm`]: the file under the redb backend (every write, `set_len` and fsync of the
//!   vault file: the failures redb itself must survive; see `store/redb.rs`);
//! - [`arm_operations`]: any backend, wrapped by `FaultyBackend`: every typed write of a
//!   write transaction, every commit and every sync is an operation.
//!
//! Compiled only in unit tests and with the `fault-injection` feature (the integration
//! tests and the fuzzer turn it on); a release build has none of it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{
    AccountRecord, AuditRecord, Backend, Generations, IdempotencyRecord, IdempotencyScope,
    KeyRecord, Meta, ReadTx, ReadTxn, WriteTx, WriteTxn,
};
use crate::error::{Error, Result};
use crate::limits::{LimitOwner, RateLimit};
use crate::model::Millis;
use crate::options::Durability;
use crate::policy::RouteRule;

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

    /// Count one mutating operation: an error once the countdown has run out.
    pub(crate) fn check(&self, what: &str) -> std::io::Result<()> {
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

/// Which storage layer fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layer {
    File,
    Operations,
}

static ARMED: Mutex<Vec<(PathBuf, Layer, Arc<Faults>)>> = Mutex::new(Vec::new());

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Every later open of `path` (in this process) goes through a failing file under the
/// redb backend, driven by the returned switch, which starts healed.
pub fn arm(path: &Path) -> Arc<Faults> {
    arm_layer(path, Layer::File)
}

/// Every later open of `path` (in this process) wraps its backend, whatever it is, in a
/// `FaultyBackend` driven by the returned switch, which starts healed.
pub fn arm_operations(path: &Path) -> Arc<Faults> {
    arm_layer(path, Layer::Operations)
}

fn arm_layer(path: &Path, layer: Layer) -> Arc<Faults> {
    let faults = Arc::new(Faults::default());
    faults.heal();
    let mut armed = ARMED.lock().unwrap_or_else(|e| e.into_inner());
    armed.retain(|(p, _, _)| *p != canonical(path));
    armed.push((canonical(path), layer, faults.clone()));
    faults
}

/// Later opens of `path` use the plain storage again.
pub fn disarm(path: &Path) {
    let mut armed = ARMED.lock().unwrap_or_else(|e| e.into_inner());
    armed.retain(|(p, _, _)| *p != canonical(path));
}

fn armed(path: &Path, layer: Layer) -> Option<Arc<Faults>> {
    let armed = ARMED.lock().unwrap_or_else(|e| e.into_inner());
    if armed.is_empty() {
        return None;
    }
    let path = canonical(path);
    armed
        .iter()
        .find(|(p, l, _)| *p == path && *l == layer)
        .map(|(_, _, f)| f.clone())
}

/// The file-layer switch armed for `path`, if any.
pub(crate) fn armed_for(path: &Path) -> Option<Arc<Faults>> {
    armed(path, Layer::File)
}

/// `backend`, wrapped in a `FaultyBackend` when operations are armed for `path`.
pub(crate) fn wrap_if_armed(path: &Path, backend: Box<dyn Backend>) -> Box<dyn Backend> {
    match armed(path, Layer::Operations) {
        Some(faults) => Box::new(FaultyBackend {
            inner: backend,
            faults,
        }),
        None => backend,
    }
}

/// Any backend, failing on demand: each typed write of a write transaction, each commit
/// and each sync first asks the switch, and fails with `storage` once its countdown has run
/// out (the transaction is then dropped: nothing of it lands). Reads never fail.
pub(crate) struct FaultyBackend {
    inner: Box<dyn Backend>,
    faults: Arc<Faults>,
}

fn injected(faults: &Faults, what: &str) -> Result<()> {
    faults.check(what).map_err(Error::storage)
}

impl Backend for FaultyBackend {
    fn read(&self) -> Result<ReadTx> {
        self.inner.read()
    }
    fn write(&self) -> Result<WriteTx<'_>> {
        Ok(Box::new(FaultyWrite {
            inner: self.inner.write()?,
            faults: &self.faults,
        }))
    }
    fn sync(&self) -> Result<()> {
        injected(&self.faults, "sync")?;
        self.inner.sync()
    }
    fn created(&self) -> bool {
        self.inner.created()
    }
    fn read_txns(&self) -> u64 {
        self.inner.read_txns()
    }
    fn commits(&self) -> u64 {
        self.inner.commits()
    }
    fn generations(&self) -> Generations {
        self.inner.generations()
    }
    fn maintain(&self) {
        self.inner.maintain();
    }
    fn distrust_reason(&self) -> Option<String> {
        self.inner.distrust_reason()
    }
}

struct FaultyWrite<'a> {
    inner: WriteTx<'a>,
    faults: &'a Faults,
}

impl ReadTxn for FaultyWrite<'_> {
    fn meta(&self, name: Meta) -> Result<Option<Vec<u8>>> {
        self.inner.meta(name)
    }
    fn account(&self, id: &str) -> Result<Option<AccountRecord>> {
        self.inner.account(id)
    }
    fn balance(&self, id: &str) -> Result<Option<(u64, u64)>> {
        self.inner.balance(id)
    }
    fn key(&self, key_id: &str) -> Result<Option<KeyRecord>> {
        self.inner.key(key_id)
    }
    fn account_ids(&self) -> Result<Vec<String>> {
        self.inner.account_ids()
    }
    fn keys_of(&self, account_id: Option<&str>) -> Result<Vec<KeyRecord>> {
        self.inner.keys_of(account_id)
    }
    fn limits(&self, owner: LimitOwner<'_>) -> Result<Vec<RateLimit>> {
        self.inner.limits(owner)
    }
    fn routes(&self) -> Result<Vec<RouteRule>> {
        self.inner.routes()
    }
    fn idempotent(
        &self,
        account_id: &str,
        scope: IdempotencyScope,
        key: &str,
    ) -> Result<Option<(Millis, IdempotencyRecord)>> {
        self.inner.idempotent(account_id, scope, key)
    }
    fn audit(
        &self,
        key_id: Option<&str>,
        account_id: Option<&str>,
        action: Option<&str>,
        since: Option<Millis>,
        limit: usize,
    ) -> Result<Vec<(u64, AuditRecord)>> {
        self.inner.audit(key_id, account_id, action, since, limit)
    }
    fn last_used(&self, key_id: &str) -> Result<Option<Millis>> {
        self.inner.last_used(key_id)
    }
    fn usage(&self, key_id: &str) -> Result<(Option<(i64, u64, u64)>, Vec<(i64, u64)>)> {
        self.inner.usage(key_id)
    }
    fn signatures_recorded(&self) -> Result<u64> {
        self.inner.signatures_recorded()
    }
    fn export(&self, sink: &mut dyn FnMut(super::migrate::Row) -> Result<()>) -> Result<()> {
        self.inner.export(sink)
    }
    // Events and usage reports.
    fn alerts(&self, account_id: &str) -> Result<Vec<u64>> {
        self.inner.alerts(account_id)
    }
    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        self.inner.events_after(after, limit)
    }
    fn event_mark(&self, name: &str) -> Result<Option<u64>> {
        self.inner.event_mark(name)
    }
    fn report_cells(
        &self,
        account_id: &str,
        since: Millis,
        until: Millis,
    ) -> Result<Vec<crate::events::ReportCell>> {
        self.inner.report_cells(account_id, since, until)
    }

    // Holds.
    fn hold(&self, id: &str) -> Result<Option<super::HoldRecord>> {
        self.inner.hold(id)
    }
    fn active_holds(&self, account_id: Option<&str>) -> Result<Vec<super::HoldRecord>> {
        self.inner.active_holds(account_id)
    }
    fn holds_due(&self, now: Millis, max: usize) -> Result<Vec<super::HoldRecord>> {
        self.inner.holds_due(now, max)
    }
}

impl WriteTxn for FaultyWrite<'_> {
    fn put_meta(&mut self, name: Meta, value: &[u8]) -> Result<()> {
        injected(self.faults, "put_meta")?;
        self.inner.put_meta(name, value)
    }
    fn put_account(&mut self, id: &str, rec: &AccountRecord) -> Result<()> {
        injected(self.faults, "put_account")?;
        self.inner.put_account(id, rec)
    }
    fn put_balance(&mut self, id: &str, credits: u64, total: u64) -> Result<()> {
        injected(self.faults, "put_balance")?;
        self.inner.put_balance(id, credits, total)
    }
    fn put_key(&mut self, rec: &KeyRecord) -> Result<()> {
        injected(self.faults, "put_key")?;
        self.inner.put_key(rec)
    }
    fn put_limit(&mut self, owner: LimitOwner<'_>, def: &RateLimit) -> Result<Option<RateLimit>> {
        injected(self.faults, "put_limit")?;
        self.inner.put_limit(owner, def)
    }
    fn remove_limit(&mut self, owner: LimitOwner<'_>, name: &str) -> Result<Option<RateLimit>> {
        injected(self.faults, "remove_limit")?;
        self.inner.remove_limit(owner, name)
    }
    fn insert_route(&mut self, rule: &RouteRule) -> Result<bool> {
        injected(self.faults, "insert_route")?;
        self.inner.insert_route(rule)
    }
    fn remove_route(&mut self, method: &str, pattern: &str) -> Result<Option<RouteRule>> {
        injected(self.faults, "remove_route")?;
        self.inner.remove_route(method, pattern)
    }
    fn put_idempotent(
        &mut self,
        account_id: &str,
        scope: IdempotencyScope,
        key: &str,
        at: Millis,
        rec: &IdempotencyRecord,
    ) -> Result<()> {
        injected(self.faults, "put_idempotent")?;
        self.inner.put_idempotent(account_id, scope, key, at, rec)
    }
    fn prune_idempotent(&mut self, before: Millis, max: usize) -> Result<usize> {
        injected(self.faults, "prune_idempotent")?;
        self.inner.prune_idempotent(before, max)
    }
    fn prune_refusals(&mut self, before: Millis, max: usize) -> Result<usize> {
        injected(self.faults, "prune_refusals")?;
        self.inner.prune_refusals(before, max)
    }
    fn record_signature(&mut self, t_seconds: i64, mac: &[u8]) -> Result<bool> {
        injected(self.faults, "record_signature")?;
        self.inner.record_signature(t_seconds, mac)
    }
    fn prune_signatures(&mut self, before: i64, max: usize) -> Result<usize> {
        injected(self.faults, "prune_signatures")?;
        self.inner.prune_signatures(before, max)
    }
    fn append_audit(&mut self, rec: &AuditRecord) -> Result<u64> {
        injected(self.faults, "append_audit")?;
        self.inner.append_audit(rec)
    }
    fn import(&mut self, row: &super::migrate::Row) -> Result<()> {
        injected(self.faults, "import")?;
        self.inner.import(row)
    }
    fn add_usage(
        &mut self,
        key_id: &str,
        last_used: Option<Millis>,
        granted: u64,
        refused: u64,
        hour: Millis,
    ) -> Result<()> {
        injected(self.faults, "add_usage")?;
        self.inner
            .add_usage(key_id, last_used, granted, refused, hour)
    }
    // Events and usage reports.
    fn put_alerts(&mut self, account_id: &str, thresholds: &[u64]) -> Result<()> {
        injected(self.faults, "put_alerts")?;
        self.inner.put_alerts(account_id, thresholds)
    }
    fn append_event(&mut self, record: &[u8]) -> Result<u64> {
        injected(self.faults, "append_event")?;
        self.inner.append_event(record)
    }
    fn put_event_mark(&mut self, name: &str, value: Option<u64>) -> Result<()> {
        injected(self.faults, "put_event_mark")?;
        self.inner.put_event_mark(name, value)
    }
    fn add_report_cell(&mut self, cell: &crate::events::ReportCell) -> Result<()> {
        injected(self.faults, "add_report_cell")?;
        self.inner.add_report_cell(cell)
    }
    fn commit(self: Box<Self>, durability: Durability) -> Result<()> {
        injected(self.faults, "commit")?;
        self.inner.commit(durability)
    }
    #[cfg(test)]
    fn commit_and_die(self: Box<Self>) -> Result<()> {
        self.inner.commit_and_die()
    }
    // Holds.
    fn put_hold(&mut self, rec: &super::HoldRecord) -> Result<()> {
        injected(self.faults, "put_hold")?;
        self.inner.put_hold(rec)
    }
}
