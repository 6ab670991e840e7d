//! The panic boundary and the thread's last error.
//!
//! Every fallible `extern "C"` function runs its body through [`boundary`]: the body
//! returns `Result<(), Failure>`, a panic is caught and becomes `KL_PANIC`, and the
//! outcome is recorded as this thread's last error (cleared on success), which
//! `kl_last_error_message` and `kl_last_error_body` read.

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde_json::json;

use super::status::kl_status;
use crate::Error;

/// Why a call failed: its status, a message (never a secret) and a JSON body.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: kl_status,
    pub(crate) message: String,
    pub(crate) body: String,
    /// For `KL_WOULD_BLOCK`: `KL_NEEDS_ARGON2` or `KL_NEEDS_COMMIT`; else 0.
    pub(crate) needs: u32,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure {
            status: kl_status::from_error(&e),
            message: e.to_string(),
            body: e.body().to_string(),
            needs: 0,
        }
    }
}

/// `kl_last_would_block()` after a non-blocking call that needs an argon2 run (a CPU-bound
/// wait: a secret not yet verified in this process).
pub const KL_NEEDS_ARGON2: u32 = 1;
/// `kl_last_would_block()` after a non-blocking call that needs a commit (an I/O-bound
/// wait: a debit, an idempotency record, a due refill or a single-use signature).
pub const KL_NEEDS_COMMIT: u32 = 2;

impl Failure {
    /// `KL_WOULD_BLOCK`: a non-blocking call stopped before `w`, having changed nothing.
    pub(crate) fn would_block(w: crate::WouldBlock) -> Failure {
        let needs = match w {
            crate::WouldBlock::Argon2 => KL_NEEDS_ARGON2,
            _ => KL_NEEDS_COMMIT,
        };
        let message =
            format!("would block: the call needs {w}; make the blocking call off the event loop");
        Failure {
            status: kl_status::KL_WOULD_BLOCK,
            body: json!({ "success": false, "error": "would_block", "needs": w.as_str(), "message": message })
                .to_string(),
            message,
            needs,
        }
    }

    /// `KL_INVALID_ARGUMENT` with `msg`: the message names the argument, never its value.
    pub(crate) fn invalid(msg: impl Into<String>) -> Failure {
        Error::InvalidArgument(msg.into()).into()
    }

    fn panic(function: &str) -> Failure {
        let message =
            format!("internal error: keyledger panicked in {function} (a bug; please report it)");
        Failure {
            status: kl_status::KL_PANIC,
            body: json!({ "success": false, "error": "panic", "message": message }).to_string(),
            message,
            needs: 0,
        }
    }
}

/// The result of a boundary body.
pub(crate) type FfiResult = Result<(), Failure>;

struct LastError {
    message: CString,
    body: String,
    needs: u32,
}

thread_local! {
    static LAST_ERROR: RefCell<Option<LastError>> = const { RefCell::new(None) };
}

fn set_last_error(f: Option<&Failure>) {
    let value = f.map(|f| LastError {
        // Messages come from `Display` impls that never contain NUL; be safe anyway.
        message: CString::new(f.message.replace('\0', " ")).unwrap_or_default(),
        body: f.body.clone(),
        needs: f.needs,
    });
    // `try_with`: during thread teardown the slot may be gone; then there is nothing to keep.
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            *slot = value;
        }
    });
}

/// A copy of this thread's last error body, if the last call failed.
pub(crate) fn last_error_body() -> Option<String> {
    LAST_ERROR
        .try_with(|slot| {
            slot.try_borrow()
                .ok()
                .and_then(|last| last.as_ref().map(|l| l.body.clone()))
        })
        .ok()
        .flatten()
}

/// Run `body` behind the panic boundary of `function`: a panic becomes `KL_PANIC`, and the
/// outcome replaces this thread's last error.
pub(crate) fn boundary(function: &str, body: impl FnOnce() -> FfiResult) -> kl_status {
    let outcome = catch_unwind(AssertUnwindSafe(body));
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(f)) => Some(f),
        Err(payload) => {
            // Dropping a panic payload can itself panic; contain that too.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            Some(Failure::panic(function))
        }
    };
    let status = failure.as_ref().map_or(kl_status::KL_OK, |f| f.status);
    set_last_error(failure.as_ref());
    status
}

/// Run an infallible helper (one that returns a value, not a status) behind the panic
/// boundary: a panic gives `fallback`. Does not touch the thread's last error.
pub(crate) fn guard<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// The message of the last failed `kl_` call on this thread, or `""` when the last call
/// succeeded (or there was none). The string belongs to keyledger: do not free it; it
/// stays valid until the next `kl_` call that returns a `kl_status` on this thread.
/// Messages never contain a secret, a hash or a token.
#[no_mangle]
pub extern "C" fn kl_last_error_message() -> *const c_char {
    guard(c"".as_ptr(), || {
        LAST_ERROR
            .try_with(|slot| match slot.try_borrow() {
                // The CString lives in the thread-local until the next status-returning call.
                Ok(last) => last.as_ref().map_or(c"".as_ptr(), |l| l.message.as_ptr()),
                Err(_) => c"".as_ptr(),
            })
            .unwrap_or(c"".as_ptr())
    })
}

/// What the last `kl_` call on this thread would have waited for, when it answered
/// `KL_WOULD_BLOCK`: `KL_NEEDS_ARGON2` (run the blocking call where CPU work may wait: a
/// worker thread, a dirty CPU scheduler) or `KL_NEEDS_COMMIT` (where I/O may wait: a
/// dirty I/O scheduler); 0 when the last call answered anything else. Never fails; does
/// not touch the thread's last error.
#[no_mangle]
pub extern "C" fn kl_last_would_block() -> u32 {
    guard(0, || {
        LAST_ERROR
            .try_with(|slot| match slot.try_borrow() {
                Ok(last) => last.as_ref().map_or(0, |l| l.needs),
                Err(_) => 0,
            })
            .unwrap_or(0)
    })
}

/// A copy of the JSON body of the last failed `kl_` call on this thread: for a refusal
/// exactly what a host sends with `kl_status_http()`, e.g.
/// `{"success":false,"error":"missing_scope","message":"…","required":"sms:send"}`
/// (`insufficient_credits` adds `credits` and `required`; `rate_limited` adds `limit`,
/// `max`, `remaining`, `reset_ms`, `retry_after`).
///
/// On `KL_OK`, `*out_json` receives a string the caller owns and frees with
/// `kl_string_free`. Returns `KL_NOT_FOUND` when the last call on this thread succeeded
/// (nothing to report) and `KL_INVALID_ARGUMENT` when `out_json` is NULL; in both cases
/// `*out_json` is left untouched. Unlike every other status-returning function, this one
/// does NOT replace the thread's last error, so it may be called after
/// `kl_last_error_message`, `kl_status_http` and `kl_status_code` in any order.
#[no_mangle]
pub unsafe extern "C" fn kl_last_error_body(out_json: *mut *mut c_char) -> kl_status {
    guard(kl_status::KL_PANIC, || {
        if out_json.is_null() {
            return kl_status::KL_INVALID_ARGUMENT;
        }
        match last_error_body() {
            Some(body) => {
                // SAFETY: `out_json` is non-null and, per the contract, points to writable
                // storage for one pointer.
                unsafe { super::args::put_string(out_json, body) };
                kl_status::KL_OK
            }
            None => kl_status::KL_NOT_FOUND,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last_message() -> String {
        // SAFETY: kl_last_error_message returns a valid NUL-terminated string.
        unsafe { CStr::from_ptr(kl_last_error_message()) }
            .to_str()
            .unwrap()
            .to_owned()
    }

    fn last_body() -> Option<serde_json::Value> {
        let mut out: *mut c_char = std::ptr::null_mut();
        // SAFETY: `out` is a valid out-pointer.
        let s = unsafe { kl_last_error_body(&raw mut out) };
        if s != kl_status::KL_OK {
            assert!(out.is_null());
            return None;
        }
        // SAFETY: on KL_OK `out` holds a string allocated by keyledger.
        let v = serde_json::from_str(unsafe { CStr::from_ptr(out) }.to_str().unwrap()).unwrap();
        // SAFETY: freed once, with the matching function.
        unsafe { super::super::args::kl_string_free(out) };
        Some(v)
    }

    #[test]
    fn a_panic_becomes_kl_panic_and_the_thread_keeps_working() {
        // (The default hook prints the panic to stderr; that is expected here.)
        let s = boundary("kl_test", || panic!("boom with a secret sk_live_x"));
        assert_eq!(s, kl_status::KL_PANIC);
        let msg = last_message();
        assert!(msg.contains("kl_test"), "{msg}");
        assert!(
            !msg.contains("secret"),
            "the panic payload must not leak: {msg}"
        );
        assert_eq!(last_body().unwrap()["error"], "panic");
        // The next call works and clears the error.
        assert_eq!(boundary("kl_test", || Ok(())), kl_status::KL_OK);
        assert_eq!(last_message(), "");
        assert!(last_body().is_none());
    }

    #[test]
    fn a_failure_sets_the_message_and_body_and_success_clears_them() {
        let s = boundary("kl_test", || {
            Err(Error::InsufficientCredits {
                credits: 1,
                required: 5,
            }
            .into())
        });
        assert_eq!(s, kl_status::KL_INSUFFICIENT_CREDITS);
        assert!(last_message().contains("insufficient credits"));
        let body = last_body().unwrap();
        assert_eq!(
            (body["credits"].as_u64(), body["required"].as_u64()),
            (Some(1), Some(5))
        );
        // Reading the body twice works: it does not clear the last error.
        assert!(last_body().is_some());
        boundary("kl_test", || Ok(()));
        assert_eq!(last_message(), "");
    }

    #[test]
    fn the_last_error_is_per_thread() {
        boundary("kl_test", || Err(Failure::invalid("x is NULL")));
        std::thread::spawn(|| assert_eq!(last_message(), ""))
            .join()
            .unwrap();
        assert_eq!(last_message(), "invalid argument: x is NULL");
    }

    #[test]
    fn guard_turns_a_panic_into_the_fallback() {
        let v = guard(false, || panic!("boom"));
        assert!(!v);
    }

    #[test]
    fn null_out_pointer_is_invalid_argument() {
        // SAFETY: NULL is handled.
        let s = unsafe { kl_last_error_body(std::ptr::null_mut()) };
        assert_eq!(s, kl_status::KL_INVALID_ARGUMENT);
    }
}
