"""Starlette: an ``AuthenticationBackend`` authorizing each request through keyledger.

    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from keyledger.starlette import KeyLedgerAuthenticationMiddleware, KeyLedgerBackend

    app = Starlette(routes=..., middleware=[
        Middleware(KeyLedgerAuthenticationMiddleware, backend=KeyLedgerBackend(vault)),
    ])

``KeyLedgerAuthenticationMiddleware`` is Starlette's ``AuthenticationMiddleware`` with
``on_error`` defaulting to ``keyledger.starlette.on_error``, and it reads the body of a
signed request for the backend (below). Starlette's own ``AuthenticationMiddleware`` with
``on_error=on_error`` works too, for keys that do not sign requests.

A request without credentials (no ``Authorization`` and no ``X-Api-Key`` header) stays
anonymous (``request.user.is_authenticated`` is False), so public routes work and
``@requires("sms:send")`` answers 403. A request with credentials is authorized with
``Vault.authorize_http_async``: by default as the request itself (its method and raw target
against the vault's route rules, charging the rule's cost, as the ASGI middleware does), or
as ``scope=`` with ``cost=`` (default 0) when given. Then:

* granted: ``request.user`` is a ``KeyLedgerUser`` (``.grant`` the ``Grant``, ``identity``
  the account id, ``display_name`` the key's name), ``request.auth`` is
  ``KeyLedgerCredentials`` (the key's scopes, which ``@requires`` checks, and ``.grant``),
  and ``scope["keyledger"]`` is the ``Grant``;
* refused: the backend raises ``Refused`` (an ``AuthenticationError`` carrying the core's
  status, headers and JSON body); pass ``on_error=keyledger.starlette.on_error`` to answer
  with them, e.g. ``401 {"success": false, "error": "invalid_api_key", ...}`` with
  ``WWW-Authenticate: Bearer`` (Starlette's default ``on_error`` answers 400 in plain text).

Signed requests (keys created with ``signing=True``): when the request carries the signature
header (default ``X-KeyLedger-Signature``), ``KeyLedgerAuthenticationMiddleware`` reads the
whole body (up to the backend's ``max_body``, else 413 ``payload_too_large``) and hands it to
the app again unchanged, and the core checks the signature over the method, the target as
sent and the body, exactly as ``keyledger.asgi`` does: a tampered body or a stale timestamp
is 401 ``invalid_signature``. With ``scope=`` the core checks a signature over the method
``SCOPE`` and the scope instead, as for ``Vault.authorize(scope=...)``. Under Starlette's
own ``AuthenticationMiddleware`` a backend never sees the body, so a signing key is refused
there (401 ``invalid_signature``); keys that do not sign ignore the header.

``@requires`` checks scopes literally; a wildcard key scope (``sms:*``) is expanded by the
core only, so check with ``scope=`` on the backend or ``keyledger.fastapi.require`` when
keys carry wildcards.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from starlette.authentication import AuthCredentials, AuthenticationBackend, AuthenticationError, BaseUser
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from keyledger._asgi_io import raw_target, signed_body
from keyledger._keyledger import Grant, Vault

# Where KeyLedgerAuthenticationMiddleware leaves a signed request's body (and whether it
# was over max_body) for the backend.
BODY = "keyledger.signed_body"


class KeyLedgerUser(BaseUser):
    """The authenticated caller: ``grant`` (the ``Grant``) and its ``account_id``."""

    def __init__(self, grant: Grant) -> None:
        self.grant = grant
        self.account_id = grant.account_id

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.grant.key_name

    @property
    def identity(self) -> str:
        return self.grant.account_id

    def __repr__(self) -> str:
        return f"KeyLedgerUser(account_id={self.account_id!r})"


class KeyLedgerCredentials(AuthCredentials):
    """``request.auth``: the key's scopes (``.scopes``) and the ``Grant`` (``.grant``)."""

    def __init__(self, grant: Grant) -> None:
        super().__init__(list(grant.scopes))
        self.grant = grant


class Refused(AuthenticationError):
    """A keyledger refusal: the core's ``status``, ``headers`` and JSON ``body``."""

    def __init__(self, status: int, headers: List[Tuple[str, str]], body: bytes) -> None:
        super().__init__(body.decode("utf-8", "replace"))
        self.status, self.headers, self.body = status, headers, body


def on_error(conn: HTTPConnection, exc: Exception) -> Response:
    """An ``on_error`` for ``AuthenticationMiddleware``: a ``Refused`` answered with the
    core's status, headers and body; any other error 400 as Starlette does."""
    if isinstance(exc, Refused):
        headers = {k: v for k, v in exc.headers if k.lower() != "content-length"}
        return Response(exc.body, status_code=exc.status, headers=headers)
    return Response(str(exc), status_code=400)


_on_error = on_error


class KeyLedgerBackend(AuthenticationBackend):
    """Authenticate requests with a keyledger ``Vault`` (see the module docstring).

    :param vault: an open ``keyledger.Vault``.
    :param scope: authorize this scope instead of the request's route rule.
    :param cost: credits to charge instead of the rule's cost (default 0 with ``scope``).
    :param limits: rate limits to apply besides the auto-applied ones.
    :param case_insensitive: match rule literals ignoring ASCII case.
    :param signature_header: the header carrying a request signature.
    :param max_body: the largest body read for a signature check (413 beyond it).
    """

    def __init__(
        self,
        vault: Vault,
        *,
        scope: Optional[str] = None,
        cost: Optional[int] = None,
        limits: Optional[Sequence[str]] = None,
        case_insensitive: bool = False,
        signature_header: str = "x-keyledger-signature",
        max_body: int = 1024 * 1024,
    ) -> None:
        self.vault, self.scope, self.limits, self.case_insensitive = vault, scope, limits, case_insensitive
        self.cost = 0 if scope is not None and cost is None else cost
        self.signature_header, self.max_body = signature_header.lower(), max_body

    async def authenticate(self, conn: HTTPConnection) -> Optional[Tuple[AuthCredentials, BaseUser]]:
        authorization, api_key = conn.headers.get("authorization"), conn.headers.get("x-api-key")
        if authorization is None and api_key is None:
            return None
        method = conn.scope.get("method", "GET") if conn.scope["type"] == "http" else "GET"
        signature: Optional[str] = conn.headers.get(self.signature_header)
        body, too_large = None, False
        if signature is not None and conn.scope["type"] == "http":
            read = conn.scope.get(BODY)
            if isinstance(read, tuple):
                body, too_large = read
            else:
                signature = ""  # the body was not read (Starlette's own middleware): refused
        options: Dict[str, Any] = dict(
            authorization=authorization,
            api_key=api_key,
            signature=signature,
            body=body,
            body_too_large=too_large,
            max_body=self.max_body,
            scope=self.scope,
            cost=self.cost,
            limits=self.limits,
            case_insensitive=self.case_insensitive,
        )
        status, headers, body, grant = await self.vault.authorize_http_async(str(method), raw_target(conn.scope), **options)
        if grant is None:
            raise Refused(status, headers, body)
        conn.scope["keyledger"] = grant
        return KeyLedgerCredentials(grant), KeyLedgerUser(grant)


class KeyLedgerAuthenticationMiddleware(AuthenticationMiddleware):
    """Starlette's ``AuthenticationMiddleware`` (``on_error`` defaults to keyledger's
    ``on_error``) that also reads a signed request's body for a ``KeyLedgerBackend`` and
    hands it to the app again (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        backend: AuthenticationBackend,
        on_error: Optional[Callable[[HTTPConnection, AuthenticationError], Response]] = None,
    ) -> None:
        super().__init__(app, backend, on_error if on_error is not None else _on_error)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        backend = self.backend
        if isinstance(backend, KeyLedgerBackend) and scope["type"] == "http":
            name = backend.signature_header.encode("latin-1")
            signature = next((bytes(v) for k, v in scope.get("headers") or () if bytes(k).lower() == name), None)
            body, too_large, receive = await signed_body(scope, signature, receive, backend.max_body)
            if body is not None:
                scope[BODY] = (body, too_large)
        await super().__call__(scope, receive, send)


__all__ = [
    "KeyLedgerAuthenticationMiddleware",
    "KeyLedgerBackend",
    "KeyLedgerCredentials",
    "KeyLedgerUser",
    "Refused",
    "on_error",
]
