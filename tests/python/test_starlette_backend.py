"""keyledger.starlette.KeyLedgerBackend through Starlette's TestClient."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import keyledger
from keyledger.starlette import KeyLedgerBackend, KeyLedgerUser, on_error


def make_client(vault: keyledger.Vault, **backend: Any) -> TestClient:
    async def send(request: Request) -> JSONResponse:
        user = request.user
        assert isinstance(user, KeyLedgerUser)
        return JSONResponse({
            "account": user.identity, "scopes": list(request.auth.scopes),
            "credits": user.grant.credits, "same": request.scope["keyledger"] is user.grant,
        })

    async def public(request: Request) -> JSONResponse:
        return JSONResponse({"authenticated": request.user.is_authenticated})

    app = Starlette(
        routes=[
            Route("/api/v1/messaging/send", requires("sms:send")(send), methods=["POST"]),
            Route("/public", public),
            Route("/numbers", requires("numbers:read")(public)),
        ],
        middleware=[Middleware(AuthenticationMiddleware, backend=KeyLedgerBackend(vault, **backend), on_error=on_error)],
    )
    return TestClient(app)


def test_grant_is_the_user_and_scopes_are_the_credentials(seeded: Any) -> None:
    vault, token, _ = seeded
    r = make_client(vault).post("/api/v1/messaging/send", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.json() == {"account": "acct_42", "scopes": ["sms:send"], "credits": 9, "same": True}


def test_no_credentials_is_anonymous_and_requires_refuses(seeded: Any) -> None:
    client = make_client(seeded[0])
    assert client.get("/public").json() == {"authenticated": False}
    assert client.post("/api/v1/messaging/send").status_code == 403


def test_bad_key_is_the_cores_401(seeded: Any) -> None:
    r = make_client(seeded[0]).get("/public", headers={"X-Api-Key": "kl_live_nope"})
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_api_key"
    assert r.headers["www-authenticate"] == "Bearer"


def test_refusals_carry_the_cores_status_and_body(seeded: Any) -> None:
    vault, token, _ = seeded
    client = make_client(vault)
    vault.debit("acct_42", 10)
    r = client.post("/api/v1/messaging/send", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 402 and r.json()["error"] == "insufficient_credits"
    # No rule for /public: the core refuses the route.
    r = client.get("/public", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403 and r.json()["error"] == "route_not_allowed"


def test_backend_scope_and_cost_replace_the_route_rules(seeded: Any) -> None:
    vault, token, _ = seeded
    client = make_client(vault, scope="sms:send", cost=3)
    r = client.get("/public", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json() == {"authenticated": True}
    assert vault.balance("acct_42").credits == 7
