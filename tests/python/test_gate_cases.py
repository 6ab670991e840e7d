"""The shared HTTP gate cases (tests/gates/http_cases.json) through the ASGI middleware in
front of a real Starlette app, driven through httpx: the same table the core (Rust), the
Express gate and the Elixir gate run."""

from __future__ import annotations

import asyncio
import datetime
import json
import pathlib
from typing import Any, Dict, List

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import keyledger
from keyledger.asgi import KeyLedgerMiddleware

TABLE = json.loads((pathlib.Path(__file__).resolve().parents[1] / "gates" / "http_cases.json").read_text())
CASES: List[Dict[str, Any]] = TABLE["cases"]


async def handler(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True, "account": request.state.keyledger.account_id})


def make_app(vault: keyledger.Vault, options: Dict[str, Any]) -> Starlette:
    app = Starlette(routes=[Route("/{rest:path}", handler, methods=["GET", "HEAD", "POST"])])
    app.add_middleware(
        KeyLedgerMiddleware,
        vault=vault,
        replay=options["replay"],
        case_insensitive=options["case_insensitive"],
        cost=options.get("cost"),
        max_body=options.get("max_body", 1 << 20),
        idempotency_header="idempotency-key",
    )
    return app


def seed(vault: keyledger.Vault, name: str) -> str:
    for r in TABLE["rules"]:
        vault.add_route(r["method"], r["pattern"], r["scope"], cost=r["cost"])
    key = TABLE["keys"][name]
    vault.create_account("acct", key["credits"])
    style = key.get("style", "prefixed")
    token, info = vault.create_key("acct", name, key["scopes"], style=style)
    assert info.style == style and (":" in str(token)) == (style == "colon")
    limit = key.get("ratelimit")
    if limit:
        duration = datetime.timedelta(milliseconds=limit["duration_ms"])
        vault.set_ratelimit(limit["name"], limit["limit"], duration, key_id=info.key_id)
    return token


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_gate_case_through_asgi(vault: keyledger.Vault, case: Dict[str, Any]) -> None:
    token = seed(vault, case["key"])
    req = case["request"]
    headers = {k: v.replace("{token}", token).replace("{long}", "a" * 8200) for k, v in req["headers"].items()}
    app = make_app(vault, case["options"])

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            r = None
            for _ in range(case.get("repeat", 1)):
                r = await client.request(req["method"], req["target"], headers=headers, content=req.get("body"))
            assert r is not None
            return r

    r = asyncio.run(go())
    expect = case["expect"]
    assert r.status_code == expect["status"], r.text
    if req["method"] != "HEAD":
        body = r.json()
        assert body.get("error") == expect["code"]
    for name, value in expect.get("headers", {}).items():
        assert name in r.headers, name
        assert value == "*" or r.headers[name] == value, name
    for name in expect.get("absent", []):
        assert name not in r.headers, name
    assert vault.balance("acct").credits == expect["credits"]
    if expect.get("audited"):
        assert any(e.key_id is None for e in vault.audit(action="auth_refused"))
