//! `kl_authorize_http`: the whole HTTP gate (`Vault::authorize_http`) for a C host.
//!
//! The host passes what it read off the request; keyledger answers the status, the
//! response headers and the JSON body to send, and on a grant the grant to hand the app.

use std::ffi::c_char;

use serde::Deserialize;

use super::args::{opt_bytes, parse_json, Out, KL_MAX_INPUT_LEN};
use super::handle::kl_vault;
use super::panic::boundary;
use super::status::kl_status;
use crate::http::{HttpOptions, HttpRequest};
use crate::OnReplay;

/// `options_json` of `kl_authorize_http`; every field optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HttpOptionsJson {
    cost: Option<u64>,
    scope: Option<String>,
    limits: Option<Vec<String>>,
    limit_cost: Option<u64>,
    replay: Option<String>,
    #[serde(default)]
    case_insensitive: bool,
    max_body: Option<usize>,
    now_ms: Option<i64>,
    #[serde(default)]
    nonblocking: bool,
}

/// A header value or body: NULL with length 0 is absent; any bytes (the gate judges them).
macro_rules! try_bytes {
    ($ptr:expr, $len:expr, $max:expr) => {
        // SAFETY: the caller passes NULL or a pointer valid for `len` bytes (module contract).
        unsafe { opt_bytes($ptr, $len, $max, stringify!($ptr)) }?
    };
}

/// Authorize one HTTP request the way every keyledger HTTP gate does: the credential
/// (`Authorization: Bearer <token>`, else `X-Api-Key`), the route rule of the raw request
/// target, the signature over the body, the idempotency key, the rate limits and the
/// credits; and build the response.
///
/// Inputs: `method` (required UTF-8); `target`, the request target as sent (required;
/// any bytes, non-UTF-8 is refused as `ambiguous_path`); the header values
/// `authorization`, `api_key` (`X-Api-Key`, or the host's bare-token header), `signature`
/// (`X-KeyLedger-Signature`), `idempotency_key` (NULL, length 0: header absent; any
/// bytes); `body`, the request body of a signed request (NULL: empty) and
/// `body_too_large` (non-zero when the host stopped reading it past `max_body`);
/// `options_json` (NULL: defaults), an object with the optional fields `cost`, `scope`
/// (authorize this scope instead of the route), `limits` (array of names), `limit_cost`,
/// `replay` (`"refuse"`, the default: a repeated idempotency key is 409
/// `duplicate_request`; `"pass"`: the replayed grant), `case_insensitive`, `max_body`
/// (default 1 MiB), `now_ms` and `nonblocking`.
///
/// `"nonblocking": true` never blocks (see `kl_authorize_try`): a request that would run
/// argon2 or wait for a commit returns `KL_WOULD_BLOCK` at once, having changed nothing
/// and left every out-parameter untouched (`kl_last_would_block()` says what it needs);
/// make the same call without `nonblocking` off the event loop. Every other request is
/// answered as without it.
///
/// On `KL_OK` (the request was decided, granted or not): `*out_status` is the HTTP status
/// (200 for a grant); `*out_headers_json` the response headers as a JSON array of
/// `[name, value]` pairs (lowercase names; on a grant, the `ratelimit-*` headers to add to
/// the app's response); `*out_body` the refusal's JSON body (empty for a grant);
/// `*out_grant_json` the grant as JSON (as `kl_authorize_json`), or NULL for a refusal.
/// Free the three strings with `kl_string_free`. A refusal or a vault error (closed,
/// storage) is an answer, not an error status: it comes back as `KL_OK` with its status
/// and body.
///
/// Returns `KL_WOULD_BLOCK` (with `nonblocking` only), `KL_INVALID_ARGUMENT` (NULL vault,
/// method, target or out-parameter, non-UTF-8 method or `options_json`, an
/// `options_json` with an unknown field or a `replay` other than `"refuse"` or `"pass"`,
/// an input over `KL_MAX_INPUT_LEN`) or `KL_PANIC`.
#[no_mangle]
pub unsafe extern "C" fn kl_authorize_http(
    v: *const kl_vault,
    method: *const c_char,
    method_len: usize,
    target: *const u8,
    target_len: usize,
    authorization: *const u8,
    authorization_len: usize,
    api_key: *const u8,
    api_key_len: usize,
    signature: *const u8,
    signature_len: usize,
    idempotency_key: *const u8,
    idempotency_key_len: usize,
    body: *const u8,
    body_len: usize,
    body_too_large: u8,
    options_json: *const c_char,
    options_json_len: usize,
    out_status: *mut u16,
    out_headers_json: *mut *mut c_char,
    out_body: *mut *mut c_char,
    out_grant_json: *mut *mut c_char,
) -> kl_status {
    boundary("kl_authorize_http", || {
        let out_status: Out<u16> = try_out!(out_status);
        let out_headers: Out<*mut c_char> = try_out!(out_headers_json);
        let out_body: Out<*mut c_char> = try_out!(out_body);
        let out_grant: Out<*mut c_char> = try_out!(out_grant_json);
        let vault = try_vault!(v);
        let method = try_str!(method, method_len);
        let Some(target) = try_bytes!(target, target_len, KL_MAX_INPUT_LEN) else {
            return Err(super::panic::Failure::invalid("target is NULL"));
        };
        let max = KL_MAX_INPUT_LEN;
        let request = HttpRequest {
            method,
            target,
            authorization: try_bytes!(authorization, authorization_len, max),
            api_key: try_bytes!(api_key, api_key_len, max),
            signature: try_bytes!(signature, signature_len, max),
            idempotency_key: try_bytes!(idempotency_key, idempotency_key_len, max),
            body: try_bytes!(body, body_len, isize::MAX.unsigned_abs()),
            body_too_large: body_too_large != 0,
        };
        let o: HttpOptionsJson = match try_opt_str!(options_json, options_json_len) {
            Some(json) => parse_json(json, "options_json")?,
            None => HttpOptionsJson::default(),
        };
        let on_replay = match o.replay.as_deref() {
            None | Some("refuse") => OnReplay::Refuse,
            Some("pass") => OnReplay::Grant,
            Some(_) => {
                return Err(super::panic::Failure::invalid(
                    "options_json: replay must be \"refuse\" or \"pass\"",
                ))
            }
        };
        let limits: Option<Vec<&str>> = o
            .limits
            .as_ref()
            .map(|l| l.iter().map(String::as_str).collect());
        let options = HttpOptions {
            cost: o.cost,
            scope: o.scope.as_deref(),
            limits: limits.as_deref(),
            limit_cost: o.limit_cost,
            on_replay,
            case_insensitive: o.case_insensitive,
            max_body: o.max_body,
            now: o.now_ms,
        };
        let outcome = if o.nonblocking {
            match vault.try_authorize_http(&request, &options) {
                crate::Attempt::Ready(outcome) => outcome,
                crate::Attempt::WouldBlock(w) => return Err(super::panic::Failure::would_block(w)),
            }
        } else {
            vault.authorize_http(&request, &options)
        };
        let headers = serde_json::to_string(&outcome.headers_json())
            .map_err(|e| crate::Error::Storage(format!("could not encode JSON: {e}")))?;
        let grant = match &outcome.grant {
            Some(g) => Some(
                serde_json::to_string(g)
                    .map_err(|e| crate::Error::Storage(format!("could not encode JSON: {e}")))?,
            ),
            None => None,
        };
        out_status.write(outcome.status);
        out_headers.put_string(headers);
        out_body.put_string(outcome.body);
        match grant {
            Some(g) => out_grant.put_string(g),
            None => out_grant.write(std::ptr::null_mut()),
        }
        Ok(())
    })
}

/// The token of a request's credential headers, read with the HTTP gate's grammar
/// (`kl_authorize_http`): `Authorization: Bearer <token>` when `authorization` is given,
/// else the bare token of `api_key` (`X-Api-Key`). Both are optional header values (NULL,
/// length 0: absent; any bytes). Nothing is checked against the vault.
///
/// On `KL_OK`, `*out_token` is the token (free it with `kl_secret_free`). A missing or
/// malformed credential is `KL_INVALID_API_KEY`; a NULL `out_token` or an input over
/// `KL_MAX_INPUT_LEN` is `KL_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn kl_http_credential(
    authorization: *const u8,
    authorization_len: usize,
    api_key: *const u8,
    api_key_len: usize,
    out_token: *mut *mut c_char,
) -> kl_status {
    boundary("kl_http_credential", || {
        let out: Out<*mut c_char> = try_out!(out_token);
        let authorization = try_bytes!(authorization, authorization_len, KL_MAX_INPUT_LEN);
        let api_key = try_bytes!(api_key, api_key_len, KL_MAX_INPUT_LEN);
        match crate::http::gate::credential(authorization, api_key) {
            crate::http::gate::Credential::Token(t) => {
                out.write(super::args::secret_c_string(t));
                Ok(())
            }
            _ => Err(crate::Error::InvalidApiKey.into()),
        }
    })
}
