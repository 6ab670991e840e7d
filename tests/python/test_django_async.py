"""keyledger.django's middleware under ASGI Django: Django's AsyncClient against async
views. The middleware is then a coroutine: it decides inline what needs neither argon2 nor
a commit and runs the rest in a worker thread, so the event loop keeps running during a
cold authorize (real argon2)."""

from __future__ import annotations

import asyncio
import os
import pathlib
from typing import Any, Callable, Iterator, List, Tuple

import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_settings")

import django  # noqa: E402

django.setup()

from asgiref.sync import iscoroutinefunction  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.test import AsyncClient, override_settings  # noqa: E402

import keyledger  # noqa: E402
import keyledger._aio  # noqa: E402
import keyledger.django  # noqa: E402
from conftest import seed  # noqa: E402
from keyledger.django.middleware import KeyLedgerMiddleware  # noqa: E402
from test_async import Ticker, cold_vault, tick_asyncio  # noqa: E402
from test_frameworks_loop import check  # noqa: E402

MIDDLEWARE = ["keyledger.django.middleware.KeyLedgerMiddleware"]
ASYNC_SEND = ("POST", "/async/send")
ASYNC_NUMBERS = ("GET", "/async/numbers")


def add_async_routes(v: keyledger.Vault) -> None:
    v.add_route(*ASYNC_SEND, "sms:send", cost=1)
    v.add_route(*ASYNC_NUMBERS, "numbers:read")


@pytest.fixture
def token(vault_path: pathlib.Path) -> Iterator[str]:
    with keyledger.Vault(vault_path, argon2="insecure-fast") as v:
        token, _ = seed(v, scopes=("sms:send", "numbers:read"))
        add_async_routes(v)
    with override_settings(
        KEYLEDGER_VAULT=str(vault_path), KEYLEDGER_OPTIONS={"argon2": "insecure-fast"}, MIDDLEWARE=MIDDLEWARE
    ):
        yield token
    keyledger.django.reset_vault()


@pytest.fixture
def threaded(monkeypatch: pytest.MonkeyPatch) -> List[str]:
    """Every call the async entry points hand to a worker thread (keyledger._aio.run_sync)."""
    calls: List[str] = []
    real = keyledger._aio.run_sync

    async def counting(fn: Callable[[], Any]) -> Any:
        calls.append(getattr(getattr(fn, "func", fn), "__name__", "?"))
        return await real(fn)

    monkeypatch.setattr(keyledger._aio, "run_sync", counting)
    return calls


def test_the_middleware_is_a_coroutine_before_an_async_handler_and_sync_before_a_sync_one() -> None:
    async def async_next(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    def sync_next(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    assert KeyLedgerMiddleware.sync_capable and KeyLedgerMiddleware.async_capable
    assert iscoroutinefunction(KeyLedgerMiddleware(async_next))
    assert not iscoroutinefunction(KeyLedgerMiddleware(sync_next))


def test_async_client_grant_401_and_402_through_the_async_middleware(token: str, threaded: List[str]) -> None:
    async def main() -> None:
        client = AsyncClient()
        r = await client.post("/async/send", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.content
        assert r.json() == {"account": "acct_42", "credits": 9, "charged": 1}
        # The first call opened the vault and verified the key (argon2) and committed a
        # debit: each in a worker thread.
        assert threaded == ["get_vault", "authorize_http"]
        # A free request with the key now verified is decided inline, on the event loop.
        r = await client.get("/async/numbers", headers={"X-Api-Key": token})
        assert r.status_code == 200 and r.json()["charged"] == 0
        assert threaded == ["get_vault", "authorize_http"]

        r = await client.post("/async/send", headers={"Authorization": "Bearer dial_live_forged"})
        assert r.status_code == 401 and r["WWW-Authenticate"] == "Bearer"
        assert r.json()["error"] == "invalid_api_key" and r.json()["success"] is False
        r = await client.post("/async/send")
        assert r.status_code == 401 and r.json()["error"] == "invalid_api_key"

        vault = keyledger.django.get_vault()
        vault.debit("acct_42", vault.balance("acct_42").credits)
        r = await client.post("/async/send", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 402 and r.json()["error"] == "insufficient_credits" and r.json()["required"] == 1
        assert (await client.get("/health")).json() == {"ok": True}  # excluded prefix

    asyncio.run(main())
    assert keyledger.django.get_vault().balance("acct_42").credits == 0


def test_async_middleware_adds_ratelimit_headers_to_the_views_response(token: str) -> None:
    vault = keyledger.django.get_vault()
    vault.set_ratelimit("minute", 5, 60, key_id=vault.list_keys("acct_42")[0].key_id)
    r = asyncio.run(AsyncClient().get("/async/numbers", headers={"X-Api-Key": token}))
    assert r.status_code == 200
    assert r["RateLimit-Limit"] == "5" and r["RateLimit-Remaining"] == "4"


def test_a_cold_authorize_under_asgi_django_leaves_the_event_loop_free(vault_path: pathlib.Path) -> None:
    v, token = cold_vault(vault_path)
    with v:
        add_async_routes(v)
    with override_settings(KEYLEDGER_VAULT=str(vault_path), KEYLEDGER_OPTIONS={}, MIDDLEWARE=MIDDLEWARE):
        vault = keyledger.django.get_vault()  # opened before the clock starts

        async def main() -> Tuple[float, Ticker, Any]:
            loop = asyncio.get_running_loop()
            t = Ticker(loop.time)
            ticker = asyncio.create_task(tick_asyncio(t))
            await asyncio.sleep(0.01)
            before, start = t.ticks, loop.time()
            r = await AsyncClient().get("/async/numbers", headers={"Authorization": f"Bearer {token}"})
            took = loop.time() - start
            t.ticks -= before
            t.running = False
            await ticker
            return took, t, r

        took, t, r = asyncio.run(main())
        assert r.status_code == 200 and r.json()["credits"] == 10
        assert vault.stats()["argon2_runs"] == 1
    keyledger.django.reset_vault()
    check(took, t)
