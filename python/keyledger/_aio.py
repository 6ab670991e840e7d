"""The async entry points (``Vault.authorize_async``, ``Vault.authorize_http_async`` and
the ASGI gate): the non-blocking call inline, and only when it would block (argon2 for a
key not yet verified in this process, or a commit) the blocking call in a worker thread,
which releases the GIL while it waits.

Worker threads: under asyncio, the loop's default executor (``run_in_executor``: reused
threads, the cheapest hand-off for the event loop); under any other event loop (trio),
anyio's ``to_thread.run_sync``, else trio's own.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, TypeVar

if TYPE_CHECKING:
    from keyledger._keyledger import Grant, Vault

T = TypeVar("T")
Outcome = Tuple[int, List[Tuple[str, str]], bytes, Optional["Grant"]]


async def run_sync(fn: Callable[[], T]) -> T:
    """Run ``fn()`` in a worker thread and wait for it without blocking the event loop.
    A thread cannot be interrupted: the call runs to its end even if the awaiting task is
    cancelled."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:
        return await loop.run_in_executor(None, fn)
    try:
        import anyio.to_thread
    except ImportError:
        import trio  # the only other event loop keyledger knows

        return await trio.to_thread.run_sync(fn)
    return await anyio.to_thread.run_sync(fn)


async def authorize(vault: "Vault", args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> "Grant":
    """``Vault.authorize_async``: ``try_authorize`` inline, ``authorize`` in a thread on
    would-block (the same arguments: the two agree on every call)."""
    grant = vault.try_authorize(*args, **kwargs)
    if grant is None:
        grant = await run_sync(functools.partial(vault.authorize, *args, **kwargs))
    return grant


async def call(vault: "Vault", name: str, args: Tuple[Any, ...], kwargs: Optional[Dict[str, Any]]) -> Any:
    """``Vault.hold_async``, ``settle_async``, ``release_async``: the method ``name`` in a
    worker thread (each writes one transaction)."""
    return await run_sync(functools.partial(getattr(vault, name), *args, **(kwargs or {})))


async def authorize_http(vault: "Vault", method: str, target: Any, options: Dict[str, Any]) -> Outcome:
    """``Vault.authorize_http_async``: ``try_authorize_http`` inline, ``authorize_http``
    in a thread on would-block."""
    out = vault.try_authorize_http(method, target, **options)
    if out is None:
        out = await run_sync(functools.partial(vault.authorize_http, method, target, **options))
    return out
