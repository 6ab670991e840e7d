"""Idempotency keys reused for other requests, replays through the ASGI gate, and
extreme clock values: a real vault file, a real FastAPI app driven through httpx."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Dict, List, Optional

import httpx
import pytest
from fastapi import FastAPI, Request

import keyledger
from keyledger.asgi import KeyLedgerMiddleware

from conftest import NUMBERS, SEND, seed


def test_a_key_first_used_on_a_free_route_does_not_make_a_paid_route_free(vault: keyledger.Vault) -> None:
    token, _ = seed(vault, scopes=("sms:send", "numbers:read"))
    assert vault.authorize(token, route=NUMBERS, idempotency_key="x").charged == 0
    with pytest.raises(keyledger.IdempotencyConflict) as e:
        vault.authorize(token, route=SEND, idempotency_key="x")
    assert (e.value.status, e.value.code) == (409, "idempotency_conflict")
    with pytest.raises(keyledger.IdempotencyConflict):
        vault.authorize(token, route=SEND, idempotency_key="x", cost=0)
    assert vault.balance("acct_42").credits == 10


def test_on_replay_refuse_raises_duplicate_request_with_the_first_charge_and_time(vault: keyledger.Vault) -> None:
    token, _ = seed(vault)
    # Near the real clock: the vault's maintenance prunes replay records older than its
    # window by the real time, so a fixed date would go stale as the calendar moves on.
    now = int(time.time())  # unix seconds
    first = vault.authorize(token, route=SEND, idempotency_key="k", now=now, on_replay="refuse")
    assert (first.charged, first.replayed) == (1, False)
    with pytest.raises(keyledger.DuplicateRequest) as e:
        vault.authorize(token, route=SEND, idempotency_key="k", now=now + 5, on_replay="refuse")
    assert (e.value.status, e.value.code) == (409, "duplicate_request")
    assert e.value.body["charged"] == 1
    assert e.value.body["first_at"] == now * 1000
    again = vault.authorize(token, route=SEND, idempotency_key="k", now=now + 6, on_replay="grant")
    assert (again.replayed, again.charged) == (True, 0)
    assert vault.balance("acct_42").credits == 9
    with pytest.raises(keyledger.InvalidArgument):
        vault.authorize(token, route=SEND, idempotency_key="k", on_replay="maybe")  # type: ignore[arg-type]


def test_an_authorize_time_outside_the_supported_range_is_refused(vault: keyledger.Vault) -> None:
    """The bug: ``now=-9223372036854775`` was granted (and the flusher could overflow)."""
    token, info = seed(vault)
    for now in (-9223372036854775, -1, 253402300800):
        with pytest.raises(keyledger.InvalidArgument):
            vault.authorize(token, route=SEND, now=now)
    assert vault.balance("acct_42").credits == 10
    assert vault.usage(info.key_id).granted == 0


def make_app(vault: keyledger.Vault, runs: List[bool], replay: Optional[str]) -> FastAPI:
    app = FastAPI()

    @app.post("/api/v1/messaging/send")
    async def send(request: Request) -> Dict[str, Any]:
        grant: keyledger.Grant = request.state.keyledger
        runs.append(grant.replayed)
        return {"sent": True, "replayed": grant.replayed, "charged": grant.charged}

    extra: Dict[str, Any] = {} if replay is None else {"replay": replay}
    app.add_middleware(KeyLedgerMiddleware, vault=vault, idempotency_header="Idempotency-Key", **extra)
    return app


def post_twice(app: FastAPI, token: str, keys: List[str]) -> List[httpx.Response]:
    async def go() -> List[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            out = []
            for k in keys:
                headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": k}
                out.append(await client.post("/api/v1/messaging/send", headers=headers))
            return out

    return asyncio.run(go())


def test_asgi_gate_answers_a_retried_post_itself_and_runs_the_handler_once(vault: keyledger.Vault) -> None:
    token, _ = seed(vault)
    runs: List[bool] = []
    before = int(time.time() * 1000)
    first, retry, other = post_twice(make_app(vault, runs, None), token, ["send-1", "send-1", "send-2"])
    assert first.status_code == 200
    assert first.json() == {"sent": True, "replayed": False, "charged": 1}
    assert retry.status_code == 409
    body = retry.json()
    assert body["error"] == "duplicate_request"
    assert body["charged"] == 1
    assert before <= body["first_at"] <= int(time.time() * 1000)
    assert other.status_code == 200
    assert runs == [False, False], "the handler ran once per distinct request"
    assert vault.balance("acct_42").credits == 8


def test_asgi_gate_with_replay_pass_hands_the_replayed_grant_to_the_app(vault: keyledger.Vault) -> None:
    token, _ = seed(vault)
    runs: List[bool] = []
    first, retry = post_twice(make_app(vault, runs, "pass"), token, ["p", "p"])
    assert first.status_code == 200 and retry.status_code == 200
    assert retry.json() == {"sent": True, "replayed": True, "charged": 0}
    assert runs == [False, True]
    assert vault.balance("acct_42").credits == 9
    with pytest.raises(ValueError):
        KeyLedgerMiddleware(make_app(vault, runs, None), vault=vault, replay="again")
