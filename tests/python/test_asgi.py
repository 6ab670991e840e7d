"""The ASGI middleware in front of a real FastAPI app, driven through httpx."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Dict, List, Tuple

import httpx
import pytest
from fastapi import FastAPI, Request

import keyledger
from keyledger.asgi import KeyLedgerMiddleware, bearer_token

Seeded = Tuple[keyledger.Vault, str, keyledger.KeyInfo]


def make_app(vault: keyledger.Vault) -> FastAPI:
    app = FastAPI()

    @app.post("/api/v1/messaging/send")
    async def send(request: Request) -> Dict[str, Any]:
        grant: keyledger.Grant = request.state.keyledger
        return {"sent": True, "account": grant.account_id, "credits": grant.credits}

    @app.get("/api/v1/numbers/mine")
    async def numbers(request: Request) -> Dict[str, Any]:
        return {"numbers": ["+15550100"], "key": request.state.keyledger.key_id}

    @app.get("/health")
    async def health() -> Dict[str, str]:
        return {"ok": "yes"}

    app.add_middleware(KeyLedgerMiddleware, vault=vault, exclude=["/health"])
    return app


def call(app: FastAPI, method: str, path: str, headers: Dict[str, str]) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, headers=headers)

    return asyncio.run(go())


def test_grants_reach_the_app_and_refusals_carry_status_and_body(vault: keyledger.Vault) -> None:
    vault.create_account("acct_42", 1)
    vault.add_route("POST", "/api/v1/messaging/send", "sms:send", cost=1)
    vault.add_route("GET", "/api/v1/numbers/mine", "numbers:read")
    token, info = vault.create_key("acct_42", "server", ["sms:send"], prefix="dial_live")
    app = make_app(vault)
    auth = {"Authorization": f"Bearer {token}"}

    r = call(app, "POST", "/api/v1/messaging/send", auth)
    assert r.status_code == 200
    assert r.json() == {"sent": True, "account": "acct_42", "credits": 0}

    r = call(app, "POST", "/api/v1/messaging/send", auth)
    assert r.status_code == 402
    assert r.json() == {
        "success": False,
        "error": "insufficient_credits",
        "message": r.json()["message"],
        "credits": 0,
        "required": 1,
    }

    r = call(app, "GET", "/api/v1/numbers/mine", auth)
    assert r.status_code == 403 and r.json()["required"] == "numbers:read"

    r = call(app, "GET", "/api/v1/other", auth)
    assert r.status_code == 403 and r.json()["error"] == "route_not_allowed"

    r = call(app, "POST", "/api/v1/messaging/send", {})
    assert r.status_code == 401 and r.json()["error"] == "invalid_api_key"
    assert r.headers["www-authenticate"].startswith("Bearer")

    r = call(app, "GET", "/health", {})
    assert r.status_code == 200

    vault.revoke_key(info.key_id)
    r = call(app, "POST", "/api/v1/messaging/send", auth)
    assert r.status_code == 401


@pytest.mark.parametrize(
    "value",
    [b"", b"Bearer", b"Bearer ", b"Basic abc", b"Bearer " + b"a" * 10_000, b"Bearer \xff\xfe", b"bearer x\x00y"],
)
def test_hostile_authorization_headers_are_401_not_crashes(vault: keyledger.Vault, value: bytes) -> None:
    """Raw header bytes straight into the ASGI interface (no client normalizes them)."""
    vault.add_route("GET", "/x", "x")
    app = make_app(vault)
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
        "path": "/x",
        "raw_path": b"/x",
        "query_string": b"",
        "headers": [(b"authorization", value)],
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 401
    assert json.loads(sent[1]["body"])["error"] == "invalid_api_key"


def test_bearer_token_parsing() -> None:
    assert bearer_token(b"Bearer abc") == "abc"
    assert bearer_token(b"bearer   abc  ") == "abc"
    assert bearer_token(b"Token abc") is None
    assert bearer_token(b"\xff") is None
    assert bearer_token(b"Bearer " + b"a" * 5000) is None
