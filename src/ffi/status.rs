//! `kl_status`: the permanent status numbers of the C ABI.
//!
//! Numbers are grouped by kind and never reused: a retired status stays here as a comment.
//!
//! | range | kind |
//! |---|---|
//! | `0` | success |
//! | `1001–1099` | authentication refusals (HTTP 401) |
//! | `1101–1199` | authorization refusals (HTTP 403) |
//! | `1201–1299` | credit refusals (HTTP 402) |
//! | `1301–1399` | rate-limit and attempt refusals (HTTP 429) |
//! | `1401–1499` | request conflicts (HTTP 409) |
//! | `1501–1599` | request targets the gate cannot read unambiguously (HTTP 400) |
//! | `2001–2099` | management and open errors |
//! | `3001–3099` | not decided: a non-blocking call would have had to wait |
//! | `9001–9099` | errors of the C boundary itself |
//!
//! A number this version does not know (a newer library, or garbage) is treated like
//! `KL_INVALID_ARGUMENT` by [`kl_status_http`] and [`kl_status_code`].

use std::ffi::c_char;

use crate::Error;

/// The result of every fallible `kl_` function. `KL_OK` (0) is success; everything
/// else is an error whose message and JSON body are available from
/// `kl_last_error_message()` and `kl_last_error_body()` on the same thread.
///
/// The numbers are permanent: they are never renumbered or reused.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum kl_status {
    /// Success.
    KL_OK = 0,
    /// `invalid_api_key`, HTTP 401: malformed, bad checksum, unknown key, wrong secret,
    /// revoked, or throttled.
    KL_INVALID_API_KEY = 1001,
    /// `api_key_inactive`, HTTP 401: the key is disabled.
    KL_API_KEY_INACTIVE = 1002,
    /// `api_key_expired`, HTTP 401: the key is past its expiry.
    KL_API_KEY_EXPIRED = 1003,
    /// `invalid_signature`, HTTP 401: the request signature is missing, wrong or stale.
    KL_INVALID_SIGNATURE = 1004,
    /// `missing_scope`, HTTP 403: the body has `"required": "<scope>"`.
    KL_MISSING_SCOPE = 1101,
    /// `route_not_allowed`, HTTP 403: no route rule matches.
    KL_ROUTE_NOT_ALLOWED = 1102,
    /// `insufficient_credits`, HTTP 402: the body has `"credits"` and `"required"`.
    /// Nothing was debited.
    KL_INSUFFICIENT_CREDITS = 1201,
    /// `rate_limited`, HTTP 429: the body has `limit`, `max`, `remaining`, `reset_ms`,
    /// `retry_after`.
    KL_RATE_LIMITED = 1301,
    /// `too_many_attempts`, HTTP 429: too many secret verifications queued or failed in
    /// this process; the secret was not checked. The body has `retry_after`. Retryable.
    KL_TOO_MANY_ATTEMPTS = 1302,
    /// `idempotency_conflict`, HTTP 409: the idempotency key was used for a request with
    /// other parameters. Nothing was charged.
    KL_IDEMPOTENCY_CONFLICT = 1401,
    /// `duplicate_request`, HTTP 409: a gate refused to serve a replayed idempotency key
    /// again. The body has `charged` and `first_at` of the original call.
    KL_DUPLICATE_REQUEST = 1402,
    /// `ambiguous_path`, HTTP 400: the request target could reach different handlers
    /// depending on how a router normalises it (encoded `/`, `?`, `#`, `\`, NUL, dot
    /// segments, swallowed empty segments).
    KL_AMBIGUOUS_PATH = 1501,
    /// `not_found`, HTTP 404: no such account, key or route.
    KL_NOT_FOUND = 2001,
    /// `already_exists`, HTTP 409.
    KL_ALREADY_EXISTS = 2002,
    /// `invalid_argument`, HTTP 400: a NULL required pointer, non-UTF-8 or oversized
    /// (> 1 MiB) input, malformed JSON, or a value the core refuses. Nothing was changed.
    KL_INVALID_ARGUMENT = 2003,
    /// `wrong_master_key`, HTTP 500.
    KL_WRONG_MASTER_KEY = 2004,
    /// `storage`, HTTP 500: I/O or a failed commit. Nothing was changed.
    KL_STORAGE = 2005,
    /// `vault_locked`, HTTP 500: another process opened the vault exclusively.
    KL_VAULT_LOCKED = 2006,
    /// `vault_closed`, HTTP 500 (a keyledger extension of the error taxonomy): the handle was closed
    /// with `kl_vault_close`, or is used in a child process after `fork()`.
    KL_VAULT_CLOSED = 2007,
    /// `would_block` (never an HTTP answer): a non-blocking call (`kl_authorize_try` and
    /// the other `_try` variants, `kl_authorize_http` with `"nonblocking": true`) was not
    /// decided, because it needs an argon2 run or a commit. Nothing was changed and the
    /// out-parameters are untouched: make the same call with the blocking function off
    /// the event loop. `kl_last_would_block()` says what it needs (`KL_NEEDS_ARGON2`,
    /// `KL_NEEDS_COMMIT`); the body is `{"error":"would_block","needs":"argon2"|"commit"}`.
    KL_WOULD_BLOCK = 3001,
    /// `panic`, HTTP 500: a bug inside keyledger was caught at the boundary. The call may
    /// or may not have taken effect; the handle stays usable.
    KL_PANIC = 9001,
    // Holds.
    /// `hold_not_found`, HTTP 404: no hold has this id.
    KL_HOLD_NOT_FOUND = 2101,
    /// `hold_settled`, HTTP 409: the hold is no longer active (settled, released or
    /// expired) and the call asks for something other than its recorded outcome.
    KL_HOLD_SETTLED = 2102,
}

impl kl_status {
    /// Every status, for tests and for `from_u32` (not exported to C).
    pub(crate) const ALL: [kl_status; 24] = [
        kl_status::KL_OK,
        kl_status::KL_INVALID_API_KEY,
        kl_status::KL_API_KEY_INACTIVE,
        kl_status::KL_API_KEY_EXPIRED,
        kl_status::KL_INVALID_SIGNATURE,
        kl_status::KL_MISSING_SCOPE,
        kl_status::KL_ROUTE_NOT_ALLOWED,
        kl_status::KL_INSUFFICIENT_CREDITS,
        kl_status::KL_RATE_LIMITED,
        kl_status::KL_TOO_MANY_ATTEMPTS,
        kl_status::KL_IDEMPOTENCY_CONFLICT,
        kl_status::KL_DUPLICATE_REQUEST,
        kl_status::KL_AMBIGUOUS_PATH,
        kl_status::KL_NOT_FOUND,
        kl_status::KL_ALREADY_EXISTS,
        kl_status::KL_INVALID_ARGUMENT,
        kl_status::KL_WRONG_MASTER_KEY,
        kl_status::KL_STORAGE,
        kl_status::KL_VAULT_LOCKED,
        kl_status::KL_VAULT_CLOSED,
        kl_status::KL_WOULD_BLOCK,
        kl_status::KL_PANIC,
        kl_status::KL_HOLD_NOT_FOUND,
        kl_status::KL_HOLD_SETTLED,
    ];

    /// The status with number `n`; an unknown number is `KL_INVALID_ARGUMENT`.
    pub fn from_u32(n: u32) -> kl_status {
        kl_status::ALL
            .into_iter()
            .find(|s| *s as u32 == n)
            .unwrap_or(kl_status::KL_INVALID_ARGUMENT)
    }

    /// The status of a core error. Exhaustive on purpose: a new [`Error`] variant does not
    /// compile until it has a status here.
    pub fn from_error(e: &Error) -> kl_status {
        match e {
            Error::InvalidApiKey => kl_status::KL_INVALID_API_KEY,
            Error::ApiKeyInactive => kl_status::KL_API_KEY_INACTIVE,
            Error::ApiKeyExpired => kl_status::KL_API_KEY_EXPIRED,
            Error::InvalidSignature => kl_status::KL_INVALID_SIGNATURE,
            Error::MissingScope { .. } => kl_status::KL_MISSING_SCOPE,
            Error::RouteNotAllowed => kl_status::KL_ROUTE_NOT_ALLOWED,
            Error::RateLimited { .. } => kl_status::KL_RATE_LIMITED,
            Error::InsufficientCredits { .. } => kl_status::KL_INSUFFICIENT_CREDITS,
            Error::TooManyAttempts { .. } => kl_status::KL_TOO_MANY_ATTEMPTS,
            Error::IdempotencyConflict => kl_status::KL_IDEMPOTENCY_CONFLICT,
            Error::DuplicateRequest { .. } => kl_status::KL_DUPLICATE_REQUEST,
            Error::AmbiguousPath(_) => kl_status::KL_AMBIGUOUS_PATH,
            Error::NotFound(_) => kl_status::KL_NOT_FOUND,
            Error::AlreadyExists(_) => kl_status::KL_ALREADY_EXISTS,
            Error::InvalidArgument(_) => kl_status::KL_INVALID_ARGUMENT,
            Error::WrongMasterKey => kl_status::KL_WRONG_MASTER_KEY,
            Error::Storage(_) => kl_status::KL_STORAGE,
            Error::VaultLocked => kl_status::KL_VAULT_LOCKED,
            Error::VaultClosed(_) => kl_status::KL_VAULT_CLOSED,
            Error::HoldNotFound(_) => kl_status::KL_HOLD_NOT_FOUND,
            Error::HoldSettled(_) => kl_status::KL_HOLD_SETTLED,
        }
    }

    /// The stable code string (the `error` field of a body); `"ok"` for `KL_OK`.
    pub fn code(self) -> &'static str {
        self.code_c().to_str().unwrap_or("invalid_argument")
    }

    fn code_c(self) -> &'static std::ffi::CStr {
        match self {
            kl_status::KL_OK => c"ok",
            kl_status::KL_INVALID_API_KEY => c"invalid_api_key",
            kl_status::KL_API_KEY_INACTIVE => c"api_key_inactive",
            kl_status::KL_API_KEY_EXPIRED => c"api_key_expired",
            kl_status::KL_INVALID_SIGNATURE => c"invalid_signature",
            kl_status::KL_MISSING_SCOPE => c"missing_scope",
            kl_status::KL_ROUTE_NOT_ALLOWED => c"route_not_allowed",
            kl_status::KL_INSUFFICIENT_CREDITS => c"insufficient_credits",
            kl_status::KL_RATE_LIMITED => c"rate_limited",
            kl_status::KL_TOO_MANY_ATTEMPTS => c"too_many_attempts",
            kl_status::KL_IDEMPOTENCY_CONFLICT => c"idempotency_conflict",
            kl_status::KL_DUPLICATE_REQUEST => c"duplicate_request",
            kl_status::KL_AMBIGUOUS_PATH => c"ambiguous_path",
            kl_status::KL_NOT_FOUND => c"not_found",
            kl_status::KL_ALREADY_EXISTS => c"already_exists",
            kl_status::KL_INVALID_ARGUMENT => c"invalid_argument",
            kl_status::KL_WRONG_MASTER_KEY => c"wrong_master_key",
            kl_status::KL_STORAGE => c"storage",
            kl_status::KL_VAULT_LOCKED => c"vault_locked",
            kl_status::KL_VAULT_CLOSED => c"vault_closed",
            kl_status::KL_WOULD_BLOCK => c"would_block",
            kl_status::KL_PANIC => c"panic",
            kl_status::KL_HOLD_NOT_FOUND => c"hold_not_found",
            kl_status::KL_HOLD_SETTLED => c"hold_settled",
        }
    }

    /// The HTTP status a host answers with; 200 for `KL_OK`. Agrees with
    /// [`Error::status`] for every core error.
    pub fn http(self) -> u16 {
        match self {
            kl_status::KL_OK => 200,
            kl_status::KL_INVALID_API_KEY
            | kl_status::KL_API_KEY_INACTIVE
            | kl_status::KL_API_KEY_EXPIRED
            | kl_status::KL_INVALID_SIGNATURE => 401,
            kl_status::KL_INSUFFICIENT_CREDITS => 402,
            kl_status::KL_MISSING_SCOPE | kl_status::KL_ROUTE_NOT_ALLOWED => 403,
            kl_status::KL_NOT_FOUND | kl_status::KL_HOLD_NOT_FOUND => 404,
            kl_status::KL_ALREADY_EXISTS
            | kl_status::KL_IDEMPOTENCY_CONFLICT
            | kl_status::KL_DUPLICATE_REQUEST
            | kl_status::KL_HOLD_SETTLED => 409,
            kl_status::KL_INVALID_ARGUMENT | kl_status::KL_AMBIGUOUS_PATH => 400,
            kl_status::KL_RATE_LIMITED | kl_status::KL_TOO_MANY_ATTEMPTS => 429,
            kl_status::KL_WRONG_MASTER_KEY
            | kl_status::KL_STORAGE
            | kl_status::KL_VAULT_LOCKED
            | kl_status::KL_VAULT_CLOSED
            | kl_status::KL_PANIC => 500,
            // Not an answer to send: a host that sends it anyway says "try again".
            kl_status::KL_WOULD_BLOCK => 503,
        }
    }
}

/// The HTTP status for a `kl_status` value: 200 for `KL_OK`, 400/401/402/403/409/429 for
/// refusals, 400/404/409/500 for management errors (503 for `KL_WOULD_BLOCK`, which is
/// not an answer to send). An unknown number gives 400 (like
/// `KL_INVALID_ARGUMENT`). Never fails; does not touch the thread's last error.
#[no_mangle]
pub extern "C" fn kl_status_http(status: u32) -> u16 {
    // Taking a plain integer (not the enum) keeps an unknown number from C well defined.
    kl_status::from_u32(status).http()
}

/// The stable code string for a `kl_status` value, e.g. `"invalid_api_key"`; `"ok"` for
/// `KL_OK`; `"invalid_argument"` for an unknown number. The string is static and
/// NUL-terminated: do not free it. Does not touch the thread's last error.
#[no_mangle]
pub extern "C" fn kl_status_code(status: u32) -> *const c_char {
    kl_status::from_u32(status).code_c().as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn every_error() -> Vec<Error> {
        vec![
            Error::InvalidApiKey,
            Error::ApiKeyInactive,
            Error::ApiKeyExpired,
            Error::InvalidSignature,
            Error::MissingScope {
                required: "sms:send".into(),
            },
            Error::RouteNotAllowed,
            Error::RateLimited {
                limit: "burst".into(),
                max: 10,
                remaining: 0,
                reset_ms: 1,
                retry_after: 1,
            },
            Error::InsufficientCredits {
                credits: 1,
                required: 2,
            },
            Error::TooManyAttempts { retry_after: 1 },
            Error::IdempotencyConflict,
            Error::DuplicateRequest {
                charged: 1,
                first_at: 2,
            },
            Error::AmbiguousPath("dot segment".into()),
            Error::NotFound("key x".into()),
            Error::AlreadyExists("account y".into()),
            Error::InvalidArgument("bad".into()),
            Error::WrongMasterKey,
            Error::Storage("io".into()),
            Error::VaultLocked,
            Error::VaultClosed("closed".into()),
            Error::HoldNotFound("h".into()),
            Error::HoldSettled("settled".into()),
        ]
    }

    #[test]
    fn every_error_maps_to_a_status_with_its_code_and_http_status() {
        let errors = every_error();
        for e in &errors {
            let s = kl_status::from_error(e);
            assert_ne!(s, kl_status::KL_OK);
            assert_eq!(s.code(), e.code(), "{e:?}");
            assert_eq!(s.http(), e.status(), "{e:?}");
            assert_eq!(kl_status_http(s as u32), e.status());
            // SAFETY: kl_status_code returns a static NUL-terminated string.
            let c = unsafe { CStr::from_ptr(kl_status_code(s as u32)) };
            assert_eq!(c.to_str().unwrap(), e.code());
        }
        // One error per status (besides OK and PANIC): no two variants share a number.
        let mut numbers: Vec<u32> = errors
            .iter()
            .map(|e| kl_status::from_error(e) as u32)
            .collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), errors.len());
        // Besides OK, PANIC and WOULD_BLOCK (not errors of the core).
        assert_eq!(kl_status::ALL.len(), errors.len() + 3);
    }

    #[test]
    fn status_numbers_are_permanent() {
        let expected = [
            (kl_status::KL_OK, 0),
            (kl_status::KL_INVALID_API_KEY, 1001),
            (kl_status::KL_API_KEY_INACTIVE, 1002),
            (kl_status::KL_API_KEY_EXPIRED, 1003),
            (kl_status::KL_INVALID_SIGNATURE, 1004),
            (kl_status::KL_MISSING_SCOPE, 1101),
            (kl_status::KL_ROUTE_NOT_ALLOWED, 1102),
            (kl_status::KL_INSUFFICIENT_CREDITS, 1201),
            (kl_status::KL_RATE_LIMITED, 1301),
            (kl_status::KL_TOO_MANY_ATTEMPTS, 1302),
            (kl_status::KL_IDEMPOTENCY_CONFLICT, 1401),
            (kl_status::KL_DUPLICATE_REQUEST, 1402),
            (kl_status::KL_AMBIGUOUS_PATH, 1501),
            (kl_status::KL_NOT_FOUND, 2001),
            (kl_status::KL_ALREADY_EXISTS, 2002),
            (kl_status::KL_INVALID_ARGUMENT, 2003),
            (kl_status::KL_WRONG_MASTER_KEY, 2004),
            (kl_status::KL_STORAGE, 2005),
            (kl_status::KL_VAULT_LOCKED, 2006),
            (kl_status::KL_VAULT_CLOSED, 2007),
            (kl_status::KL_WOULD_BLOCK, 3001),
            (kl_status::KL_PANIC, 9001),
        ];
        for (s, n) in expected {
            assert_eq!(s as u32, n);
            assert_eq!(kl_status::from_u32(n), s);
        }
    }

    #[test]
    fn ok_and_panic_have_their_own_codes() {
        assert_eq!(kl_status::KL_OK.code(), "ok");
        assert_eq!(kl_status_http(0), 200);
        assert_eq!(kl_status::KL_PANIC.code(), "panic");
        assert_eq!(kl_status_http(9001), 500);
    }

    #[test]
    fn unknown_numbers_map_like_invalid_argument() {
        for n in [1, 999, 1005, 1303, 1403, 1502, 2008, 3000, 9002, u32::MAX] {
            assert_eq!(kl_status_http(n), 400);
            // SAFETY: static NUL-terminated string.
            let c = unsafe { CStr::from_ptr(kl_status_code(n)) };
            assert_eq!(c.to_str().unwrap(), "invalid_argument");
        }
    }
}
