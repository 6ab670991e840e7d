"""The FastAPI dependency and the Starlette backend keep the event loop free: a cold
authorize (real argon2) through them runs while another task keeps ticking. The bounds are
those of test_async.py (generous: argon2 takes about 0.3 s in the debug build)."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any, Tuple

import httpx
from fastapi import FastAPI, Security
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import keyledger
import keyledger.fastapi
from keyledger.starlette import KeyLedgerBackend, on_error
from test_async import Ticker, cold_vault, tick_asyncio


def fastapi_app(vault: keyledger.Vault) -> Any:
    app = FastAPI()
    keyledger.fastapi.install(app, vault)

    @app.get("/numbers")
    async def numbers(grant: keyledger.Grant = Security(keyledger.fastapi.require(scope="numbers:read"))) -> Any:
        return {"credits": grant.credits}

    return app


def starlette_app(vault: keyledger.Vault) -> Any:
    async def numbers(request: Request) -> JSONResponse:
        return JSONResponse({"credits": request.user.grant.credits})

    return Starlette(
        routes=[Route("/api/v1/numbers/mine", numbers)],
        middleware=[Middleware(AuthenticationMiddleware, backend=KeyLedgerBackend(vault), on_error=on_error)],
    )


def cold_request_while_ticking(app: Any, path: str, token: str) -> Tuple[float, Ticker, httpx.Response]:
    async def main() -> Tuple[float, Ticker, httpx.Response]:
        loop = asyncio.get_running_loop()
        t = Ticker(loop.time)
        ticker = asyncio.create_task(tick_asyncio(t))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
            await asyncio.sleep(0.01)
            before = t.ticks
            start = loop.time()
            r = await client.get(path, headers={"Authorization": f"Bearer {token}"})
            took = loop.time() - start
        t.ticks -= before
        t.running = False
        await ticker
        return took, t, r

    return asyncio.run(main())


def check(took: float, t: Ticker) -> None:
    assert took > 0.05, f"argon2 took {took * 1000:.0f} ms: too fast for this test to mean anything"
    assert t.ticks >= took / 0.02, f"{t.ticks} ticks during a {took * 1000:.0f} ms cold authorize"
    assert t.longest < took / 2, f"the ticker stalled {t.longest * 1000:.0f} ms of {took * 1000:.0f} ms"


def test_fastapi_dependency_runs_argon2_off_the_event_loop(vault_path: pathlib.Path) -> None:
    v, token = cold_vault(vault_path)
    with v:
        took, t, r = cold_request_while_ticking(fastapi_app(v), "/numbers", token)
        assert r.status_code == 200 and r.json() == {"credits": 10}
        assert v.stats()["argon2_runs"] == 1
    check(took, t)


def test_starlette_backend_runs_argon2_off_the_event_loop(vault_path: pathlib.Path) -> None:
    v, token = cold_vault(vault_path)
    with v:
        took, t, r = cold_request_while_ticking(starlette_app(v), "/api/v1/numbers/mine", token)
        assert r.status_code == 200 and r.json() == {"credits": 10}
        assert v.stats()["argon2_runs"] == 1
    check(took, t)
