"""ASGI middleware: gate every HTTP request with ``Vault.authorize``.

    from fastapi import FastAPI
    from keyledger.asgi import KeyLedgerMiddleware

    app = FastAPI()
    app.add_middleware(KeyLedgerMiddleware, vault=vault)

For each HTTP request (and WebSocket handshake) the middleware reads
``Authorization: Bearer <token>`` (or the header you name), authorizes it with
``Vault.authorize_request`` against the request's method and its raw request target, and
then either

* answers the refusal itself, with its status and JSON body (SPEC §8), e.g.
  ``402 {"success": false, "error": "insufficient_credits", "credits": 0, "required": 1}``,
  plus ``WWW-Authenticate: Bearer`` on 401; or
* calls the app with the ``Grant`` in ``scope["keyledger"]`` and in
  ``scope["state"]["keyledger"]`` (``request.state.keyledger`` in Starlette/FastAPI).

The request target (``scope["raw_path"]`` and ``scope["query_string"]``, as the client sent
them) goes to the core undecoded; the core decodes it once and refuses with 400
``ambiguous_path`` any target that routers could read differently: an encoded ``/``,
``?``, ``#``, ``\\``, ``;``, ``%`` (double encoding) or control character; a raw ``\\``,
``;``, space, control or non-ASCII byte; a ``.`` or ``..`` segment in any encoding;
invalid UTF-8 after decoding; an empty segment (``//``); and a trailing ``/`` or a
percent-escape that would change which rule matches. Without ``raw_path`` (a server that
does not set it) the decoded ``scope["path"]`` is re-encoded conservatively: a ``%`` or
``;`` in it is then refused. ``HEAD`` is charged like ``GET`` (an exact ``HEAD`` rule wins).
Rules match case-sensitively, as Starlette routes; ``case_insensitive=True`` for a router
that does not.

WebSocket connections are gated like a ``GET`` of their path, before they are accepted: a
refusal is the HTTP denial response (status and JSON body) when the server supports the
``websocket.http.response`` extension, else ``websocket.close`` with code 1008 before
accept, which the server answers with 403. ``websockets="pass"`` lets them through
ungated (a deliberate choice: the app must then check keys itself). Other scope types
but ``lifespan`` are gated like ``GET`` too, and dropped when refused.

Signed requests (keys created with ``signing=True``, SPEC §7): when the request carries the
signature header (default ``X-KeyLedger-Signature: t=<unix seconds>,v2=<hex>``, made by
``keyledger.sign_request``), the middleware reads the whole body (up to ``max_body`` bytes),
has the core check the signature over the method, the path with its query string as sent
and the body's SHA-256, and replays the body to the app unchanged. A signing key without
the header is refused with 401 ``invalid_signature``.

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

Lifespan scopes pass through untouched. A request whose route costs credits is authorized
in a worker thread (its durable debit waits for a commit, and concurrent debits then share
one commit); a free route is authorized inline, in about a microsecond.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import quote
from typing import Literal
from typing import Any, Awaitable, Callable, Dict, Iterable, List, MutableMapping, Optional, Tuple

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
    :param websockets: ``"gate"`` (default) authorizes WebSocket handshakes like a GET;
        ``"pass"`` lets them through without a key.
    :param case_insensitive: match rule literals ignoring ASCII case (for a router that
        does; Starlette's does not).
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
        websockets: str = "gate",
        case_insensitive: bool = False,
    ) -> None:
        if replay not in ("refuse", "pass"):
            raise ValueError('replay must be "refuse" or "pass"')
        if websockets not in ("gate", "pass"):
            raise ValueError('websockets must be "gate" or "pass"')
        self.idempotency_header = idempotency_header.lower().encode("latin-1") if idempotency_header else None
        self.on_replay: Literal["grant", "refuse"] = "grant" if replay == "pass" else "refuse"
        self.app = app
        self.vault = vault
        self.header = header.lower().encode("latin-1")
        self.cost = cost
        self.exclude = frozenset(exclude)
        self.signature_header = signature_header.lower().encode("latin-1")
        self.max_body = max_body
        self.websockets = websockets
        self.case_insensitive = case_insensitive

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

    def _costs_credits(self, method: str, target: str) -> bool:
        if self.cost is not None:
            return self.cost > 0
        try:
            rule = self.vault.match_request(method, target, case_insensitive=self.case_insensitive)
        except KeyLedgerError:
            return False
        return rule is not None and rule.cost > 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if (
            kind == "lifespan"
            or (kind == "websocket" and self.websockets == "pass")
            or scope.get("path") in self.exclude
        ):
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method", "GET")) if kind == "http" else "GET"
        target = raw_target(scope)
        if kind != "http":
            await self._gate_connection(scope, receive, send, method, target)
            return
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
                raise _missing_key()
            grant = await self._authorize(scope, token, method, target, signature, body)
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

    async def _gate_connection(
        self, scope: Scope, receive: Receive, send: Send, method: str, target: str
    ) -> None:
        """Gate a WebSocket handshake (or another non-HTTP scope) like a GET, before accept."""
        token = self._token(scope)
        try:
            if token is None:
                raise _missing_key()
            grant = await self._authorize(scope, token, method, target, self._signature(scope), None)
        except KeyLedgerError as refusal:
            if scope["type"] == "websocket":
                await _deny_websocket(scope, send, refusal)
            return
        scope["keyledger"] = grant
        scope.setdefault("state", {})["keyledger"] = grant
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
        target: str,
        signature: Optional[str],
        body: Optional[bytes],
    ) -> Grant:
        idempotency_key = self._idempotency_key(scope)

        def call() -> Grant:
            return self.vault.authorize_request(
                token,
                method,
                target,
                cost=self.cost,
                signature=signature,
                body=body,
                idempotency_key=idempotency_key,
                on_replay=self.on_replay,
                case_insensitive=self.case_insensitive,
            )

        if idempotency_key is not None or self._costs_credits(method, target):
            return await asyncio.get_running_loop().run_in_executor(None, call)
        return call()


def raw_target(scope: Scope) -> str:
    """The request target as the client sent it: ``raw_path`` and ``query_string``, never
    decoded (bytes read as latin-1, so a non-ASCII byte stays visible to the core, which
    refuses it). Without ``raw_path`` the decoded ``path`` is re-encoded, keeping only
    characters that never change meaning: a ``%`` or ``;`` in it comes out encoded and is
    then refused."""
    raw = scope.get("raw_path")
    if isinstance(raw, (bytes, bytearray)) and raw:
        path = bytes(raw).decode("latin-1")
    else:
        path = quote(str(scope.get("path") or "/"), safe="/:@!$&'()*+,=-._~")
    query = scope.get("query_string") or b""
    if isinstance(query, (bytes, bytearray)) and query:
        return path + "?" + bytes(query).decode("latin-1")
    return path


def _missing_key() -> KeyLedgerError:
    return InvalidApiKey(
        "missing or malformed API key",
        status=401,
        code="invalid_api_key",
        body={"success": False, "error": "invalid_api_key", "message": "missing or malformed API key"},
    )


async def _deny_websocket(scope: Scope, send: Send, refusal: KeyLedgerError) -> None:
    """Refuse a WebSocket handshake before accept: the HTTP denial response when the server
    supports it, else a close (code 1008), which servers turn into a 403."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        status, headers, body = _refusal_response(refusal)
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
        return
    await send({"type": "websocket.close", "code": 1008})


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
    status, headers, body = _refusal_response(refusal)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _refusal_response(refusal: KeyLedgerError) -> Tuple[int, List[Tuple[bytes, bytes]], bytes]:
    """Status, headers and body of a refusal."""
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
    return status, headers, body


__all__ = ["KeyLedgerMiddleware", "bearer_token", "raw_target"]
