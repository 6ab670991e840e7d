"""The async API and the ASGI gate never block the event loop: ``authorize_async`` and
``authorize_http_async`` decide inline what needs neither argon2 nor a commit, and run the
rest in a worker thread, under asyncio and under trio (through anyio). Forged tokens
(issue #25) do not stall a legitimate request or an unrelated timer.

The timing bounds are the issue's own (50 ms) or generous ones; argon2 costs real time
here (a debug build, real parameters), which is what makes them meaningful.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import secrets
import zlib
from typing import Any, Callable, Dict, List, Tuple

import pytest

import keyledger
from keyledger.asgi import KeyLedgerMiddleware

from conftest import NUMBERS, SEND, seed

try:
    import trio
except ImportError:  # pragma: no cover - scripts/test installs it
    trio = None  # type: ignore[assignment]

# Real argon2 work: about 0.3 s per verification in the debug build the suite uses.
SLOW_ARGON2 = {"m_kib": 8192, "t": 1, "p": 1}
# Cheaper, for the flood: about 30 ms per verification here.
FLOOD_ARGON2 = {"m_kib": 1024, "t": 1, "p": 1}

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def forge(prefix: str, key_id: str) -> str:
    """A token of a known key id with a wrong secret and a valid checksum."""
    head = f"{prefix}_{key_id}_" + "".join(secrets.choice(BASE62) for _ in range(40))
    crc = zlib.crc32(head.encode())
    digits = ""
    for _ in range(6):
        crc, r = divmod(crc, 62)
        digits = BASE62[r] + digits
    token = head + digits
    assert keyledger.looks_like_key(token)
    return token


def cold_vault(path: pathlib.Path, argon2: Any = SLOW_ARGON2) -> Tuple[keyledger.Vault, str]:
    """A vault whose key is not yet verified in this handle (another handle created it)."""
    with keyledger.Vault(path, argon2=argon2) as v:
        token, _ = seed(v, scopes=("sms:send", "numbers:read"))
    return keyledger.Vault(path), token


class Ticker:
    """Counts how often a task that sleeps 2 ms gets to run, and its longest gap."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now
        self.ticks = 0
        self.longest = 0.0
        self.running = True

    def tick(self) -> None:
        self.ticks += 1


async def tick_asyncio(t: Ticker) -> None:
    last = t.now()
    while t.running:
        await asyncio.sleep(0.002)
        now = t.now()
        t.longest = max(t.longest, now - last)
        last = now
        t.tick()


def test_try_authorize_decides_inline_or_says_none_and_changes_nothing(vault_path: pathlib.Path) -> None:
    v, token = cold_vault(vault_path, argon2="insecure-fast")
    with v:
        assert v.try_authorize(token, route=NUMBERS) is None
        assert v.stats()["argon2_runs"] == 0
        grant = v.authorize(token, route=NUMBERS)
        again = v.try_authorize(token, route=NUMBERS)
        assert again is not None and again.credits == grant.credits == 10
        # A debit waits for a commit: None, and nothing was charged.
        assert v.try_authorize(token, route=SEND) is None
        assert v.balance("acct_42").credits == 10
        # Refusals are raised inline, as by authorize.
        with pytest.raises(keyledger.InvalidApiKey):
            v.try_authorize("dial_live_nope", route=NUMBERS)
        with pytest.raises(keyledger.RouteNotAllowed):
            v.try_authorize(token, route=("DELETE", "/x"))
        out = v.try_authorize_http("GET", NUMBERS[1], authorization=f"Bearer {token}")
        assert out is not None and out[0] == 200
        assert v.try_authorize_http("POST", SEND[1], authorization=f"Bearer {token}") is None
        status, _, body, grant_or_none = v.authorize_http("POST", SEND[1], authorization=f"Bearer {token}")
        assert status == 200 and grant_or_none is not None and grant_or_none.credits == 9


def test_async_calls_give_what_the_blocking_ones_give(vault_path: pathlib.Path) -> None:
    v, token = cold_vault(vault_path, argon2="insecure-fast")

    async def main() -> None:
        g = await v.authorize_async(token, route=NUMBERS)
        assert g.credits == 10
        g = await v.authorize_async(token, route=SEND, idempotency_key="once")
        assert (g.charged, g.credits) == (1, 9)
        again = await v.authorize_async(token, route=SEND, idempotency_key="once", on_replay="grant")
        assert again.replayed and again.charged == 0
        with pytest.raises(keyledger.DuplicateRequest):
            await v.authorize_async(token, route=SEND, idempotency_key="once", on_replay="refuse")
        with pytest.raises(keyledger.MissingScope):
            await v.authorize_async(token, scope="admin")
        status, headers, body, grant = await v.authorize_http_async("POST", SEND[1], authorization=f"Bearer {token}")
        assert status == 200 and grant is not None and grant.credits == 8
        status, _, body, grant = await v.authorize_http_async("GET", NUMBERS[1])
        assert (status, grant) == (401, None) and b"invalid_api_key" in body

    with v:
        asyncio.run(main())
        assert v.stats()["argon2_runs"] == 1


def test_a_cold_authorize_runs_while_another_asyncio_task_keeps_ticking(vault_path: pathlib.Path) -> None:
    v, token = cold_vault(vault_path)

    async def main() -> Tuple[float, Ticker]:
        loop = asyncio.get_running_loop()
        t = Ticker(loop.time)
        ticker = asyncio.create_task(tick_asyncio(t))
        await asyncio.sleep(0.01)
        before = t.ticks
        start = loop.time()
        grant = await v.authorize_async(token, route=NUMBERS)
        took = loop.time() - start
        t.ticks -= before
        t.running = False
        await ticker
        assert grant.credits == 10
        return took, t

    with v:
        took, t = asyncio.run(main())
        assert v.stats()["argon2_runs"] == 1
    # argon2 ran in a worker thread: the ticker ran all along (a 2 ms sleep, so a few
    # ticks per 10 ms even on a loaded machine); inline, it would not have ticked at all.
    assert took > 0.05, f"argon2 took {took * 1000:.0f} ms: too fast for this test to mean anything"
    assert t.ticks >= took / 0.02, f"{t.ticks} ticks during a {took * 1000:.0f} ms cold authorize"
    assert t.longest < took / 2, f"the ticker stalled {t.longest * 1000:.0f} ms of {took * 1000:.0f} ms"


@pytest.mark.skipif(trio is None, reason="trio is not installed")
def test_a_cold_authorize_runs_while_another_trio_task_keeps_ticking(vault_path: pathlib.Path) -> None:
    v, token = cold_vault(vault_path)
    result: Dict[str, Any] = {}

    async def main() -> None:
        t = Ticker(trio.current_time)

        async def tick() -> None:
            last = t.now()
            while t.running:
                await trio.sleep(0.002)
                now = t.now()
                t.longest = max(t.longest, now - last)
                last = now
                t.tick()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(tick)
            await trio.sleep(0.01)
            before = t.ticks
            start = trio.current_time()
            grant = await v.authorize_async(token, route=NUMBERS)
            result["took"] = trio.current_time() - start
            t.ticks -= before
            t.running = False
            result["grant"], result["ticker"] = grant, t
            # The gate too, under trio: a debit waits for its commit in a thread.
            out = await v.authorize_http_async("POST", SEND[1], authorization=f"Bearer {token}")
            result["http"] = out

    with v:
        trio.run(main)
    took, t = result["took"], result["ticker"]
    assert result["grant"].credits == 10
    assert result["http"][0] == 200 and result["http"][3].credits == 9
    assert took > 0.05, f"argon2 took {took * 1000:.0f} ms: too fast for this test to mean anything"
    assert t.ticks >= took / 0.02, f"{t.ticks} ticks during a {took * 1000:.0f} ms cold authorize"
    assert t.longest < took / 2, f"the ticker stalled {t.longest * 1000:.0f} ms of {took * 1000:.0f} ms"


async def ok_app(scope: Dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def asgi_get(app: Any, path: str, token: str) -> int:
    """One request through the ASGI app; its status."""
    sent: List[Dict[str, Any]] = []

    async def receive() -> Dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {token}".encode())],
    }
    await app(scope, receive, send)
    return int(sent[0]["status"])


def flood(path: pathlib.Path) -> Tuple[List[int], float, float, int, int]:
    """One burst of 200 forged tokens over 20 key ids against a fresh vault at ``path``:
    the burst's statuses, the verified request's latency and the timer's, the verified
    request's status and the argon2 runs."""
    with keyledger.Vault(path, argon2=FLOOD_ARGON2) as v:
        token, info = seed(v, scopes=("numbers:read",))
        key_ids = [info.key_id] + [
            v.create_key("acct_42", f"k{i}", ["numbers:read"], prefix="dial_live")[1].key_id for i in range(19)
        ]
    forged = [forge("dial_live", key_ids[i % 20]) for i in range(200)]
    v = keyledger.Vault(path)
    app = KeyLedgerMiddleware(ok_app, vault=v)

    async def main() -> Tuple[List[int], float, float, int]:
        loop = asyncio.get_running_loop()
        assert await asgi_get(app, NUMBERS[1], token) == 200  # verified before the burst
        # Both are timed from when they are due (20 ms into the burst), not from when the
        # loop got to them: a loop blocked by the burst counts against them.
        start = loop.time()

        async def legit() -> Tuple[float, int]:
            await asyncio.sleep(0.02)
            status = await asgi_get(app, NUMBERS[1], token)
            return loop.time() - (start + 0.02), status

        async def timer() -> float:
            await asyncio.sleep(0.02)
            await asyncio.sleep(0.01)
            return loop.time() - (start + 0.02)

        others = asyncio.gather(legit(), timer())
        burst = [asyncio.create_task(asgi_get(app, NUMBERS[1], f)) for f in forged]
        (legit_took, legit_status), timer_took = await others
        statuses = await asyncio.gather(*burst)
        return statuses, legit_took, timer_took, legit_status

    with v:
        statuses, legit_took, timer_took, legit_status = asyncio.run(main())
        runs = v.stats()["argon2_runs"]
    return statuses, legit_took, timer_took, legit_status, runs


def test_forged_tokens_do_not_stall_a_verified_request_or_a_timer(tmp_path: pathlib.Path) -> None:
    """Issue #25 for Python: 200 forged tokens (known key ids, wrong secrets, valid
    checksums) over 20 key ids, sent at once to the ASGI app; 20 ms into the burst a
    legitimate, already-verified request and an unrelated 10 ms timer both complete
    within 50 ms, and every forged request gets 401 or 429.

    The event loop still has 200 requests to read and answer and 200 thread hand-offs to
    make, and a shared machine (other builds, the debug build of the extension) slows
    that down: the 50 ms bound is stretched by the load average per core when it is over
    1, and the burst is run up to three times (one run must meet the bound). A loop that
    ran argon2 itself misses it by about a second, times the same factor."""
    cpus = os.cpu_count() or 1
    factor = max(1.0, os.getloadavg()[0] / cpus)
    bound = 0.05 * factor
    seen = []
    for attempt in range(3):
        statuses, legit_took, timer_took, legit_status, runs = flood(tmp_path / f"flood{attempt}.redb")
        assert legit_status == 200
        assert set(statuses) <= {401, 429}, sorted(set(statuses))
        assert runs >= 2, "no forged token reached argon2: the test would not measure anything"
        seen.append(f"verified request {legit_took * 1000:.1f} ms, timer {timer_took * 1000:.1f} ms")
        if legit_took < bound and timer_took < bound:
            return
    pytest.fail(
        f"during a burst of 200 forged tokens, over {bound * 1000:.0f} ms (50 ms x load factor {factor:.1f}) "
        "in every run: " + "; ".join(seen)
    )


def test_the_asgi_gate_authorizes_a_new_key_off_the_event_loop(vault_path: pathlib.Path) -> None:
    """A new key's first request runs argon2 in a worker thread: the loop keeps ticking."""
    v, token = cold_vault(vault_path)
    app = KeyLedgerMiddleware(ok_app, vault=v)

    async def main() -> Tuple[float, Ticker, int]:
        loop = asyncio.get_running_loop()
        t = Ticker(loop.time)
        ticker = asyncio.create_task(tick_asyncio(t))
        await asyncio.sleep(0.01)
        before = t.ticks
        start = loop.time()
        status = await asgi_get(app, NUMBERS[1], token)
        took = loop.time() - start
        t.ticks -= before
        t.running = False
        await ticker
        return took, t, status

    with v:
        took, t, status = asyncio.run(main())
    assert status == 200
    assert took > 0.05, f"argon2 took {took * 1000:.0f} ms: too fast for this test to mean anything"
    assert t.ticks >= took / 0.02, f"{t.ticks} ticks during a {took * 1000:.0f} ms cold request"


@pytest.mark.skipif(trio is None, reason="trio is not installed")
def test_the_asgi_gate_runs_under_trio_with_a_signed_paid_request(vault_path: pathlib.Path) -> None:
    """Under trio: the first request of a signing key (argon2, then a debit's commit, both
    in worker threads), its body read for the signature and handed to the app again, then
    the server's own messages."""
    master = keyledger.generate_master_key()
    with keyledger.Vault(vault_path, master_key=master, argon2="insecure-fast") as v:
        v.create_account("a", 10)
        v.add_route("POST", "/v1/send", "sms:send", cost=1)
        token, _ = v.create_key("a", "signed", ["sms:send"], signing=True)
    secret = token.signing_secret
    assert secret is not None
    body = b'{"to":"+1555"}'
    sig = keyledger.sign_request(secret, "POST", "/v1/send", body)
    seen: Dict[str, Any] = {}

    async def app(scope: Dict[str, Any], receive: Any, send: Any) -> None:
        seen["body"] = (await receive())["body"]
        seen["next"] = (await receive())["type"]  # the server's own, after the replay
        seen["credits"] = scope["keyledger"].credits
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"sent"})

    sent: List[Dict[str, Any]] = []
    chunks = [
        {"type": "http.request", "body": body[:5], "more_body": True},
        {"type": "http.request", "body": body[5:], "more_body": False},
    ]

    async def receive() -> Dict[str, Any]:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": "/v1/send",
        "raw_path": b"/v1/send",
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {token}".encode()), (b"x-keyledger-signature", sig.encode())],
    }
    with keyledger.Vault(vault_path, master_key=master) as v:
        trio.run(KeyLedgerMiddleware(app, vault=v), scope, receive, send)
        assert v.balance("a").credits == 9
    assert sent[0]["status"] == 200
    assert seen == {"body": body, "next": "http.disconnect", "credits": 9}
