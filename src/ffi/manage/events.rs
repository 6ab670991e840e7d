//! Events and usage reports: alert thresholds, the event log, consumers' cursors and
//! usage reports.

use super::*;

/// Alert when account `account`'s balance goes from at or above `below` (≥ 1) to under it.
/// On `KL_OK`, `*out_json` receives the account's thresholds, a JSON array ascending (free
/// with `kl_string_free`). Returns `KL_OK`, `KL_NOT_FOUND`, `KL_INVALID_ARGUMENT`,
/// `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_set_alert(
    v: *const kl_vault,
    account: *const c_char,
    account_len: usize,
    below: u64,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_set_alert", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let account = try_str!(account, account_len);
        out.put_json(&vault.set_alert(account, below)?)
    })
}

/// Remove threshold `below` of account `account`. On `KL_OK`, `*out_json` receives
/// `{"removed": bool, "below": [thresholds left]}` (free with `kl_string_free`). Returns
/// `KL_OK`, `KL_INVALID_ARGUMENT`, `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_remove_alert(
    v: *const kl_vault,
    account: *const c_char,
    account_len: usize,
    below: u64,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_remove_alert", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let account = try_str!(account, account_len);
        let removed = vault.remove_alert(account, below)?;
        let left = vault.alerts(account)?;
        out.put_json(&serde_json::json!({ "removed": removed, "below": left }))
    })
}

/// Events numbered above `after`, oldest first, at most `limit` (1–10000): a JSON array of
/// `{"seq","type","time","account_id","key_id","data"}` in `*out_json` (free with
/// `kl_string_free`). Returns `KL_OK`, `KL_INVALID_ARGUMENT`, `KL_VAULT_CLOSED`,
/// `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_events(
    v: *const kl_vault,
    after: u64,
    limit: u32,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_events", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        out.put_json(&vault.events(after, limit)?)
    })
}

/// Acknowledge every event up to `seq` for consumer `consumer` (the cursor only moves
/// forward; `seq` 0 acknowledges nothing and reads the cursor). On `KL_OK`, `*out_cursor`
/// receives the consumer's cursor. Returns `KL_OK`, `KL_INVALID_ARGUMENT`,
/// `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_ack_events(
    v: *const kl_vault,
    consumer: *const c_char,
    consumer_len: usize,
    seq: u64,
    out_cursor: *mut u64,
) -> kl_status {
    boundary("kl_ack_events", || {
        if out_cursor.is_null() {
            return Err(crate::Error::InvalidArgument("out_cursor is NULL".into()).into());
        }
        let vault = try_vault!(v);
        let consumer = try_str!(consumer, consumer_len);
        let cursor = if seq == 0 {
            vault.event_cursor(consumer)?
        } else {
            vault.ack_events(consumer, seq)?
        };
        // SAFETY: checked non-NULL above; the caller passes a pointer valid for one write.
        unsafe { out_cursor.write(cursor) };
        Ok(())
    })
}

/// Usage report of account `account` between `since` and `until` (unix ms, hourly cells)
/// grouped by `by` (`key`, `route` or `day`): a JSON array of
/// `{"group","charged","calls","refusals"}` in `*out_json` (free with `kl_string_free`).
/// Returns `KL_OK`, `KL_NOT_FOUND`, `KL_INVALID_ARGUMENT`, `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn kl_usage_report(
    v: *const kl_vault,
    account: *const c_char,
    account_len: usize,
    since: i64,
    until: i64,
    by: *const c_char,
    by_len: usize,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_usage_report", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let account = try_str!(account, account_len);
        let by: crate::events::ReportBy = try_str!(by, by_len).parse()?;
        out.put_json(&vault.usage_report(account, since, until, by)?)
    })
}
