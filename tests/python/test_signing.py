"""Request signing from Python: master key, signing keys, signed requests, rekey."""

from __future__ import annotations

import asyncio
import datetime as dt
import pathlib
from typing import Any, Dict

import httpx
import pytest
from fastapi import FastAPI, Request

import keyledger
from keyledger.asgi import KeyLedgerMiddleware

UTC = dt.timezone.utc
SEND = ("POST", "/v1/send")


def open_vault(path: pathlib.Path, master: Any) -> keyledger.Vault:
    return keyledger.Vault(path, master_key=master, argon2="insecure-fast")


def test_signing_keys_need_a_master_key(vault: keyledger.Vault) -> None:
    vault.create_account("a")
    with pytest.raises(keyledger.InvalidArgument):
        vault.create_key("a", "k", ["x"], signing=True)


def test_a_signed_request_is_granted_and_unsigned_or_stale_ones_refused(vault_path: pathlib.Path) -> None:
    master = keyledger.generate_master_key()
    with open_vault(vault_path, master) as v:
        assert v.has_master_key
        v.create_account("a", 10)
        v.add_route(*SEND, "sms:send", cost=1)
        token, info = v.create_key("a", "signed", ["sms:send"], signing=True)
        assert info.signing and isinstance(token, str)
        secret = token.signing_secret
        assert secret is not None and len(secret) == 64
        now = dt.datetime.now(UTC).replace(microsecond=0)  # t= has whole seconds
        sig = keyledger.sign_request(secret, "POST", "/v1/send", b'{"to":"+1555"}', t=now)
        g = v.authorize(token, route=SEND, signature=sig, body=b'{"to":"+1555"}', now=now)
        assert g.charged == 1
        with pytest.raises(keyledger.InvalidSignature) as e:
            v.authorize(token, route=SEND)
        assert (e.value.status, e.value.code) == (401, "invalid_signature")
        with pytest.raises(keyledger.InvalidSignature):
            v.authorize(token, route=SEND, signature=sig, body=b"other", now=now)
        with pytest.raises(keyledger.InvalidSignature):
            v.authorize(token, route=SEND, signature=sig, body=b'{"to":"+1555"}', now=now + dt.timedelta(seconds=301))
        assert v.authorize(token, route=SEND, signature=sig, body=b'{"to":"+1555"}', now=now + dt.timedelta(seconds=300)).charged == 1
        assert v.reveal_signing_secret(info.key_id) == secret
        assert v.audit(action="signing_secret_revealed")[0].key_id == info.key_id


def test_wrong_master_key_and_rekey(vault_path: pathlib.Path) -> None:
    old = keyledger.generate_master_key()
    with open_vault(vault_path, old) as v:
        v.create_account("a")
        token, info = v.create_key("a", "k", ["x"], signing=True)
    with pytest.raises(keyledger.WrongMasterKey):
        open_vault(vault_path, keyledger.generate_master_key())
    with pytest.raises(keyledger.InvalidArgument):
        open_vault(vault_path, "not base64 of 32 bytes")
    with pytest.raises(TypeError):
        open_vault(vault_path, 42)
    new = keyledger.generate_master_key()
    with open_vault(vault_path, old) as v:
        assert v.rekey(new) == 1
    with open_vault(vault_path, new) as v:
        assert v.reveal_signing_secret(info.key_id) == token.signing_secret


def test_passphrase(vault_path: pathlib.Path) -> None:
    with keyledger.Vault(vault_path, master_passphrase="correct horse", argon2="insecure-fast") as v:
        v.create_account("a")
        token, info = v.create_key("a", "k", ["x"], signing=True)
    with pytest.raises(keyledger.WrongMasterKey):
        keyledger.Vault(vault_path, master_passphrase="wrong horse")
    with keyledger.Vault(vault_path, master_passphrase="correct horse") as v:
        assert v.reveal_signing_secret(info.key_id) == token.signing_secret


def test_the_middleware_verifies_signed_requests_and_replays_the_body(vault_path: pathlib.Path) -> None:
    with open_vault(vault_path, keyledger.generate_master_key()) as v:
        v.create_account("a", 10)
        v.add_route(*SEND, "sms:send", cost=1)
        token, _ = v.create_key("a", "signed", ["sms:send"], signing=True)
        assert token.signing_secret is not None
        app = FastAPI()

        @app.post("/v1/send")
        async def send(request: Request) -> Dict[str, Any]:
            return {"body": (await request.body()).decode(), "credits": request.state.keyledger.credits}

        app.add_middleware(KeyLedgerMiddleware, vault=v)
        body = b'{"to":"+15550100"}'

        async def post(headers: Dict[str, str]) -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                return await c.post("/v1/send", content=body, headers=headers)

        sig = keyledger.sign_request(token.signing_secret, "POST", "/v1/send", body)
        ok = asyncio.run(post({"Authorization": f"Bearer {token}", "X-KeyLedger-Signature": sig}))
        assert ok.status_code == 200
        assert ok.json() == {"body": body.decode(), "credits": 9}
        unsigned = asyncio.run(post({"Authorization": f"Bearer {token}"}))
        assert unsigned.status_code == 401 and unsigned.json()["error"] == "invalid_signature"
        forged = asyncio.run(post({"Authorization": f"Bearer {token}", "X-KeyLedger-Signature": sig.replace("v2=", "v2=0")}))
        assert forged.status_code == 401
