"""FastAPI: a ``Security`` dependency per endpoint, with per-endpoint scope and cost.

    from fastapi import FastAPI, Security
    import keyledger, keyledger.fastapi

    app = FastAPI()
    keyledger.fastapi.install(app, vault)

    @app.post("/send")
    async def send(grant: keyledger.Grant = Security(keyledger.fastapi.require(scope="sms:send", cost=1))):
        return {"credits": grant.credits}

``require(scope=None, cost=None, route=None, ...)`` returns an async dependency that
authorizes the request and returns the ``Grant`` to the endpoint:

* ``scope="sms:send"``: the key must grant that scope (the route rules are not consulted);
  ``cost`` credits are charged (default 0).
* ``route=("POST", "/api/v1/messaging/send")``: authorized as that route rule (its scope,
  its cost unless ``cost`` is given).
* neither: authorized as the request itself (its method and raw target against the
  vault's route rules), as the ASGI middleware does.

The token is read from ``Authorization: Bearer <token>``, else ``X-Api-Key``; both appear in
the OpenAPI document as security schemes (``keyledgerBearer``, an HTTP bearer scheme, and
``keyledgerApiKey``, an API-key header), offered as alternatives. A signed request (the
``X-KeyLedger-Signature`` header) has its body checked. On a grant, the rate-limit headers
(``RateLimit-*``) are added to the endpoint's response.

A refusal raises ``Refused``, an ``HTTPException`` with the core's status, its headers
(``WWW-Authenticate`` on 401, ``Retry-After`` on 429) and its JSON body as ``detail``.
``install(app, vault)`` stores the vault in ``app.state.keyledger`` (where ``require`` finds
it when not given ``vault=``) and registers a handler answering ``Refused`` with the core's
body exactly, e.g. ``402 {"success": false, "error": "insufficient_credits", ...}``;
without it FastAPI's default handler sends ``{"detail": <that body>}``.

The event loop never waits: ``Vault.authorize_http_async`` decides inline when it can, and
moves argon2 or a commit wait to a worker thread.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Tuple

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from keyledger._asgi_io import raw_target
from keyledger._gate import refusal_body, without_content_headers
from keyledger._keyledger import Grant, Vault

_bearer = HTTPBearer(
    auto_error=False, scheme_name="keyledgerBearer", description="A keyledger API key: `Authorization: Bearer <token>`."
)
_api_key = APIKeyHeader(
    name="X-Api-Key", auto_error=False, scheme_name="keyledgerApiKey", description="A keyledger API key, bare."
)


class Refused(HTTPException):
    """A keyledger refusal: ``status_code``, ``headers`` and ``detail`` (the core's JSON
    body as a dict); ``body`` is the core's body as sent."""

    def __init__(self, status: int, headers: List[Tuple[str, str]], body: bytes) -> None:
        super().__init__(status_code=status, detail=refusal_body(body), headers=without_content_headers(headers))
        self.body = body


async def refused_handler(request: Request, exc: Exception) -> Response:
    """Answer ``Refused`` with the core's status, headers and JSON body."""
    assert isinstance(exc, Refused)
    return Response(exc.body, status_code=exc.status_code, headers=exc.headers, media_type="application/json")


def install(app: FastAPI, vault: Optional[Vault] = None) -> None:
    """Register the ``Refused`` handler on ``app`` and, when given, store ``vault`` in
    ``app.state.keyledger`` for ``require`` to find."""
    if vault is not None:
        app.state.keyledger = vault
    app.add_exception_handler(Refused, refused_handler)


def require(
    scope: Optional[str] = None,
    cost: Optional[int] = None,
    route: Optional[Tuple[str, str]] = None,
    *,
    vault: Optional[Vault] = None,
    limits: Optional[Sequence[str]] = None,
    limit_cost: Optional[int] = None,
    idempotency_header: Optional[str] = None,
    replay: str = "refuse",
    signature_header: str = "x-keyledger-signature",
    max_body: int = 1024 * 1024,
    case_insensitive: bool = False,
) -> Callable[..., Awaitable[Grant]]:
    """A dependency authorizing the request (see the module docstring); use it as
    ``Security(require(...))`` or ``Depends(require(...))``. ``vault`` defaults to
    ``request.app.state.keyledger``."""
    if scope is not None and route is not None:
        raise ValueError("give scope or route, not both")
    if replay not in ("refuse", "pass"):
        raise ValueError('replay must be "refuse" or "pass"')
    if cost is not None and cost < 0:
        raise ValueError("cost must be >= 0")
    if scope is not None and cost is None:
        cost = 0

    async def keyledger_grant(
        request: Request,
        response: Response,
        _bearer_credentials: Optional[HTTPAuthorizationCredentials] = Depends(_bearer),
        _api_key_value: Optional[str] = Depends(_api_key),
    ) -> Grant:
        v = vault if vault is not None else getattr(request.app.state, "keyledger", None)
        if not isinstance(v, Vault):
            raise RuntimeError("keyledger.fastapi: no vault (pass vault= or call keyledger.fastapi.install(app, vault))")
        headers = request.headers
        signature = headers.get(signature_header)
        body: Optional[bytes] = None
        too_large = False
        if signature is not None:
            body = await request.body()
            too_large = len(body) > max_body
        if route is not None:
            method, target = route
        else:
            method, target = request.method, raw_target(request.scope)
        options: Dict[str, Any] = dict(
            authorization=headers.get("authorization"),
            api_key=headers.get("x-api-key"),
            signature=signature,
            body=body,
            body_too_large=too_large,
            cost=cost,
            scope=scope,
            limits=limits,
            limit_cost=limit_cost,
            replay=replay,
            idempotency_key=headers.get(idempotency_header) if idempotency_header else None,
            case_insensitive=case_insensitive,
            max_body=max_body,
        )
        status, out_headers, out_body, grant = await v.authorize_http_async(method, target, **options)
        if grant is None:
            raise Refused(status, out_headers, out_body)
        for name, value in out_headers:
            response.headers[name] = value
        return grant

    return keyledger_grant


__all__ = ["Refused", "install", "refused_handler", "require"]
