//! The audit log query.

use super::*;

/// The `query_json` of `kl_audit`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditJson {
    key_id: Option<String>,
    account_id: Option<String>,
    action: Option<String>,
    since: Option<Millis>,
    limit: Option<usize>,
}

/// Audit entries, newest first, as a JSON array of `{"seq","time","action","key_id",
/// "account_id","actor","details"}` (free with `kl_string_free`). `query_json` is optional
/// (NULL: the latest 100): `{"key_id","account_id","action","since" (unix ms),"limit"
/// (≤ 10000)}`, unknown fields refused. Returns `KL_OK`, `KL_INVALID_ARGUMENT`,
/// `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_audit(
    v: *const kl_vault,
    query_json: *const c_char,
    query_len: usize,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_audit", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let q: AuditJson = match try_opt_str!(query_json, query_len) {
            Some(json) => parse_json::<Option<AuditJson>>(json, "query_json")?.unwrap_or_default(),
            None => AuditJson::default(),
        };
        let query = AuditQuery {
            key_id: q.key_id,
            account_id: q.account_id,
            action: q.action,
            since: q.since,
            limit: q.limit,
        };
        out.put_json(&vault.audit(&query)?)
    })
}
