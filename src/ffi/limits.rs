//! Rate limits and refills over the C ABI: rate limits on a key or an account, and account refills.
//!
//! A limit's owner is given as `(owner_kind, owner_id, owner_id_len)`: `KL_OWNER_KEY`
//! with a key id, or `KL_OWNER_ACCOUNT` with an account id (an account limit is shared by
//! all its keys). Limits are applied by `kl_authorize*` (auto-applied ones always, others
//! when `kl_authorize_opts.limits_json` names them); an exceeded limit is
//! `KL_RATE_LIMITED` (HTTP 429) with the body `{"error":"rate_limited","limit","max",
//! "remaining":0,"reset_ms","retry_after"}` from `kl_last_error_body`.

use std::ffi::c_char;

use super::handle::kl_vault;
use super::panic::{boundary, Failure};
use super::status::kl_status;
use crate::{LimitOwner, RefillInterval};

/// `owner_kind` of a limit on one key (`owner_id` is its key id).
pub const KL_OWNER_KEY: u32 = 0;
/// `owner_kind` of a limit on an account, shared by all its keys (`owner_id` is the
/// account id).
pub const KL_OWNER_ACCOUNT: u32 = 1;
/// `interval` of `kl_set_refill`: at 00:00 UTC every day.
pub const KL_REFILL_DAILY: u32 = 0;
/// `interval` of `kl_set_refill`: at 00:00 UTC on `day` (1–28) of every month.
pub const KL_REFILL_MONTHLY: u32 = 1;

/// The owner of a limit, or `KL_INVALID_ARGUMENT` for an unknown kind.
fn owner(kind: u32, id: &str) -> Result<LimitOwner<'_>, Failure> {
    match kind {
        KL_OWNER_KEY => Ok(LimitOwner::Key(id)),
        KL_OWNER_ACCOUNT => Ok(LimitOwner::Account(id)),
        _ => Err(Failure::invalid(format!(
            "owner_kind must be KL_OWNER_KEY (0) or KL_OWNER_ACCOUNT (1), got {kind}"
        ))),
    }
}

/// Set (or replace: same owner and name) the rate limit `name` (1–64 characters of
/// `[a-z0-9_:.-]`) allowing `limit` (> 0) units per `duration_ms` (1 ms – 366 days) on a
/// key or an account (`owner_kind`: `KL_OWNER_KEY` / `KL_OWNER_ACCOUNT`). `auto_apply`
/// non-zero: checked by every authorization; 0: only when named in
/// `kl_authorize_opts.limits_json`. Changing a limit's definition starts its counter
/// afresh. On `KL_OK`, `*out_json` receives `{"name","limit","duration_ms","auto_apply"}`
/// (free with `kl_string_free`). Returns `KL_OK`, `KL_NOT_FOUND` (key or account),
/// `KL_INVALID_ARGUMENT`, `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_set_ratelimit(
    v: *const kl_vault,
    owner_kind: u32,
    owner_id: *const c_char,
    owner_id_len: usize,
    name: *const c_char,
    name_len: usize,
    limit: u64,
    duration_ms: u64,
    auto_apply: u8,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_set_ratelimit", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let id = try_str!(owner_id, owner_id_len);
        let name = try_str!(name, name_len);
        let owner = owner(owner_kind, id)?;
        out.put_json(&vault.set_ratelimit(owner, name, limit, duration_ms, auto_apply != 0)?)
    })
}

/// Remove the rate limit `name` of a key or an account (see `kl_set_ratelimit`). On
/// `KL_OK`, `*out_json` receives the removed limit (free with `kl_string_free`). Returns
/// `KL_OK`, `KL_NOT_FOUND` (owner or limit), `KL_INVALID_ARGUMENT`, `KL_VAULT_CLOSED`,
/// `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_remove_ratelimit(
    v: *const kl_vault,
    owner_kind: u32,
    owner_id: *const c_char,
    owner_id_len: usize,
    name: *const c_char,
    name_len: usize,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_remove_ratelimit", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let id = try_str!(owner_id, owner_id_len);
        let name = try_str!(name, name_len);
        let owner = owner(owner_kind, id)?;
        out.put_json(&vault.remove_ratelimit(owner, name)?)
    })
}

/// The rate limits of a key or an account, by name, as a JSON array of
/// `{"name","limit","duration_ms","auto_apply"}` (free with `kl_string_free`). Returns
/// `KL_OK`, `KL_NOT_FOUND` (key or account), `KL_INVALID_ARGUMENT`, `KL_VAULT_CLOSED`,
/// `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_ratelimits(
    v: *const kl_vault,
    owner_kind: u32,
    owner_id: *const c_char,
    owner_id_len: usize,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_ratelimits", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let id = try_str!(owner_id, owner_id_len);
        let owner = owner(owner_kind, id)?;
        out.put_json(&vault.ratelimits(owner)?)
    })
}

/// Give account `account_id` a quota that refills: at the first call after each period
/// boundary (00:00 UTC daily, or on `day` of the month) its credits are *set* to `amount`,
/// in that call's transaction, audited as `credits_refilled`. `interval` is
/// `KL_REFILL_DAILY` or `KL_REFILL_MONTHLY`; `day` (1–28) is used by monthly refills only
/// (pass 1 or 0 for daily ones). The first refill happens at the next boundary. On
/// `KL_OK`, `*out_json` receives the account (see `kl_create_account`) with its
/// `"refill": {"amount","interval":"daily"|"monthly","day"}` (free with
/// `kl_string_free`). Returns `KL_OK`, `KL_NOT_FOUND`, `KL_INVALID_ARGUMENT` (unknown
/// interval, monthly day outside 1–28), `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_set_refill(
    v: *const kl_vault,
    account_id: *const c_char,
    account_id_len: usize,
    amount: u64,
    interval: u32,
    day: u8,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_set_refill", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let id = try_str!(account_id, account_id_len);
        let interval = match interval {
            KL_REFILL_DAILY => RefillInterval::Daily,
            KL_REFILL_MONTHLY => RefillInterval::Monthly,
            other => {
                return Err(Failure::invalid(format!(
                    "interval must be KL_REFILL_DAILY (0) or KL_REFILL_MONTHLY (1), got {other}"
                )))
            }
        };
        out.put_json(&vault.set_refill(id, amount, interval, day)?)
    })
}

/// Remove account `account_id`'s refill plan (its credits stay as they are). On `KL_OK`,
/// `*out_json` receives the account, with `"refill": null` (free with `kl_string_free`).
/// Returns `KL_OK`, `KL_NOT_FOUND`, `KL_INVALID_ARGUMENT`, `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_clear_refill(
    v: *const kl_vault,
    account_id: *const c_char,
    account_id_len: usize,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_clear_refill", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let id = try_str!(account_id, account_id_len);
        out.put_json(&vault.clear_refill(id)?)
    })
}

/// The `owner_kind` for a limit named by exactly one of `key_id` and `account_id` (each
/// optional: NULL, length 0 is absent), the rule the hosts check through here:
/// `*out_kind` is `KL_OWNER_KEY` or `KL_OWNER_ACCOUNT`. Both or neither is
/// `KL_INVALID_ARGUMENT` with the core's message.
#[no_mangle]
pub unsafe extern "C" fn kl_limit_owner(
    key_id: *const c_char,
    key_id_len: usize,
    account_id: *const c_char,
    account_id_len: usize,
    out_kind: *mut u32,
) -> kl_status {
    boundary("kl_limit_owner", || {
        let out = try_out!(out_kind);
        let key_id = try_opt_str!(key_id, key_id_len);
        let account_id = try_opt_str!(account_id, account_id_len);
        out.write(match LimitOwner::from_ids(key_id, account_id)? {
            LimitOwner::Key(_) => KL_OWNER_KEY,
            LimitOwner::Account(_) => KL_OWNER_ACCOUNT,
        });
        Ok(())
    })
}
