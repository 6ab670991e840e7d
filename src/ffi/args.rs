//! Arguments in and results out: (pointer, length) strings, out-parameters, handles.
//!
//! The null-check macros (`try_vault!`, `try_str!`, `try_opt_str!`, `try_out!`) return
//! `KL_INVALID_ARGUMENT` from the enclosing boundary body, naming the argument (never its
//! value). Out-parameters are checked first, before any work, and written only on success
//! through [`Out`].

use std::ffi::{c_char, CString};
use std::ptr::NonNull;

use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::Zeroize;

use super::panic::{guard, Failure, FfiResult};
use crate::Error;

/// The longest string argument accepted: 1 MiB. Longer input is `KL_INVALID_ARGUMENT`
/// before any other work.
pub const KL_MAX_INPUT_LEN: usize = 1 << 20;

/// A checked, non-null out-parameter, written at most once, on success.
pub(crate) struct Out<T>(NonNull<T>);

impl<T> Out<T> {
    /// # Safety
    /// `ptr` must be NULL or valid for a write of one `T` for the duration of the call.
    pub(crate) unsafe fn new(ptr: *mut T, name: &str) -> Result<Out<T>, Failure> {
        NonNull::new(ptr)
            .map(Out)
            .ok_or_else(|| Failure::invalid(format!("{name} is NULL")))
    }

    /// The checked pointer (for an out-parameter whose caller-set header is read first,
    /// `kl_grant`).
    pub(crate) fn as_ptr(&self) -> *mut T {
        self.0.as_ptr()
    }

    /// Write the result. Never reads the old value (it may be uninitialized).
    pub(crate) fn write(self, value: T) {
        // SAFETY: `Out::new`'s contract: the pointer is non-null and valid for a write.
        unsafe { self.0.as_ptr().write(value) }
    }
}

/// `&Vault` from a `kl_vault*`, or `KL_INVALID_ARGUMENT` when it is NULL.
macro_rules! try_vault {
    ($v:expr) => {{
        // SAFETY: the caller passes NULL or a live handle from `kl_vault_open` (module
        // contract); the handle is only shared (`&`), and `Vault` is `Sync`.
        match unsafe { $v.as_ref() } {
            Some(handle) => &handle.vault,
            None => {
                return Err($crate::ffi::panic::Failure::invalid(concat!(
                    stringify!($v),
                    " (the vault handle) is NULL"
                )))
            }
        }
    }};
}

/// A required UTF-8 string argument `(ptr, len)` as `&str`.
macro_rules! try_str {
    ($ptr:expr, $len:expr) => {
        // SAFETY: the caller passes NULL or a pointer valid for `len` bytes (module contract).
        match unsafe { $crate::ffi::args::opt_str($ptr, $len, stringify!($ptr)) }? {
            Some(s) => s,
            None => {
                return Err($crate::ffi::panic::Failure::invalid(concat!(
                    stringify!($ptr),
                    " is NULL"
                )))
            }
        }
    };
}

/// An optional UTF-8 string argument `(ptr, len)`: NULL means absent.
macro_rules! try_opt_str {
    ($ptr:expr, $len:expr) => {
        // SAFETY: the caller passes NULL or a pointer valid for `len` bytes (module contract).
        unsafe { $crate::ffi::args::opt_str($ptr, $len, stringify!($ptr)) }?
    };
}

/// A required out-parameter as [`Out`].
macro_rules! try_out {
    ($ptr:expr) => {
        // SAFETY: the caller passes NULL or a pointer valid for one write (module contract).
        unsafe { $crate::ffi::args::Out::new($ptr, stringify!($ptr)) }?
    };
}

/// Decode `(ptr, len)`: NULL with length 0 is `None`; NULL with a length, more than
/// [`KL_MAX_INPUT_LEN`] bytes, or non-UTF-8 is `KL_INVALID_ARGUMENT`.
///
/// # Safety
/// `ptr` must be NULL or valid for reads of `len` bytes for the returned lifetime.
pub(crate) unsafe fn opt_str<'a>(
    ptr: *const c_char,
    len: usize,
    name: &str,
) -> Result<Option<&'a str>, Failure> {
    // SAFETY: forwarded contract.
    let Some(bytes) = unsafe { opt_bytes(ptr.cast(), len, KL_MAX_INPUT_LEN, name) }? else {
        return Ok(None);
    };
    std::str::from_utf8(bytes)
        .map(Some)
        .map_err(|_| Failure::invalid(format!("{name} is not valid UTF-8")))
}

/// Decode a byte buffer `(ptr, len)` of at most `max` bytes; NULL with length 0 is `None`.
///
/// # Safety
/// `ptr` must be NULL or valid for reads of `len` bytes for the returned lifetime.
pub(crate) unsafe fn opt_bytes<'a>(
    ptr: *const u8,
    len: usize,
    max: usize,
    name: &str,
) -> Result<Option<&'a [u8]>, Failure> {
    if len > max {
        return Err(Failure::invalid(format!(
            "{name} is longer than {max} bytes"
        )));
    }
    if ptr.is_null() {
        if len != 0 {
            return Err(Failure::invalid(format!(
                "{name} is NULL with a non-zero length"
            )));
        }
        return Ok(None);
    }
    // SAFETY: non-null, valid for `len` bytes per the contract, `len` ≤ `max` ≤ isize::MAX,
    // and `u8` has no alignment requirement.
    Ok(Some(unsafe { std::slice::from_raw_parts(ptr, len) }))
}

/// Parse a JSON argument into `T` (`KL_INVALID_ARGUMENT` with serde's reason).
pub(crate) fn parse_json<T: DeserializeOwned>(json: &str, name: &str) -> Result<T, Failure> {
    serde_json::from_str(json).map_err(|e| Failure::invalid(format!("{name}: {e}")))
}

/// A NUL-terminated copy of `s` for C. JSON and the core's strings never contain NUL;
/// one that did would be cut there rather than fail after the work was done.
fn c_string(s: String) -> CString {
    match CString::new(s) {
        Ok(c) => c,
        Err(e) => {
            let mut bytes = e.into_vec();
            let nul = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            bytes.truncate(nul);
            CString::new(bytes).unwrap_or_default()
        }
    }
}

impl Out<*mut c_char> {
    /// Write `s` as a string the caller frees with `kl_string_free`.
    pub(crate) fn put_string(self, s: String) {
        self.write(c_string(s).into_raw());
    }

    /// Write `value` as JSON, freed with `kl_string_free`.
    pub(crate) fn put_json<T: Serialize + ?Sized>(self, value: &T) -> FfiResult {
        let json = serde_json::to_string(value)
            .map_err(|e| Failure::from(Error::Storage(format!("could not encode JSON: {e}"))))?;
        self.put_string(json);
        Ok(())
    }
}

/// A C copy of a secret in one exact-size allocation (no reallocation leaves a stray copy
/// behind), for `kl_secret_free`.
pub(crate) fn secret_c_string(secret: &str) -> *mut c_char {
    let mut bytes = Vec::with_capacity(secret.len() + 1);
    bytes.extend_from_slice(secret.as_bytes());
    bytes.push(0);
    match CString::from_vec_with_nul(bytes) {
        Ok(c) => c.into_raw(),
        Err(e) => {
            // Tokens are ASCII without NUL; unreachable, but never leak a copy.
            e.into_bytes().zeroize();
            CString::default().into_raw()
        }
    }
}

/// Write a string (`kl_string_free`) to `*out` when `out` is non-null. For `kl_last_error_body`.
///
/// # Safety
/// `out` must be valid for a write of one pointer.
pub(crate) unsafe fn put_string(out: *mut *mut c_char, s: String) {
    // SAFETY: forwarded contract.
    unsafe { out.write(c_string(s).into_raw()) }
}

/// Free a string that keyledger returned (a JSON document, a redacted token, an error
/// body). `NULL` is a no-op. Freeing a string twice, or one keyledger did not allocate, is
/// undefined behaviour. Does not wipe the memory: free tokens with `kl_secret_free`.
#[no_mangle]
pub unsafe extern "C" fn kl_string_free(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    guard((), || {
        // SAFETY: `s` came from `CString::into_raw` in this library (contract above).
        drop(unsafe { CString::from_raw(s) });
    });
}

/// Wipe (overwrite with zeros) and free a secret that keyledger returned: the token of
/// `kl_create_key` and `kl_rotate_key` (and their `_signing` variants), a signing secret
/// (`kl_create_key_signing`, `kl_rotate_key_signing`, `kl_reveal_signing_secret`) or a
/// master key (`kl_generate_master_key`). `NULL` is a no-op. Also safe on any other string
/// keyledger returned.
///
/// NUL contract: the length is found by scanning for the first NUL, so the string must
/// still end where keyledger ended it. If you wrote a NUL into it (truncating it), the
/// bytes after that NUL are neither wiped nor correctly freed: use `kl_secret_free_n` with
/// the length it had when you received it.
#[no_mangle]
pub unsafe extern "C" fn kl_secret_free(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    guard((), || {
        // SAFETY: `s` came from `CString::into_raw` in this library (contract above).
        let c = unsafe { CString::from_raw(s) };
        c.into_bytes_with_nul().zeroize();
    });
}

/// `kl_secret_free` with the length given: wipe the `len` bytes of the secret and its
/// terminating NUL, then free it, without scanning for a NUL (so a string the caller has
/// written into, even a NUL, is still wiped whole). `len` must be the length the string had
/// when keyledger returned it (`strlen` at that moment: 64 for a signing secret, 44 for a
/// master key, the token's length for a token); any other value is undefined behaviour,
/// as with `free` of a wrong pointer. `NULL` is a no-op (whatever `len`).
#[no_mangle]
pub unsafe extern "C" fn kl_secret_free_n(s: *mut c_char, len: usize) {
    if s.is_null() {
        return;
    }
    guard((), || {
        let Some(size) = len.checked_add(1) else {
            return;
        };
        // SAFETY: `s` came from `CString::into_raw` of a `len`-byte string (contract
        // above): an allocation of exactly `len + 1` bytes, as a boxed slice.
        let mut boxed: Box<[u8]> =
            unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(s.cast::<u8>(), size)) };
        boxed.zeroize();
        drop(boxed);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_with_zero_length_is_absent_and_with_a_length_is_invalid() {
        // SAFETY: NULL is handled without reading.
        unsafe {
            assert!(opt_str(std::ptr::null(), 0, "x").unwrap().is_none());
            let e = opt_str(std::ptr::null(), 3, "x").unwrap_err();
            assert_eq!(
                e.status,
                super::super::status::kl_status::KL_INVALID_ARGUMENT
            );
        }
    }

    #[test]
    fn oversized_input_is_refused_before_reading_it() {
        // A dangling pointer is fine: the length check comes first and nothing is read.
        let p = NonNull::<c_char>::dangling().as_ptr();
        // SAFETY: refused before any read.
        let e = unsafe { opt_str(p, KL_MAX_INPUT_LEN + 1, "token") }.unwrap_err();
        assert!(e.message.contains("token is longer than"), "{}", e.message);
    }

    #[test]
    fn non_utf8_is_invalid_and_the_message_does_not_repeat_the_input() {
        let bad = b"sk_\xff\xfe";
        // SAFETY: valid for its length.
        let e = unsafe { opt_str(bad.as_ptr().cast(), bad.len(), "token") }.unwrap_err();
        assert_eq!(e.message, "invalid argument: token is not valid UTF-8");
    }

    #[test]
    fn secret_strings_round_trip_through_secret_free() {
        let p = secret_c_string("kl_live_abcdefgh_secret");
        // SAFETY: p is a fresh NUL-terminated string from this library.
        let s = unsafe { std::ffi::CStr::from_ptr(p) }
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(s, "kl_live_abcdefgh_secret");
        // SAFETY: freed once.
        unsafe { kl_secret_free(p) };
        // SAFETY: NULL is a no-op.
        unsafe {
            kl_secret_free(std::ptr::null_mut());
            kl_string_free(std::ptr::null_mut());
        }
    }
}
