"""The ASGI plumbing of ``keyledger.asgi``: the raw request target of a scope, and a
signed request's body read once and handed to the app again."""

from __future__ import annotations

from typing import Any, Awaitable, Callable, List, MutableMapping, Tuple
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
