//! Keys: minting, listing, state changes (revoke, disable, scopes, expiry) and rotation.

use super::{
    crypto, json, metadata_string, normalize_scopes, seal_signing_secret, times, token,
    validate_expiry, validate_id, validate_name, AuditAction, Error, Inner, KeyInfo, KeyRecord,
    LimitOwner, Millis, NewKey, Result, SecretToken, Usage, Value, Vault,
};

impl Vault {
    /// Mint a key. Returns the token — shown once, never stored, never retrievable — and
    /// the key's public info.
    pub fn create_key(&self, new: NewKey) -> Result<(SecretToken, KeyInfo)> {
        let inner = &*self.inner;
        inner.check_open()?;
        let now = (inner.settings.clock)();
        validate_id(&new.account_id, "account id")?;
        validate_name(&new.name)?;
        let scopes = normalize_scopes(&new.scopes)?;
        // A colon-style key is stored with an empty prefix (its style; see `token::TokenStyle`).
        let prefix = match new.style {
            token::TokenStyle::Prefixed => {
                token::validate_prefix(&new.prefix)?;
                new.prefix
            }
            token::TokenStyle::Colon => String::new(),
        };
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
        let (mut secret, hash, key_id) = inner.mint(&prefix)?;
        let signing_secret = seal_signing_secret(master.as_ref(), &key_id, &mut secret)?;
        let rec = KeyRecord {
            key_id,
            prefix,
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
                AuditAction::KeyCreated,
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
        let now = (self.inner.settings.clock)();
        self.inner.update_key(key_id, now, |rec| {
            if rec.revoked_at.is_some() {
                return Ok(None);
            }
            rec.revoked_at = Some(now);
            Ok(Some((AuditAction::KeyRevoked, json!({}))))
        })
    }

    /// Disable a key (refused as `api_key_inactive` until enabled).
    pub fn disable_key(&self, key_id: &str) -> Result<KeyInfo> {
        let now = (self.inner.settings.clock)();
        self.inner.update_key(key_id, now, |rec| {
            live(rec)?;
            if rec.disabled {
                return Ok(None);
            }
            rec.disabled = true;
            Ok(Some((AuditAction::KeyDisabled, json!({}))))
        })
    }

    /// Enable a disabled key.
    pub fn enable_key(&self, key_id: &str) -> Result<KeyInfo> {
        let now = (self.inner.settings.clock)();
        self.inner.update_key(key_id, now, |rec| {
            live(rec)?;
            if !rec.disabled {
                return Ok(None);
            }
            rec.disabled = false;
            Ok(Some((AuditAction::KeyEnabled, json!({}))))
        })
    }

    /// Replace a key's scopes.
    pub fn set_scopes<S: AsRef<str>>(&self, key_id: &str, scopes: &[S]) -> Result<KeyInfo> {
        let scopes = normalize_scopes(scopes)?;
        let now = (self.inner.settings.clock)();
        self.inner.update_key(key_id, now, |rec| {
            live(rec)?;
            let old = std::mem::replace(&mut rec.scopes, scopes);
            Ok(Some((
                AuditAction::KeyScopesChanged,
                json!({ "from": old, "to": rec.scopes }),
            )))
        })
    }

    /// Set (or with `None`, clear) a key's expiry.
    pub fn set_expiry(&self, key_id: &str, expires_at: Option<Millis>) -> Result<KeyInfo> {
        let now = (self.inner.settings.clock)();
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
                AuditAction::KeyExpiryChanged,
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
        let now = (inner.settings.clock)();
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
        // An imported key's successor is a native key (`drf`, `unkey`).
        let prefix = crate::legacy::native_prefix(&old.prefix);
        let (mut secret, hash, new_id) = inner.mint(prefix)?;
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
                prefix: prefix.to_string(),
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
            for def in tx.limits(LimitOwner::Key(&old.key_id))? {
                tx.put_limit(LimitOwner::Key(&new.key_id), &def)?;
            }
            inner.audit(
                tx,
                now,
                AuditAction::KeyRotated,
                Some(&old.key_id),
                Some(&old.account_id),
                json!({ "new_key_id": new.key_id, "grace_ms": grace_ms, "old_expires_at": old.expires_at }),
            )?;
            inner.audit(
                tx,
                now,
                AuditAction::KeyCreated,
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
}

impl Inner {
    /// A fresh key id (unused as far as the store knows), a token and its hash. argon2
    /// runs here, outside any write transaction. An empty `prefix` mints a colon-style
    /// token.
    pub(super) fn mint(&self, prefix: &str) -> Result<(SecretToken, String, String)> {
        let r = self.read()?;
        let mut key_id = token::try_new_key_id()?;
        while r.key(&key_id)?.is_some() {
            key_id = token::try_new_key_id()?;
        }
        drop(r);
        let secret = token::mint_styled(token::TokenStyle::of_prefix(prefix), prefix, &key_id)?;
        let parsed = token::parse(&secret)
            .ok_or_else(|| Error::Storage("minted token does not parse".into()))?;
        let hash = {
            let _permit = self.verify.limiter.acquire();
            crypto::hash_secret(parsed.secret.as_bytes(), *self.verify.argon2.read())?
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
    pub(super) fn update_key(
        &self,
        key_id: &str,
        now: Millis,
        change: impl FnOnce(&mut KeyRecord) -> Result<Option<(AuditAction, Value)>>,
    ) -> Result<KeyInfo> {
        self.check_open()?;
        if !token::is_valid_key_id(key_id) {
            return Err(Error::invalid("key_id must be 8 characters of [a-z0-9]"));
        }
        let rec = self.write(|tx| {
            let mut rec = tx.key(key_id)?.ok_or_else(|| not_found_key(key_id))?;
            if let Some((action, details)) = change(&mut rec)? {
                tx.put_key(&rec)?;
                if action == AuditAction::KeyRevoked {
                    // Events: a revocation is one.
                    self.record_event(
                        tx,
                        now,
                        "key_revoked",
                        Some(&rec.account_id),
                        Some(&rec.key_id),
                        json!({}),
                    )?;
                }
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
}

pub(super) fn key_info(rec: &KeyRecord, last_used_at: Option<Millis>) -> KeyInfo {
    KeyInfo {
        key_id: rec.key_id.clone(),
        prefix: rec.prefix.clone(),
        style: token::TokenStyle::of_prefix(&rec.prefix),
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

pub(super) fn not_found_key(key_id: &str) -> Error {
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
pub(super) fn rotatable(rec: &KeyRecord, now: Millis) -> Result<()> {
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

pub(super) fn live(rec: &KeyRecord) -> Result<()> {
    if rec.revoked_at.is_some() {
        Err(Error::invalid(format!("key {} is revoked", rec.key_id)))
    } else {
        Ok(())
    }
}
