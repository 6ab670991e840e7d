//! The vault handle: `kl_vault_open`, `kl_vault_flush`, `kl_vault_close`, `kl_vault_free`.

use std::ffi::c_char;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

use super::args::parse_json;
use super::panic::{boundary, guard, Failure};
use super::status::kl_status;
use crate::{Argon2Params, Durability, MasterKey, Millis, ThrottleConfig, Vault, VaultOptions};

/// An open vault. Opaque: created by `kl_vault_open`, destroyed by `kl_vault_free`.
///
/// Thread-safe: any number of threads may call any function on one handle at once, except
/// `kl_vault_free`, which must be the last call on it. After `kl_vault_close` the handle
/// stays valid memory and every call on it returns `KL_VAULT_CLOSED` until it is freed.
#[allow(non_camel_case_types)]
pub struct kl_vault {
    // The core's `Vault` is `Sync` and its `close()` already turns every later call into
    // `vault_closed`, so the handle needs no lock of its own: the hot path takes none.
    pub(crate) vault: Vault,
}

/// The `options_json` of `kl_vault_open`. No `Debug`: it may hold a master key or a
/// passphrase.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenOptions {
    #[serde(default)]
    exclusive: bool,
    durability: Option<Durability>,
    argon2: Option<Argon2Json>,
    cache_capacity: Option<usize>,
    actor: Option<String>,
    flush_interval_ms: Option<u64>,
    master_key: Option<SecretString>,
    master_passphrase: Option<SecretString>,
    signature_window_ms: Option<Millis>,
    throttle: Option<ThrottleJson>,
    refusal_retention_ms: Option<u64>,
    argon2_queue: Option<usize>,
    #[serde(default)]
    single_use_signatures: bool,
}

/// A string parsed out of the options that is wiped when dropped (a master key's base64
/// or a passphrase).
struct SecretString(Zeroizing<String>);

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
        String::deserialize(d).map(|s| SecretString(Zeroizing::new(s)))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThrottleJson {
    burst: Option<u32>,
    per_second: Option<f64>,
    budget_burst: Option<u32>,
    budget_per_second: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Argon2Json {
    m_kib: u32,
    t: u32,
    p: u32,
}

impl OpenOptions {
    fn into_vault_options(self) -> Result<VaultOptions, Failure> {
        let mut o = VaultOptions {
            exclusive: self.exclusive,
            actor: self.actor,
            single_use_signatures: self.single_use_signatures,
            ..VaultOptions::default()
        };
        if let Some(key) = self.master_key {
            o.master_key = Some(MasterKey::from_base64(&key.0)?);
        }
        o.master_passphrase = self.master_passphrase.map(|p| p.0);
        if let Some(ms) = self.signature_window_ms {
            o.signature_window_ms = ms;
        }
        if let Some(t) = self.throttle {
            let mut throttle = ThrottleConfig::default();
            if let Some(b) = t.burst {
                throttle.burst = b;
            }
            if let Some(r) = t.per_second {
                if !r.is_finite() || r < 0.0 {
                    return Err(Failure::invalid(
                        "options_json: throttle.per_second must be a non-negative number",
                    ));
                }
                throttle.per_second = r;
            }
            if let Some(b) = t.budget_burst {
                throttle.budget_burst = b;
            }
            if let Some(r) = t.budget_per_second {
                throttle.budget_per_second = r;
            }
            o.throttle = throttle;
        }
        if let Some(d) = self.durability {
            o.durability = d;
        }
        if let Some(a) = self.argon2 {
            o.argon2 = Some(Argon2Params {
                m_kib: a.m_kib,
                t: a.t,
                p: a.p,
            });
        }
        if let Some(q) = self.argon2_queue {
            o.argon2_queue = q;
        }
        if let Some(c) = self.cache_capacity {
            o.cache_capacity = c;
        }
        if let Some(ms) = self.flush_interval_ms {
            o.flush_interval = Duration::from_millis(ms);
        }
        if let Some(ms) = self.refusal_retention_ms {
            o.refusal_retention = (ms > 0).then(|| Duration::from_millis(ms));
        }
        Ok(o)
    }
}

/// Open (or create) the vault file at `path` (UTF-8, `path_len` bytes, not necessarily
/// NUL-terminated). The file is created with mode 0600.
///
/// `options_json` may be NULL (defaults) or a JSON object with any of:
/// `{"exclusive": false, "durability": "immediate"|"eventual", "argon2": {"m_kib": 19456,
/// "t": 2, "p": 1}, "cache_capacity": 100000, "actor": "name", "flush_interval_ms": 1000,
/// "master_key": "<base64 of 32 bytes>", "master_passphrase": "...",
/// "signature_window_ms": 300000, "throttle": {"burst": 10, "per_second": 1.0,
/// "budget_burst": 30, "budget_per_second": 3.0}, "argon2_queue": 32}`.
/// Unknown fields are `KL_INVALID_ARGUMENT`. `"eventual"` requires `"exclusive": true`.
///
/// Master key (needed only for signing keys): `"master_key"` (standard or
/// URL-safe base64, padding optional) or `"master_passphrase"` (argon2id, salt stored in
/// the vault), not both; with neither, `KEYLEDGER_MASTER_KEY` is read from the
/// environment, else the vault opens without one. The parsed copies are wiped after use;
/// wiping `options_json` itself is the caller's business. `"signature_window_ms"` (> 0):
/// how far a request signature's `t=` may be from now, each side (default 300 s).
/// `"throttle"`: failed-secret token bucket per key_id (`burst` ≥ 0 attempts,
/// `per_second` ≥ 0 regained; default 10 and 1.0) and the process budget of failed
/// verifications (`budget_burst` ≥ 1, `budget_per_second` ≥ 0; default 30 and 3.0): when
/// spent, a secret not yet verified is refused with `KL_TOO_MANY_ATTEMPTS` (429).
/// `"argon2_queue"`: authorizations that may wait for an argon2 slot (default 32); beyond
/// that, `KL_TOO_MANY_ATTEMPTS` at once. `"argon2"` applies only when this open creates
/// the vault; change an existing vault's parameters with `kl_set_argon2_params`.
/// `"refusal_retention_ms"`: how long `auth_refused` audit entries are kept (default 30
/// days; 0 keeps them forever). `"single_use_signatures": true`: each
/// request signature is accepted once, across every process opening the vault (one
/// durable write per signed call; a replay is `KL_INVALID_SIGNATURE`).
///
/// On `KL_OK`, `*out` receives a handle the caller owns and frees with `kl_vault_free`.
/// Returns `KL_INVALID_ARGUMENT` (NULL `path` or `out`, bad UTF-8, bad options, a master
/// key that is not base64 of 32 bytes, both key fields), `KL_WRONG_MASTER_KEY` (the vault
/// was sealed under another master key or passphrase), `KL_VAULT_LOCKED` (another process
/// holds it exclusively), `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_vault_open(
    path: *const c_char,
    path_len: usize,
    options_json: *const c_char,
    options_len: usize,
    out: *mut *mut kl_vault,
) -> kl_status {
    boundary("kl_vault_open", || {
        let out = try_out!(out);
        let path = try_str!(path, path_len);
        let options = try_opt_str!(options_json, options_len);
        let options: OpenOptions = match options {
            Some(json) => {
                parse_json::<Option<OpenOptions>>(json, "options_json")?.unwrap_or_default()
            }
            None => OpenOptions::default(),
        };
        let vault = Vault::open_with(path, options.into_vault_options()?)?;
        out.write(Box::into_raw(Box::new(kl_vault { vault })));
        Ok(())
    })
}

/// Flush usage counters and request-path audit entries now (also done every second and
/// on close). Returns `KL_OK`, `KL_INVALID_ARGUMENT` (NULL `v`), `KL_VAULT_CLOSED`,
/// `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_vault_flush(v: *const kl_vault) -> kl_status {
    boundary("kl_vault_flush", || {
        let vault = try_vault!(v);
        vault.flush()?;
        Ok(())
    })
}

/// Flush and close the vault. The handle stays allocated: later calls on it return
/// `KL_VAULT_CLOSED` (not a crash) until `kl_vault_free`. Closing twice is `KL_OK`.
/// Returns `KL_OK`, `KL_INVALID_ARGUMENT` (NULL `v`), `KL_STORAGE` (the final flush
/// failed; the vault is closed anyway).
#[no_mangle]
pub unsafe extern "C" fn kl_vault_close(v: *const kl_vault) -> kl_status {
    boundary("kl_vault_close", || {
        let vault = try_vault!(v);
        vault.close()?;
        Ok(())
    })
}

/// Close the vault if it is open (flushing it) and free the handle. `NULL` is a no-op.
/// No other thread may use the handle during or after this call.
#[no_mangle]
pub unsafe extern "C" fn kl_vault_free(v: *mut kl_vault) {
    if v.is_null() {
        return;
    }
    guard((), || {
        // SAFETY: `v` came from `Box::into_raw` in `kl_vault_open` and is freed once
        // (contract above). Dropping the `Vault` closes and flushes it.
        drop(unsafe { Box::from_raw(v) });
    });
}
