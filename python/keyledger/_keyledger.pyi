"""Type stubs of the native module ``keyledger._keyledger``."""

from datetime import datetime, timedelta
from os import PathLike
from typing import Any, Callable, Coroutine, Dict, List, Literal, Mapping, Optional, Sequence, Tuple, Union, final

from keyledger._types import Token

_Instant = Union[datetime, int, float]
_Duration = Union[timedelta, int, float]
_Argon2 = Union[Literal["default", "insecure-fast"], Mapping[str, int]]

__all__ = [
    "bearer_token",
    "generate_master_key",
    "looks_like_key",
    "redact",
    "sign_request",
    "sign_webhook",
    "verify_webhook",
    "version",
    "Account",
    "AuditEntry",
    "Balance",
    "Grant",
    "KeyInfo",
    "RateLimit",
    "RouteRule",
    "Usage",
    "Vault",
    "Hold",
    "WhoAmI",
    # Events and usage reports.
    "EventSubscription",
]

@final
class Grant:
    """A successful authorization."""
    @property
    def account_id(self) -> str: ...
    @property
    def key_id(self) -> str: ...
    @property
    def key_name(self) -> str: ...
    @property
    def prefix(self) -> str: ...
    @property
    def auth_method(self) -> Literal["apikey", "operator"]: ...
    @property
    def scopes(self) -> Tuple[str, ...]: ...
    @property
    def charged(self) -> int: ...
    @property
    def credits(self) -> int: ...
    @property
    def total_credits(self) -> int: ...
    @property
    def replayed(self) -> bool: ...
    @property
    def ratelimits(self) -> List[Dict[str, Any]]: ...
    @property
    def hold_id(self) -> Optional[str]:
        """The hold this call made (``hold=``), or None."""
        ...
    def to_dict(self) -> Dict[str, Any]: ...

@final
class KeyInfo:
    """A key's public info; never its secret or hash."""
    @property
    def key_id(self) -> str: ...
    @property
    def prefix(self) -> str: ...
    @property
    def style(self) -> Literal["prefixed", "colon"]: ...
    @property
    def account_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def scopes(self) -> Tuple[str, ...]: ...
    @property
    def operator(self) -> bool: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def expires_at(self) -> Optional[datetime]: ...
    @property
    def disabled(self) -> bool: ...
    @property
    def revoked_at(self) -> Optional[datetime]: ...
    @property
    def signing(self) -> bool: ...
    @property
    def rotated_from(self) -> Optional[str]: ...
    @property
    def metadata(self) -> Dict[str, Any]: ...
    @property
    def last_used_at(self) -> Optional[datetime]: ...
    def to_dict(self) -> Dict[str, Any]: ...

@final
class Account:
    @property
    def id(self) -> str: ...
    @property
    def credits(self) -> int: ...
    @property
    def total_credits(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def metadata(self) -> Dict[str, Any]: ...
    @property
    def refill(self) -> Optional[Dict[str, Any]]: ...

@final
class Balance:
    @property
    def account_id(self) -> str: ...
    @property
    def credits(self) -> int: ...
    @property
    def total_credits(self) -> int: ...
    @property
    def held(self) -> int:
        """Credits reserved by active holds."""
        ...
    @property
    def available(self) -> int:
        """Credits a call can spend now (``credits - held``)."""
        ...

@final
class Hold:
    """Credits reserved until settled, released or expired."""
    @property
    def hold_id(self) -> str: ...
    @property
    def account_id(self) -> str: ...
    @property
    def key_id(self) -> Optional[str]: ...
    @property
    def amount(self) -> int: ...
    @property
    def charged(self) -> int: ...
    @property
    def state(self) -> Literal["active", "settled", "released", "expired"]: ...
    @property
    def created_at(self) -> int: ...
    @property
    def expires_at(self) -> int: ...
    @property
    def finished_at(self) -> Optional[int]: ...
    @property
    def replayed(self) -> bool: ...

@final
class WhoAmI:
    @property
    def account_id(self) -> str: ...
    @property
    def key_id(self) -> str: ...
    @property
    def key_name(self) -> str: ...
    @property
    def auth_method(self) -> Literal["apikey", "operator"]: ...
    @property
    def scopes(self) -> Tuple[str, ...]: ...
    @property
    def credits(self) -> int: ...
    @property
    def total_credits(self) -> int: ...

@final
class AuditEntry:
    @property
    def seq(self) -> int: ...
    @property
    def time(self) -> datetime: ...
    @property
    def action(self) -> str: ...
    @property
    def key_id(self) -> Optional[str]: ...
    @property
    def account_id(self) -> Optional[str]: ...
    @property
    def actor(self) -> Optional[str]: ...
    @property
    def details(self) -> Dict[str, Any]: ...

@final
class Usage:
    @property
    def key_id(self) -> str: ...
    @property
    def last_used_at(self) -> Optional[datetime]: ...
    @property
    def granted(self) -> int: ...
    @property
    def refused(self) -> int: ...
    @property
    def hourly(self) -> List[Tuple[datetime, int]]: ...

@final
class RateLimit:
    @property
    def name(self) -> str: ...
    @property
    def limit(self) -> int: ...
    @property
    def duration(self) -> timedelta: ...
    @property
    def auto_apply(self) -> bool: ...

@final
class RouteRule:
    @property
    def method(self) -> str: ...
    @property
    def pattern(self) -> str: ...
    @property
    def scope(self) -> str: ...
    @property
    def cost(self) -> int: ...

@final
class Vault:
    """An open vault: thread-safe; open one per process."""
    def __new__(
        cls,
        path: Union[str, PathLike[str]],
        *,
        master_key: Union[bytes, str, None] = None,
        master_passphrase: Optional[str] = None,
        argon2: Optional[_Argon2] = None,
        exclusive: bool = False,
        durability: Literal["immediate", "eventual"] = "immediate",
        cache_capacity: int = 100_000,
        actor: Optional[str] = None,
        throttle_burst: Optional[int] = None,
        throttle_per_second: Optional[float] = None,
        signature_window: Optional[_Duration] = None,
        refusal_retention: Optional[_Duration] = None,
        single_use_signatures: bool = False,
    ) -> "Vault": ...
    def __enter__(self) -> "Vault": ...
    def __exit__(self, *args: object) -> Literal[False]: ...
    def close(self) -> None: ...
    def flush(self) -> None: ...
    @property
    def path(self) -> str: ...
    @property
    def cache_mode(self) -> Literal["shared", "private", "disabled"]: ...
    def stats(self) -> Dict[str, int]: ...
    def argon2_params(self) -> Dict[str, int]: ...
    def set_argon2_params(self, argon2: _Argon2) -> None: ...
    def authorize(
        self,
        token: str,
        *,
        route: Optional[Tuple[str, str]] = None,
        scope: Optional[str] = None,
        cost: Optional[int] = None,
        idempotency_key: Optional[str] = None,
        signature: Optional[str] = None,
        body: Optional[bytes] = None,
        limits: Optional[Sequence[str]] = None,
        limit_cost: Optional[int] = None,
        now: Optional[_Instant] = None,
        on_replay: Optional[Literal["grant", "refuse"]] = None,
        query: Optional[str] = None,
        hold: Optional[int] = None,
        hold_ttl: Optional[_Duration] = None,
    ) -> Grant: ...
    def try_authorize(
        self,
        token: str,
        *,
        route: Optional[Tuple[str, str]] = None,
        scope: Optional[str] = None,
        cost: Optional[int] = None,
        idempotency_key: Optional[str] = None,
        signature: Optional[str] = None,
        body: Optional[bytes] = None,
        limits: Optional[Sequence[str]] = None,
        limit_cost: Optional[int] = None,
        now: Optional[_Instant] = None,
        on_replay: Optional[Literal["grant", "refuse"]] = None,
        query: Optional[str] = None,
        hold: Optional[int] = None,
        hold_ttl: Optional[_Duration] = None,
    ) -> Optional[Grant]:
        """``authorize`` that never blocks: None when it would run argon2 or wait for a
        commit (nothing was changed; make the ``authorize`` call off the event loop)."""
        ...
    def authorize_async(
        self,
        token: str,
        *,
        route: Optional[Tuple[str, str]] = None,
        scope: Optional[str] = None,
        cost: Optional[int] = None,
        idempotency_key: Optional[str] = None,
        signature: Optional[str] = None,
        body: Optional[bytes] = None,
        limits: Optional[Sequence[str]] = None,
        limit_cost: Optional[int] = None,
        now: Optional[_Instant] = None,
        on_replay: Optional[Literal["grant", "refuse"]] = None,
        query: Optional[str] = None,
        hold: Optional[int] = None,
        hold_ttl: Optional[_Duration] = None,
    ) -> Coroutine[Any, Any, Grant]:
        """``await`` it: ``try_authorize`` inline, ``authorize`` in a worker thread when
        that would block (asyncio, and trio through anyio)."""
        ...
    def authorize_request(
        self,
        token: str,
        method: str,
        target: str,
        *,
        cost: Optional[int] = None,
        idempotency_key: Optional[str] = None,
        signature: Optional[str] = None,
        body: Optional[bytes] = None,
        limits: Optional[Sequence[str]] = None,
        limit_cost: Optional[int] = None,
        now: Optional[_Instant] = None,
        case_insensitive: bool = False,
        on_replay: Optional[Literal["grant", "refuse"]] = None,
    ) -> Grant: ...
    def authorize_http(
        self,
        method: str,
        target: Union[bytes, str],
        *,
        authorization: Union[bytes, str, None] = None,
        api_key: Union[bytes, str, None] = None,
        signature: Union[bytes, str, None] = None,
        idempotency_key: Union[bytes, str, None] = None,
        body: Union[bytes, str, None] = None,
        body_too_large: bool = False,
        cost: Optional[int] = None,
        scope: Optional[str] = None,
        limits: Optional[Sequence[str]] = None,
        limit_cost: Optional[int] = None,
        replay: Literal["refuse", "pass"] = "refuse",
        case_insensitive: bool = False,
        max_body: Optional[int] = None,
        now: Optional[_Instant] = None,
    ) -> Tuple[int, List[Tuple[str, str]], bytes, Optional[Grant]]:
        """The whole HTTP gate: (status, response headers, JSON body, grant or None)."""
        ...
    def try_authorize_http(
        self,
        method: str,
        target: Union[bytes, str],
        *,
        authorization: Union[bytes, str, None] = None,
        api_key: Union[bytes, str, None] = None,
        signature: Union[bytes, str, None] = None,
        idempotency_key: Union[bytes, str, None] = None,
        body: Union[bytes, str, None] = None,
        body_too_large: bool = False,
        cost: Optional[int] = None,
        scope: Optional[str] = None,
        limits: Optional[Sequence[str]] = None,
        limit_cost: Optional[int] = None,
        replay: Literal["refuse", "pass"] = "refuse",
        case_insensitive: bool = False,
        max_body: Optional[int] = None,
        now: Optional[_Instant] = None,
    ) -> Optional[Tuple[int, List[Tuple[str, str]], bytes, Optional[Grant]]]:
        """``authorize_http`` that never blocks: None when it would run argon2 or wait for
        a commit (nothing was changed; make the ``authorize_http`` call off the event loop)."""
        ...
    def authorize_http_async(
        self,
        method: str,
        target: Union[bytes, str],
        *,
        authorization: Union[bytes, str, None] = None,
        api_key: Union[bytes, str, None] = None,
        signature: Union[bytes, str, None] = None,
        idempotency_key: Union[bytes, str, None] = None,
        body: Union[bytes, str, None] = None,
        body_too_large: bool = False,
        cost: Optional[int] = None,
        scope: Optional[str] = None,
        limits: Optional[Sequence[str]] = None,
        limit_cost: Optional[int] = None,
        replay: Literal["refuse", "pass"] = "refuse",
        case_insensitive: bool = False,
        max_body: Optional[int] = None,
        now: Optional[_Instant] = None,
    ) -> Coroutine[Any, Any, Tuple[int, List[Tuple[str, str]], bytes, Optional[Grant]]]:
        """``await`` it: ``try_authorize_http`` inline, ``authorize_http`` in a worker
        thread when that would block."""
        ...
    def whoami(self, token: str) -> WhoAmI: ...
    def create_account(
        self, id: str, credits: Optional[int] = None, metadata: Optional[Mapping[str, Any]] = None
    ) -> Account: ...
    def account(self, id: str) -> Account: ...
    def list_accounts(self) -> List[Account]: ...
    def top_up(self, id: str, amount: int, reference: Optional[str] = None) -> Balance: ...
    def debit(self, id: str, amount: int, idempotency_key: Optional[str] = None) -> Balance: ...
    def balance(self, id: str) -> Balance: ...
    def create_key(
        self,
        account_id: str,
        name: str,
        scopes: Sequence[str],
        *,
        prefix: str = "kl_live",
        expires_at: Optional[_Instant] = None,
        expires_in: Optional[_Duration] = None,
        operator: bool = False,
        signing: bool = False,
        metadata: Optional[Mapping[str, Any]] = None,
        style: Literal["prefixed", "colon"] = "prefixed",
    ) -> Tuple[Token, KeyInfo]: ...
    def key(self, key_id: str) -> KeyInfo: ...
    def list_keys(self, account_id: Optional[str] = None) -> List[KeyInfo]: ...
    def revoke_key(self, key_id: str) -> KeyInfo: ...
    def disable_key(self, key_id: str) -> KeyInfo: ...
    def enable_key(self, key_id: str) -> KeyInfo: ...
    def set_scopes(self, key_id: str, scopes: Sequence[str]) -> KeyInfo: ...
    def set_expiry(self, key_id: str, expires_at: Optional[_Instant]) -> KeyInfo: ...
    def rotate_key(self, key_id: str, grace: Optional[_Duration] = None) -> Tuple[Token, KeyInfo]: ...
    def reveal_signing_secret(self, key_id: str) -> str: ...
    def rekey(self, new_master_key: Union[bytes, str]) -> int: ...
    def rekey_passphrase(self, passphrase: str) -> int: ...
    @property
    def has_master_key(self) -> bool: ...
    def set_ratelimit(
        self,
        name: str,
        limit: int,
        duration: _Duration,
        *,
        key_id: Optional[str] = None,
        account_id: Optional[str] = None,
        auto_apply: bool = True,
    ) -> RateLimit: ...
    def remove_ratelimit(
        self, name: str, *, key_id: Optional[str] = None, account_id: Optional[str] = None
    ) -> RateLimit: ...
    def ratelimits(self, *, key_id: Optional[str] = None, account_id: Optional[str] = None) -> List[RateLimit]: ...
    def set_refill(
        self, account_id: str, amount: int, interval: Literal["daily", "monthly"], day: Optional[int] = None
    ) -> Account: ...
    def clear_refill(self, account_id: str) -> Account: ...
    def add_route(self, method: str, pattern: str, scope: str, cost: Optional[int] = None) -> RouteRule: ...
    def remove_route(self, method: str, pattern: str) -> RouteRule: ...
    def list_routes(self) -> List[RouteRule]: ...
    def match_route(self, method: str, path: str) -> Optional[RouteRule]: ...
    def match_request(
        self, method: str, target: str, *, case_insensitive: bool = False
    ) -> Optional[RouteRule]: ...
    def audit(
        self,
        *,
        key_id: Optional[str] = None,
        account_id: Optional[str] = None,
        action: Optional[str] = None,
        since: Optional[_Instant] = None,
        limit: Optional[int] = None,
    ) -> List[AuditEntry]: ...
    def usage(self, key_id: str) -> Usage: ...
    # Events and usage reports.
    def set_alert(self, account_id: str, below: int) -> List[int]: ...
    def remove_alert(self, account_id: str, below: int) -> bool: ...
    def alerts(self, account_id: str) -> List[int]: ...
    def events(self, after: Optional[int] = None, limit: Optional[int] = None) -> List[Dict[str, Any]]: ...
    def event_cursor(self, consumer: str) -> int: ...
    def ack_events(self, consumer: str, seq: int) -> int: ...
    def set_expiry_notice(self, horizon: Union[timedelta, int, float, None]) -> None: ...
    def check_expiring_keys(self) -> int: ...
    def usage_report(
        self,
        account_id: str,
        since: _Instant,
        until: _Instant,
        by: Literal["key", "route", "day"] = "key",
    ) -> List[Dict[str, Any]]: ...
    def metrics(self) -> Dict[str, Any]: ...
    def metrics_prometheus(self) -> str: ...
    def on_event(
        self,
        callback: Callable[[Dict[str, Any]], object],
        *,
        consumer: str = "default",
        poll_interval: float = 1.0,
    ) -> EventSubscription: ...
    # Holds.
    def hold(
        self,
        account_id: str,
        amount: int,
        *,
        ttl: Optional[_Duration] = None,
        idempotency_key: Optional[str] = None,
    ) -> Hold: ...
    def settle(
        self,
        hold_id: str,
        actual: int,
        *,
        allow_over: bool = False,
        idempotency_key: Optional[str] = None,
    ) -> Hold: ...
    def release(self, hold_id: str) -> Hold: ...
    def get_hold(self, hold_id: str) -> Hold: ...
    def holds(self, account_id: Optional[str] = None) -> List[Hold]: ...
    def hold_async(
        self,
        account_id: str,
        amount: int,
        *,
        ttl: Optional[_Duration] = None,
        idempotency_key: Optional[str] = None,
    ) -> Coroutine[Any, Any, Hold]: ...
    def settle_async(
        self,
        hold_id: str,
        actual: int,
        *,
        allow_over: bool = False,
        idempotency_key: Optional[str] = None,
    ) -> Coroutine[Any, Any, Hold]: ...
    def release_async(self, hold_id: str) -> Coroutine[Any, Any, Hold]: ...

# Events and usage reports.
@final
class EventSubscription:
    def stop(self) -> None: ...
    @property
    def stopped(self) -> bool: ...
    @property
    def consumer(self) -> str: ...

def looks_like_key(token: object) -> bool: ...
def redact(token: str) -> str: ...
def sign_webhook(secret: Union[bytes, str], body: Union[bytes, str]) -> str: ...
def verify_webhook(body: Union[bytes, str], signature_hex: object, secret: Union[bytes, str]) -> bool: ...
def sign_request(
    signing_secret: str,
    method: str,
    path: str,
    body: Union[bytes, str, None] = None,
    t: Optional[_Instant] = None,
) -> str: ...
def generate_master_key() -> str: ...
def version() -> str: ...
def bearer_token(value: bytes) -> Optional[str]:
    """The token of an ``Authorization: Bearer <token>`` value, or None."""
    ...
