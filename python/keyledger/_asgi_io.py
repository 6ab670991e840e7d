"""The ASGI plumbing of ``keyledger.asgi`` and ``keyledger.starlette``: the raw request
target of a scope, and a signed request's body read once and handed to the app again."""

from __future__ import annotations

from typing import Any, Awaitable, Callable, List, MutableMapping, Optional, Tuple
from urllib.parse import quote

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]


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


async def signed_body(
    scope: Scope, signature: Optional[bytes], receive: Receive, limit: int
) -> Tuple[Optional[bytes], bool, Receive]:
    """The body the gate checks a signature over: for an HTTP request carrying the
    signature header, the whole body (up to ``limit`` bytes; the flag says it was larger),
    and a ``receive`` handing it to the app again; else None and ``receive`` unchanged."""
    if scope.get("type") != "http" or signature is None:
        return None, False, receive
    body, too_large = await read_body(receive, limit)
    return body, too_large, replay_body(body, receive)


async def read_body(receive: Receive, limit: int) -> Tuple[bytes, bool]:
    """The request body, and whether it is over ``limit`` (reading stops there)."""
    chunks: List[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), False


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then passes on what the
    server sends next (``http.disconnect``). No event-loop API: asyncio and trio alike."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
