"""ASGI middleware: gate every HTTP request with ``Vault.authorize``.

    from fastapi import FastAPI
    from keyledger.asgi import KeyLedgerMiddleware

    app = FastAPI()
    app.add_middleware(KeyLedgerMiddleware, vault=vault)

For each HTTP request the middleware reads ``Authorization: Bearer <token>`` (or the header
you name), authorizes it against the request's method and path with the vault's route
rules, and then either

* answers the refusal itself, with its status and JSON body (SPEC §8), e.g.
  ``402 {"success": false, "error": "insufficient_credits", "credits": 0, "required": 1}``,
  plus ``WWW-Authenticate: Bearer`` on 401; or
* calls the app with the ``Grant`` in ``scope["keyledger"]`` and in
  ``scope["state"]["keyledger"]`` (``request.state.keyledger`` in Starlette/FastAPI).

Lifespan and websocket scopes pass through untouched. A request whose route costs credits
is authorized in a worker thread (its durable debit waits for a commit, and concurrent
debits then share one commit); a free route is authorized inline, in about a microsecond.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable, Iterable, List, MutableMapping, Optional, Tuple

from keyledger._errors import InvalidApiKey, KeyLedgerError
from keyledger._keyledger import Grant, Vault

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The longest header value the middleware reads; longer ones are refused as invalid keys.
MAX_HEADER = 4096


def bearer_token(value: bytes) -> Optional[str]:
    """The token of an ``Authorization: Bearer <token>`` value, or None.

    Anything malformed (another scheme, no token, non-ASCII bytes, an oversized value)
    gives None: the caller refuses it as ``invalid_api_key``; nothing raises.
    """
    if len(value) > MAX_HEADER:
        return None
    try:
        text = value.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    scheme, _, token = text.partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


class KeyLedgerMiddleware:
    """Gate HTTP requests through a keyledger ``Vault``.

    :param app: the ASGI app to protect.
    :param vault: an open ``keyledger.Vault`` (open it in each worker process).
    :param header: the request header carrying the token (default ``authorization``,
        ``Bearer <token>``). Any other header is read as the bare token.
    :param cost: credits to charge per request instead of the matched route's cost.
    :param exclude: paths served without a key (exact matches), e.g. ``("/health",)``.
    """

    def __init__(
        self,
        app: ASGIApp,
        vault: Vault,
        *,
        header: str = "authorization",
        cost: Optional[int] = None,
        exclude: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.vault = vault
        self.header = header.lower().encode("latin-1")
        self.cost = cost
        self.exclude = frozenset(exclude)

    def _token(self, scope: Scope) -> Optional[str]:
        for name, value in scope.get("headers") or ():
            if name == self.header:
                if self.header == b"authorization":
                    return bearer_token(value)
                if len(value) > MAX_HEADER:
                    return None
                try:
                    return value.decode("ascii").strip() or None
                except UnicodeDecodeError:
                    return None
        return None

    def _costs_credits(self, method: str, path: str) -> bool:
        if self.cost is not None:
            return self.cost > 0
        try:
            rule = self.vault.match_route(method, path)
        except KeyLedgerError:
            return False
        return rule is not None and rule.cost > 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.exclude:
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method", "GET"))
        path = str(scope.get("path", "/"))
        token = self._token(scope)
        try:
            if token is None:
                raise InvalidApiKey(
                    "missing or malformed API key",
                    status=401,
                    code="invalid_api_key",
                    body={"success": False, "error": "invalid_api_key", "message": "missing or malformed API key"},
                )
            grant = await self._authorize(token, method, path)
        except KeyLedgerError as refusal:
            await _answer(send, refusal)
            return
        scope["keyledger"] = grant
        state = scope.setdefault("state", {})
        state["keyledger"] = grant
        await self.app(scope, receive, send)

    async def _authorize(self, token: str, method: str, path: str) -> Grant:
        if self._costs_credits(method, path):
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                None, lambda: self.vault.authorize(token, route=(method, path), cost=self.cost)
            )
        return self.vault.authorize(token, route=(method, path), cost=self.cost)


async def _answer(send: Send, refusal: KeyLedgerError) -> None:
    body = json.dumps(refusal.body, separators=(",", ":")).encode()
    status = refusal.status if 400 <= refusal.status < 600 else 500
    headers: List[Tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="api"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


__all__ = ["KeyLedgerMiddleware", "bearer_token"]
