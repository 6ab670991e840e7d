"""keyledger.wsgi.KeyLedgerMiddleware through Flask's test client."""

from __future__ import annotations

from typing import Any

import flask

import keyledger
from keyledger.wsgi import KeyLedgerMiddleware, grant_of


def make_client(vault: keyledger.Vault, **options: Any) -> Any:
    app = flask.Flask(__name__)

    @app.post("/api/v1/messaging/send")
    def send() -> Any:
        grant = grant_of(flask.request.environ)
        assert grant is not None
        return {"account": grant.account_id, "credits": grant.credits, "body": flask.request.get_data(as_text=True)}

    @app.get("/health")
    def health() -> Any:
        return {"ok": True}

    app.wsgi_app = KeyLedgerMiddleware(app.wsgi_app, vault, exclude=("/health",), **options)  # type: ignore[method-assign]
    return app.test_client()


def test_grant_reaches_the_view(seeded: Any) -> None:
    vault, token, _ = seeded
    r = make_client(vault).post("/api/v1/messaging/send", headers={"Authorization": f"Bearer {token}"}, data="hi")
    assert r.status_code == 200, r.data
    assert r.get_json() == {"account": "acct_42", "credits": 9, "body": "hi"}


def test_refusals_are_the_cores_status_headers_and_body(seeded: Any) -> None:
    vault, token, info = seeded
    client = make_client(vault)
    r = client.post("/api/v1/messaging/send")
    assert r.status_code == 401 and r.get_json()["error"] == "invalid_api_key"
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert r.headers["Content-Type"] == "application/json"
    r = client.post("/api/v1/numbers/mine", headers={"X-Api-Key": token})
    assert r.status_code in (403, 405) and r.get_json()["error"] == "route_not_allowed"
    vault.set_ratelimit("burst", 1, 60, key_id=info.key_id)
    assert client.post("/api/v1/messaging/send", headers={"X-Api-Key": token}).status_code == 200
    r = client.post("/api/v1/messaging/send", headers={"X-Api-Key": token})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    vault.remove_ratelimit("burst", key_id=info.key_id)
    vault.debit("acct_42", vault.balance("acct_42").credits)
    r = client.post("/api/v1/messaging/send", headers={"X-Api-Key": token})
    assert r.status_code == 402 and r.get_json()["error"] == "insufficient_credits"


def test_excluded_paths_need_no_key(seeded: Any) -> None:
    assert make_client(seeded[0]).get("/health").get_json() == {"ok": True}


def test_signed_request_body_is_checked_and_replayed(vault_path: Any) -> None:
    vault = keyledger.Vault(vault_path, argon2="insecure-fast", master_key=keyledger.generate_master_key())
    vault.create_account("acct_42", 10)
    vault.add_route("POST", "/api/v1/messaging/send", "sms:send", cost=1)
    token, _ = vault.create_key("acct_42", "signed", ["sms:send"], signing=True)
    assert token.signing_secret is not None
    client = make_client(vault)
    sig = keyledger.sign_request(token.signing_secret, "POST", "/api/v1/messaging/send", b"hello")
    headers = {"Authorization": f"Bearer {token}", "X-KeyLedger-Signature": sig}
    r = client.post("/api/v1/messaging/send", headers=headers, data=b"hello")
    assert r.status_code == 200 and r.get_json()["body"] == "hello"
    r = client.post("/api/v1/messaging/send", headers=headers, data=b"tampered")
    assert r.status_code == 401 and r.get_json()["error"] == "invalid_signature"


def test_hostile_header_values_are_refused_not_crashing(seeded: Any) -> None:
    client = make_client(seeded[0])
    for value in ("Bearer \xff\xfe", "Bearer " + "a" * 10_000, "Bearer", "\x7f", "Basic abc"):
        r = client.post("/api/v1/messaging/send", headers={"Authorization": value})
        assert r.status_code == 401 and r.get_json()["error"] == "invalid_api_key", value
    r = client.post("/api/v1/messaging/send", headers={"X-Api-Key": "é" * 100})
    assert r.status_code == 401


def test_mount_prefix_is_part_of_the_target(seeded: Any) -> None:
    """Under a mount (SCRIPT_NAME), the rules see the whole path the client sent."""
    vault, token, _ = seeded
    app = flask.Flask(__name__)

    @app.post("/send")
    def send() -> Any:
        return {"ok": True}

    app.wsgi_app = KeyLedgerMiddleware(app.wsgi_app, vault)  # type: ignore[method-assign]
    client = app.test_client()
    r = client.post("/send", headers={"X-Api-Key": token}, environ_overrides={"SCRIPT_NAME": "/api/v1/messaging", "REQUEST_URI": "/api/v1/messaging/send"})
    assert r.status_code == 200, r.data
    # Without REQUEST_URI/RAW_URI: SCRIPT_NAME + PATH_INFO, re-encoded.
    bare = {"SCRIPT_NAME": "/api/v1/messaging", "REQUEST_URI": "", "RAW_URI": ""}
    assert client.post("/send", headers={"X-Api-Key": token}, environ_overrides=bare).status_code == 200
    r = client.post("/send", headers={"X-Api-Key": token})
    assert r.status_code == 403 and r.get_json()["error"] == "route_not_allowed"
    # A decoded `%` cannot be re-encoded faithfully: refused as ambiguous.
    odd = dict(bare, PATH_INFO="/se%2Fnd")
    r = client.post("/send", headers={"X-Api-Key": token}, environ_overrides=odd)
    assert r.status_code == 400 and r.get_json()["error"] == "ambiguous_path"
