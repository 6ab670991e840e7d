//! Accounts and credits: create, read, list, top up, debit, balance.

use super::*;

/// Create an account `id` (1–128 bytes) with `credits` and optional `metadata_json` (NULL,
/// or a JSON object of at most 4 KiB). On `KL_OK`, `*out_json` receives the account
/// `{"id","credits","total_credits","created_at","metadata"}` (free with
/// `kl_string_free`). Returns `KL_OK`, `KL_ALREADY_EXISTS`, `KL_INVALID_ARGUMENT`,
/// `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_create_account(
    v: *const kl_vault,
    id: *const c_char,
    id_len: usize,
    credits: u64,
    metadata_json: *const c_char,
    metadata_len: usize,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_create_account", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let id = try_str!(id, id_len);
        let metadata = try_opt_str!(metadata_json, metadata_len)
            .map(|m| parse_json::<Value>(m, "metadata_json"))
            .transpose()?;
        out.put_json(&vault.create_account(id, credits, metadata)?)
    })
}

/// The account `id` as JSON (see `kl_create_account`; free with `kl_string_free`).
/// Returns `KL_OK`, `KL_NOT_FOUND`, `KL_INVALID_ARGUMENT`, `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_account(
    v: *const kl_vault,
    id: *const c_char,
    id_len: usize,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_account", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let id = try_str!(id, id_len);
        out.put_json(&vault.account(id)?)
    })
}

/// Every account, ordered by id, as a JSON array (free with `kl_string_free`).
/// Returns `KL_OK`, `KL_INVALID_ARGUMENT`, `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_list_accounts(
    v: *const kl_vault,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_list_accounts", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        out.put_json(&vault.list_accounts()?)
    })
}

/// Add `amount` (> 0) credits to account `id`; `reference` is optional (NULL: none, at most
/// 255 bytes, kept in the audit entry). On `KL_OK`, `*out_json` receives the balance
/// `{"account_id","credits","total_credits"}` (free with `kl_string_free`). Returns
/// `KL_OK`, `KL_NOT_FOUND`, `KL_INVALID_ARGUMENT` (zero amount, overflow),
/// `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_top_up(
    v: *const kl_vault,
    id: *const c_char,
    id_len: usize,
    amount: u64,
    reference: *const c_char,
    reference_len: usize,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_top_up", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let id = try_str!(id, id_len);
        let reference = try_opt_str!(reference, reference_len);
        out.put_json(&vault.top_up(id, amount, reference)?)
    })
}

/// Debit `amount` (> 0) credits from account `id`, for callers authenticated some other
/// way; `idempotency_key` is optional (NULL: none; a repeat within 24 h charges nothing).
/// On `KL_OK`, `*out_json` receives the balance (see `kl_top_up`). Returns `KL_OK`,
/// `KL_INSUFFICIENT_CREDITS` (nothing debited; same body as `kl_authorize`),
/// `KL_NOT_FOUND`, `KL_INVALID_ARGUMENT`, `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_debit(
    v: *const kl_vault,
    id: *const c_char,
    id_len: usize,
    amount: u64,
    idempotency_key: *const c_char,
    idempotency_key_len: usize,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_debit", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let id = try_str!(id, id_len);
        let idempotency_key = try_opt_str!(idempotency_key, idempotency_key_len);
        out.put_json(&vault.debit(id, amount, idempotency_key)?)
    })
}

/// The balance of account `id` as JSON (see `kl_top_up`; free with `kl_string_free`).
/// Returns `KL_OK`, `KL_NOT_FOUND`, `KL_INVALID_ARGUMENT`, `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_balance(
    v: *const kl_vault,
    id: *const c_char,
    id_len: usize,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_balance", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let id = try_str!(id, id_len);
        out.put_json(&vault.balance(id)?)
    })
}
