//! Keys: mint (with or without the signing secret), read, list, revoke, disable, enable,
//! usage, scopes, expiry, rotation, and `kl_whoami`.

use super::*;

/// The `spec_json` of `kl_create_key`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeySpec {
    account_id: String,
    name: String,
    scopes: Vec<String>,
    prefix: Option<String>,
    style: Option<crate::TokenStyle>,
    expires_at: Option<Millis>,
    expires_in_ms: Option<i64>,
    #[serde(default)]
    operator: bool,
    #[serde(default)]
    signing: bool,
    metadata: Option<Value>,
}

impl From<KeySpec> for NewKey {
    fn from(s: KeySpec) -> NewKey {
        let mut k = NewKey::new(s.account_id, s.name, s.scopes);
        if let Some(p) = s.prefix {
            k.prefix = p;
        }
        k.style = s.style.unwrap_or_default();
        k.expires_at = s.expires_at;
        k.expires_in_ms = s.expires_in_ms;
        k.operator = s.operator;
        k.signing = s.signing;
        k.metadata = s.metadata;
        k
    }
}

/// Write a new token, its signing secret (NULL for a key that does not sign) and its
/// key's JSON: all or none.
pub(super) fn put_token_and_key(
    out_token: Out<*mut c_char>,
    out_signing_secret: Option<Out<*mut c_char>>,
    out_key_json: Out<*mut c_char>,
    token: &SecretToken,
    info: &KeyInfo,
) -> FfiResult {
    let json = serde_json::to_string(info)
        .map_err(|e| crate::Error::Storage(format!("could not encode JSON: {e}")))?;
    out_token.write(secret_c_string(token.expose()));
    if let Some(out) = out_signing_secret {
        out.write(
            token
                .signing_secret()
                .map_or(std::ptr::null_mut(), secret_c_string),
        );
    }
    out_key_json.put_string(json);
    Ok(())
}

/// Mint a key. `spec_json` is a JSON object: `{"account_id": "...", "name": "...",
/// "scopes": ["sms:send", ...]}` required, and optionally `"prefix"` (default
/// `"kl_live"`), `"style"` (`"prefixed"`, the default, or `"colon"` for a
/// `<key_id>:<secret>` token without prefix or checksum), `"expires_at"` (unix ms) or `"expires_in_ms"`, `"operator"` (bool),
/// `"signing"` (bool), `"metadata"` (object). Unknown fields are `KL_INVALID_ARGUMENT`.
///
/// On `KL_OK`, `*out_token` receives the token — shown once, never retrievable again;
/// free it with `kl_secret_free` (which wipes it) — and `*out_key_json` the key's public
/// info `{"key_id","prefix","style","account_id","name","scopes","operator","created_at",
/// "expires_at","disabled","revoked_at","signing","rotated_from","metadata",
/// "last_used_at"}` (free with `kl_string_free`). Both or neither are written.
///
/// A signing key (`"signing": true`, which needs the vault's master key) also gets a
/// signing secret, which this function does not return: use `kl_create_key_signing` to
/// receive it at creation, or `kl_reveal_signing_secret` later.
///
/// Returns `KL_OK`, `KL_NOT_FOUND` (account), `KL_INVALID_ARGUMENT` (also: a signing key
/// without a master key), `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_create_key(
    v: *const kl_vault,
    spec_json: *const c_char,
    spec_len: usize,
    out_token: *mut *mut c_char,
    out_key_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_create_key", || {
        let out_token = try_out!(out_token);
        let out_key_json = try_out!(out_key_json);
        let vault = try_vault!(v);
        let spec: KeySpec = parse_json(try_str!(spec_json, spec_len), "spec_json")?;
        let (token, info) = vault.create_key(spec.into())?;
        put_token_and_key(out_token, None, out_key_json, &token, &info)
    })
}

/// `kl_create_key` that also returns the signing secret. Every out-parameter is
/// required (non-NULL). On `KL_OK`, `*out_token` and `*out_key_json` are as for
/// `kl_create_key`, and `*out_signing_secret` receives the key's signing secret — 64
/// lowercase hex characters whose ASCII bytes are the HMAC key of `kl_sign_request`; free
/// it with `kl_secret_free` — or NULL when the key is not a signing key. All three or
/// none are written. Same statuses as `kl_create_key`.
#[no_mangle]
pub unsafe extern "C" fn kl_create_key_signing(
    v: *const kl_vault,
    spec_json: *const c_char,
    spec_len: usize,
    out_token: *mut *mut c_char,
    out_signing_secret: *mut *mut c_char,
    out_key_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_create_key_signing", || {
        let out_token = try_out!(out_token);
        let out_signing_secret = try_out!(out_signing_secret);
        let out_key_json = try_out!(out_key_json);
        let vault = try_vault!(v);
        let spec: KeySpec = parse_json(try_str!(spec_json, spec_len), "spec_json")?;
        let (token, info) = vault.create_key(spec.into())?;
        put_token_and_key(
            out_token,
            Some(out_signing_secret),
            out_key_json,
            &token,
            &info,
        )
    })
}

/// The key `key_id`'s public info as JSON (see `kl_create_key`; free with
/// `kl_string_free`). Returns `KL_OK`, `KL_NOT_FOUND`, `KL_INVALID_ARGUMENT`,
/// `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_key(
    v: *const kl_vault,
    key_id: *const c_char,
    key_id_len: usize,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_key", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let key_id = try_str!(key_id, key_id_len);
        out.put_json(&vault.key(key_id)?)
    })
}

/// The keys of account `account_id` (optional: NULL lists every key), ordered by key_id,
/// as a JSON array (free with `kl_string_free`). Returns `KL_OK`, `KL_INVALID_ARGUMENT`,
/// `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_list_keys(
    v: *const kl_vault,
    account_id: *const c_char,
    account_id_len: usize,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_list_keys", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let account_id = try_opt_str!(account_id, account_id_len);
        out.put_json(&vault.list_keys(account_id)?)
    })
}

/// Run a core call that takes a key id and returns something serializable.
unsafe fn key_call<T: serde::Serialize>(
    function: &str,
    v: *const kl_vault,
    key_id: *const c_char,
    key_id_len: usize,
    out_json: *mut *mut c_char,
    call: impl FnOnce(&crate::Vault, &str) -> crate::Result<T>,
) -> kl_status {
    boundary(function, || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let key_id = try_str!(key_id, key_id_len);
        out.put_json(&call(vault, key_id)?)
    })
}

/// Revoke key `key_id` for good: refused as `invalid_api_key` from the next call in
/// every process. Revoking a revoked key changes nothing. On `KL_OK`, `*out_json`
/// receives the key's info (free with `kl_string_free`). Returns `KL_OK`,
/// `KL_NOT_FOUND`, `KL_INVALID_ARGUMENT`, `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_revoke_key(
    v: *const kl_vault,
    key_id: *const c_char,
    key_id_len: usize,
    out_json: *mut *mut c_char,
) -> kl_status {
    // SAFETY: module contract, forwarded.
    unsafe {
        key_call(
            "kl_revoke_key",
            v,
            key_id,
            key_id_len,
            out_json,
            crate::Vault::revoke_key,
        )
    }
}

/// Disable key `key_id` (refused as `api_key_inactive` until enabled). On `KL_OK`,
/// `*out_json` receives the key's info (free with `kl_string_free`). Returns `KL_OK`,
/// `KL_NOT_FOUND`, `KL_INVALID_ARGUMENT` (revoked key), `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_disable_key(
    v: *const kl_vault,
    key_id: *const c_char,
    key_id_len: usize,
    out_json: *mut *mut c_char,
) -> kl_status {
    // SAFETY: module contract, forwarded.
    unsafe {
        key_call(
            "kl_disable_key",
            v,
            key_id,
            key_id_len,
            out_json,
            crate::Vault::disable_key,
        )
    }
}

/// Enable a disabled key `key_id`. On `KL_OK`, `*out_json` receives the key's info
/// (free with `kl_string_free`). Returns `KL_OK`, `KL_NOT_FOUND`,
/// `KL_INVALID_ARGUMENT` (revoked key), `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_enable_key(
    v: *const kl_vault,
    key_id: *const c_char,
    key_id_len: usize,
    out_json: *mut *mut c_char,
) -> kl_status {
    // SAFETY: module contract, forwarded.
    unsafe {
        key_call(
            "kl_enable_key",
            v,
            key_id,
            key_id_len,
            out_json,
            crate::Vault::enable_key,
        )
    }
}

/// Usage of key `key_id`: `{"key_id","last_used_at","granted","refused","hourly":
/// [[hour_start_ms, count], ...]}` (free with `kl_string_free`). Returns `KL_OK`,
/// `KL_NOT_FOUND`, `KL_INVALID_ARGUMENT`, `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_usage(
    v: *const kl_vault,
    key_id: *const c_char,
    key_id_len: usize,
    out_json: *mut *mut c_char,
) -> kl_status {
    // SAFETY: module contract, forwarded.
    unsafe {
        key_call(
            "kl_usage",
            v,
            key_id,
            key_id_len,
            out_json,
            crate::Vault::usage,
        )
    }
}

/// Replace key `key_id`'s scopes with `scopes_json`, a JSON array of strings. On `KL_OK`,
/// `*out_json` receives the key's info (free with `kl_string_free`). Returns `KL_OK`,
/// `KL_NOT_FOUND`, `KL_INVALID_ARGUMENT`, `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_set_scopes(
    v: *const kl_vault,
    key_id: *const c_char,
    key_id_len: usize,
    scopes_json: *const c_char,
    scopes_len: usize,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_set_scopes", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let key_id = try_str!(key_id, key_id_len);
        let scopes: Vec<String> = parse_json(try_str!(scopes_json, scopes_len), "scopes_json")?;
        out.put_json(&vault.set_scopes(key_id, &scopes)?)
    })
}

/// Set key `key_id`'s expiry to `expires_at` (unix ms) when `has_expiry` is non-zero, or
/// clear it when `has_expiry` is 0 (`expires_at` is then ignored). On `KL_OK`, `*out_json`
/// receives the key's info (free with `kl_string_free`). Returns `KL_OK`, `KL_NOT_FOUND`,
/// `KL_INVALID_ARGUMENT`, `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_set_expiry(
    v: *const kl_vault,
    key_id: *const c_char,
    key_id_len: usize,
    has_expiry: u8,
    expires_at: i64,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_set_expiry", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let key_id = try_str!(key_id, key_id_len);
        let at = (has_expiry != 0).then_some(expires_at);
        out.put_json(&vault.set_expiry(key_id, at)?)
    })
}

/// Zero-downtime rotation: mint a new key with the same account, name, prefix, scopes,
/// operator flag and metadata; the old key keeps working for `grace_ms` (0: it stops now).
/// On `KL_OK`, `*out_token` receives the new token (free with `kl_secret_free`) and
/// `*out_key_json` the new key's info (free with `kl_string_free`); both or neither.
/// Rotating a signing key mints a new signing secret (needs the master key), which this
/// function does not return: use `kl_rotate_key_signing`, or `kl_reveal_signing_secret`.
/// Returns `KL_OK`, `KL_NOT_FOUND`, `KL_INVALID_ARGUMENT`, `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_rotate_key(
    v: *const kl_vault,
    key_id: *const c_char,
    key_id_len: usize,
    grace_ms: i64,
    out_token: *mut *mut c_char,
    out_key_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_rotate_key", || {
        let out_token = try_out!(out_token);
        let out_key_json = try_out!(out_key_json);
        let vault = try_vault!(v);
        let key_id = try_str!(key_id, key_id_len);
        let (token, info) = vault.rotate_key(key_id, grace_ms)?;
        put_token_and_key(out_token, None, out_key_json, &token, &info)
    })
}

/// `kl_rotate_key` that also returns the new key's signing secret: every out-parameter is
/// required; on `KL_OK` `*out_signing_secret` receives the new signing secret (free with
/// `kl_secret_free`), or NULL when the key is not a signing key. All three or none are
/// written. Same statuses as `kl_rotate_key`.
#[no_mangle]
pub unsafe extern "C" fn kl_rotate_key_signing(
    v: *const kl_vault,
    key_id: *const c_char,
    key_id_len: usize,
    grace_ms: i64,
    out_token: *mut *mut c_char,
    out_signing_secret: *mut *mut c_char,
    out_key_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_rotate_key_signing", || {
        let out_token = try_out!(out_token);
        let out_signing_secret = try_out!(out_signing_secret);
        let out_key_json = try_out!(out_key_json);
        let vault = try_vault!(v);
        let key_id = try_str!(key_id, key_id_len);
        let (token, info) = vault.rotate_key(key_id, grace_ms)?;
        put_token_and_key(
            out_token,
            Some(out_signing_secret),
            out_key_json,
            &token,
            &info,
        )
    })
}

/// Who `token` belongs to and what its account has left (runs the key checks of
/// `kl_authorize`, no scope, route or credit check): `{"account_id","key_id","key_name",
/// "auth_method","scopes","credits","total_credits"}` (free with `kl_string_free`).
/// Returns `KL_OK`, the key refusals (`KL_INVALID_API_KEY`, `KL_API_KEY_INACTIVE`,
/// `KL_API_KEY_EXPIRED`), `KL_INVALID_ARGUMENT`, `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_whoami(
    v: *const kl_vault,
    token: *const c_char,
    token_len: usize,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_whoami", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let token = try_str!(token, token_len);
        out.put_json(&vault.whoami(token)?)
    })
}
