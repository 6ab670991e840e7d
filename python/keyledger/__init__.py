"""keyledger: an embedded API-key vault with credits.

    import keyledger

    with keyledger.Vault("keyledger.redb") as vault:
        vault.create_account("acct_42", credits=100)
        vault.add_route("POST", "/api/v1/messaging/send", "sms:send", cost=1)
        token, key = vault.create_key("acct_42", "prod server", ["sms:send"], prefix="dial_live")
        grant = vault.authorize(token, route=("POST", "/api/v1/messaging/send"))
        print(grant.credits)  # 99

Open one ``Vault`` per process (in each gunicorn/uvicorn worker, not before the fork):
every worker opening the same file shares keys, credits and cache invalidations.
"""

from keyledger._errors import (
    AlreadyExists,
    AmbiguousPath,
    ApiKeyExpired,
    ApiKeyInactive,
    AuthError,
    ConflictError,
    DuplicateRequest,
    ForbiddenError,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidApiKey,
    InvalidArgument,
    InvalidSignature,
    KeyLedgerError,
    MissingScope,
    NotFound,
    RateLimited,
    RouteNotAllowed,
    StorageError,
    TooManyAttempts,
    VaultClosed,
    HoldNotFound,
    HoldSettled,
    VaultLocked,
    WrongMasterKey,
)
from keyledger._types import Token
from keyledger._keyledger import (
    Account,
    AuditEntry,
    Balance,
    EventSubscription,
    Hold,
    Grant,
    KeyInfo,
    RateLimit,
    RouteRule,
    Usage,
    Vault,
    WhoAmI,
    generate_master_key,
    looks_like_key,
    redact,
    sign_request,
    sign_webhook,
    verify_webhook,
    version,
)

__version__ = version()

__all__ = [
    "Account",
    "AlreadyExists",
    "AmbiguousPath",
    "ApiKeyExpired",
    "ApiKeyInactive",
    "AuditEntry",
    "AuthError",
    "Balance",
    "Hold",
    "ConflictError",
    "DuplicateRequest",
    "EventSubscription",
    "ForbiddenError",
    "Grant",
    "IdempotencyConflict",
    "InsufficientCredits",
    "InvalidApiKey",
    "InvalidArgument",
    "InvalidSignature",
    "KeyInfo",
    "KeyLedgerError",
    "MissingScope",
    "NotFound",
    "RateLimit",
    "RateLimited",
    "RouteNotAllowed",
    "RouteRule",
    "StorageError",
    "Token",
    "TooManyAttempts",
    "Usage",
    "Vault",
    "VaultClosed",
    "HoldNotFound",
    "HoldSettled",
    "VaultLocked",
    "WhoAmI",
    "WrongMasterKey",
    "generate_master_key",
    "looks_like_key",
    "redact",
    "sign_request",
    "sign_webhook",
    "verify_webhook",
    "__version__",
]
