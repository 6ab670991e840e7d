//! Importing keys from another service (djangorestframework-api-key, Unkey): accounts and
//! keys with their states, each key keeping its imported hash until its first successful
//! call re-hashes it to argon2id (see `crate::legacy`).

use super::{
    json, metadata_string, normalize_scopes, times, validate_id, validate_limit_name,
    validate_name, AccountRecord, AuditAction, Error, KeyRecord, LimitOwner, Millis, RateLimit,
    Result, Value, Vault, MAX_LIMITS, MAX_LIMIT_WINDOW_MS,
};
use crate::legacy::{self, LegacyHash};

/// The key of an imported key's metadata that records where it came from
/// (`{"source": …, "source_id": …}`); a second import of the same key recognizes it by it.
pub const IMPORT_METADATA_KEY: &str = "keyledger_import";

/// An account an import creates (an account that already exists is left as it is: its
/// credits are not added again).
#[derive(Clone, Debug, PartialEq)]
pub struct ImportedAccount {
    /// The account id.
    pub id: String,
    /// Its credits (and total credits) when created.
    pub credits: u64,
    /// Optional metadata (a JSON object).
    pub metadata: Option<Value>,
}

/// A key an import creates, with its state in the source service.
#[derive(Clone, Debug)]
pub struct ImportedKey {
    /// Its derived key id, prefix and imported hash ([`legacy::drf_hash`],
    /// [`legacy::unkey_hash`]).
    pub hash: LegacyHash,
    /// What identifies the key in its source (drf-api-key: the prefix; Unkey: a fingerprint
    /// of its hash): recorded in the key's metadata, so a second import skips it.
    pub source_id: String,
    /// The owning account (created by the same import, or existing).
    pub account_id: String,
    /// The key's name.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// When it was created in the source (else now).
    pub created_at: Option<Millis>,
    /// When it expires (may already be past: the key is then refused as expired).
    pub expires_at: Option<Millis>,
    /// Revoked in the source.
    pub revoked: bool,
    /// Disabled in the source.
    pub disabled: bool,
    /// Optional metadata (a JSON object).
    pub metadata: Option<Value>,
    /// The key's rate limits.
    pub ratelimits: Vec<RateLimit>,
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Accounts created.
    pub accounts_created: usize,
    /// Accounts that already existed (left unchanged).
    pub accounts_existing: usize,
    /// Keys created.
    pub keys_imported: usize,
    /// Keys already imported by an earlier run (left unchanged).
    pub keys_unchanged: usize,
}

impl Vault {
    /// Import accounts and keys from another service, in one transaction: all or nothing.
    ///
    /// `source` names the service in the audit log and in each key's metadata
    /// (`keyledger_import`). Idempotent: an account that exists is left as it is, and a key
    /// an earlier import created (same derived id, same source id) is skipped, even after
    /// it was re-hashed or changed. Refused, changing nothing: invalid ids, names, scopes,
    /// metadata or limits ([`Error::InvalidArgument`]), a key whose account is neither
    /// given nor existing ([`Error::NotFound`]), a key whose derived id is taken by another
    /// key or given twice ([`Error::AlreadyExists`]).
    pub fn import_keys(
        &self,
        source: &str,
        accounts: &[ImportedAccount],
        keys: &[ImportedKey],
    ) -> Result<ImportReport> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_limit_name(source)?;
        let now = (inner.settings.clock)();
        let mut account_recs = Vec::with_capacity(accounts.len());
        for a in accounts {
            validate_id(&a.id, "account id")?;
            account_recs.push((a, metadata_string(a.metadata.clone())?));
        }
        let mut key_recs = Vec::with_capacity(keys.len());
        for k in keys {
            key_recs.push((record(source, k, now)?, &k.ratelimits));
        }
        inner.write(|tx| {
            let mut report = ImportReport::default();
            for (a, metadata) in &account_recs {
                if tx.account(&a.id)?.is_some() {
                    report.accounts_existing += 1;
                    continue;
                }
                tx.put_account(
                    &a.id,
                    &AccountRecord {
                        created_at: now,
                        metadata: metadata.clone(),
                        refill: None,
                        refilled_at: None,
                    },
                )?;
                tx.put_balance(&a.id, a.credits, a.credits)?;
                report.accounts_created += 1;
            }
            let mut seen = std::collections::HashSet::new();
            for (rec, limits) in &key_recs {
                if !seen.insert(rec.key_id.as_str()) {
                    return Err(Error::AlreadyExists(format!(
                        "two imported keys have the derived key id {:?}",
                        rec.key_id
                    )));
                }
                if tx.account(&rec.account_id)?.is_none() {
                    return Err(Error::NotFound(format!("account {:?}", rec.account_id)));
                }
                if let Some(existing) = tx.key(&rec.key_id)? {
                    if existing.prefix == rec.prefix
                        && import_source_id(&existing.metadata) == import_source_id(&rec.metadata)
                    {
                        report.keys_unchanged += 1;
                        continue;
                    }
                    return Err(Error::AlreadyExists(format!(
                        "key id {:?} (derived for {} key {:?}) is taken by another key",
                        rec.key_id,
                        source,
                        import_source_id(&rec.metadata).unwrap_or_default()
                    )));
                }
                tx.put_key(rec)?;
                for def in limits.iter() {
                    tx.put_limit(LimitOwner::Key(&rec.key_id), def)?;
                }
                report.keys_imported += 1;
            }
            inner.audit(
                tx,
                now,
                AuditAction::KeysCreatedBulk,
                None,
                None,
                json!({
                    "import": source,
                    "accounts_created": report.accounts_created,
                    "keys": report.keys_imported,
                    "keys_unchanged": report.keys_unchanged,
                }),
            )?;
            Ok(report)
        })
    }

    /// The imported keys still holding their imported hash (never used successfully since
    /// the import), of one account or of all, ordered by key id.
    pub fn imported_pending(&self, account_id: Option<&str>) -> Result<Vec<String>> {
        let inner = &*self.inner;
        inner.check_open()?;
        let tx = inner.read()?;
        Ok(tx
            .keys_of(account_id)?
            .into_iter()
            .filter(|k| legacy::is_legacy_hash(&k.secret_hash))
            .map(|k| k.key_id)
            .collect())
    }
}

/// The stored record of an imported key (validated).
fn record(source: &str, k: &ImportedKey, now: Millis) -> Result<KeyRecord> {
    validate_id(&k.account_id, "account id")?;
    validate_name(&k.name)?;
    let scopes = normalize_scopes(&k.scopes)?;
    for t in [k.created_at, k.expires_at].into_iter().flatten() {
        if !(times::MIN_TIME_MS..=times::MAX_TIME_MS).contains(&t) {
            return Err(Error::invalid("an imported time is out of range"));
        }
    }
    if k.ratelimits.len() > MAX_LIMITS {
        return Err(Error::invalid(format!(
            "at most {MAX_LIMITS} rate limits per key"
        )));
    }
    for l in &k.ratelimits {
        validate_limit_name(&l.name)?;
        if l.limit == 0 || l.duration_ms == 0 || l.duration_ms > MAX_LIMIT_WINDOW_MS {
            return Err(Error::invalid(format!(
                "rate limit {:?}: limit must be positive and the window between 1 ms and 366 days",
                l.name
            )));
        }
    }
    let mut meta = match &k.metadata {
        None => serde_json::Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(Error::invalid("metadata must be a JSON object")),
    };
    meta.insert(
        IMPORT_METADATA_KEY.to_string(),
        json!({ "source": source, "source_id": k.source_id }),
    );
    let created_at = k.created_at.unwrap_or(now);
    Ok(KeyRecord {
        key_id: k.hash.key_id.clone(),
        prefix: k.hash.prefix.to_string(),
        account_id: k.account_id.clone(),
        name: k.name.clone(),
        scopes,
        operator: false,
        created_at,
        expires_at: k.expires_at,
        disabled: k.disabled,
        revoked_at: k.revoked.then_some(created_at.max(now)),
        secret_hash: k.hash.stored.clone(),
        signing_secret: None,
        rotated_from: None,
        metadata: metadata_string(Some(Value::Object(meta)))?,
    })
}

/// The `source_id` recorded by an import in a key's metadata.
fn import_source_id(metadata: &str) -> Option<String> {
    let v: Value = serde_json::from_str(metadata).ok()?;
    Some(
        v.get(IMPORT_METADATA_KEY)?
            .get("source_id")?
            .as_str()?
            .to_string(),
    )
}
