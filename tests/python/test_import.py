"""Keys minted by djangorestframework-api-key itself, in a real Django database, imported by
the CLI and authorized through keyledger (the Vault, the ASGI gate, a second process) with
the tokens drf-api-key printed; re-hashed to argon2id on their first success."""

from __future__ import annotations

import asyncio
import json
import pathlib
import subprocess
import sys
from typing import Any, Dict, List

import httpx
import pytest

import keyledger
from keyledger.asgi import KeyLedgerMiddleware

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CLI = ROOT / "target" / "debug" / "keyledger"


def cli(vault: pathlib.Path, *args: str) -> Dict[str, Any]:
    r = subprocess.run([str(CLI), "--json", "--vault", str(vault), *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr + r.stdout
    out: Dict[str, Any] = json.loads(r.stdout)
    return out


@pytest.fixture
def drf_db(tmp_path: pathlib.Path) -> Dict[str, Any]:
    pytest.importorskip("rest_framework_api_key")
    if not CLI.exists():
        pytest.skip("the CLI is not built (cargo build -p keyledger-cli)")
    db = tmp_path / "django.sqlite3"
    r = subprocess.run([sys.executable, str(HERE / "drf_import_make.py"), str(db)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    tokens: Dict[str, Any] = json.loads(r.stdout)
    tokens["db"] = db
    return tokens


def test_drf_api_key_tokens_authorize_after_import_and_are_rehashed(drf_db: Dict[str, Any], tmp_path: pathlib.Path) -> None:
    path = tmp_path / "vault.redb"
    keyledger.Vault(path, argon2="insecure-fast").close()
    args = ["import", "drf-api-key", "--database", str(drf_db["db"]), "--account", "cust", "--credits", "5", "--scope", "sms:send"]
    first = cli(path, *args)
    assert (first["keys_imported"], first["accounts_created"]) == (3, 1)
    # Run twice: nothing changes.
    again = cli(path, *args)
    assert (again["keys_imported"], again["keys_unchanged"], again["accounts_created"]) == (0, 3, 0)
    assert len(cli(path, "import", "pending")["pending"]) == 3

    good, revoked, expired, wrong = drf_db["good"], drf_db["revoked"], drf_db["expired"], drf_db["wrong"]
    assert keyledger.looks_like_key(good)
    assert keyledger.redact(good) == good.split(".")[0] + ".…"
    with keyledger.Vault(path, argon2="insecure-fast") as v:
        grant = v.authorize(good, scope="sms:send")
        assert grant.account_id == "cust" and grant.prefix == "drf-api-key" and grant.key_name == "alice's server"
        # The good key was re-hashed: its imported hash is gone, the others keep theirs.
        pending: List[str] = cli(path, "import", "pending")["pending"]
        assert len(pending) == 2 and grant.key_id not in pending
        with pytest.raises(keyledger.InvalidApiKey):
            v.authorize(wrong, scope="sms:send")
        with pytest.raises(keyledger.InvalidApiKey):
            v.authorize(revoked, scope="sms:send")
        with pytest.raises(keyledger.ApiKeyExpired):
            v.authorize(expired, scope="sms:send")

        # Through the ASGI gate, with the token drf-api-key printed.
        v.add_route("POST", "/send", "sms:send", cost=1)

        async def ok(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"sent"})

        app = KeyLedgerMiddleware(ok, vault=v)

        async def call(token: str) -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.post("/send", headers={"Authorization": f"Bearer {token}"})

        r = asyncio.run(call(good))
        assert r.status_code == 200 and r.text == "sent"
        r = asyncio.run(call(wrong))
        assert r.status_code == 401 and r.json()["error"] == "invalid_api_key"
        assert v.balance("cust").credits == 4

    # A second process (nothing cached) verifies against the argon2id hash.
    code = (
        "import sys, keyledger\n"
        "with keyledger.Vault(sys.argv[1], argon2='insecure-fast') as v:\n"
        "    print(v.authorize(sys.argv[2], scope='sms:send').account_id)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(path), good], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "cust", r.stderr


def test_unkey_export_imports_owners_credits_and_limits(tmp_path: pathlib.Path) -> None:
    if not CLI.exists():
        pytest.skip("the CLI is not built (cargo build -p keyledger-cli)")
    import base64
    import hashlib

    def h(token: str) -> str:
        return base64.b64encode(hashlib.sha256(token.encode()).digest()).decode()

    a1, a2, solo = "sk_3ZFeSzZi4bAHLaADiPyJy7BN", "sk_4kqXnR8vT2wYpL9mZc3HdF6G", "sk_9QwErTyUiOpAsDfGhJkLzXcV"
    export = [
        {"hash": {"value": h(a1), "variant": "sha256_base64"}, "start": "sk_3ZFe", "externalId": "user_1",
         "remaining": 3, "meta": {"plan": "pro"}, "permissions": ["sms:send"],
         "ratelimit": {"type": "fast", "limit": 10, "refillRate": 10, "refillInterval": 60000}},
        {"hash": {"value": h(a2), "variant": "sha256_base64"}, "start": "sk_4kqX", "externalId": "user_1",
         "remaining": 2, "permissions": ["sms:send"], "enabled": False},
        {"hash": {"value": h(solo), "variant": "sha256_base64"}, "start": "sk_9QwE", "permissions": ["sms:send"],
         "expires": 1000},
    ]
    f = tmp_path / "export.json"
    f.write_text(json.dumps(export))
    path = tmp_path / "vault.redb"
    keyledger.Vault(path, argon2="insecure-fast").close()
    report = cli(path, "import", "unkey", "--file", str(f))
    assert (report["keys_imported"], report["accounts_created"]) == (3, 2)
    assert cli(path, "import", "unkey", "--file", str(f))["keys_unchanged"] == 3
    with keyledger.Vault(path, argon2="insecure-fast") as v:
        # The owner's keys share one balance: remaining 3 + 2.
        assert v.balance("user_1").credits == 5
        assert v.authorize(a1, scope="sms:send", cost=1).credits == 4
        with pytest.raises(keyledger.ApiKeyInactive):
            v.authorize(a2, scope="sms:send")
        with pytest.raises(keyledger.ApiKeyExpired):
            v.authorize(solo, scope="sms:send")
        with pytest.raises(keyledger.InvalidApiKey):
            v.authorize(a1[:-1] + "X", scope="sms:send")


def test_a_django_password_hash_or_a_missing_table_is_refused_and_imports_nothing(drf_db: Dict[str, Any], tmp_path: pathlib.Path) -> None:
    import sqlite3

    path = tmp_path / "vault.redb"
    keyledger.Vault(path, argon2="insecure-fast").close()
    prefix = drf_db["good"].split(".")[0]
    with sqlite3.connect(drf_db["db"]) as db:
        db.execute(
            "UPDATE rest_framework_api_key_apikey SET hashed_key = ? WHERE prefix = ?",
            ("pbkdf2_sha256$600000$salt$aGFzaA==", prefix),
        )
    r = subprocess.run([str(CLI), "--vault", str(path), "import", "drf-api-key", "--database", str(drf_db["db"])], capture_output=True, text=True)
    assert r.returncode == 8 and "pbkdf2_sha256" in r.stderr, r.stderr
    assert drf_db["good"].split(".")[1] not in r.stderr + r.stdout
    empty = tmp_path / "empty.sqlite3"
    sqlite3.connect(empty).close()
    r = subprocess.run([str(CLI), "--vault", str(path), "import", "drf-api-key", "--database", str(empty)], capture_output=True, text=True)
    assert r.returncode == 8 and "rest_framework_api_key_apikey" in r.stderr, r.stderr
    with keyledger.Vault(path, argon2="insecure-fast") as v:
        assert v.list_keys() == [] and v.list_accounts() == []
