"""keyledger.fastapi through FastAPI's TestClient: refusals, grants, OpenAPI, scope and cost."""

from __future__ import annotations

from typing import Any, Tuple

import pytest
from fastapi import FastAPI, Security
from fastapi.testclient import TestClient

import keyledger
import keyledger.fastapi
from conftest import SEND


def make_app(vault: keyledger.Vault) -> FastAPI:
    app = FastAPI()
    keyledger.fastapi.install(app, vault)

    @app.post("/send")
    async def send(grant: keyledger.Grant = Security(keyledger.fastapi.require(scope="sms:send", cost=2))) -> Any:
        return {"account": grant.account_id, "credits": grant.credits, "charged": grant.charged}

    @app.get("/numbers")
    async def numbers(grant: keyledger.Grant = Security(keyledger.fastapi.require(scope="numbers:read"))) -> Any:
        return {"charged": grant.charged}

    @app.post("/api/v1/messaging/send")
    async def routed(grant: keyledger.Grant = Security(keyledger.fastapi.require())) -> Any:
        return {"charged": grant.charged}

    @app.post("/as-route")
    async def as_route(grant: keyledger.Grant = Security(keyledger.fastapi.require(route=SEND))) -> Any:
        return {"charged": grant.charged}

    return app


@pytest.fixture
def client(seeded: Tuple[keyledger.Vault, str, keyledger.KeyInfo]) -> TestClient:
    return TestClient(make_app(seeded[0]))


def test_grant_is_injected_and_the_endpoint_cost_is_charged(client: TestClient, seeded: Any) -> None:
    r = client.post("/send", headers={"Authorization": f"Bearer {seeded[1]}"})
    assert r.status_code == 200, r.text
    assert r.json() == {"account": "acct_42", "credits": 8, "charged": 2}
    r = client.post("/send", headers={"X-Api-Key": seeded[1]})
    assert r.json()["credits"] == 6


def test_missing_key_is_401_with_the_cores_body_and_www_authenticate(client: TestClient) -> None:
    r = client.post("/send")
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_api_key" and r.json()["success"] is False
    assert r.headers["www-authenticate"] == "Bearer"


def test_scope_of_the_endpoint_is_checked_403(client: TestClient, seeded: Any) -> None:
    r = client.get("/numbers", headers={"Authorization": f"Bearer {seeded[1]}"})
    assert r.status_code == 403
    assert r.json()["error"] == "missing_scope" and r.json()["required"] == "numbers:read"


def test_no_credits_is_402(client: TestClient, seeded: Any) -> None:
    vault, token, _ = seeded
    vault.debit("acct_42", 9)
    r = client.post("/send", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 402
    assert r.json() == {
        "success": False, "error": "insufficient_credits", "credits": 1, "required": 2,
        "message": r.json()["message"],
    }


def test_rate_limited_is_429_with_retry_after(client: TestClient, seeded: Any) -> None:
    vault, token, info = seeded
    vault.set_ratelimit("burst", 1, 60, key_id=info.key_id)
    assert client.post("/send", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    r = client.post("/send", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 429
    assert r.json()["error"] == "rate_limited"
    assert int(r.headers["retry-after"]) >= 1


def test_route_rules_decide_without_scope(client: TestClient, seeded: Any) -> None:
    r = client.post("/api/v1/messaging/send", headers={"Authorization": f"Bearer {seeded[1]}"})
    assert r.status_code == 200 and r.json() == {"charged": 1}
    r = client.post("/as-route", headers={"Authorization": f"Bearer {seeded[1]}"})
    assert r.status_code == 200 and r.json() == {"charged": 1}


def test_openapi_document_has_both_security_schemes(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["keyledgerBearer"] == {"type": "http", "scheme": "bearer", "description": schemes["keyledgerBearer"]["description"]}
    assert schemes["keyledgerApiKey"]["type"] == "apiKey" and schemes["keyledgerApiKey"]["name"] == "X-Api-Key"
    security = doc["paths"]["/send"]["post"]["security"]
    assert {"keyledgerBearer": []} in security and {"keyledgerApiKey": []} in security


def test_without_install_the_default_handler_wraps_the_body(seeded: Any) -> None:
    app = FastAPI()

    @app.get("/x")
    async def x(grant: keyledger.Grant = Security(keyledger.fastapi.require(scope="sms:send", vault=seeded[0]))) -> Any:
        return {}

    r = TestClient(app).get("/x")
    assert r.status_code == 401 and r.json()["detail"]["error"] == "invalid_api_key"
    assert r.headers["www-authenticate"] == "Bearer"
