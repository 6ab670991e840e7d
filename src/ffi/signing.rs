//! Request signing over the C ABI: the master key, signing secrets, request signatures and the
//! webhook helpers, plus the handle's counters (`kl_vault_stats`).
//!
//! Secrets going out (`kl_reveal_signing_secret`, `kl_generate_master_key`) are freed with
//! `kl_secret_free`, which wipes them. Signatures and statistics are not secret and are
//! freed with `kl_string_free`.

use std::ffi::c_char;

use serde_json::json;
use zeroize::Zeroizing;

use super::args::{opt_bytes, secret_c_string, Out, KL_MAX_INPUT_LEN};
use super::handle::kl_vault;
use super::panic::{boundary, guard, Failure};
use super::status::kl_status;
use crate::MasterKey;

/// The longest webhook or request body accepted: no limit beyond the address space.
const MAX_BODY: usize = isize::MAX as usize;

/// A required byte buffer: NULL is `KL_INVALID_ARGUMENT`, unless `len` is 0 and
/// `empty_ok`, when it is the empty buffer.
///
/// # Safety
/// `ptr` must be NULL or valid for reads of `len` bytes during the call.
unsafe fn bytes<'a>(
    ptr: *const u8,
    len: usize,
    max: usize,
    name: &str,
    empty_ok: bool,
) -> Result<&'a [u8], Failure> {
    // SAFETY: forwarded contract.
    match unsafe { opt_bytes(ptr, len, max, name) }? {
        Some(b) => Ok(b),
        None if empty_ok => Ok(&[]),
        None => Err(Failure::invalid(format!("{name} is NULL"))),
    }
}

// ------------------------------------------------------------------------ master key

/// A fresh random master key (32 bytes from the OS CSPRNG) as standard padded base64 —
/// the value for `"master_key"` in `kl_vault_open`'s options or for
/// `KEYLEDGER_MASTER_KEY`. On `KL_OK`, `*out_b64` receives it (free with
/// `kl_secret_free`). Returns `KL_OK`, `KL_INVALID_ARGUMENT` (NULL `out_b64`),
/// `KL_STORAGE` (no randomness).
#[no_mangle]
pub unsafe extern "C" fn kl_generate_master_key(out_b64: *mut *mut c_char) -> kl_status {
    boundary("kl_generate_master_key", || {
        let out: Out<*mut c_char> = try_out!(out_b64);
        let key = MasterKey::generate()?;
        out.write(secret_c_string(&key.to_base64()));
        Ok(())
    })
}

/// Whether the handle holds a master key (given at open, derived from a passphrase, or
/// read from `KEYLEDGER_MASTER_KEY`). On `KL_OK`, `*out` receives it. Also answers on a
/// closed handle. Returns `KL_OK`, `KL_INVALID_ARGUMENT` (NULL `v` or `out`).
#[no_mangle]
pub unsafe extern "C" fn kl_has_master_key(v: *const kl_vault, out: *mut bool) -> kl_status {
    boundary("kl_has_master_key", || {
        let out = try_out!(out);
        let vault = try_vault!(v);
        out.write(vault.has_master_key());
        Ok(())
    })
}

/// Master-key rotation: re-encrypt every signing secret under `new_master_key_b64` (base64
/// of 32 bytes) in one transaction, all or nothing, and make it this handle's master key.
/// Other processes must reopen with the new key (the old one then gets
/// `KL_WRONG_MASTER_KEY`). On `KL_OK`, `*out_count` receives how many secrets were
/// re-encrypted. A vault that never had a master key gets its first one this way. Returns
/// `KL_OK`, `KL_INVALID_ARGUMENT` (NULL, bad UTF-8, not base64 of 32 bytes),
/// `KL_WRONG_MASTER_KEY` (the vault has a master key and this handle does not hold it),
/// `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_rekey(
    v: *const kl_vault,
    new_master_key_b64: *const c_char,
    new_master_key_len: usize,
    out_count: *mut u64,
) -> kl_status {
    boundary("kl_rekey", || {
        let out = try_out!(out_count);
        let vault = try_vault!(v);
        let b64 = try_str!(new_master_key_b64, new_master_key_len);
        let key = MasterKey::from_base64(b64)?;
        let n = vault.rekey(key)?;
        out.write(n as u64);
        Ok(())
    })
}

/// `kl_rekey` to a key derived from a new `passphrase` (argon2id; a fresh salt is stored
/// in the vault). Same statuses as `kl_rekey`.
#[no_mangle]
pub unsafe extern "C" fn kl_rekey_passphrase(
    v: *const kl_vault,
    passphrase: *const c_char,
    passphrase_len: usize,
    out_count: *mut u64,
) -> kl_status {
    boundary("kl_rekey_passphrase", || {
        let out = try_out!(out_count);
        let vault = try_vault!(v);
        let passphrase = try_str!(passphrase, passphrase_len);
        let n = vault.rekey_passphrase(passphrase)?;
        out.write(n as u64);
        Ok(())
    })
}

/// The signing secret of signing key `key_id`, for an admin who lost it (audited as
/// `signing_secret_revealed`; needs the master key). On `KL_OK`, `*out_secret` receives
/// the 64 hex characters (free with `kl_secret_free`). Returns `KL_OK`, `KL_NOT_FOUND`,
/// `KL_INVALID_ARGUMENT` (not a signing key, bad input), `KL_WRONG_MASTER_KEY` (the
/// handle has no master key), `KL_VAULT_CLOSED`, `KL_STORAGE` (the secret does not
/// decrypt).
#[no_mangle]
pub unsafe extern "C" fn kl_reveal_signing_secret(
    v: *const kl_vault,
    key_id: *const c_char,
    key_id_len: usize,
    out_secret: *mut *mut c_char,
) -> kl_status {
    boundary("kl_reveal_signing_secret", || {
        let out: Out<*mut c_char> = try_out!(out_secret);
        let vault = try_vault!(v);
        let key_id = try_str!(key_id, key_id_len);
        let secret: Zeroizing<String> = vault.reveal_signing_secret(key_id)?;
        out.write(secret_c_string(&secret));
        Ok(())
    })
}

// ------------------------------------------------------------------------ signatures

/// The signature header (format 2) a client sends with a request to a signing key:
/// `"t=<t_seconds>,v2=<hex>"`, the hex being HMAC-SHA256 keyed with the ASCII bytes of
/// `secret` (the 64 hex characters of the signing secret) over
/// `"keyledger-signature-v2\n" + t + "\n" + METHOD + "\n" + target + "\n" +
/// hex(SHA-256(body))`. `path` is the request target as sent: the path with its query
/// string (`/send?to=A`); the `?` of an empty query is dropped. `method` is
/// upper-cased; `body` may be NULL with `body_len` 0 (empty body) and is any bytes. Pass
/// it to `kl_authorize` as `opts->signature` with the same body (and the query in
/// `opts->query`, or in `path`). On `KL_OK`, `*out_header` receives the header (free with
/// `kl_string_free`). Returns `KL_OK`, `KL_INVALID_ARGUMENT` (NULL or non-UTF-8 `secret`,
/// `method` or `path`). Does not touch a vault.
#[no_mangle]
pub unsafe extern "C" fn kl_sign_request(
    secret: *const c_char,
    secret_len: usize,
    t_seconds: i64,
    method: *const c_char,
    method_len: usize,
    path: *const c_char,
    path_len: usize,
    body: *const u8,
    body_len: usize,
    out_header: *mut *mut c_char,
) -> kl_status {
    boundary("kl_sign_request", || {
        let out: Out<*mut c_char> = try_out!(out_header);
        let secret = try_str!(secret, secret_len);
        let method = try_str!(method, method_len);
        let path = try_str!(path, path_len);
        // SAFETY: module contract.
        let body = unsafe { bytes(body, body_len, MAX_BODY, "body", true) }?;
        out.put_string(crate::sign_request(secret, t_seconds, method, path, body));
        Ok(())
    })
}

/// The webhook signature of `body` under `secret`: lowercase hex HMAC-SHA256, byte for
/// byte what `hmac.new(secret, body, sha256).hexdigest()` gives. `secret` is required
/// (non-NULL, at most `KL_MAX_INPUT_LEN` bytes, any bytes); `body` may be NULL with
/// `body_len` 0 (empty). On `KL_OK`, `*out_hex` receives the 64 hex characters (free with
/// `kl_string_free`). Returns `KL_OK`, `KL_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn kl_sign_webhook(
    secret: *const u8,
    secret_len: usize,
    body: *const u8,
    body_len: usize,
    out_hex: *mut *mut c_char,
) -> kl_status {
    boundary("kl_sign_webhook", || {
        let out: Out<*mut c_char> = try_out!(out_hex);
        // SAFETY: module contract.
        let secret = unsafe { bytes(secret, secret_len, KL_MAX_INPUT_LEN, "secret", false) }?;
        // SAFETY: module contract.
        let body = unsafe { bytes(body, body_len, MAX_BODY, "body", true) }?;
        out.put_string(crate::sign_webhook(secret, body));
        Ok(())
    })
}

/// Whether `signature_hex` (hex, either case, surrounding whitespace ignored) is the
/// webhook signature of `body` under `secret`, compared in constant time. `body` may be
/// NULL with `body_len` 0 (empty). Anything malformed — a NULL `secret` or
/// `signature_hex`, NULL with a non-zero length, non-UTF-8 or non-hex signature, a wrong
/// length — is `false`, never a crash. Does not touch the thread's last error.
#[no_mangle]
pub unsafe extern "C" fn kl_verify_webhook(
    body: *const u8,
    body_len: usize,
    signature_hex: *const c_char,
    signature_len: usize,
    secret: *const u8,
    secret_len: usize,
) -> bool {
    guard(false, || {
        // SAFETY (all three): module contract.
        let Ok(body) = (unsafe { bytes(body, body_len, MAX_BODY, "body", true) }) else {
            return false;
        };
        let Ok(Some(sig)) =
            (unsafe { super::args::opt_str(signature_hex, signature_len, "signature_hex") })
        else {
            return false;
        };
        let Ok(secret) = (unsafe { bytes(secret, secret_len, KL_MAX_INPUT_LEN, "secret", false) })
        else {
            return false;
        };
        crate::verify_webhook(body, sig, secret)
    })
}

// ------------------------------------------------------------------------ argon2

/// Change the vault's argon2id parameters for new hashes (`m_kib` KiB of memory, `t`
/// passes, `p` lanes), audited as `argon2_params_changed`. Existing hashes are rehashed at
/// their next verification only where the new parameters are stronger. Returns `KL_OK`,
/// `KL_INVALID_ARGUMENT` (parameters argon2 refuses, or below the OWASP argon2id minimum:
/// m ≥ 19456 KiB with t ≥ 2, or 47104/1, 12288/3, 9216/4, 7168/5), `KL_VAULT_CLOSED`,
/// `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_set_argon2_params(
    v: *const kl_vault,
    m_kib: u32,
    t: u32,
    p: u32,
) -> kl_status {
    boundary("kl_set_argon2_params", || {
        let vault = try_vault!(v);
        vault.set_argon2_params(crate::Argon2Params { m_kib, t, p })?;
        Ok(())
    })
}

// ------------------------------------------------------------------------ stats

/// This handle's counters as JSON (free with `kl_string_free`): `{"argon2_runs",
/// "read_txns", "commits", "throttled", "cache_mode": "shared"|"private"|"disabled"}` —
/// argon2 verifications run, read transactions opened, commits, secret checks answered
/// without argon2 (a secret already proved wrong, a spent budget, a full argon2 queue), and
/// how caches are validated. Also answers on a
/// closed handle (the counters of its life). Returns `KL_OK`, `KL_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn kl_vault_stats(
    v: *const kl_vault,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_vault_stats", || {
        let out: Out<*mut c_char> = try_out!(out_json);
        let vault = try_vault!(v);
        let s = vault.stats();
        out.put_json(&json!({
            "argon2_runs": s.argon2_runs,
            "read_txns": s.read_txns,
            "commits": s.commits,
            "throttled": s.throttled,
            "cache_mode": vault.cache_mode(),
        }))
    })
}
