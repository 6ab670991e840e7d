//! Rate-limit definitions on keys and accounts (the counters live in `crate::limits`).

use super::{
    json, not_found_key, token, validate_id, validate_limit_name, AuditAction, Error, LimitOwner,
    RateLimit, Result, Vault, WriteTx, MAX_LIMITS, MAX_LIMIT_WINDOW_MS,
};

impl Vault {
    /// Set a rate limit: `limit` units per `duration_ms`, on a key or on an
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
        let now = (inner.settings.clock)();
        inner.write(|tx| {
            let (key_id, account_id) = limit_owner(tx, owner)?;
            let existing = tx.limits(owner)?;
            if existing.len() >= MAX_LIMITS && !existing.iter().any(|l| l.name == name) {
                return Err(Error::invalid(format!("at most {MAX_LIMITS} rate limits per key or account")));
            }
            let old = tx.put_limit(owner, &def)?;
            inner.audit(
                tx,
                now,
                AuditAction::RatelimitSet,
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
        let now = (inner.settings.clock)();
        inner.write(|tx| {
            let (key_id, account_id) = limit_owner(tx, owner)?;
            let old = tx
                .remove_limit(owner, name)?
                .ok_or_else(|| Error::NotFound(format!("rate limit {name:?}")))?;
            inner.audit(
                tx,
                now,
                AuditAction::RatelimitRemoved,
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
        r.limits(owner)
    }
}

/// Check that a limit's owner exists; its audit ids (key, account).
pub(super) fn limit_owner(
    tx: &WriteTx<'_>,
    owner: LimitOwner<'_>,
) -> Result<(Option<String>, Option<String>)> {
    match owner {
        LimitOwner::Key(k) => {
            if !token::is_valid_key_id(k) {
                return Err(Error::invalid("key_id must be 8 characters of [a-z0-9]"));
            }
            let rec = tx.key(k)?.ok_or_else(|| not_found_key(k))?;
            Ok((Some(rec.key_id), Some(rec.account_id)))
        }
        LimitOwner::Account(a) => {
            validate_id(a, "account id")?;
            tx.account(a)?
                .ok_or_else(|| Error::NotFound(format!("account {a:?}")))?;
            Ok((None, Some(a.to_string())))
        }
    }
}
