"""Rate limits and refills from Python: rate limits, refills, and the middleware's RateLimit headers."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any, Dict

import httpx
import pytest
from fastapi import FastAPI, Request

import keyledger
from keyledger.asgi import KeyLedgerMiddleware

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_ten_per_second(vault: keyledger.Vault) -> None:
    vault.create_account("a")
    token, info = vault.create_key("a", "k", ["x"])
    lim = vault.set_ratelimit("per_second", 10, dt.timedelta(seconds=1), key_id=info.key_id)
    assert (lim.name, lim.limit, lim.duration, lim.auto_apply) == ("per_second", 10, dt.timedelta(seconds=1), True)
    for i in range(10):
        g = vault.authorize(token, scope="x", now=NOW)
        assert g.ratelimits[0]["remaining"] == 9 - i
    with pytest.raises(keyledger.RateLimited) as e:
        vault.authorize(token, scope="x", now=NOW)
    assert e.value.status == 429
    assert e.value.body["limit"] == "per_second"
    assert e.value.body["retry_after"] == 1
    vault.authorize(token, scope="x", now=NOW + dt.timedelta(seconds=1))
    assert [r.name for r in vault.ratelimits(key_id=info.key_id)] == ["per_second"]
    vault.remove_ratelimit("per_second", key_id=info.key_id)
    assert vault.ratelimits(key_id=info.key_id) == []


def test_account_limits_named_limits_and_weights(vault: keyledger.Vault) -> None:
    vault.create_account("a")
    t1, _ = vault.create_key("a", "k1", ["x"])
    t2, _ = vault.create_key("a", "k2", ["x"])
    vault.set_ratelimit("tokens", 100, 60, account_id="a", auto_apply=False)
    assert vault.authorize(t1, scope="x", now=NOW).ratelimits == []
    g = vault.authorize(t1, scope="x", limits=["tokens"], limit_cost=70, now=NOW)
    assert g.ratelimits[0]["remaining"] == 30
    with pytest.raises(keyledger.RateLimited):
        vault.authorize(t2, scope="x", limits=["tokens"], limit_cost=31, now=NOW)
    with pytest.raises(keyledger.InvalidArgument):
        vault.authorize(t2, scope="x", limits=["nope"], now=NOW)


def test_bad_limits(vault: keyledger.Vault) -> None:
    vault.create_account("a")
    for call in [
        lambda: vault.set_ratelimit("x", 0, 1, account_id="a"),
        lambda: vault.set_ratelimit("x", 1, 0, account_id="a"),
        lambda: vault.set_ratelimit("x", -1, 1, account_id="a"),
        lambda: vault.set_ratelimit("Bad", 1, 1, account_id="a"),
        lambda: vault.set_ratelimit("x", 1, 1),
        lambda: vault.set_ratelimit("x", 1, 1, key_id="aaaaaaaa", account_id="a"),
        lambda: vault.set_refill("a", 10, "weekly"),
        lambda: vault.set_refill("a", 10, "monthly", day=29),
    ]:
        with pytest.raises(keyledger.InvalidArgument):
            call()
    with pytest.raises(keyledger.NotFound):
        vault.set_ratelimit("x", 1, 1, account_id="nobody")


def test_a_daily_refill(vault: keyledger.Vault) -> None:
    vault.create_account("a", 3)
    token, _ = vault.create_key("a", "k", ["x"])
    acct = vault.set_refill("a", 50, "daily")
    assert acct.refill == {"amount": 50, "interval": "daily", "day": 1}
    tomorrow = dt.datetime.now(UTC) + dt.timedelta(days=1)
    assert vault.authorize(token, scope="x", now=tomorrow).credits == 50
    assert len(vault.audit(action="credits_refilled")) == 1
    assert vault.clear_refill("a").refill is None


def test_the_middleware_sets_ratelimit_headers(vault: keyledger.Vault) -> None:
    vault.create_account("a")
    vault.add_route("GET", "/x", "x")
    token, info = vault.create_key("a", "k", ["x"])
    vault.set_ratelimit("per_minute", 2, 60, key_id=info.key_id)
    app = FastAPI()

    @app.get("/x")
    async def x(request: Request) -> Dict[str, Any]:
        return {"ok": True}

    app.add_middleware(KeyLedgerMiddleware, vault=vault)

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await c.get("/x", headers={"Authorization": f"Bearer {token}"})

    r = asyncio.run(get())
    assert r.status_code == 200
    assert (r.headers["ratelimit-limit"], r.headers["ratelimit-remaining"]) == ("2", "1")
    assert int(r.headers["ratelimit-reset"]) >= 1
    asyncio.run(get())
    r = asyncio.run(get())
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["error"] == "rate_limited"
