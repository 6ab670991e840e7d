"""ASGI middleware: gate every HTTP request with ``Vault.authorize``.

    from fastapi import FastAPI
    from keyledger.asgi import KeyLedgerMiddleware

    app = FastAPI()
    app.add_middleware(KeyLedgerMiddleware, vault=vault)

For each HTTP request (and WebSocket handshake) the middleware reads
``Authorization: Bearer <token>`` (or the header you name), authorizes it with
``Vault.authorize_request`` against the request's method and its raw request target, and
then either

* answers the refusal itself, with its status and JSON body , e.g.
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

Credentials: ``Authorization: Bearer <token>`` (scheme in any case, one or more spaces,
no tab), else ``X-Api-Key: <token>``; a value over 4 KiB, a missing or a malformed one is
refused with 401 ``invalid_api_key`` and audited like a bad key. The whole decision and
the response (status, headers, JSON body) come from the core's gate,
``Vault.authorize_http``, shared with the Express and Elixir gates.

Signed requests (keys created with ``signing=True``): when the request carries the
signature header (default ``X-KeyLedger-Signature: t=<unix seconds>,v2=<hex>``, made by
``keyledger.sign_request``), the middleware reads the whole body (up to ``max_body`` bytes,
else 413 ``payload_too_large``), has the core check the signature over the method, the
path with its query string as sent and the body's SHA-256, and replays the body to the app
unchanged. A signing key without the header is refused with 401 ``invalid_signature``.

Rate limits: a granted response carries ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset`` (seconds) for the most constrained limit the
call was checked against; a 429 carries ``Retry-After`` and the same headers.

Replays: with ``idempotency_header`` (e.g. ``"idempotency-key"``), its value is the call's
idempotency key. A repeat (same request within 24 h) is answered by the middleware itself,
409 ``duplicate_request`` with the first call's ``charged`` and ``first_at`` (unix ms), and
the app is not called: a retried ``POST /send`` sends once. ``replay="pass"`` instead
calls the app with the replayed grant (``grant.replayed``, ``charged`` 0), for an app that
serves its stored response itself. A key reused for another request is 409
``idempotency_conflict``.

Lifespan scopes pass through untouched. The event loop never waits for keyledger: each
request is first authorized with the non-blocking ``Vault.try_authorize_http``, inline (a
key already verified in this process, on a request that writes nothing: about a
microsecond; and every refusal that needs no argon2). Only a request that would run argon2
(a key's first request in this process, or a forged token) or wait for a commit (a debit,
an idempotency key, a due refill) is authorized in a worker thread, with the GIL released;
concurrent debits then share one commit. Worker threads come from anyio when it is
installed (the middleware runs under asyncio and trio), else from asyncio.
"""

from __future__ import annotations

import functools
from typing import Any, Awaitable, Callable, Dict, Iterable, List, MutableMapping, Optional, Tuple

from keyledger._aio import run_sync
from keyledger._asgi_io import raw_target, signed_body
from keyledger._keyledger import Grant, Vault, bearer_token

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Outcome = Tuple[int, List[Tuple[str, str]], bytes, Optional[Grant]]


class KeyLedgerMiddleware:
    """Gate HTTP requests through a keyledger ``Vault``.

    :param app: the ASGI app to protect.
    :param vault: an open ``keyledger.Vault`` (open it in each worker process).
    :param header: the request header carrying the token (default ``authorization``,
        ``Bearer <token>``, else ``X-Api-Key``). Any other header is read as the bare token.
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
        self.app, self.vault, self.cost, self.replay = app, vault, cost, replay
        self.header = header.lower().encode("latin-1")
        self.exclude = frozenset(exclude)
        self.signature_header = signature_header.lower().encode("latin-1")
        self.idempotency_header = idempotency_header.lower().encode("latin-1") if idempotency_header else None
        self.max_body, self.websockets, self.case_insensitive = max_body, websockets, case_insensitive

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan" or (kind == "websocket" and self.websockets == "pass") or scope.get("path") in self.exclude:
            await self.app(scope, receive, send)
            return
        headers: Dict[bytes, bytes] = {}
        for name, value in scope.get("headers") or ():
            headers.setdefault(bytes(name).lower(), bytes(value))
        method = str(scope.get("method", "GET")) if kind == "http" else "GET"
        signature = headers.get(self.signature_header)
        body, too_large, receive = await signed_body(scope, signature, receive, self.max_body)
        default = self.header == b"authorization"
        options: Dict[str, Any] = dict(
            authorization=headers.get(b"authorization") if default else None,
            api_key=headers.get(b"x-api-key" if default else self.header),
            signature=signature, body=body, body_too_large=too_large, cost=self.cost, replay=self.replay,
            idempotency_key=headers.get(self.idempotency_header) if self.idempotency_header else None,
            case_insensitive=self.case_insensitive, max_body=self.max_body,
        )
        status, out_headers, out_body, grant = await self._authorize(method, raw_target(scope), options)
        if grant is None:
            if kind == "http":
                await _respond(send, "http.response", status, out_headers, out_body)
            elif kind == "websocket" and "websocket.http.response" in (scope.get("extensions") or {}):
                await _respond(send, "websocket.http.response", status, out_headers, out_body)
            elif kind == "websocket":
                await send({"type": "websocket.close", "code": 1008})  # servers answer 403
            return
        scope["keyledger"] = grant
        scope.setdefault("state", {})["keyledger"] = grant
        if out_headers and kind == "http":
            extra, inner = _encode(out_headers), send

            async def send_with_limits(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message = dict(message, headers=list(message.get("headers") or []) + extra)
                await inner(message)

            send = send_with_limits
        await self.app(scope, receive, send)

    async def _authorize(self, method: str, target: str, options: Dict[str, Any]) -> Outcome:
        """Inline when the core can decide without blocking; in a worker thread when the
        request needs argon2 or a commit."""
        out = self.vault.try_authorize_http(method, target, **options)
        if out is None:
            return await run_sync(functools.partial(self.vault.authorize_http, method, target, **options))
        return out


def _encode(headers: List[Tuple[str, str]]) -> List[Tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def _respond(send: Send, kind: str, status: int, headers: List[Tuple[str, str]], body: bytes) -> None:
    """Send the gate's answer (``http.response`` or ``websocket.http.response``)."""
    raw = _encode(headers) + [(b"content-length", str(len(body)).encode())]
    await send({"type": kind + ".start", "status": status, "headers": raw})
    await send({"type": kind + ".body", "body": body})


__all__ = ["KeyLedgerMiddleware", "bearer_token", "raw_target"]
