//! The non-blocking twins of the `kl_authorize*` entry points: the same arguments and
//! bodies (`super::authorize::*_with`), decided by [`try_decide`].

use std::ffi::c_char;

use super::authorize::{
    kl_authorize_json_with, kl_authorize_opts, kl_authorize_request_json_with,
    kl_authorize_request_with, kl_authorize_scope_json_with, kl_authorize_scope_with,
    kl_authorize_with, kl_grant,
};
use super::handle::kl_vault;
use super::panic::Failure;
use super::status::kl_status;
use crate::{Attempt, AuthorizeOptions, GrantView, Target, Vault};

/// `Vault::try_authorize`, its would-block answer as `KL_WOULD_BLOCK`.
fn try_decide(
    vault: &Vault,
    token: &str,
    target: Target<'_>,
    o: &AuthorizeOptions<'_>,
) -> Result<GrantView, Failure> {
    match vault.try_authorize_view(token, target, o) {
        Attempt::Ready(r) => Ok(r?),
        Attempt::WouldBlock(w) => Err(Failure::would_block(w)),
    }
}

/// `kl_authorize` that never blocks: same arguments, same answers, except that a call
/// that would run argon2 (a secret not yet verified in this process) or wait for a commit
/// (a cost above 0, an idempotency key, a due refill, a single-use signature) returns
/// `KL_WOULD_BLOCK` at once, having changed nothing (no rate-limit unit taken, no usage
/// or audit event) and left `*out_grant` untouched. `kl_last_would_block()` then says
/// what it needs (`KL_NEEDS_ARGON2` or `KL_NEEDS_COMMIT`): make the same `kl_authorize`
/// call where that wait is allowed (a worker thread; a dirty CPU scheduler for argon2, a
/// dirty I/O one for a commit) and use its answer.
///
/// Decided inline: a key already verified in this process on a call that writes nothing,
/// its rate limits included, and every refusal that needs no argon2 (malformed or unknown
/// token, a secret already refused in this process, a spent budget of failed
/// verifications, revoked, disabled, expired, bad signature, scope, route).
#[no_mangle]
pub unsafe extern "C" fn kl_authorize_try(
    v: *const kl_vault,
    token: *const c_char,
    token_len: usize,
    method: *const c_char,
    method_len: usize,
    path: *const c_char,
    path_len: usize,
    opts: *const kl_authorize_opts,
    out_grant: *mut kl_grant,
) -> kl_status {
    // SAFETY: forwarded contract.
    unsafe {
        kl_authorize_with(
            "kl_authorize_try",
            try_decide,
            v,
            token,
            token_len,
            method,
            method_len,
            path,
            path_len,
            opts,
            out_grant,
        )
    }
}

/// `kl_authorize_request` that never blocks (see `kl_authorize_try`).
#[no_mangle]
pub unsafe extern "C" fn kl_authorize_request_try(
    v: *const kl_vault,
    token: *const c_char,
    token_len: usize,
    method: *const c_char,
    method_len: usize,
    target: *const c_char,
    target_len: usize,
    opts: *const kl_authorize_opts,
    out_grant: *mut kl_grant,
) -> kl_status {
    // SAFETY: forwarded contract.
    unsafe {
        kl_authorize_request_with(
            "kl_authorize_request_try",
            try_decide,
            v,
            token,
            token_len,
            method,
            method_len,
            target,
            target_len,
            opts,
            out_grant,
        )
    }
}

/// `kl_authorize_scope` that never blocks (see `kl_authorize_try`).
#[no_mangle]
pub unsafe extern "C" fn kl_authorize_scope_try(
    v: *const kl_vault,
    token: *const c_char,
    token_len: usize,
    scope: *const c_char,
    scope_len: usize,
    opts: *const kl_authorize_opts,
    out_grant: *mut kl_grant,
) -> kl_status {
    // SAFETY: forwarded contract.
    unsafe {
        kl_authorize_scope_with(
            "kl_authorize_scope_try",
            try_decide,
            v,
            token,
            token_len,
            scope,
            scope_len,
            opts,
            out_grant,
        )
    }
}

/// `kl_authorize_json` that never blocks (see `kl_authorize_try`); `*out_json` is
/// untouched on `KL_WOULD_BLOCK`.
#[no_mangle]
pub unsafe extern "C" fn kl_authorize_json_try(
    v: *const kl_vault,
    token: *const c_char,
    token_len: usize,
    method: *const c_char,
    method_len: usize,
    path: *const c_char,
    path_len: usize,
    opts: *const kl_authorize_opts,
    out_json: *mut *mut c_char,
) -> kl_status {
    // SAFETY: forwarded contract.
    unsafe {
        kl_authorize_json_with(
            "kl_authorize_json_try",
            try_decide,
            v,
            token,
            token_len,
            method,
            method_len,
            path,
            path_len,
            opts,
            out_json,
        )
    }
}

/// `kl_authorize_request_json` that never blocks (see `kl_authorize_try`).
#[no_mangle]
pub unsafe extern "C" fn kl_authorize_request_json_try(
    v: *const kl_vault,
    token: *const c_char,
    token_len: usize,
    method: *const c_char,
    method_len: usize,
    target: *const c_char,
    target_len: usize,
    opts: *const kl_authorize_opts,
    out_json: *mut *mut c_char,
) -> kl_status {
    // SAFETY: forwarded contract.
    unsafe {
        kl_authorize_request_json_with(
            "kl_authorize_request_json_try",
            try_decide,
            v,
            token,
            token_len,
            method,
            method_len,
            target,
            target_len,
            opts,
            out_json,
        )
    }
}

/// `kl_authorize_scope_json` that never blocks (see `kl_authorize_try`).
#[no_mangle]
pub unsafe extern "C" fn kl_authorize_scope_json_try(
    v: *const kl_vault,
    token: *const c_char,
    token_len: usize,
    scope: *const c_char,
    scope_len: usize,
    opts: *const kl_authorize_opts,
    out_json: *mut *mut c_char,
) -> kl_status {
    // SAFETY: forwarded contract.
    unsafe {
        kl_authorize_scope_json_with(
            "kl_authorize_scope_json_try",
            try_decide,
            v,
            token,
            token_len,
            scope,
            scope_len,
            opts,
            out_json,
        )
    }
}
