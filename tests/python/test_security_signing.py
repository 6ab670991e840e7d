"""Request signatures, format 2, from Python (the published test vector, the query string
covered, no re-split between path and body, format 1 refused, single-use signatures), and
a minted token's repr redacted. Mirrors tests/security_signing.rs."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import pathlib
from typing import Any, Dict, Tuple

import pytest

import keyledger

UTC = dt.timezone.utc

# The published test vector (README.md, docs/format.md).
VECTOR_SECRET = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
VECTOR_T = dt.datetime.fromtimestamp(1767225600, UTC)
VECTOR_TARGET = "/v1/send?to=%2B15551234&dry=1"
VECTOR_BODY = b'{"text":"hi"}'
VECTOR_HEADER = "t=1767225600,v2=3d60d462cf2bf288d18fca6a42076fc1394ed7faccd63145e050c8396f5b6780"

NOW = dt.datetime.now(UTC).replace(microsecond=0)


def signed_vault(path: pathlib.Path, **options: Any) -> Tuple[keyledger.Vault, keyledger.Token, str]:
    v = keyledger.Vault(path, master_key=keyledger.generate_master_key(), argon2="insecure-fast", **options)
    v.create_account("a", 10)
    v.add_route("POST", "/send", "sms:send", cost=1)
    v.add_route("POST", "/v1/items/*", "items:write", cost=1)
    token, _ = v.create_key("a", "signed", ["sms:send", "items:write"], signing=True)
    assert token.signing_secret is not None
    return v, token, token.signing_secret


def test_sign_request_gives_the_published_test_vector() -> None:
    assert keyledger.sign_request(VECTOR_SECRET, "post", VECTOR_TARGET, VECTOR_BODY, t=VECTOR_T) == VECTOR_HEADER
    # ... which is the documented HMAC, computed here with the standard library.
    msg = b"keyledger-signature-v2\n1767225600\nPOST\n" + VECTOR_TARGET.encode() + b"\n"
    msg += hashlib.sha256(VECTOR_BODY).hexdigest().encode()
    mac = hmac.new(VECTOR_SECRET.encode(), msg, hashlib.sha256).hexdigest()
    assert VECTOR_HEADER == f"t=1767225600,v2={mac}"


def test_a_signature_for_one_query_string_is_refused_for_another(vault_path: pathlib.Path) -> None:
    v, token, secret = signed_vault(vault_path)
    with v:
        sig = keyledger.sign_request(secret, "POST", "/send?to=A", b"{}", t=NOW)
        for query in ("to=B", None):
            with pytest.raises(keyledger.InvalidSignature):
                v.authorize(token, route=("POST", "/send"), query=query, signature=sig, body=b"{}", now=NOW)
        assert v.balance("a").credits == 10
        g = v.authorize(token, route=("POST", "/send"), query="to=A", signature=sig, body=b"{}", now=NOW)
        assert g.charged == 1
        with pytest.raises(keyledger.InvalidArgument):
            v.authorize(token, route=("POST", "/send?to=A"), query="to=A", signature=sig, body=b"{}", now=NOW)


def test_a_signature_cannot_be_re_split_between_path_and_body(vault_path: pathlib.Path) -> None:
    v, token, secret = signed_vault(vault_path)
    with v:
        sig = keyledger.sign_request(secret, "POST", "/v1/items/a.json", b"", t=NOW)
        with pytest.raises(keyledger.InvalidSignature):
            v.authorize(token, route=("POST", "/v1/items/a"), signature=sig, body=b"json.", now=NOW)
        assert v.authorize(token, route=("POST", "/v1/items/a.json"), signature=sig, body=b"", now=NOW).charged == 1


def test_a_format_1_signature_is_refused(vault_path: pathlib.Path) -> None:
    v, token, secret = signed_vault(vault_path)
    with v:
        t = int(NOW.timestamp())
        v1 = hmac.new(secret.encode(), f"{t}.POST./send.{{}}".encode(), hashlib.sha256).hexdigest()
        with pytest.raises(keyledger.InvalidSignature):
            v.authorize(token, route=("POST", "/send"), signature=f"t={t},v1={v1}", body=b"{}", now=NOW)


def test_with_single_use_signatures_a_replay_is_refused(vault_path: pathlib.Path) -> None:
    v, token, secret = signed_vault(vault_path, single_use_signatures=True)
    with v:
        sig = keyledger.sign_request(secret, "POST", "/send", b"{}", t=NOW)
        assert v.authorize(token, route=("POST", "/send"), signature=sig, body=b"{}", now=NOW).charged == 1
        with pytest.raises(keyledger.InvalidSignature):
            v.authorize(token, route=("POST", "/send"), signature=sig, body=b"{}", now=NOW)
        assert v.balance("a").credits == 9


def test_a_minted_tokens_repr_is_redacted_and_its_str_is_the_token(
    vault: keyledger.Vault, caplog: pytest.LogCaptureFixture
) -> None:
    """The bug: ``repr(token)`` showed the whole secret, so a ``%r`` in a log line (or a
    traceback, or Sentry's locals) leaked it."""
    vault.create_account("a")
    token, info = vault.create_key("a", "k", ["x"])
    whole = str(token)
    shown = keyledger.redact(whole)
    assert shown != whole and whole not in repr(token)
    assert repr(token) == f"Token({shown!r})"
    assert f"{token!r}" == repr(token)
    assert "%r" % (token,) == repr(token)
    assert whole not in repr([token, info]) and whole not in repr({"t": token})
    with caplog.at_level(logging.INFO):
        logging.getLogger("app").info("minted %r", token)
    assert whole not in caplog.text and shown in caplog.text
    # The token itself is still the token.
    assert str(token) == whole and f"{token}" == whole and "%s" % token == whole
    assert token == whole and isinstance(token, str)


def test_the_asgi_middleware_passes_the_query_string_to_the_signature(vault_path: pathlib.Path) -> None:
    """A signature over ``/send?to=A`` is refused through the middleware for ``/send?to=B``."""
    import asyncio

    import httpx
    from fastapi import FastAPI

    from keyledger.asgi import KeyLedgerMiddleware

    v, token, secret = signed_vault(vault_path)
    with v:
        app = FastAPI()

        @app.post("/send")
        async def send() -> Dict[str, bool]:
            return {"sent": True}

        app.add_middleware(KeyLedgerMiddleware, vault=v)

        async def post(target: str, sig: str) -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                headers = {"Authorization": f"Bearer {token}", "X-KeyLedger-Signature": sig}
                return await c.post(target, content=b"{}", headers=headers)

        sig = keyledger.sign_request(secret, "POST", "/send?to=A", b"{}")
        refused = asyncio.run(post("/send?to=B", sig))
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_signature"
        assert asyncio.run(post("/send?to=A", sig)).status_code == 200
        plain = keyledger.sign_request(secret, "POST", "/send", b"{}")
        assert asyncio.run(post("/send", plain)).status_code == 200
