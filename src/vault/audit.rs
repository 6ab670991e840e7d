//! The audit log: writing management entries, coalescing request-path refusals, and the
//! audit query.

use super::{
    times, AuditAction, AuditEntry, AuditQuery, AuditRecord, Error, EventKey, Inner, KeyRecord,
    Millis, Result, Target, Value, Vault, WriteTx,
};

impl Vault {
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

impl Inner {
    pub(super) fn audit(
        &self,
        tx: &mut WriteTx<'_>,
        now: Millis,
        action: AuditAction,
        key_id: Option<&str>,
        account_id: Option<&str>,
        details: Value,
    ) -> Result<u64> {
        tx.append_audit(&AuditRecord {
            time: now,
            action: action.as_str().to_string(),
            key_id: key_id.map(str::to_string),
            account_id: account_id.map(str::to_string),
            actor: self.settings.actor.clone(),
            details: details.to_string(),
        })
    }

    /// Record a refusal (usage + coalesced audit entry) and hand the error back. Requests
    /// that match no rule fold into one entry per key and window, whatever their path (the
    /// paths are kept as samples), so varying the path cannot grow the log.
    pub(super) fn refuse(
        &self,
        rec: Option<&KeyRecord>,
        target: &Target<'_>,
        now: Millis,
        err: Error,
    ) -> Error {
        if let Some(r) = rec {
            self.flushing.pending.refused(&r.key_id);
        }
        let described = target.describe();
        let (route, sample) = if matches!(err, Error::RouteNotAllowed) {
            (crate::usage::UNMATCHED_ROUTES.to_string(), Some(described))
        } else {
            (described, None)
        };
        self.flushing.pending.event(
            EventKey {
                action: AuditAction::AuthRefused,
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
    pub(super) fn refuse_unknown(
        &self,
        key_id: Option<&str>,
        target: &Target<'_>,
        now: Millis,
    ) -> Error {
        let described = target.describe();
        let sample = match key_id {
            Some(k) => format!("{k} {described}"),
            None => format!("(malformed) {described}"),
        };
        self.flushing.pending.event(
            EventKey {
                action: AuditAction::AuthRefused,
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
}
