"""keyledger.django through Django's test client and DRF's APIClient: the middleware, the
DRF authentication and permission classes, the lazy per-process vault, the commands."""

from __future__ import annotations

import io
import os
import pathlib
import stat
from typing import Any, Iterator, Tuple

import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.core.management.base import CommandError  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

import keyledger  # noqa: E402
import keyledger.django  # noqa: E402
from conftest import seed  # noqa: E402

MIDDLEWARE = ["keyledger.django.middleware.KeyLedgerMiddleware"]


@pytest.fixture
def token(vault_path: pathlib.Path) -> Iterator[str]:
    """A seeded vault file (closed again), configured as KEYLEDGER_VAULT; the token."""
    with keyledger.Vault(vault_path, argon2="insecure-fast") as v:
        token, _ = seed(v)
    with override_settings(KEYLEDGER_VAULT=str(vault_path), KEYLEDGER_OPTIONS={"argon2": "insecure-fast"}):
        yield token
    keyledger.django.reset_vault()


def credits() -> int:
    return keyledger.django.get_vault().balance("acct_42").credits


def test_drf_authentication_sets_auth_to_the_grant_and_user_to_the_account(token: str) -> None:
    r = APIClient().post("/api/v1/messaging/send", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert r.status_code == 200, r.content
    assert r.json() == {"account": "acct_42", "credits": 9, "charged": 1, "user": "acct_42"}
    assert credits() == 9


def test_drf_view_scope_and_cost(token: str) -> None:
    r = APIClient().get("/drf/scoped", HTTP_X_API_KEY=token)
    assert r.status_code == 200 and r.json()["charged"] == 2
    assert credits() == 8


def test_drf_refusals_are_the_cores_status_body_and_headers(token: str) -> None:
    client = APIClient()
    r = client.post("/api/v1/messaging/send", HTTP_AUTHORIZATION="Bearer kl_live_forged")
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_api_key" and r.json()["success"] is False
    assert r["WWW-Authenticate"] == "Bearer"
    vault = keyledger.django.get_vault()
    info = vault.list_keys("acct_42")[0]
    vault.set_ratelimit("burst", 1, 60, key_id=info.key_id)
    assert client.get("/drf/scoped", HTTP_X_API_KEY=token).status_code == 200
    r = client.get("/drf/scoped", HTTP_X_API_KEY=token)
    assert r.status_code == 429 and r.json()["error"] == "rate_limited" and int(r["Retry-After"]) >= 1
    vault.remove_ratelimit("burst", key_id=info.key_id)
    vault.debit("acct_42", credits())
    r = client.get("/drf/scoped", HTTP_X_API_KEY=token)
    assert r.status_code == 402 and r.json()["error"] == "insufficient_credits" and r.json()["required"] == 2


def test_has_api_key_and_has_scope_permissions(token: str) -> None:
    client = APIClient()
    # No credentials: not authenticated, so HasAPIKey refuses (401, the class's header).
    r = client.get("/drf/scoped")
    assert r.status_code == 401 and r["WWW-Authenticate"] == "Bearer"
    # A valid key without numbers:read: HasScope refuses.
    r = client.get("/drf/numbers", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert r.status_code == 403 and "numbers:read" in r.json()["detail"]


def test_has_scope_follows_wildcards(vault_path: pathlib.Path) -> None:
    from keyledger.django.rest_framework import HasScope

    class Req:
        def __init__(self, auth: Any) -> None:
            self.auth = auth

    with keyledger.Vault(vault_path, argon2="insecure-fast") as v:
        v.create_account("a", 5)
        t, _ = v.create_key("a", "w", ["sms:*"])
        grant = v.authorize(t, scope="sms:send")
    assert HasScope("sms:send")().has_permission(Req(grant), None)  # type: ignore[arg-type]
    assert not HasScope("numbers:read")().has_permission(Req(grant), None)  # type: ignore[arg-type]
    assert not HasScope("sms:send")().has_permission(Req(None), None)  # type: ignore[arg-type]


def test_middleware_gates_every_request_and_drf_reuses_its_grant(token: str) -> None:
    with override_settings(MIDDLEWARE=MIDDLEWARE):
        client = Client()
        r = client.get("/api/v1/numbers/mine", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert r.status_code == 403 and r.json()["error"] == "missing_scope"
        r = client.get("/api/v1/numbers/mine")
        assert r.status_code == 401 and r["WWW-Authenticate"] == "Bearer"
        assert client.get("/health").json() == {"ok": True}
        r = client.post("/api/v1/messaging/send", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert r.status_code == 200 and r.json()["charged"] == 1
        assert credits() == 9  # charged once: DRF reused the middleware's grant


def test_middleware_grant_reaches_a_plain_view(vault_path: pathlib.Path) -> None:
    with keyledger.Vault(vault_path, argon2="insecure-fast") as v:
        token, info = seed(v, scopes=("numbers:read",))
        v.set_ratelimit("minute", 5, 60, key_id=info.key_id)
    with override_settings(
        KEYLEDGER_VAULT=str(vault_path), KEYLEDGER_OPTIONS={"argon2": "insecure-fast"}, MIDDLEWARE=MIDDLEWARE
    ):
        r = Client().get("/api/v1/numbers/mine", HTTP_X_API_KEY=token)
        assert r.status_code == 200 and r.json() == {"account": "acct_42", "credits": 10}
        assert r["RateLimit-Limit"] == "5" and r["RateLimit-Remaining"] == "4"
    keyledger.django.reset_vault()


def test_one_vault_per_process_reopened_after_fork(token: str) -> None:
    first = keyledger.django.get_vault()
    assert keyledger.django.get_vault() is first
    pid = os.fork()
    if pid == 0:  # the child: a vault of its own that works
        try:
            child = keyledger.django.get_vault()
            ok = child is not first and child.balance("acct_42").credits == 10
            child.debit("acct_42", 1)
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert keyledger.django.get_vault() is first and credits() == 9


def test_unset_vault_setting_is_a_clear_error() -> None:
    from django.core.exceptions import ImproperlyConfigured

    keyledger.django.reset_vault()
    with override_settings(KEYLEDGER_VAULT=None), pytest.raises(ImproperlyConfigured, match="KEYLEDGER_VAULT"):
        keyledger.django.get_vault()


def test_create_key_and_check_commands(token: str) -> None:
    out = io.StringIO()
    call_command("keyledger_create_key", "acct_42", "from manage.py", "--scope", "sms:send", stdout=out, stderr=io.StringIO())
    new_token = out.getvalue().strip()
    assert keyledger.looks_like_key(new_token)
    assert keyledger.django.get_vault().authorize(new_token, scope="sms:send").account_id == "acct_42"
    out = io.StringIO()
    call_command("keyledger_check", new_token, stdout=out)
    assert "looks like a keyledger key" in out.getvalue() and new_token not in out.getvalue()
    with pytest.raises(CommandError, match="not a keyledger key"):
        call_command("keyledger_check", new_token[:-1] + ("A" if new_token[-1] != "A" else "B"))
    with pytest.raises(CommandError, match="not_found|not found"):
        call_command("keyledger_create_key", "nobody", "x", "--scope", "sms:send", stdout=io.StringIO())


def test_keyledger_command_runs_the_cli_with_the_vault_setting(token: str, tmp_path: pathlib.Path, monkeypatch: Any) -> None:
    cli = tmp_path / "keyledger"
    cli.write_text('#!/bin/sh\necho "vault=$KEYLEDGER_VAULT args=$*"\n[ "$1" = fail ] && exit 3\nexit 0\n')
    cli.chmod(cli.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("KEYLEDGER_CLI", str(cli))
    out = io.StringIO()
    call_command("keyledger", "accounts", "list", stdout=out)
    assert out.getvalue().strip() == f"vault={keyledger.django.vault_location()} args=accounts list"
    with pytest.raises(CommandError, match="status 3"):
        call_command("keyledger", "fail", stdout=io.StringIO())
    monkeypatch.setenv("KEYLEDGER_CLI", "")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(CommandError, match="not installed"):
        call_command("keyledger", "accounts", "list")


def test_hostile_header_values_are_refused_not_crashing(token: str) -> None:
    with override_settings(MIDDLEWARE=MIDDLEWARE):
        client = Client()
        for value in ("Bearer \xff\xfe", "Bearer " + "a" * 10_000, "Bearer", "\x7f", "Basic abc"):
            r = client.post("/api/v1/messaging/send", HTTP_AUTHORIZATION=value)
            assert r.status_code == 401 and r.json()["error"] == "invalid_api_key", value
    r = APIClient().post("/api/v1/messaging/send", HTTP_X_API_KEY="é" * 100)
    assert r.status_code == 401 and r.json()["error"] == "invalid_api_key"
    assert credits() == 10
