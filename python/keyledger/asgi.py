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

Signed requests (keys created with ``signing=True``, SPEC §7): when the request carries the
signature header (default ``X-KeyLedger-Signature: t=<unix seconds>,v2=<hex>``, made by
``keyledger.sign_request``), the middleware reads the whole body (up to ``max_body`` bytes),
checks the signature over the method, the path with its query string and the body's
SHA-256, and replays the body to the app unchanged. A signing key
without the header is refused with 401 ``invalid_signature``.

Rate limits (SPEC §13): a granted response carries ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset`` (seconds) for the most constrained limit the
call was checked against; a 429 carries ``Retry-After`` and the same headers.

Replays: with ``idempotency_header`` (e.g. ``"idempotency-key"``), its value is the call's
idempotency key. A repeat (same request within 24 h) is answered by the middleware itself,
409 ``duplicate_request`` with the first call's ``charged`` and ``first_at`` (unix ms), and
the app is not called: a retried ``POST /send`` sends once. ``replay="pass"`` instead
calls the app with the replayed grant (``grant.replayed``, ``charged`` 0), for an app that
serves its stored response itself. A key reused for another request is 409
``idempotency_conflict``.

Lifespan and websocket scopes pass through untouched. A request whose route costs credits
is authorized in a worker thread (its durable debit waits for a commit, and concurrent
debits then share one commit); a free route is authorized inline, in about a microsecond.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Awaitable, Callable, Dict, Iterable, List, MutableMapping, Optional, Tuple
from typing import Literal

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
    :param signature_header: the header carrying a request signature.
    :param max_body: the largest body read for a signature check (413 beyond it).
    :param idempotency_header: a request header whose value is the idempotency key.
    :param replay: ``"refuse"`` (default): answer a replayed key with 409
        ``duplicate_request``; ``"pass"``: call the app with the replayed grant.
    """

    def __init__(
        self,
        app: ASGIApp,
        vault: Vault,
        *,
        header: str = "authorization",
        cost: Optional[int] = None,
        exclude: Iterable[str] = (),
        signature_header: str = "x-keyledger-signature",
        max_body: int = 1024 * 1024,
        idempotency_header: Optional[str] = None,
        replay: str = "refuse",
    ) -> None:
        if replay not in ("refuse", "pass"):
            raise ValueError('replay must be "refuse" or "pass"')
        self.idempotency_header = idempotency_header.lower().encode("latin-1") if idempotency_header else None
        self.on_replay: Literal["grant", "refuse"] = "grant" if replay == "pass" else "refuse"
        self.app = app
        self.vault = vault
        self.header = header.lower().encode("latin-1")
        self.cost = cost
        self.exclude = frozenset(exclude)
        self.signature_header = signature_header.lower().encode("latin-1")
        self.max_body = max_body

    def _signature(self, scope: Scope) -> Optional[str]:
        for name, value in scope.get("headers") or ():
            if name == self.signature_header:
                if len(value) > MAX_HEADER:
                    return ""
                try:
                    return str(value.decode("ascii"))
                except UnicodeDecodeError:
                    return ""
        return None

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
        signature = self._signature(scope)
        body: Optional[bytes] = None
        if signature is not None:
            body = await _read_body(receive, self.max_body)
            if body is None:
                await _answer(send, KeyLedgerError(
                    "request body too large to verify its signature",
                    status=413,
                    code="invalid_argument",
                    body={"success": False, "error": "invalid_argument", "message": "request body too large"},
                ))
                return
            receive = _replay(body)
        try:
            if token is None:
                raise InvalidApiKey(
                    "missing or malformed API key",
                    status=401,
                    code="invalid_api_key",
                    body={"success": False, "error": "invalid_api_key", "message": "missing or malformed API key"},
                )
            query = bytes(scope.get("query_string") or b"").decode("latin-1") if signature is not None else None
            grant = await self._authorize(scope, token, method, path, signature, body, query or None)
        except KeyLedgerError as refusal:
            await _answer(send, refusal)
            return
        scope["keyledger"] = grant
        state = scope.setdefault("state", {})
        state["keyledger"] = grant
        limit_headers = _ratelimit_headers(grant.ratelimits)
        if limit_headers:
            inner_send = send

            async def send_with_limits(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message = dict(message)
                    message["headers"] = list(message.get("headers") or []) + limit_headers
                await inner_send(message)

            send = send_with_limits
        await self.app(scope, receive, send)

    def _idempotency_key(self, scope: Scope) -> Optional[str]:
        if self.idempotency_header is None:
            return None
        for name, value in scope.get("headers") or ():
            if name == self.idempotency_header:
                try:
                    return value.decode("ascii") or None
                except UnicodeDecodeError:
                    return value.decode("latin-1") or None
        return None

    async def _authorize(
        self,
        scope: Scope,
        token: str,
        method: str,
        path: str,
        signature: Optional[str],
        body: Optional[bytes],
        query: Optional[str] = None,
    ) -> Grant:
        idempotency_key = self._idempotency_key(scope)

        def call() -> Grant:
            return self.vault.authorize(
                token, route=(method, path), cost=self.cost, signature=signature, body=body,
                idempotency_key=idempotency_key, on_replay=self.on_replay, query=query,
            )

        if idempotency_key is not None or self._costs_credits(method, path):
            return await asyncio.get_running_loop().run_in_executor(None, call)
        return call()


def _ratelimit_headers(limits: List[Dict[str, Any]]) -> List[Tuple[bytes, bytes]]:
    """IETF ``RateLimit-*`` headers for the limit with the fewest calls left."""
    if not limits:
        return []
    tightest = min(limits, key=lambda r: int(r["remaining"]))
    reset_s = max(0, -(-(int(tightest["reset_ms"]) - int(time.time() * 1000)) // 1000))
    return [
        (b"ratelimit-limit", str(tightest["max"]).encode()),
        (b"ratelimit-remaining", str(tightest["remaining"]).encode()),
        (b"ratelimit-reset", str(reset_s).encode()),
    ]


async def _read_body(receive: Receive, limit: int) -> Optional[bytes]:
    """The whole request body, or None when it exceeds ``limit``."""
    chunks: List[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    """A ``receive`` that hands the app the body already read, then waits for disconnect."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # nothing more will come; the server cancels us
        return {"type": "http.disconnect"}

    return receive


async def _answer(send: Send, refusal: KeyLedgerError) -> None:
    body = json.dumps(refusal.body, separators=(",", ":")).encode()
    status = refusal.status if 400 <= refusal.status < 600 else 500
    headers: List[Tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="api"'))
    if status == 429:
        b = refusal.body
        headers.append((b"retry-after", str(b.get("retry_after", 1)).encode()))
        headers.append((b"ratelimit-limit", str(b.get("max", 0)).encode()))
        headers.append((b"ratelimit-remaining", b"0"))
        headers.append((b"ratelimit-reset", str(b.get("retry_after", 1)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


__all__ = ["KeyLedgerMiddleware", "bearer_token"]
