//! The transactions of a PostgreSQL vault and their typed operations (the `ReadTxn` and
//! `WriteTxn` of `store`).

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::listener::{body, CHANNEL};
use super::{big, numeric, pg_err, unsigned, Conn, CHANGES_KEPT};
use crate::audit::AuditAction;
use crate::error::{Error, Result};
use crate::limits::{LimitOwner, RateLimit};
use crate::model::Millis;
use crate::options::Durability;
use crate::policy::RouteRule;
use crate::shm::{Sidecar, SlotKind};
use crate::store::migrate::Row;
use crate::store::records::{decode, encode};
use crate::store::{
    idempotency_key, meta_key, owner_key, owner_slot, AccountRecord, AuditRecord, HoldRecord,
    IdempotencyRecord, IdempotencyScope, KeyRecord, Meta, ReadTxn, WriteTxn,
};

/// One transaction on one pooled connection: a read snapshot, or a write transaction
/// holding the writers' advisory lock (both kinds share the type; only writes commit).
pub(super) struct PgRead {
    pub(super) conn: RefCell<Conn>,
    /// What this write transaction changed, for the NOTIFY and the local slots.
    pub(super) touched: Vec<(SlotKind, String)>,
    /// This process's slots (write transactions only).
    pub(super) slots: Option<Arc<Sidecar>>,
}

impl PgRead {
    pub(super) fn query(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>> {
        self.conn
            .borrow_mut()
            .c()
            .query(sql, params)
            .map_err(pg_err)
    }

    pub(super) fn opt(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Option<postgres::Row>> {
        self.conn
            .borrow_mut()
            .c()
            .query_opt(sql, params)
            .map_err(pg_err)
    }

    pub(super) fn exec(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<u64> {
        self.conn
            .borrow_mut()
            .c()
            .execute(sql, params)
            .map_err(pg_err)
    }

    fn touch(&mut self, kind: SlotKind, id: &str) {
        if !self.touched.iter().any(|(k, i)| *k == kind && i == id) {
            self.touched.push((kind, id.to_string()));
        }
    }

    pub(super) fn meta_raw(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .opt("SELECT value FROM kl_meta WHERE name = $1", &[&name])?
            .map(|r| r.get(0)))
    }

    pub(super) fn put_meta_raw(&mut self, name: &str, value: &[u8]) -> Result<()> {
        self.exec(
            "INSERT INTO kl_meta (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
            &[&name, &value],
        )?;
        Ok(())
    }
}

fn limit_of(row: &postgres::Row) -> RateLimit {
    RateLimit {
        name: row.get(0),
        limit: unsigned(row.get(1)),
        duration_ms: unsigned(row.get(2)),
        auto_apply: row.get(3),
    }
}

impl ReadTxn for PgRead {
    fn meta(&self, name: Meta) -> Result<Option<Vec<u8>>> {
        self.meta_raw(meta_key(name))
    }

    fn account(&self, id: &str) -> Result<Option<AccountRecord>> {
        self.opt("SELECT record FROM kl_accounts WHERE id = $1", &[&id])?
            .map(|r| decode(r.get::<_, &[u8]>(0), "account"))
            .transpose()
    }

    fn balance(&self, id: &str) -> Result<Option<(u64, u64)>> {
        self.opt(
            "SELECT credits::text, total::text FROM kl_balances WHERE id = $1",
            &[&id],
        )?
        .map(|r| Ok((numeric(r.get(0))?, numeric(r.get(1))?)))
        .transpose()
    }

    fn key(&self, key_id: &str) -> Result<Option<KeyRecord>> {
        self.opt("SELECT record FROM kl_keys WHERE key_id = $1", &[&key_id])?
            .map(|r| decode(r.get::<_, &[u8]>(0), "key"))
            .transpose()
    }

    fn account_ids(&self) -> Result<Vec<String>> {
        Ok(self
            .query("SELECT id FROM kl_accounts ORDER BY id", &[])?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn keys_of(&self, account_id: Option<&str>) -> Result<Vec<KeyRecord>> {
        let rows = match account_id {
            None => self.query("SELECT record FROM kl_keys ORDER BY key_id", &[])?,
            Some(a) => self.query(
                "SELECT record FROM kl_keys WHERE account_id = $1 ORDER BY key_id",
                &[&a],
            )?,
        };
        rows.iter()
            .map(|r| decode(r.get::<_, &[u8]>(0), "key"))
            .collect()
    }

    fn limits(&self, owner: LimitOwner<'_>) -> Result<Vec<RateLimit>> {
        let owner = owner_key(owner);
        Ok(self
            .query(
                "SELECT name, lim, duration_ms, auto_apply FROM kl_ratelimits \
                 WHERE owner = $1 ORDER BY name",
                &[&owner],
            )?
            .iter()
            .map(limit_of)
            .collect())
    }

    fn routes(&self) -> Result<Vec<RouteRule>> {
        Ok(self
            .query(
                "SELECT method, pattern, scope, cost FROM kl_routes ORDER BY method, pattern",
                &[],
            )?
            .iter()
            .map(|r| RouteRule {
                method: r.get(0),
                pattern: r.get(1),
                scope: r.get(2),
                cost: unsigned(r.get(3)),
            })
            .collect())
    }

    fn idempotent(
        &self,
        account_id: &str,
        scope: IdempotencyScope,
        key: &str,
    ) -> Result<Option<(Millis, IdempotencyRecord)>> {
        let key = idempotency_key(scope, key);
        let Some(row) = self.opt(
            "SELECT at, record FROM kl_idempotency WHERE account_id = $1 AND key = $2",
            &[&account_id, &key],
        )?
        else {
            return Ok(None);
        };
        Ok(Some((
            row.get(0),
            IdempotencyRecord::decode(row.get::<_, &[u8]>(1))?,
        )))
    }

    /// Newest first, with the redb backend's exact semantics: the narrowest index is
    /// walked (here: the key or account column), and the walk stops at the first entry
    /// older than `since` or after `limit` matches.
    fn audit(
        &self,
        key_id: Option<&str>,
        account_id: Option<&str>,
        action: Option<&str>,
        since: Option<Millis>,
        limit: usize,
    ) -> Result<Vec<(u64, AuditRecord)>> {
        const PAGE: i64 = 512;
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let mut below = i64::MAX;
        loop {
            let rows = match (key_id, account_id) {
                (Some(k), _) => self.query(
                    "SELECT seq, record FROM kl_audit WHERE key_id = $1 AND seq < $2 \
                     ORDER BY seq DESC LIMIT $3",
                    &[&k, &below, &PAGE],
                )?,
                (None, Some(a)) => self.query(
                    "SELECT seq, record FROM kl_audit WHERE account_id = $1 AND seq < $2 \
                     ORDER BY seq DESC LIMIT $3",
                    &[&a, &below, &PAGE],
                )?,
                (None, None) => self.query(
                    "SELECT seq, record FROM kl_audit WHERE seq < $1 ORDER BY seq DESC LIMIT $2",
                    &[&below, &PAGE],
                )?,
            };
            let n = rows.len();
            for row in rows {
                let seq: i64 = row.get(0);
                below = seq;
                let rec: AuditRecord = decode(row.get::<_, &[u8]>(1), "audit")?;
                if since.is_some_and(|s| rec.time < s) {
                    return Ok(out);
                }
                let ok = key_id.is_none_or(|k| rec.key_id.as_deref() == Some(k))
                    && account_id.is_none_or(|a| rec.account_id.as_deref() == Some(a))
                    && action.is_none_or(|a| rec.action == a);
                if ok {
                    out.push((unsigned(seq), rec));
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            if i64::try_from(n).unwrap_or(0) < PAGE {
                return Ok(out);
            }
        }
    }

    fn last_used(&self, key_id: &str) -> Result<Option<Millis>> {
        Ok(self
            .opt(
                "SELECT last_used FROM kl_usage_totals WHERE key_id = $1",
                &[&key_id],
            )?
            .map(|r| r.get::<_, i64>(0))
            .filter(|&l| l != i64::MIN))
    }

    #[allow(clippy::type_complexity)]
    fn usage(&self, key_id: &str) -> Result<(Option<(i64, u64, u64)>, Vec<(i64, u64)>)> {
        let total = self
            .opt(
                "SELECT last_used, granted, refused FROM kl_usage_totals WHERE key_id = $1",
                &[&key_id],
            )?
            .map(|r| (r.get(0), unsigned(r.get(1)), unsigned(r.get(2))));
        let buckets = self
            .query(
                "SELECT hour, granted FROM kl_usage_hourly WHERE key_id = $1 ORDER BY hour",
                &[&key_id],
            )?
            .iter()
            .map(|r| (r.get(0), unsigned(r.get(1))))
            .collect();
        Ok((total, buckets))
    }

    fn signatures_recorded(&self) -> Result<u64> {
        let n: i64 = self
            .query("SELECT count(*) FROM kl_signatures_seen", &[])?
            .first()
            .map_or(0, |r| r.get(0));
        Ok(unsigned(n))
    }

    fn export(&self, sink: &mut dyn FnMut(Row) -> Result<()>) -> Result<()> {
        for r in self.query("SELECT name, value FROM kl_meta ORDER BY name", &[])? {
            sink(Row::Meta {
                name: r.get(0),
                value: r.get(1),
            })?;
        }
        for r in self.query("SELECT id, record FROM kl_accounts ORDER BY id", &[])? {
            sink(Row::Account {
                id: r.get(0),
                record: r.get(1),
            })?;
        }
        for r in self.query(
            "SELECT id, credits::text, total::text FROM kl_balances ORDER BY id",
            &[],
        )? {
            sink(Row::Balance {
                id: r.get(0),
                credits: numeric(r.get(1))?,
                total: numeric(r.get(2))?,
            })?;
        }
        for r in self.query(
            "SELECT key_id, account_id, record FROM kl_keys ORDER BY key_id",
            &[],
        )? {
            sink(Row::Key {
                key_id: r.get(0),
                account_id: r.get(1),
                record: r.get(2),
            })?;
        }
        for r in self.query(
            "SELECT method, pattern, scope, cost FROM kl_routes ORDER BY method, pattern",
            &[],
        )? {
            sink(Row::Route {
                method: r.get(0),
                pattern: r.get(1),
                scope: r.get(2),
                cost: unsigned(r.get(3)),
            })?;
        }
        for r in self.query(
            "SELECT account_id, key, at, record FROM kl_idempotency ORDER BY account_id, key",
            &[],
        )? {
            sink(Row::Idempotency {
                account_id: r.get(0),
                key: r.get(1),
                at: r.get(2),
                record: r.get(3),
            })?;
        }
        for r in self.query("SELECT seq, record FROM kl_audit ORDER BY seq", &[])? {
            sink(Row::Audit {
                seq: unsigned(r.get(0)),
                record: r.get(1),
            })?;
        }
        for r in self.query(
            "SELECT key_id, last_used, granted, refused FROM kl_usage_totals ORDER BY key_id",
            &[],
        )? {
            sink(Row::UsageTotal {
                key_id: r.get(0),
                last_used: r.get(1),
                granted: unsigned(r.get(2)),
                refused: unsigned(r.get(3)),
            })?;
        }
        for r in self.query(
            "SELECT key_id, hour, granted FROM kl_usage_hourly ORDER BY key_id, hour",
            &[],
        )? {
            sink(Row::UsageHour {
                key_id: r.get(0),
                hour: r.get(1),
                granted: unsigned(r.get(2)),
            })?;
        }
        for r in self.query(
            "SELECT owner, name, lim, duration_ms, auto_apply FROM kl_ratelimits ORDER BY owner, name",
            &[],
        )? {
            sink(Row::Limit {
                owner: r.get(0),
                name: r.get(1),
                limit: unsigned(r.get(2)),
                duration_ms: unsigned(r.get(3)),
                auto_apply: r.get(4),
            })?;
        }
        for r in self.query("SELECT t, mac FROM kl_signatures_seen ORDER BY t, mac", &[])? {
            sink(Row::Signature {
                t: r.get(0),
                mac: r.get(1),
            })?;
        }
        for r in self.query("SELECT id, record FROM kl_holds ORDER BY id", &[])? {
            sink(Row::Hold {
                id: r.get(0),
                record: r.get(1),
            })?;
        }
        Ok(())
    }

    // Events and usage reports.
    fn alerts(&self, account_id: &str) -> Result<Vec<u64>> {
        let v: Vec<i64> = self
            .opt(
                "SELECT thresholds FROM kl_alerts WHERE account_id = $1",
                &[&account_id],
            )?
            .map(|r| r.get(0))
            .unwrap_or_default();
        Ok(v.into_iter().map(unsigned).collect())
    }

    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(self
            .query(
                "SELECT seq, record FROM kl_events WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after, &limit],
            )?
            .iter()
            .map(|r| (unsigned(r.get(0)), r.get(1)))
            .collect())
    }

    fn event_mark(&self, name: &str) -> Result<Option<u64>> {
        Ok(self
            .opt("SELECT value FROM kl_event_marks WHERE name = $1", &[&name])?
            .map(|r| unsigned(r.get(0))))
    }

    fn report_cells(
        &self,
        account_id: &str,
        since: Millis,
        until: Millis,
    ) -> Result<Vec<crate::events::ReportCell>> {
        Ok(self
            .query(
                "SELECT hour, key_id, route, charged, charged_calls, calls, refused \
                 FROM kl_usage_report WHERE account_id = $1 AND hour >= $2 AND hour < $3 \
                 ORDER BY hour, key_id, route",
                &[&account_id, &since, &until],
            )?
            .iter()
            .map(|r| crate::events::ReportCell {
                account_id: account_id.to_string(),
                hour: r.get(0),
                key_id: r.get(1),
                route: r.get(2),
                charged: unsigned(r.get(3)),
                charged_calls: unsigned(r.get(4)),
                calls: unsigned(r.get(5)),
                refused: unsigned(r.get(6)),
            })
            .collect())
    }

    // Holds (`holds.rs`).
    fn hold(&self, id: &str) -> Result<Option<HoldRecord>> {
        self.hold_by_id(id)
    }
    fn active_holds(&self, account_id: Option<&str>) -> Result<Vec<HoldRecord>> {
        self.active_holds_of(account_id)
    }
    fn holds_due(&self, now: Millis, max: usize) -> Result<Vec<HoldRecord>> {
        self.holds_due_at(now, max)
    }
}

impl WriteTxn for PgRead {
    fn import(&mut self, row: &Row) -> Result<()> {
        match row {
            Row::Meta { name, value } => self.put_meta_raw(name, value)?,
            Row::Account { id, record } => {
                self.exec(
                    "INSERT INTO kl_accounts (id, record) VALUES ($1, $2)",
                    &[id, record],
                )?;
            }
            Row::Balance { id, credits, total } => {
                self.exec(
                    "INSERT INTO kl_balances (id, credits, total) \
                     VALUES ($1, $2::text::numeric, $3::text::numeric)",
                    &[id, &credits.to_string(), &total.to_string()],
                )?;
            }
            Row::Key {
                key_id,
                account_id,
                record,
            } => {
                self.exec(
                    "INSERT INTO kl_keys (key_id, account_id, record) VALUES ($1, $2, $3)",
                    &[key_id, account_id, record],
                )?;
            }
            Row::Route {
                method,
                pattern,
                scope,
                cost,
            } => {
                self.exec(
                    "INSERT INTO kl_routes (method, pattern, scope, cost) VALUES ($1, $2, $3, $4)",
                    &[method, pattern, scope, &big(*cost)?],
                )?;
            }
            Row::Idempotency {
                account_id,
                key,
                at,
                record,
            } => {
                self.exec(
                    "INSERT INTO kl_idempotency (account_id, key, at, record) VALUES ($1, $2, $3, $4)",
                    &[account_id, key, at, record],
                )?;
            }
            Row::Audit { seq, record } => {
                let rec: AuditRecord = decode(record, "audit")?;
                self.exec(
                    "INSERT INTO kl_audit (seq, time, key_id, account_id, action, record) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &big(*seq)?,
                        &rec.time,
                        &rec.key_id,
                        &rec.account_id,
                        &rec.action,
                        record,
                    ],
                )?;
            }
            Row::UsageTotal {
                key_id,
                last_used,
                granted,
                refused,
            } => {
                self.exec(
                    "INSERT INTO kl_usage_totals (key_id, last_used, granted, refused) \
                     VALUES ($1, $2, $3, $4)",
                    &[key_id, last_used, &big(*granted)?, &big(*refused)?],
                )?;
            }
            Row::UsageHour {
                key_id,
                hour,
                granted,
            } => {
                self.exec(
                    "INSERT INTO kl_usage_hourly (key_id, hour, granted) VALUES ($1, $2, $3)",
                    &[key_id, hour, &big(*granted)?],
                )?;
            }
            Row::Limit {
                owner,
                name,
                limit,
                duration_ms,
                auto_apply,
            } => {
                self.exec(
                    "INSERT INTO kl_ratelimits (owner, name, lim, duration_ms, auto_apply) \
                     VALUES ($1, $2, $3, $4, $5)",
                    &[owner, name, &big(*limit)?, &big(*duration_ms)?, auto_apply],
                )?;
            }
            Row::Signature { t, mac } => {
                self.exec(
                    "INSERT INTO kl_signatures_seen (t, mac) VALUES ($1, $2)",
                    &[t, mac],
                )?;
            }
            Row::Hold { id, record } => {
                let rec = HoldRecord::decode(record)?;
                if rec.id != *id {
                    return Err(Error::Storage(format!("hold {id:?} holds another id")));
                }
                self.put_hold_row(&rec)?;
            }
        }
        Ok(())
    }

    fn put_meta(&mut self, name: Meta, value: &[u8]) -> Result<()> {
        self.put_meta_raw(meta_key(name), value)
    }

    fn put_account(&mut self, id: &str, rec: &AccountRecord) -> Result<()> {
        let bytes = encode(rec)?;
        self.exec(
            "INSERT INTO kl_accounts (id, record) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record",
            &[&id, &bytes],
        )?;
        self.touch(SlotKind::Account, id);
        Ok(())
    }

    fn put_balance(&mut self, id: &str, credits: u64, total: u64) -> Result<()> {
        self.exec(
            "INSERT INTO kl_balances (id, credits, total) \
             VALUES ($1, $2::text::numeric, $3::text::numeric) \
             ON CONFLICT (id) DO UPDATE SET credits = EXCLUDED.credits, total = EXCLUDED.total",
            &[&id, &credits.to_string(), &total.to_string()],
        )?;
        self.touch(SlotKind::Account, id);
        Ok(())
    }

    fn put_key(&mut self, rec: &KeyRecord) -> Result<()> {
        let bytes = encode(rec)?;
        self.exec(
            "INSERT INTO kl_keys (key_id, account_id, record) VALUES ($1, $2, $3) \
             ON CONFLICT (key_id) DO UPDATE SET account_id = EXCLUDED.account_id, \
             record = EXCLUDED.record",
            &[&rec.key_id, &rec.account_id, &bytes],
        )?;
        self.touch(SlotKind::Key, &rec.key_id);
        Ok(())
    }

    fn put_limit(&mut self, owner: LimitOwner<'_>, def: &RateLimit) -> Result<Option<RateLimit>> {
        let (kind, id) = owner_slot(owner);
        self.touch(kind, id);
        let owner = owner_key(owner);
        let old = self
            .opt(
                "SELECT name, lim, duration_ms, auto_apply FROM kl_ratelimits \
                 WHERE owner = $1 AND name = $2",
                &[&owner, &def.name],
            )?
            .map(|r| limit_of(&r));
        self.exec(
            "INSERT INTO kl_ratelimits (owner, name, lim, duration_ms, auto_apply) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (owner, name) DO UPDATE SET \
             lim = EXCLUDED.lim, duration_ms = EXCLUDED.duration_ms, auto_apply = EXCLUDED.auto_apply",
            &[
                &owner,
                &def.name,
                &big(def.limit)?,
                &big(def.duration_ms)?,
                &def.auto_apply,
            ],
        )?;
        Ok(old)
    }

    fn remove_limit(&mut self, owner: LimitOwner<'_>, name: &str) -> Result<Option<RateLimit>> {
        let (kind, id) = owner_slot(owner);
        let key = owner_key(owner);
        let old = self
            .opt(
                "DELETE FROM kl_ratelimits WHERE owner = $1 AND name = $2 \
                 RETURNING name, lim, duration_ms, auto_apply",
                &[&key, &name],
            )?
            .map(|r| limit_of(&r));
        if old.is_some() {
            self.touch(kind, id);
        }
        Ok(old)
    }

    fn insert_route(&mut self, rule: &RouteRule) -> Result<bool> {
        let n = self.exec(
            "INSERT INTO kl_routes (method, pattern, scope, cost) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (method, pattern) DO NOTHING",
            &[&rule.method, &rule.pattern, &rule.scope, &big(rule.cost)?],
        )?;
        if n == 1 {
            self.touch(SlotKind::Global, "routes");
        }
        Ok(n == 1)
    }

    fn remove_route(&mut self, method: &str, pattern: &str) -> Result<Option<RouteRule>> {
        let removed = self
            .opt(
                "DELETE FROM kl_routes WHERE method = $1 AND pattern = $2 \
                 RETURNING method, pattern, scope, cost",
                &[&method, &pattern],
            )?
            .map(|r| RouteRule {
                method: r.get(0),
                pattern: r.get(1),
                scope: r.get(2),
                cost: unsigned(r.get(3)),
            });
        if removed.is_some() {
            self.touch(SlotKind::Global, "routes");
        }
        Ok(removed)
    }

    fn put_idempotent(
        &mut self,
        account_id: &str,
        scope: IdempotencyScope,
        key: &str,
        at: Millis,
        rec: &IdempotencyRecord,
    ) -> Result<()> {
        let key = idempotency_key(scope, key);
        let bytes = rec.encode()?;
        self.exec(
            "INSERT INTO kl_idempotency (account_id, key, at, record) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (account_id, key) DO UPDATE SET at = EXCLUDED.at, record = EXCLUDED.record",
            &[&account_id, &key, &at, &bytes],
        )?;
        Ok(())
    }

    fn prune_idempotent(&mut self, before: Millis, max: usize) -> Result<usize> {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let n = self.exec(
            "DELETE FROM kl_idempotency WHERE (account_id, key) IN (SELECT account_id, key \
             FROM kl_idempotency WHERE at < $1 ORDER BY at, account_id, key LIMIT $2)",
            &[&before, &max],
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// As on redb: delete `auth_refused` entries older than `before`, scanning at most
    /// `max` entries from a cursor kept in meta, never the newest entry.
    fn prune_refusals(&mut self, before: Millis, max: usize) -> Result<usize> {
        const CURSOR: &str = "audit_prune_cursor";
        let cursor = match self.meta_raw(CURSOR)? {
            Some(v) => <[u8; 8]>::try_from(v.as_slice())
                .map(u64::from_le_bytes)
                .map_err(|_| Error::Storage("corrupt audit prune cursor".into()))?,
            None => 0,
        };
        let Some(newest) = self
            .opt("SELECT max(seq) FROM kl_audit", &[])?
            .and_then(|r| r.get::<_, Option<i64>>(0))
        else {
            return Ok(0);
        };
        let rows = self.query(
            "SELECT seq, record FROM kl_audit WHERE seq >= $1 AND seq < $2 ORDER BY seq LIMIT $3",
            &[
                &big(cursor)?,
                &newest,
                &i64::try_from(max).unwrap_or(i64::MAX),
            ],
        )?;
        let mut next = cursor;
        let mut doomed: Vec<i64> = Vec::new();
        for row in rows {
            let seq: i64 = row.get(0);
            let rec: AuditRecord = decode(row.get::<_, &[u8]>(1), "audit")?;
            if rec.time >= before {
                break;
            }
            next = unsigned(seq) + 1;
            if rec.action == AuditAction::AuthRefused.as_str() {
                doomed.push(seq);
            }
        }
        let moved = next != cursor;
        if moved {
            self.put_meta_raw(CURSOR, &next.to_le_bytes())?;
        }
        if !doomed.is_empty() {
            self.exec("DELETE FROM kl_audit WHERE seq = ANY($1)", &[&doomed])?;
        }
        Ok(doomed.len() + usize::from(moved))
    }

    fn record_signature(&mut self, t_seconds: i64, mac: &[u8]) -> Result<bool> {
        let n = self.exec(
            "INSERT INTO kl_signatures_seen (t, mac) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&t_seconds, &mac],
        )?;
        Ok(n == 1)
    }

    fn prune_signatures(&mut self, before: i64, max: usize) -> Result<usize> {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let n = self.exec(
            "DELETE FROM kl_signatures_seen WHERE (t, mac) IN (SELECT t, mac \
             FROM kl_signatures_seen WHERE t < $1 ORDER BY t, mac LIMIT $2)",
            &[&before, &max],
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn append_audit(&mut self, rec: &AuditRecord) -> Result<u64> {
        let seq: i64 = self
            .query("SELECT coalesce(max(seq), 0) + 1 FROM kl_audit", &[])?
            .first()
            .map_or(1, |r| r.get(0));
        let bytes = encode(rec)?;
        self.exec(
            "INSERT INTO kl_audit (seq, time, key_id, account_id, action, record) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &seq,
                &rec.time,
                &rec.key_id,
                &rec.account_id,
                &rec.action,
                &bytes,
            ],
        )?;
        Ok(unsigned(seq))
    }

    fn add_usage(
        &mut self,
        key_id: &str,
        last_used: Option<Millis>,
        granted: u64,
        refused: u64,
        hour: Millis,
    ) -> Result<()> {
        let last = last_used.unwrap_or(i64::MIN);
        let (g, r) = (
            big(granted.min(i64::MAX as u64))?,
            big(refused.min(i64::MAX as u64))?,
        );
        // Saturating adds, as on redb (`least` against the bigint maximum).
        self.exec(
            "INSERT INTO kl_usage_totals (key_id, last_used, granted, refused) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (key_id) DO UPDATE SET \
             last_used = greatest(kl_usage_totals.last_used, EXCLUDED.last_used), \
             granted = least(kl_usage_totals.granted::numeric + EXCLUDED.granted, 9223372036854775807)::bigint, \
             refused = least(kl_usage_totals.refused::numeric + EXCLUDED.refused, 9223372036854775807)::bigint",
            &[&key_id, &last, &g, &r],
        )?;
        if granted > 0 {
            self.exec(
                "INSERT INTO kl_usage_hourly (key_id, hour, granted) VALUES ($1, $2, $3) \
                 ON CONFLICT (key_id, hour) DO UPDATE SET granted = \
                 least(kl_usage_hourly.granted::numeric + EXCLUDED.granted, 9223372036854775807)::bigint",
                &[&key_id, &hour, &g],
            )?;
        }
        Ok(())
    }

    /// Commit; when anything was touched, first take the next change number, record it
    /// in `kl_changes` and NOTIFY it (delivered at commit), and bump this process's slots
    /// around the commit.
    // Events and usage reports.
    fn put_alerts(&mut self, account_id: &str, thresholds: &[u64]) -> Result<()> {
        if thresholds.is_empty() {
            self.exec(
                "DELETE FROM kl_alerts WHERE account_id = $1",
                &[&account_id],
            )?;
            return Ok(());
        }
        let t = thresholds
            .iter()
            .map(|&v| big(v))
            .collect::<Result<Vec<i64>>>()?;
        self.exec(
            "INSERT INTO kl_alerts (account_id, thresholds) VALUES ($1, $2) \
             ON CONFLICT (account_id) DO UPDATE SET thresholds = EXCLUDED.thresholds",
            &[&account_id, &t],
        )?;
        Ok(())
    }

    fn append_event(&mut self, record: &[u8]) -> Result<u64> {
        // Writers hold the advisory lock: max + 1 is this transaction's own number.
        let seq: i64 = self
            .query("SELECT coalesce(max(seq), 0) + 1 FROM kl_events", &[])?
            .first()
            .map_or(1, |r| r.get(0));
        self.exec(
            "INSERT INTO kl_events (seq, record) VALUES ($1, $2)",
            &[&seq, &record],
        )?;
        Ok(unsigned(seq))
    }

    fn put_event_mark(&mut self, name: &str, value: Option<u64>) -> Result<()> {
        match value {
            Some(v) => {
                let v = big(v)?;
                self.exec(
                    "INSERT INTO kl_event_marks (name, value) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                    &[&name, &v],
                )?;
            }
            None => {
                self.exec("DELETE FROM kl_event_marks WHERE name = $1", &[&name])?;
            }
        }
        Ok(())
    }

    fn add_report_cell(&mut self, c: &crate::events::ReportCell) -> Result<()> {
        let n = |v: u64| big(v.min(i64::MAX as u64));
        let (a, b, d, e) = (
            n(c.charged)?,
            n(c.charged_calls)?,
            n(c.calls)?,
            n(c.refused)?,
        );
        self.exec(
            "INSERT INTO kl_usage_report \
             (account_id, hour, key_id, route, charged, charged_calls, calls, refused) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (account_id, hour, key_id, route) DO UPDATE SET \
             charged = least(kl_usage_report.charged::numeric + EXCLUDED.charged, 9223372036854775807)::bigint, \
             charged_calls = least(kl_usage_report.charged_calls::numeric + EXCLUDED.charged_calls, 9223372036854775807)::bigint, \
             calls = least(kl_usage_report.calls::numeric + EXCLUDED.calls, 9223372036854775807)::bigint, \
             refused = least(kl_usage_report.refused::numeric + EXCLUDED.refused, 9223372036854775807)::bigint",
            &[&c.account_id, &c.hour, &c.key_id, &c.route, &a, &b, &d, &e],
        )?;
        Ok(())
    }

    fn commit(self: Box<Self>, _durability: Durability) -> Result<()> {
        let PgRead {
            conn,
            touched,
            slots,
        } = *self;
        let mut conn = conn.into_inner();
        let guard = match (&slots, touched.is_empty()) {
            (Some(sc), false) => {
                // One statement: the next change number, its row in `kl_changes` (read by
                // pollers), the pruning of rows older than the newest CHANGES_KEPT, and the
                // notification (delivered at commit, read by listeners).
                conn.c()
                    .query_one(
                        "WITH s AS (UPDATE kl_change_seq SET seq = seq + 1 RETURNING seq), \
                         i AS (INSERT INTO kl_changes (seq, body) SELECT seq, $1 FROM s), \
                         d AS (DELETE FROM kl_changes WHERE seq <= (SELECT seq FROM s) - $3) \
                         SELECT seq, pg_notify($2, seq::text || ' ' || $1)::text FROM s",
                        &[&body(&touched), &CHANNEL, &CHANGES_KEPT],
                    )
                    .map_err(pg_err)?;
                let mut guard = sc.write();
                let numbers: Vec<usize> = touched
                    .iter()
                    .map(|(k, id)| guard.slot_of(*k, id))
                    .collect();
                guard.begin(&numbers);
                Some(guard)
            }
            _ => None,
        };
        conn.c().batch_execute("COMMIT").map_err(pg_err)?;
        drop(guard);
        conn.in_txn = false;
        conn.pool.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    #[cfg(test)]
    fn commit_and_die(self: Box<Self>) -> Result<()> {
        self.commit(Durability::Immediate)
    }

    // Holds (`holds.rs`).
    fn put_hold(&mut self, rec: &HoldRecord) -> Result<()> {
        self.put_hold_row(rec)
    }
}
