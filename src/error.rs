//! The one error type of keyledger.
//!
//! Every refusal of [`crate::Vault::authorize`] and every management error is a variant
//! of [`Error`]. Each variant knows its stable `code()` string, its HTTP `status()` and the
//! JSON `body()` a host sends back. The C ABI and the Python module match this enum
//! exhaustively, so a new variant does not compile until every host maps it.
//!
//! No variant ever carries a secret, a hash or a master key: messages name key ids and
//! account ids only.

use serde_json::{json, Map, Value};

/// A keyledger error: an authorization refusal or a management/open failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token is malformed, has a bad checksum, names an unknown key, carries the
    /// wrong secret, belongs to a revoked key, or was throttled after repeated failures.
    /// Deliberately one variant: a caller without the secret learns nothing about the key.
    #[error("invalid API key")]
    InvalidApiKey,
    /// The key is disabled (it can be enabled again).
    #[error("API key is disabled")]
    ApiKeyInactive,
    /// The key is past its `expires_at`.
    #[error("API key has expired")]
    ApiKeyExpired,
    /// The key requires a request signature and it was missing, malformed, wrong or stale.
    #[error("request signature is missing, invalid or outside the allowed window")]
    InvalidSignature,
    /// The key lacks the scope the route or call requires.
    #[error("API key lacks the required scope {required:?}")]
    MissingScope {
        /// The scope that was required.
        required: String,
    },
    /// No route rule matches the request (deny by default).
    #[error("no route rule allows this request")]
    RouteNotAllowed,
    /// A rate limit is exhausted.
    #[error("rate limit {limit:?} exceeded")]
    RateLimited {
        /// Name of the exhausted limit.
        limit: String,
        /// The limit's maximum per window.
        max: u64,
        /// Always 0 in a refusal; kept for the body.
        remaining: u64,
        /// Unix milliseconds at which the limit has capacity again.
        reset_ms: i64,
        /// Seconds to wait before retrying (rounded up).
        retry_after: u64,
    },
    /// The account has fewer credits than the call costs; nothing was debited.
    #[error("insufficient credits: {credits} available, {required} required")]
    InsufficientCredits {
        /// Credits the account has.
        credits: u64,
        /// Credits the call needed.
        required: u64,
    },
    /// The idempotency key was used before, within its 24 h window, for a request with
    /// other parameters (account, route rule or scope, cost or limit cost). Nothing was
    /// charged. A client must use a fresh key for a different request.
    #[error("idempotency key was already used for a different request")]
    IdempotencyConflict,
    /// An HTTP gate refuses a replayed request instead of running the handler again: the
    /// idempotency key was already served. `charged` and `first_at` describe the original
    /// call. [`crate::Vault::authorize`] itself returns a grant marked `replayed`; only a
    /// caller that asks for this refusal gets it.
    #[error("duplicate request: this idempotency key was already served")]
    DuplicateRequest {
        /// Credits the original call was charged.
        charged: u64,
        /// When the original call was granted, in unix milliseconds.
        first_at: i64,
    },
    /// Too many secret verifications are queued or have failed in this process: the
    /// secret was not checked. Retryable; never a statement about the key.
    #[error("too many authentication attempts, retry in {retry_after} s")]
    TooManyAttempts {
        /// Seconds to wait before retrying (at least 1).
        retry_after: u64,
    },
    /// The request target cannot be read unambiguously (an encoded `/`, `?`, `#`, `\` or
    /// NUL, a `.` or `..` segment, an empty segment a rule would swallow, …): routers
    /// could disagree on which handler it reaches, so the gate refuses it.
    #[error("ambiguous request path: {0}")]
    AmbiguousPath(String),
    /// A management call named an account, key or route that does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A management call tried to create something that already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// An argument was out of range, malformed or too large. Nothing was changed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The master key given at open does not match the vault's check value.
    #[error("wrong master key for this vault")]
    WrongMasterKey,
    /// The storage layer failed (I/O, corruption, a failed commit). Nothing was changed.
    #[error("storage error: {0}")]
    Storage(String),
    /// The vault is opened exclusively by another process (or handle).
    #[error("vault is locked by another process")]
    VaultLocked,
    /// The handle was closed, or is used in a child process after `fork()`: open a vault
    /// in each worker process instead.
    #[error("vault handle is closed: {0}")]
    VaultClosed(String),
    // Holds.
    /// No hold has this id (it was never made here, or a finished one was pruned).
    #[error("hold {0:?} not found")]
    HoldNotFound(String),
    /// The hold is no longer active (settled, released, or expired), and this call asks
    /// for something other than its recorded outcome. The message says which.
    #[error("{0}")]
    HoldSettled(String),
}

/// The result type of every keyledger call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The stable machine-readable code, the `error` field of [`Error::body`].
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidApiKey => "invalid_api_key",
            Error::ApiKeyInactive => "api_key_inactive",
            Error::ApiKeyExpired => "api_key_expired",
            Error::InvalidSignature => "invalid_signature",
            Error::MissingScope { .. } => "missing_scope",
            Error::RouteNotAllowed => "route_not_allowed",
            Error::RateLimited { .. } => "rate_limited",
            Error::InsufficientCredits { .. } => "insufficient_credits",
            Error::IdempotencyConflict => "idempotency_conflict",
            Error::DuplicateRequest { .. } => "duplicate_request",
            Error::TooManyAttempts { .. } => "too_many_attempts",
            Error::AmbiguousPath(_) => "ambiguous_path",
            Error::NotFound(_) => "not_found",
            Error::AlreadyExists(_) => "already_exists",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::WrongMasterKey => "wrong_master_key",
            Error::Storage(_) => "storage",
            Error::VaultLocked => "vault_locked",
            Error::VaultClosed(_) => "vault_closed",
            Error::HoldNotFound(_) => "hold_not_found",
            Error::HoldSettled(_) => "hold_settled",
        }
    }

    /// The HTTP status a host answers with. Management and open errors, which never come
    /// out of `authorize` for a well-formed call, map to the closest HTTP meaning.
    pub fn status(&self) -> u16 {
        match self {
            Error::InvalidApiKey
            | Error::ApiKeyInactive
            | Error::ApiKeyExpired
            | Error::InvalidSignature => 401,
            Error::InsufficientCredits { .. } => 402,
            Error::MissingScope { .. } | Error::RouteNotAllowed => 403,
            Error::NotFound(_) | Error::HoldNotFound(_) => 404,
            Error::AlreadyExists(_)
            | Error::IdempotencyConflict
            | Error::DuplicateRequest { .. }
            | Error::HoldSettled(_) => 409,
            Error::InvalidArgument(_) | Error::AmbiguousPath(_) => 400,
            Error::RateLimited { .. } | Error::TooManyAttempts { .. } => 429,
            Error::WrongMasterKey
            | Error::Storage(_)
            | Error::VaultLocked
            | Error::VaultClosed(_) => 500,
        }
    }

    /// Whether this is a refusal of an authorization (400/401/402/403/409/429), as opposed
    /// to a management or storage error.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Error::InvalidApiKey
                | Error::ApiKeyInactive
                | Error::ApiKeyExpired
                | Error::InvalidSignature
                | Error::MissingScope { .. }
                | Error::RouteNotAllowed
                | Error::RateLimited { .. }
                | Error::InsufficientCredits { .. }
                | Error::IdempotencyConflict
                | Error::DuplicateRequest { .. }
                | Error::TooManyAttempts { .. }
                | Error::AmbiguousPath(_)
        )
    }

    /// The JSON body a host sends with [`Error::status`]: always an object with
    /// `success: false`, `error` (the code) and `message`, plus the fields of the error taxonomy
    /// (`required`; `credits`/`required`; `limit`/`max`/`remaining`/`reset_ms`/`retry_after`;
    /// `charged`/`first_at` for a duplicate request; `retry_after` for too many attempts).
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("success".into(), Value::Bool(false));
        body.insert("error".into(), Value::String(self.code().into()));
        body.insert("message".into(), Value::String(self.to_string()));
        match self {
            Error::MissingScope { required } => {
                body.insert("required".into(), json!(required));
            }
            Error::InsufficientCredits { credits, required } => {
                body.insert("credits".into(), json!(credits));
                body.insert("required".into(), json!(required));
            }
            Error::RateLimited {
                limit,
                max,
                remaining,
                reset_ms,
                retry_after,
            } => {
                body.insert("limit".into(), json!(limit));
                body.insert("max".into(), json!(max));
                body.insert("remaining".into(), json!(remaining));
                body.insert("reset_ms".into(), json!(reset_ms));
                body.insert("retry_after".into(), json!(retry_after));
            }
            Error::DuplicateRequest { charged, first_at } => {
                body.insert("charged".into(), json!(charged));
                body.insert("first_at".into(), json!(first_at));
            }
            Error::TooManyAttempts { retry_after } => {
                body.insert("retry_after".into(), json!(retry_after));
            }
            _ => {}
        }
        Value::Object(body)
    }

    /// Seconds a client should wait before retrying, for the refusals that are retryable
    /// (`rate_limited`, `too_many_attempts`): the value of a `Retry-After` header.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Error::RateLimited { retry_after, .. } | Error::TooManyAttempts { retry_after } => {
                Some(*retry_after)
            }
            _ => None,
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Error {
        Error::InvalidArgument(msg.into())
    }

    pub(crate) fn storage(err: impl std::fmt::Display) -> Error {
        Error::Storage(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insufficient_credits_body_has_the_spec_fields() {
        let e = Error::InsufficientCredits {
            credits: 3,
            required: 5,
        };
        let b = e.body();
        assert_eq!(e.status(), 402);
        assert_eq!(b["success"], json!(false));
        assert_eq!(b["error"], json!("insufficient_credits"));
        assert_eq!(b["credits"], json!(3));
        assert_eq!(b["required"], json!(5));
    }

    #[test]
    fn missing_scope_body_names_the_required_scope() {
        let e = Error::MissingScope {
            required: "sms:send".into(),
        };
        assert_eq!(e.status(), 403);
        assert_eq!(e.body()["required"], json!("sms:send"));
        assert_eq!(e.body()["error"], json!("missing_scope"));
    }

    #[test]
    fn every_refusal_is_4xx_and_every_management_error_is_not_a_refusal() {
        for e in [
            Error::InvalidApiKey,
            Error::ApiKeyInactive,
            Error::ApiKeyExpired,
            Error::InvalidSignature,
            Error::RouteNotAllowed,
            Error::IdempotencyConflict,
            Error::DuplicateRequest {
                charged: 1,
                first_at: 2,
            },
            Error::TooManyAttempts { retry_after: 1 },
            Error::AmbiguousPath("encoded '/'".into()),
        ] {
            assert!(e.is_refusal());
            assert!((400..500).contains(&e.status()));
        }
        assert!(!Error::NotFound("key x".into()).is_refusal());
        assert_eq!(Error::IdempotencyConflict.status(), 409);
        assert_eq!(Error::AmbiguousPath("x".into()).status(), 400);
        assert_eq!(
            Error::TooManyAttempts { retry_after: 3 }.retry_after(),
            Some(3)
        );
        let dup = Error::DuplicateRequest {
            charged: 5,
            first_at: 1_700_000_000_000,
        };
        assert_eq!(dup.body()["charged"], json!(5));
        assert_eq!(dup.body()["first_at"], json!(1_700_000_000_000_i64));
        assert!(!Error::Storage("io".into()).is_refusal());
    }
}
