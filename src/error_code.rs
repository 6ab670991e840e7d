//! [`ErrorCode`]: the kind of an [`Error`] without its details, as an enum a caller in
//! another crate can match exhaustively.
//!
//! [`Error`] is `#[non_exhaustive]`, so code outside this crate must end a `match` on it
//! with a catch-all arm, and a new variant would silently fall into it. A caller that must
//! map every kind itself (the `keyledger` command-line tool maps each to an exit code)
//! matches [`Error::error_code`] instead: `ErrorCode` is deliberately exhaustive, so a new
//! kind of error is a new variant here and such a `match` stops compiling until it maps it,
//! as the C ABI and the Python module do inside this crate.

use crate::Error;

/// The kind of an [`Error`]: one variant per [`Error`] variant, with the same stable
/// [`code`](ErrorCode::as_str) string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `invalid_api_key` (HTTP 401).
    InvalidApiKey,
    /// `api_key_inactive` (HTTP 401).
    ApiKeyInactive,
    /// `api_key_expired` (HTTP 401).
    ApiKeyExpired,
    /// `invalid_signature` (HTTP 401).
    InvalidSignature,
    /// `missing_scope` (HTTP 403).
    MissingScope,
    /// `route_not_allowed` (HTTP 403).
    RouteNotAllowed,
    /// `rate_limited` (HTTP 429).
    RateLimited,
    /// `insufficient_credits` (HTTP 402).
    InsufficientCredits,
    /// `idempotency_conflict` (HTTP 409).
    IdempotencyConflict,
    /// `duplicate_request` (HTTP 409).
    DuplicateRequest,
    /// `too_many_attempts` (HTTP 429).
    TooManyAttempts,
    /// `ambiguous_path` (HTTP 400).
    AmbiguousPath,
    /// `not_found` (HTTP 404).
    NotFound,
    /// `already_exists` (HTTP 409).
    AlreadyExists,
    /// `invalid_argument` (HTTP 400).
    InvalidArgument,
    /// `wrong_master_key` (HTTP 500).
    WrongMasterKey,
    /// `storage` (HTTP 500).
    Storage,
    /// `vault_locked` (HTTP 500).
    VaultLocked,
    /// `vault_closed` (HTTP 500).
    VaultClosed,
    // Holds.
    /// `hold_not_found` (HTTP 404).
    HoldNotFound,
    /// `hold_settled` (HTTP 409).
    HoldSettled,
}

impl ErrorCode {
    /// Every code, in declaration order. (A function, not an associated constant, which
    /// cbindgen would put in the C header.)
    pub fn all() -> [ErrorCode; 21] {
        [
            ErrorCode::InvalidApiKey,
            ErrorCode::ApiKeyInactive,
            ErrorCode::ApiKeyExpired,
            ErrorCode::InvalidSignature,
            ErrorCode::MissingScope,
            ErrorCode::RouteNotAllowed,
            ErrorCode::RateLimited,
            ErrorCode::InsufficientCredits,
            ErrorCode::IdempotencyConflict,
            ErrorCode::DuplicateRequest,
            ErrorCode::TooManyAttempts,
            ErrorCode::AmbiguousPath,
            ErrorCode::NotFound,
            ErrorCode::AlreadyExists,
            ErrorCode::InvalidArgument,
            ErrorCode::WrongMasterKey,
            ErrorCode::Storage,
            ErrorCode::VaultLocked,
            ErrorCode::VaultClosed,
            ErrorCode::HoldNotFound,
            ErrorCode::HoldSettled,
        ]
    }

    /// The stable machine-readable code: the same string as [`Error::code`].
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidApiKey => "invalid_api_key",
            ErrorCode::ApiKeyInactive => "api_key_inactive",
            ErrorCode::ApiKeyExpired => "api_key_expired",
            ErrorCode::InvalidSignature => "invalid_signature",
            ErrorCode::MissingScope => "missing_scope",
            ErrorCode::RouteNotAllowed => "route_not_allowed",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::InsufficientCredits => "insufficient_credits",
            ErrorCode::IdempotencyConflict => "idempotency_conflict",
            ErrorCode::DuplicateRequest => "duplicate_request",
            ErrorCode::TooManyAttempts => "too_many_attempts",
            ErrorCode::AmbiguousPath => "ambiguous_path",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::WrongMasterKey => "wrong_master_key",
            ErrorCode::Storage => "storage",
            ErrorCode::VaultLocked => "vault_locked",
            ErrorCode::VaultClosed => "vault_closed",
            ErrorCode::HoldNotFound => "hold_not_found",
            ErrorCode::HoldSettled => "hold_settled",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// This error's kind, for an exhaustive `match` outside this crate (see [`ErrorCode`]).
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Error::InvalidApiKey => ErrorCode::InvalidApiKey,
            Error::ApiKeyInactive => ErrorCode::ApiKeyInactive,
            Error::ApiKeyExpired => ErrorCode::ApiKeyExpired,
            Error::InvalidSignature => ErrorCode::InvalidSignature,
            Error::MissingScope { .. } => ErrorCode::MissingScope,
            Error::RouteNotAllowed => ErrorCode::RouteNotAllowed,
            Error::RateLimited { .. } => ErrorCode::RateLimited,
            Error::InsufficientCredits { .. } => ErrorCode::InsufficientCredits,
            Error::IdempotencyConflict => ErrorCode::IdempotencyConflict,
            Error::DuplicateRequest { .. } => ErrorCode::DuplicateRequest,
            Error::TooManyAttempts { .. } => ErrorCode::TooManyAttempts,
            Error::AmbiguousPath(_) => ErrorCode::AmbiguousPath,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Error::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Error::WrongMasterKey => ErrorCode::WrongMasterKey,
            Error::Storage(_) => ErrorCode::Storage,
            Error::VaultLocked => ErrorCode::VaultLocked,
            Error::VaultClosed(_) => ErrorCode::VaultClosed,
            Error::HoldNotFound(_) => ErrorCode::HoldNotFound,
            Error::HoldSettled(_) => ErrorCode::HoldSettled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One error of every kind: adding an `Error` variant makes `error_code` (above) fail
    /// to compile until it is mapped, and this list then fails the test until it has one.
    fn one_of_each() -> Vec<Error> {
        vec![
            Error::InvalidApiKey,
            Error::ApiKeyInactive,
            Error::ApiKeyExpired,
            Error::InvalidSignature,
            Error::MissingScope {
                required: "s".into(),
            },
            Error::RouteNotAllowed,
            Error::RateLimited {
                limit: "l".into(),
                max: 1,
                remaining: 0,
                reset_ms: 0,
                retry_after: 1,
            },
            Error::InsufficientCredits {
                credits: 0,
                required: 1,
            },
            Error::IdempotencyConflict,
            Error::DuplicateRequest {
                charged: 0,
                first_at: 0,
            },
            Error::TooManyAttempts { retry_after: 1 },
            Error::AmbiguousPath("p".into()),
            Error::NotFound("n".into()),
            Error::AlreadyExists("a".into()),
            Error::InvalidArgument("i".into()),
            Error::WrongMasterKey,
            Error::Storage("s".into()),
            Error::VaultLocked,
            Error::VaultClosed("c".into()),
            Error::HoldNotFound("h".into()),
            Error::HoldSettled("h".into()),
        ]
    }

    #[test]
    fn every_error_has_its_own_error_code_with_the_same_string_as_code() {
        let errors = one_of_each();
        let codes: Vec<ErrorCode> = errors.iter().map(Error::error_code).collect();
        assert_eq!(codes, ErrorCode::all().to_vec());
        for e in &errors {
            assert_eq!(e.error_code().as_str(), e.code(), "{e:?}");
            assert_eq!(e.error_code().to_string(), e.code());
        }
    }
}
