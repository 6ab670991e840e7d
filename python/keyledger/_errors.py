"""The exception tree of keyledger.

Every error carries ``status`` (the HTTP status to answer with), ``code`` (the stable
``error`` string), ``message`` and ``body`` (a dict ready for ``JSONResponse(body, status)``).
The native module raises these classes; none of them ever holds a secret.
"""

from __future__ import annotations

from typing import Any, Dict, Optional


class KeyLedgerError(Exception):
    """Base class of every keyledger error."""

    status: int
    code: str
    message: str
    body: Dict[str, Any]

    def __init__(
        self,
        message: str,
        *,
        status: int = 500,
        code: str = "storage",
        body: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.body = body if body is not None else {"success": False, "error": code, "message": message}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r}, message={self.message!r})"


class AuthError(KeyLedgerError):
    """401: the key cannot be used."""


class InvalidApiKey(AuthError):
    """401 ``invalid_api_key``: malformed, unknown, wrong secret, revoked or throttled."""


class ApiKeyInactive(AuthError):
    """401 ``api_key_inactive``: the key is disabled."""


class ApiKeyExpired(AuthError):
    """401 ``api_key_expired``: the key is past its expiry."""


class InvalidSignature(AuthError):
    """401 ``invalid_signature``: the request signature is missing, wrong or stale."""


class ForbiddenError(KeyLedgerError):
    """403: the key is valid but may not do this."""


class MissingScope(ForbiddenError):
    """403 ``missing_scope``; ``body["required"]`` names the scope."""


class RouteNotAllowed(ForbiddenError):
    """403 ``route_not_allowed``: no route rule matches (deny by default)."""


class InsufficientCredits(KeyLedgerError):
    """402 ``insufficient_credits``; ``body`` has ``credits`` and ``required``."""


class RateLimited(KeyLedgerError):
    """429 ``rate_limited``; ``body`` has ``limit``, ``max``, ``remaining``, ``reset_ms``, ``retry_after``."""


class TooManyAttempts(KeyLedgerError):
    """429 ``too_many_attempts``: too many secret checks queued or failed in this process.

    The secret was not checked, so this says nothing about the key: retry after
    ``body["retry_after"]`` seconds.
    """


class ConflictError(KeyLedgerError):
    """409: the request collides with an earlier one under the same idempotency key."""


class IdempotencyConflict(ConflictError):
    """409 ``idempotency_conflict``: the key was used for a request with other parameters."""


class DuplicateRequest(ConflictError):
    """409 ``duplicate_request``: a gate refused to run a replayed request again.

    ``body`` has ``charged`` and ``first_at`` (unix ms) of the original call.
    """


class AmbiguousPath(KeyLedgerError):
    """400 ``ambiguous_path``: the request target could reach different handlers
    depending on how a router normalises it (encoded ``/``, ``?``, ``#``, dot segments, …)."""


class NotFound(KeyLedgerError):
    """``not_found``: no such account, key or route."""


class AlreadyExists(KeyLedgerError):
    """``already_exists``: the account or route exists already."""


class InvalidArgument(KeyLedgerError, ValueError):
    """``invalid_argument``: bad input; nothing was changed. Also a ``ValueError``."""


class WrongMasterKey(KeyLedgerError):
    """``wrong_master_key``: the master key does not match the vault."""


class StorageError(KeyLedgerError):
    """``storage``: the storage layer failed; nothing was changed."""


class VaultLocked(KeyLedgerError):
    """``vault_locked``: another process holds the vault exclusively."""


class VaultClosed(KeyLedgerError):
    """``vault_closed``: the vault was closed, or was opened before ``os.fork()``."""


# Holds.
class HoldNotFound(KeyLedgerError):
    """404 ``hold_not_found``: no hold has this id."""


class HoldSettled(ConflictError):
    """409 ``hold_settled``: the hold is no longer active (settled, released or expired)
    and the call asks for something other than its recorded outcome."""


__all__ = [
    "KeyLedgerError",
    "AuthError",
    "InvalidApiKey",
    "ApiKeyInactive",
    "ApiKeyExpired",
    "InvalidSignature",
    "ForbiddenError",
    "MissingScope",
    "RouteNotAllowed",
    "InsufficientCredits",
    "RateLimited",
    "TooManyAttempts",
    "ConflictError",
    "IdempotencyConflict",
    "DuplicateRequest",
    "AmbiguousPath",
    "NotFound",
    "AlreadyExists",
    "InvalidArgument",
    "WrongMasterKey",
    "StorageError",
    "VaultLocked",
    "VaultClosed",
    "HoldNotFound",
    "HoldSettled",
]
