//! The C ABI: `include/keyledger.h`, prefix `kl_`.
//!
//! # Conventions
//!
//! - **Statuses.** Every fallible function returns a [`kl_status`]: `KL_OK` (0) or a
//!   permanent error number (see [`status`]). `kl_status_http()` and `kl_status_code()`
//!   give its HTTP status and code string. An unknown number behaves like
//!   `KL_INVALID_ARGUMENT`.
//! - **Last error.** Each status-returning call replaces its thread's last error (cleared
//!   on success): `kl_last_error_message()` (borrowed, valid until the next such call on
//!   the thread) and `kl_last_error_body(&json)` (an owned copy of the refusal's JSON
//!   body, the one a host sends with `kl_status_http()`). Neither ever holds a secret.
//! - **Strings in** are `(const char *ptr, size_t len)`: UTF-8, not necessarily
//!   NUL-terminated. For a required argument NULL is `KL_INVALID_ARGUMENT`; for an optional
//!   one (documented as such) NULL with length 0 means "absent". Non-UTF-8 input, NULL with
//!   a non-zero length, or more than `KL_MAX_INPUT_LEN` (1 MiB) bytes is
//!   `KL_INVALID_ARGUMENT`, before any other work.
//! - **Results out** go to out-parameters, which must be non-NULL (else
//!   `KL_INVALID_ARGUMENT`, checked before any work) and are written only on `KL_OK`; on
//!   any error they are left untouched. Records and listings are JSON documents
//!   (`char **out_json`, NUL-terminated, no interior NUL) that the caller frees with
//!   `kl_string_free()`. Tokens (`char **out_token`) must be freed with
//!   `kl_secret_free()`, which wipes them first; so must every other secret keyledger
//!   hands out (signing secrets, generated master keys). `kl_vault_free(NULL)`,
//!   `kl_string_free(NULL)` and `kl_secret_free(NULL)` are no-ops.
//! - **Handles.** `kl_vault_open()` gives a `kl_vault*` owned by the caller, freed with
//!   `kl_vault_free()`. A handle may be used from any number of threads at once (no lock
//!   is taken on the hot path); `kl_vault_close()` makes later calls return
//!   `KL_VAULT_CLOSED`, and only `kl_vault_free()` must be the last call on a handle.
//!   After `fork()`, open a new handle in the child: the inherited one returns
//!   `KL_VAULT_CLOSED`.
//! - **Panics** never cross the boundary: every entry point catches them and returns
//!   `KL_PANIC` (or a documented default for functions that return a value).
//! - **Pointers** passed in must be NULL or valid for the stated length for the duration
//!   of the call; keyledger keeps no pointer it was given after the call returns.
//!
//! The header is generated from these docs by cbindgen (`cbindgen.toml`); the test
//! `tests/ffi_header.rs` fails when `include/keyledger.h` is stale.

// The safety contract of every `unsafe extern "C"` function is the one above (pointers
// NULL or valid for their length); it is stated once here and in the header.
#![allow(clippy::missing_safety_doc)]

#[macro_use]
mod args;
mod authorize;
mod authorize_try;
mod handle;
mod http;
mod layout;
mod limits;
mod manage;
mod panic;
mod signing;
pub mod status;

pub use args::{kl_secret_free, kl_secret_free_n, kl_string_free, KL_MAX_INPUT_LEN};
pub use authorize::{
    kl_authorize, kl_authorize_json, kl_authorize_opts, kl_authorize_request,
    kl_authorize_request_json, kl_authorize_scope, kl_authorize_scope_json, kl_grant,
    KL_ACCOUNT_ID_SIZE, KL_AUTH_APIKEY, KL_AUTH_OPERATOR, KL_KEY_ID_SIZE, KL_KEY_NAME_SIZE,
    KL_PREFIX_SIZE, KL_RATELIMIT_NAME_SIZE,
};
pub use authorize_try::{
    kl_authorize_json_try, kl_authorize_request_json_try, kl_authorize_request_try,
    kl_authorize_scope_json_try, kl_authorize_scope_try, kl_authorize_try,
};
pub use handle::{kl_vault, kl_vault_close, kl_vault_flush, kl_vault_free, kl_vault_open};
pub use http::{kl_authorize_http, kl_http_credential};
pub use limits::*;
pub use manage::*;
pub use panic::{
    kl_last_error_body, kl_last_error_message, kl_last_would_block, KL_NEEDS_ARGON2,
    KL_NEEDS_COMMIT,
};
pub use signing::*;
pub use status::{kl_status, kl_status_code, kl_status_http};
