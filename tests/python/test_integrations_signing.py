"""Signed requests through every integration: the Django middleware (sync and under
ASGI), the DRF authentication class, the Starlette backend and the FastAPI dependency,
each through its framework's own test client. Each answers every case exactly as the ASGI
gate (keyledger.asgi) does: a correctly signed request is granted and its view reads the
body unchanged; a tampered body, a stale timestamp, a missing signature or an oversized
body are refused with the gate's status and code."""

from __future__ import annotations

import asyncio
import os
import pathlib
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import httpx
import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_settings")

import django  # noqa: E402

django.setup()

from django.test import AsyncClient, Client, override_settings  # noqa: E402
from fastapi import FastAPI, Request, Security  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.middleware.authentication import AuthenticationMiddleware  # noqa: E402
from starlette.requests import Request as StarletteRequest  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

import keyledger  # noqa: E402
import keyledger.django  # noqa: E402
import keyledger.fastapi  # noqa: E402
from keyledger.asgi import KeyLedgerMiddleware  # noqa: E402
from keyledger.starlette import KeyLedgerAuthenticationMiddleware, KeyLedgerBackend, on_error  # noqa: E402

BODY = b'{"to":"+15550100","text":"hi"}'
MAX_BODY = 1024 * 1024
PATHS = ("/signed/send", "/signed/async", "/drf/signed")
Answer = Tuple[int, Dict[str, Any]]


@pytest.fixture
def signing(vault_path: pathlib.Path) -> Iterator[Tuple[keyledger.Vault, keyledger.Token]]:
    """A vault with a signing key (the Django settings point at it); the vault and token."""
    master = keyledger.generate_master_key()
    options = {"argon2": "insecure-fast", "master_key": master}
    with keyledger.Vault(vault_path, **options) as v:  # type: ignore[arg-type]
        v.create_account("acct_42", 100)
        for path in PATHS:
            v.add_route("POST", path, "sms:send", cost=1)
        token, _ = v.create_key("acct_42", "signed", ["sms:send"], signing=True)
    with override_settings(KEYLEDGER_VAULT=str(vault_path), KEYLEDGER_OPTIONS=options):
        yield keyledger.django.get_vault(), token
    keyledger.django.reset_vault()


def cases(token: keyledger.Token, path: str) -> Dict[str, Tuple[Dict[str, str], bytes]]:
    """Each case: the request headers and the body sent."""
    secret = token.signing_secret
    assert secret is not None
    auth = {"Authorization": f"Bearer {token}"}
    good = keyledger.sign_request(secret, "POST", path, BODY)
    big = b"x" * (MAX_BODY + 1)
    return {
        "signed": ({**auth, "X-KeyLedger-Signature": good}, BODY),
        "tampered body": ({**auth, "X-KeyLedger-Signature": good}, BODY.replace(b"hi", b"ho")),
        "stale timestamp": (
            {**auth, "X-KeyLedger-Signature": keyledger.sign_request(secret, "POST", path, BODY, t=time.time() - 3600)},
            BODY,
        ),
        "other path": ({**auth, "X-KeyLedger-Signature": keyledger.sign_request(secret, "POST", "/x", BODY)}, BODY),
        "unsigned": (auth, BODY),
        "too large": ({**auth, "X-KeyLedger-Signature": keyledger.sign_request(secret, "POST", path, big)}, big),
    }


def answer(status: int, body: Any) -> Answer:
    return status, body if isinstance(body, dict) else {}


async def echo(scope: Any, receive: Any, send: Any) -> None:
    """A bare ASGI app behind the reference gate: echoes the body it receives."""
    chunks: List[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    grant = scope["keyledger"]
    await JSONResponse({"body": b"".join(chunks).decode(), "credits": grant.credits})(scope, receive, send)


def over_asgi(app: Any, path: str, headers: Dict[str, str], body: bytes) -> Answer:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await c.post(path, content=body, headers=headers)

    r = asyncio.run(go())
    return answer(r.status_code, r.json())


def starlette_app(vault: keyledger.Vault, middleware: Any = KeyLedgerAuthenticationMiddleware) -> Any:
    async def send(request: StarletteRequest) -> JSONResponse:
        return JSONResponse({"body": (await request.body()).decode(), "credits": request.user.grant.credits})

    options = {} if middleware is KeyLedgerAuthenticationMiddleware else {"on_error": on_error}
    return Starlette(
        routes=[Route("/signed/send", send, methods=["POST"])],
        middleware=[Middleware(middleware, backend=KeyLedgerBackend(vault), **options)],
    )


def fastapi_app(vault: keyledger.Vault) -> Any:
    app = FastAPI()
    keyledger.fastapi.install(app, vault)

    @app.post("/signed/send")
    async def send(request: Request, grant: keyledger.Grant = Security(keyledger.fastapi.require())) -> Any:
        return {"body": (await request.body()).decode(), "credits": grant.credits}

    return app


def django_headers(headers: Dict[str, str]) -> Dict[str, str]:
    return {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}


def via_django(client: Any, path: str, headers: Dict[str, str], body: bytes) -> Answer:
    r = client.post(path, data=body, content_type="application/json", **django_headers(headers))
    return answer(r.status_code, r.json())


def via_django_async(path: str, headers: Dict[str, str], body: bytes) -> Answer:
    r = asyncio.run(AsyncClient().post(path, data=body, content_type="application/json", headers=headers))
    return answer(r.status_code, r.json())


Framework = Callable[[keyledger.Vault, str, Dict[str, str], bytes], Answer]


def starlette(v: keyledger.Vault, path: str, headers: Dict[str, str], body: bytes) -> Answer:
    return over_asgi(starlette_app(v), path, headers, body)


def fastapi(v: keyledger.Vault, path: str, headers: Dict[str, str], body: bytes) -> Answer:
    return over_asgi(fastapi_app(v), path, headers, body)


def django_middleware(v: keyledger.Vault, path: str, headers: Dict[str, str], body: bytes) -> Answer:
    with override_settings(MIDDLEWARE=["keyledger.django.middleware.KeyLedgerMiddleware"]):
        return via_django(Client(), path, headers, body)


def django_middleware_asgi(v: keyledger.Vault, path: str, headers: Dict[str, str], body: bytes) -> Answer:
    with override_settings(MIDDLEWARE=["keyledger.django.middleware.KeyLedgerMiddleware"]):
        return via_django_async(path, headers, body)


def drf(v: keyledger.Vault, path: str, headers: Dict[str, str], body: bytes) -> Answer:
    return via_django(APIClient(), path, headers, body)


FRAMEWORKS: Dict[str, Tuple[Framework, str]] = {
    "starlette": (starlette, "/signed/send"),
    "fastapi": (fastapi, "/signed/send"),
    "django middleware": (django_middleware, "/signed/send"),
    "django middleware under ASGI": (django_middleware_asgi, "/signed/async"),
    "drf": (drf, "/drf/signed"),
}

EXPECTED = {
    "signed": (200, None),
    "tampered body": (401, "invalid_signature"),
    "stale timestamp": (401, "invalid_signature"),
    "other path": (401, "invalid_signature"),
    "unsigned": (401, "invalid_signature"),
    "too large": (413, "payload_too_large"),
}


@pytest.mark.parametrize("name", list(FRAMEWORKS))
def test_signed_requests_are_checked_as_the_asgi_gate_checks_them(
    name: str, signing: Tuple[keyledger.Vault, keyledger.Token]
) -> None:
    v, token = signing
    framework, path = FRAMEWORKS[name]
    reference = KeyLedgerMiddleware(echo, vault=v)
    for case, (headers, body) in cases(token, path).items():
        before = v.balance("acct_42").credits
        expected = over_asgi(reference, path, headers, body)
        status, error = EXPECTED[case]
        assert expected[0] == status and expected[1].get("error") == error, (case, expected)
        assert v.balance("acct_42").credits == before - (1 if status == 200 else 0)
        got = framework(v, path, headers, body)
        assert (got[0], got[1].get("error")) == (status, error), (name, case, got)
        if status == 200:
            # The view read the very body that was signed, and one more credit was charged.
            assert got[1] == {"body": BODY.decode(), "credits": before - 2}, (name, got)
        else:
            assert got == expected, (name, case)
        assert v.balance("acct_42").credits == before - (2 if status == 200 else 0), (name, case)


def test_starlettes_own_authentication_middleware_refuses_signing_keys(
    signing: Tuple[keyledger.Vault, keyledger.Token],
) -> None:
    """A backend under Starlette's own middleware never sees the body: a signing key is
    refused (fail closed), never granted on a body nobody checked."""
    v, token = signing
    headers, body = cases(token, "/signed/send")["signed"]
    status, detail = over_asgi(starlette_app(v, AuthenticationMiddleware), "/signed/send", headers, body)
    assert (status, detail.get("error")) == (401, "invalid_signature")
    assert v.balance("acct_42").credits == 100


def test_with_a_scope_the_signature_covers_the_scope_not_the_request(
    signing: Tuple[keyledger.Vault, keyledger.Token],
) -> None:
    """A DRF view with ``keyledger_scope`` authorizes as the scope: the core then checks a
    signature over the method ``SCOPE`` and the scope (as ``authorize(scope=...)`` does)."""
    v, token = signing
    secret = token.signing_secret
    assert secret is not None
    auth = {"Authorization": f"Bearer {token}"}
    by_request = keyledger.sign_request(secret, "GET", "/drf/scoped")
    r = APIClient().get("/drf/scoped", **django_headers({**auth, "X-KeyLedger-Signature": by_request}))
    assert r.status_code == 401 and r.json()["error"] == "invalid_signature"
    by_scope = keyledger.sign_request(secret, "SCOPE", "sms:send")
    r = APIClient().get("/drf/scoped", **django_headers({**auth, "X-KeyLedger-Signature": by_scope}))
    assert r.status_code == 200 and r.json()["charged"] == 2
