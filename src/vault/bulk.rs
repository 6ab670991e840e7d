//! A bulk path for building large vaults (benchmarks, imports): many keys per write
//! transaction, argon2 at caller-chosen parameters, minted on every core.
//!
//! A child module of `vault`: it uses the vault's transaction helpers.

use std::collections::HashSet;

use serde_json::json;

use super::AuditAction;
use super::Vault;
use crate::crypto::{self, Argon2Params};
use crate::error::{Error, Result};
use crate::model::SecretToken;
use crate::store::KeyRecord;
use crate::token;
use crate::validate::{normalize_scopes, validate_id};

/// Keys written per transaction.
const BATCH: usize = 4096;

impl Vault {
    /// Mint `n` keys for `account_id` (name `bulk`, the given prefix and scopes), hashing
    /// their secrets with `argon2` (small parameters make a 1 000 000-key vault take
    /// seconds; a key hashed with parameters other than the vault's is rehashed at the
    /// vault's parameters on its first successful verification).
    ///
    /// Writes 4096 keys per durable transaction and one `keys_created_bulk` audit
    /// entry per transaction (not one per key). Returns the tokens, in creation order.
    /// Not part of the stable API.
    #[doc(hidden)]
    pub fn create_keys_bulk(
        &self,
        account_id: &str,
        prefix: &str,
        scopes: &[&str],
        n: usize,
        argon2: Argon2Params,
    ) -> Result<Vec<SecretToken>> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_id(account_id, "account id")?;
        token::validate_prefix(prefix)?;
        let scopes = normalize_scopes(scopes)?;
        argon2.validate()?;
        let now = (inner.settings.clock)();
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut out: Vec<SecretToken> = Vec::with_capacity(n);
        while out.len() < n {
            let m = BATCH.min(n - out.len());
            let minted = mint_many(prefix, account_id, &scopes, now, m, argon2, workers)?;
            let accepted = inner.write(|tx| {
                if tx.account(account_id)?.is_none() {
                    return Err(Error::NotFound(format!("account {account_id:?}")));
                }
                let mut seen = HashSet::with_capacity(minted.len());
                let mut accepted = Vec::with_capacity(minted.len());
                for (i, (_, rec)) in minted.iter().enumerate() {
                    // A random id already taken (in the file or in this batch) is skipped;
                    // the outer loop mints a replacement.
                    if !seen.insert(rec.key_id.as_str()) || tx.key(&rec.key_id)?.is_some() {
                        continue;
                    }
                    tx.put_key(rec)?;
                    accepted.push(i);
                }
                inner.audit(
                    tx,
                    now,
                    AuditAction::KeysCreatedBulk,
                    None,
                    Some(account_id),
                    json!({ "count": accepted.len(), "prefix": prefix, "scopes": scopes }),
                )?;
                Ok(accepted)
            })?;
            let mut minted: Vec<Option<SecretToken>> =
                minted.into_iter().map(|(t, _)| Some(t)).collect();
            out.extend(accepted.into_iter().filter_map(|i| minted[i].take()));
        }
        Ok(out)
    }
}

/// `m` fresh tokens and their records, hashed on `workers` threads.
fn mint_many(
    prefix: &str,
    account_id: &str,
    scopes: &[String],
    now: i64,
    m: usize,
    argon2: Argon2Params,
    workers: usize,
) -> Result<Vec<(SecretToken, KeyRecord)>> {
    let per = m.div_ceil(workers.max(1));
    let chunks: Vec<Result<Vec<(SecretToken, KeyRecord)>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..m)
            .step_by(per.max(1))
            .map(|start| {
                let count = per.min(m - start);
                s.spawn(move || {
                    (0..count)
                        .map(|_| mint_one(prefix, account_id, scopes, now, argon2))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Storage("a minting thread panicked".into())))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(m);
    for c in chunks {
        all.extend(c?);
    }
    Ok(all)
}

fn mint_one(
    prefix: &str,
    account_id: &str,
    scopes: &[String],
    now: i64,
    argon2: Argon2Params,
) -> Result<(SecretToken, KeyRecord)> {
    let key_id = token::try_new_key_id()?;
    let secret = token::mint(prefix, &key_id)?;
    let hash = {
        let parsed = token::parse(&secret)
            .ok_or_else(|| Error::Storage("minted token does not parse".into()))?;
        crypto::hash_secret(parsed.secret.as_bytes(), argon2)?
    };
    let rec = KeyRecord {
        key_id,
        prefix: prefix.to_string(),
        account_id: account_id.to_string(),
        name: "bulk".to_string(),
        scopes: scopes.to_vec(),
        operator: false,
        created_at: now,
        expires_at: None,
        disabled: false,
        revoked_at: None,
        secret_hash: hash,
        signing_secret: None,
        rotated_from: None,
        metadata: "{}".to_string(),
    };
    Ok((
        SecretToken {
            token: secret,
            signing: None,
        },
        rec,
    ))
}
