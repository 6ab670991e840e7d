//! Signing keys and the master key: request signatures, revealing a signing secret,
//! master-key resolution and rotation.

use super::{
    json, not_found_key, secrets, token, Argon2Params, AuditAction, AuthorizeOptions, Backend,
    Durability, Error, Halt, Inner, MasterKey, Meta, Millis, Mode, Result, SecretToken, Target,
    Vault, WouldBlock, Zeroizing,
};

impl Vault {
    /// The signing secret of a signing key, for an admin who lost it (audited as
    /// `signing_secret_revealed`). Needs the master key.
    pub fn reveal_signing_secret(&self, key_id: &str) -> Result<Zeroizing<String>> {
        let inner = &*self.inner;
        inner.check_open()?;
        if !token::is_valid_key_id(key_id) {
            return Err(Error::invalid("key_id must be 8 characters of [a-z0-9]"));
        }
        let master = inner.master.read().clone().ok_or_else(no_master_key)?;
        let now = (inner.settings.clock)();
        inner.write(|tx| {
            let rec = tx.key(key_id)?.ok_or_else(|| not_found_key(key_id))?;
            let sealed = rec
                .signing_secret
                .as_ref()
                .ok_or_else(|| Error::invalid(format!("key {key_id} is not a signing key")))?;
            let plain = master
                .open(&secrets::signing_aad(key_id), sealed)
                .ok_or_else(|| undecryptable(key_id))?;
            let text = String::from_utf8(plain.to_vec()).map_err(|_| undecryptable(key_id))?;
            inner.audit(
                tx,
                now,
                AuditAction::SigningSecretRevealed,
                Some(key_id),
                Some(&rec.account_id),
                json!({}),
            )?;
            Ok(Zeroizing::new(text))
        })
    }

    /// Whether this handle holds a master key.
    pub fn has_master_key(&self) -> bool {
        self.inner.master.read().is_some()
    }

    /// Master-key rotation: re-encrypt every signing secret under `new` in one transaction
    /// (all or nothing) and replace the check value. Returns how many secrets were
    /// re-encrypted. Other processes must reopen with the new key.
    pub fn rekey(&self, new: MasterKey) -> Result<usize> {
        self.inner.rekey(new, None)
    }

    /// [`Vault::rekey`] to a key derived from a new passphrase (a fresh salt is stored).
    pub fn rekey_passphrase(&self, passphrase: &str) -> Result<usize> {
        let mut salt = vec![0u8; 16];
        getrandom::fill(&mut salt).map_err(Error::storage)?;
        let kdf = Argon2Params::default();
        let new = MasterKey::from_passphrase(passphrase.as_bytes(), &salt, kdf)?;
        self.inner.rekey(new, Some((salt, kdf)))
    }
}

impl Inner {
    /// Whether the call's signature is a valid version-2 signature of this request (and,
    /// with `single_use_signatures`, its first use). Recording a first use is a commit:
    /// `Mode::NonBlocking` stops there with `WouldBlock::Commit`, having recorded nothing.
    pub(super) fn check_signature(
        &self,
        secret: &[u8],
        target: &Target<'_>,
        options: &AuthorizeOptions<'_>,
        now: Millis,
        mode: Mode,
    ) -> std::result::Result<bool, Halt> {
        let (method, signed) = match *target {
            Target::Route { method, path } => (method, secrets::signed_target(path, options.query)),
            // The path and query exactly as sent: a client signs what it sends.
            Target::Request { method, target, .. } => (
                method,
                secrets::signed_target(
                    crate::http::path_of(target),
                    options.query.or(crate::http::query_of(target)),
                ),
            ),
            Target::Scope(s) => ("SCOPE", s.into()),
        };
        let Some(sig) = options.signature else {
            return Ok(false);
        };
        let Some(verified) = secrets::verify_request(
            secret,
            sig,
            now,
            self.settings.signature_window_ms,
            method,
            &signed,
            options.body.unwrap_or_default(),
        ) else {
            return Ok(false);
        };
        if !self.settings.single_use_signatures {
            return Ok(true);
        }
        if mode == Mode::NonBlocking {
            return Err(Halt::Wait(WouldBlock::Commit));
        }
        let oldest = now
            .saturating_sub(self.settings.signature_window_ms)
            .div_euclid(1000);
        Ok(self.write(|tx| {
            tx.prune_signatures(oldest, 64)?;
            tx.record_signature(verified.t_seconds, &verified.mac)
        })?)
    }

    pub(super) fn rekey(
        &self,
        new: MasterKey,
        kdf: Option<(Vec<u8>, Argon2Params)>,
    ) -> Result<usize> {
        self.check_open()?;
        let current = self.master.read().clone();
        let now = (self.settings.clock)();
        let count = self.write(|tx| {
            if let Some(check) = tx.meta(Meta::MasterCheck)? {
                if !current.as_ref().is_some_and(|c| c.matches(&check)) {
                    return Err(Error::WrongMasterKey);
                }
            }
            let mut count = 0usize;
            for mut rec in tx.keys_of(None)? {
                let Some(sealed) = &rec.signing_secret else {
                    continue;
                };
                let aad = secrets::signing_aad(&rec.key_id);
                let cur = current.as_ref().ok_or(Error::WrongMasterKey)?;
                let plain = cur
                    .open(&aad, sealed)
                    .ok_or_else(|| undecryptable(&rec.key_id))?;
                #[cfg(test)]
                if count >= super::tests::REKEY_FAIL_AFTER.load(std::sync::atomic::Ordering::SeqCst)
                {
                    return Err(Error::Storage("injected failure during rekey".into()));
                }
                rec.signing_secret = Some(new.seal(&aad, &plain)?);
                tx.put_key(&rec)?;
                count += 1;
            }
            tx.put_meta(Meta::MasterCheck, &new.check_value()?)?;
            if let Some((salt, params)) = &kdf {
                tx.put_meta(Meta::MasterSalt, salt)?;
                tx.put_meta(Meta::MasterKdf, &params.encode())?;
            }
            self.audit(
                tx,
                now,
                AuditAction::MasterKeyRotated,
                None,
                None,
                json!({ "reencrypted": count, "passphrase": kdf.is_some() }),
            )?;
            Ok(count)
        })?;
        *self.master.write() = Some(new);
        Ok(count)
    }

    /// The master key, required to create a signing key.
    pub(super) fn master_for_signing(&self) -> Result<MasterKey> {
        self.master.read().clone().ok_or_else(|| {
            Error::invalid(
                "signing keys need a master key: open the vault with master_key, a passphrase or KEYLEDGER_MASTER_KEY",
            )
        })
    }
}

/// For a signing key: a fresh signing secret, handed to `token` (shown once) and returned
/// sealed under the master key for storage. `None` for other keys.
pub(super) fn seal_signing_secret(
    master: Option<&MasterKey>,
    key_id: &str,
    token: &mut SecretToken,
) -> Result<Option<Vec<u8>>> {
    let Some(master) = master else {
        return Ok(None);
    };
    let plain = secrets::new_signing_secret()?;
    let sealed = master.seal(&secrets::signing_aad(key_id), plain.as_bytes())?;
    token.signing = Some(plain);
    Ok(Some(sealed))
}

pub(super) fn no_master_key() -> Error {
    Error::WrongMasterKey
}

pub(super) fn undecryptable(key_id: &str) -> Error {
    Error::Storage(format!(
        "the signing secret of key {key_id} does not decrypt: the record was altered or moved"
    ))
}

/// The master key for this handle: the one given, else derived from the passphrase (salt
/// and parameters stored in the vault, created on first use), else `KEYLEDGER_MASTER_KEY`.
/// It must match the vault's check value, which the first key given creates.
pub(super) fn resolve_master_key(
    store: &dyn Backend,
    key: Option<MasterKey>,
    passphrase: Option<Zeroizing<String>>,
) -> Result<Option<MasterKey>> {
    let key = match (key, passphrase) {
        (Some(k), _) => Some(k),
        (None, Some(p)) => {
            let mut tx = store.write()?;
            let salt = tx.meta(Meta::MasterSalt)?;
            let kdf = tx
                .meta(Meta::MasterKdf)?
                .and_then(|v| Argon2Params::decode(&v));
            let (salt, kdf) = match (salt, kdf) {
                (Some(salt), Some(kdf)) => {
                    drop(tx);
                    (salt, kdf)
                }
                _ => {
                    let mut salt = vec![0u8; 16];
                    getrandom::fill(&mut salt).map_err(Error::storage)?;
                    let kdf = Argon2Params::default();
                    tx.put_meta(Meta::MasterSalt, &salt)?;
                    tx.put_meta(Meta::MasterKdf, &kdf.encode())?;
                    tx.commit(Durability::Immediate)?;
                    (salt, kdf)
                }
            };
            Some(MasterKey::from_passphrase(p.as_bytes(), &salt, kdf)?)
        }
        (None, None) => MasterKey::from_env()?,
    };
    let Some(key) = key else {
        return Ok(None);
    };
    if let Some(check) = store.read()?.meta(Meta::MasterCheck)? {
        return if key.matches(&check) {
            Ok(Some(key))
        } else {
            Err(Error::WrongMasterKey)
        };
    }
    let mut tx = store.write()?;
    match tx.meta(Meta::MasterCheck)? {
        Some(check) if !key.matches(&check) => return Err(Error::WrongMasterKey),
        Some(_) => {}
        None => {
            tx.put_meta(Meta::MasterCheck, &key.check_value()?)?;
            tx.commit(Durability::Immediate)?;
        }
    }
    Ok(Some(key))
}
