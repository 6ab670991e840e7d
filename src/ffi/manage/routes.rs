//! Route rules: add, remove, list, match.

use super::*;

/// Add the route rule `(method, pattern) → (scope, cost)`. `method` is an HTTP method or
/// `*`; `pattern` has literal, `:name` and a trailing `*` segment. On `KL_OK`, `*out_json`
/// receives the rule `{"method","pattern","scope","cost"}` (free with `kl_string_free`).
/// Returns `KL_OK`, `KL_ALREADY_EXISTS`, `KL_INVALID_ARGUMENT`, `KL_VAULT_CLOSED`,
/// `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_add_route(
    v: *const kl_vault,
    method: *const c_char,
    method_len: usize,
    pattern: *const c_char,
    pattern_len: usize,
    scope: *const c_char,
    scope_len: usize,
    cost: u64,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_add_route", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let method = try_str!(method, method_len);
        let pattern = try_str!(pattern, pattern_len);
        let scope = try_str!(scope, scope_len);
        out.put_json(&vault.add_route(method, pattern, scope, cost)?)
    })
}

/// Remove the rule for `(method, pattern)`. On `KL_OK`, `*out_json` receives the removed
/// rule (free with `kl_string_free`). Returns `KL_OK`, `KL_NOT_FOUND`,
/// `KL_INVALID_ARGUMENT`, `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_remove_route(
    v: *const kl_vault,
    method: *const c_char,
    method_len: usize,
    pattern: *const c_char,
    pattern_len: usize,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_remove_route", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let method = try_str!(method, method_len);
        let pattern = try_str!(pattern, pattern_len);
        out.put_json(&vault.remove_route(method, pattern)?)
    })
}

/// Every route rule, most specific first, as a JSON array (free with `kl_string_free`).
/// Returns `KL_OK`, `KL_INVALID_ARGUMENT`, `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_list_routes(
    v: *const kl_vault,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_list_routes", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        out.put_json(&vault.list_routes()?)
    })
}

/// The rule that would decide a `method` `path` request, as JSON, or the JSON `null` when
/// no rule matches (still `KL_OK`; free with `kl_string_free`). Returns `KL_OK`,
/// `KL_INVALID_ARGUMENT`, `KL_VAULT_CLOSED`, `KL_STORAGE`.
#[no_mangle]
pub unsafe extern "C" fn kl_match_route(
    v: *const kl_vault,
    method: *const c_char,
    method_len: usize,
    path: *const c_char,
    path_len: usize,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_match_route", || {
        let out = try_out!(out_json);
        let vault = try_vault!(v);
        let method = try_str!(method, method_len);
        let path = try_str!(path, path_len);
        out.put_json(&vault.match_route(method, path)?)
    })
}
