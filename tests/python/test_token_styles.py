"""Token styles: a colon-style key (``<key_id>:<secret>``) is granted through every Python
gate. The ASGI gate runs the shared case table's colon cases (test_gate_cases.py); here
FastAPI, Starlette, the Django middleware, DRF and WSGI each grant one and refuse a
forged one, plus the Vault's own view of the style."""

from __future__ import annotations

import os
import pathlib
from typing import Any, Iterator, Tuple

import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_settings")

import django  # noqa: E402

django.setup()

from django.test import Client, override_settings  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

import keyledger  # noqa: E402
import keyledger.django  # noqa: E402
from conftest import NUMBERS, SEND  # noqa: E402


def seed_colon(v: keyledger.Vault, scopes: Tuple[str, ...] = ("sms:send",)) -> Tuple[str, keyledger.KeyInfo]:
    v.create_account("acct_42", 10)
    v.add_route(*SEND, "sms:send", cost=1)
    v.add_route(*NUMBERS, "numbers:read")
    token, info = v.create_key("acct_42", "voice", list(scopes), style="colon")
    return str(token), info


@pytest.fixture
def colon(vault: keyledger.Vault) -> Tuple[keyledger.Vault, str, keyledger.KeyInfo]:
    token, info = seed_colon(vault)
    return vault, token, info


def forged(token: str) -> str:
    return token[:-1] + ("a" if token[-1] != "a" else "b")


def test_a_colon_key_is_its_id_a_colon_and_a_secret(colon: Any) -> None:
    vault, token, info = colon
    assert info.style == "colon" and info.prefix == ""
    key_id, secret = token.split(":")
    assert key_id == info.key_id and len(secret) == 40 and secret.isalnum()
    assert keyledger.looks_like_key(token)
    assert keyledger.redact(token) == f"{key_id}:…"
    assert vault.key(info.key_id).style == "colon"
    grant = vault.authorize(token, route=SEND)
    assert grant.prefix == "" and grant.credits == 9
    new, new_info = vault.rotate_key(info.key_id)
    assert new_info.style == "colon" and str(new).startswith(f"{new_info.key_id}:")


def test_an_unknown_style_is_refused_and_creates_nothing(vault: keyledger.Vault) -> None:
    vault.create_account("acct_42", 1)
    with pytest.raises(keyledger.InvalidArgument):
        vault.create_key("acct_42", "x", ["sms:send"], style="dots")
    assert vault.list_keys("acct_42") == []


def test_fastapi_grants_a_colon_key(colon: Any) -> None:
    from test_fastapi import make_app

    vault, token, _ = colon
    client = TestClient(make_app(vault))
    r = client.post("/send", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.json()["credits"] == 8
    r = client.post("/send", headers={"X-Api-Key": token})
    assert r.status_code == 200 and r.json()["credits"] == 6
    r = client.post("/send", headers={"Authorization": f"Bearer {forged(token)}"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_api_key"
    r = client.post("/send", headers={"Authorization": f"Basic {token}"})
    assert r.status_code == 401


def test_starlette_grants_a_colon_key(colon: Any) -> None:
    from test_starlette_backend import make_client

    vault, token, _ = colon
    client = make_client(vault)
    r = client.post("/api/v1/messaging/send", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.json()["credits"] == 9
    r = client.get("/public", headers={"Authorization": f"Bearer {forged(token)}"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_api_key"
    r = client.get("/public", headers={"Authorization": f"Bearer :{token}"})
    assert r.status_code == 401


def test_wsgi_grants_a_colon_key(colon: Any) -> None:
    from test_wsgi_flask import make_client

    vault, token, _ = colon
    client = make_client(vault)
    r = client.post("/api/v1/messaging/send", headers={"Authorization": f"Bearer {token}"}, data="hi")
    assert r.status_code == 200, r.data
    assert r.get_json()["credits"] == 9
    r = client.post("/api/v1/messaging/send", headers={"Authorization": f"Bearer {token}:{token}"})
    assert r.status_code == 401 and r.get_json()["error"] == "invalid_api_key"


@pytest.fixture
def django_colon(vault_path: pathlib.Path) -> Iterator[str]:
    with keyledger.Vault(vault_path, argon2="insecure-fast") as v:
        token, _ = seed_colon(v, scopes=("sms:send", "numbers:read"))
    with override_settings(KEYLEDGER_VAULT=str(vault_path), KEYLEDGER_OPTIONS={"argon2": "insecure-fast"}):
        yield token
    keyledger.django.reset_vault()


def test_django_middleware_grants_a_colon_key(django_colon: str) -> None:
    token = django_colon
    with override_settings(MIDDLEWARE=["keyledger.django.middleware.KeyLedgerMiddleware"]):
        r = Client().get("/api/v1/numbers/mine", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert r.status_code == 200, r.content
        assert r.json() == {"account": "acct_42", "credits": 10}
        r = Client().get("/api/v1/numbers/mine", HTTP_X_API_KEY=forged(token))
        assert r.status_code == 401 and r.json()["error"] == "invalid_api_key"


def test_drf_grants_a_colon_key(django_colon: str) -> None:
    token = django_colon
    r = APIClient().post("/api/v1/messaging/send", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert r.status_code == 200, r.content
    assert r.json()["credits"] == 9
    r = APIClient().post("/api/v1/messaging/send", HTTP_AUTHORIZATION=f"Bearer {forged(token)}")
    assert r.status_code == 401 and r.json()["error"] == "invalid_api_key"
