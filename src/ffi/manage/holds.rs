//! Holds: reserve credits, settle the actual cost, release, list.
//!
//! A hold comes back as JSON `{"hold_id","account_id","key_id","amount","charged","state",
//! "created_at","expires_at","finished_at","replayed"}` (`state`: `"active"`,
//! `"settled"`, `"released"` or `"expired"`), freed with `kl_string_free`. A hold can also
//! be made by `kl_authorize` with `kl_authorize_opts.hold` (its id in `kl_grant.hold_id`).

use super::*;
use crate::SettleOptions;

/// The TTL of a hold made by `kl_authorize` with `hold_ttl_ms` 0: 15 minutes.
pub const KL_HOLD_DEFAULT_TTL_MS: u64 = 900_000;
/// The longest TTL a hold may have: 30 days.
pub const KL_HOLD_MAX_TTL_MS: u64 = 2_592_000_000;

// The C constants are literals (cbindgen writes them as they are): the same values.
const _: () = assert!(KL_HOLD_DEFAULT_TTL_MS == crate::DEFAULT_HOLD_TTL_MS);
const _: () = assert!(KL_HOLD_MAX_TTL_MS == crate::MAX_HOLD_TTL_MS);

/// Reserve `amount` (> 0) credits of account `id` for `ttl_ms` (1 ms – 30 days); they
/// come back at `kl_release`, at the TTL, or, less the charge, at `kl_settle`.
/// `idempotency_key` is optional (NULL: none; a repeat with the same amount and TTL
/// answers the same hold, `"replayed": true`). On `KL_OK`, `*out_json` receives the hold.
/// Returns `KL_OK`, `KL_INSUFFICIENT_CREDITS` (nothing reserved), `KL_IDEMPOTENCY_CONFLICT`,
/// `KL_NOT_FOUND`, `KL_INVALID_ARGUMENT`, `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_hold(
    v: *const kl_vault,
    id: *const c_char,
    id_len: usize,
    amount: u64,
    ttl_ms: u64,
    idempotency_key: *const c_char,
    idempotency_key_len: usize,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_hold", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let id = try_str!(id, id_len);
        let idempotency_key = try_opt_str!(idempotency_key, idempotency_key_len);
        out.put_json(&vault.hold(id, amount, ttl_ms, idempotency_key)?)
    })
}

/// Settle hold `hold_id`: charge `actual` credits and give the rest back. `allow_over`
/// non-zero lets `actual` exceed the hold's amount (the excess comes from the available
/// credits). `idempotency_key` is optional (NULL: none). A repeat of a settle with the same
/// amount answers the recorded outcome (`"replayed": true`). On `KL_OK`, `*out_json`
/// receives the hold. Returns `KL_OK`, `KL_HOLD_NOT_FOUND`, `KL_HOLD_SETTLED` (settled for
/// another amount, released or expired), `KL_INSUFFICIENT_CREDITS` (an excess the account
/// cannot pay; nothing changed), `KL_IDEMPOTENCY_CONFLICT`, `KL_INVALID_ARGUMENT`,
/// `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_settle(
    v: *const kl_vault,
    hold_id: *const c_char,
    hold_id_len: usize,
    actual: u64,
    allow_over: u8,
    idempotency_key: *const c_char,
    idempotency_key_len: usize,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_settle", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let hold_id = try_str!(hold_id, hold_id_len);
        let idempotency_key = try_opt_str!(idempotency_key, idempotency_key_len);
        let options = SettleOptions {
            allow_over: allow_over != 0,
            idempotency_key,
        };
        out.put_json(&vault.settle(hold_id, actual, &options)?)
    })
}

/// Release hold `hold_id`: every credit goes back. Releasing a released or expired hold
/// answers its record (`"replayed": true`). On `KL_OK`, `*out_json` receives the hold.
/// Returns `KL_OK`, `KL_HOLD_NOT_FOUND`, `KL_HOLD_SETTLED`, `KL_INVALID_ARGUMENT`,
/// `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_release(
    v: *const kl_vault,
    hold_id: *const c_char,
    hold_id_len: usize,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_release", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let hold_id = try_str!(hold_id, hold_id_len);
        out.put_json(&vault.release(hold_id)?)
    })
}

/// The active holds of account `id` (NULL: of every account) as a JSON array of holds.
/// Returns `KL_OK`, `KL_INVALID_ARGUMENT`, `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_list_holds(
    v: *const kl_vault,
    id: *const c_char,
    id_len: usize,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_list_holds", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let id = try_opt_str!(id, id_len);
        out.put_json(&vault.holds(id)?)
    })
}
