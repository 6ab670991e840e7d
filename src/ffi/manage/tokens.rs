//! Token helpers without vault access (shape check, redaction) and the version.

use super::*;

/// Whether `token` has the shape and checksum of a keyledger token (no vault access: for
/// secret scanners, log filters, typo detection). NULL, non-UTF-8 or oversized input is
/// `false`. Does not touch the thread's last error.
#[no_mangle]
pub unsafe extern "C" fn kl_looks_like_key(token: *const c_char, token_len: usize) -> bool {
    guard(false, || {
        // SAFETY: module contract.
        match unsafe { super::args::opt_str(token, token_len, "token") } {
            Ok(Some(t)) => crate::looks_like_key(t),
            _ => false,
        }
    })
}

/// What logs may show for `token`: `"<prefix>_<key_id>_…"`, or `"…"` when it does not
/// split into a prefix and key id. Never any character of the secret. On `KL_OK`,
/// `*out` receives the string (free with `kl_string_free`). Returns `KL_OK`,
/// `KL_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn kl_redact(
    token: *const c_char,
    token_len: usize,
    out: *mut *mut c_char,
) -> kl_status {
    boundary("kl_redact", || {
        let out: Out<*mut c_char> = try_out!(out);
        let token = try_str!(token, token_len);
        out.put_string(crate::redact(token));
        Ok(())
    })
}

/// The library version, e.g. `"0.1.0"`: static, NUL-terminated, do not free.
#[no_mangle]
pub extern "C" fn kl_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
