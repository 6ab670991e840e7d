"""Every management call and authorize, with Pythonic types."""

from __future__ import annotations

import datetime as dt
import pathlib
from typing import Tuple

import pytest

import keyledger
from conftest import NUMBERS, SEND, seed

UTC = dt.timezone.utc
Seeded = Tuple[keyledger.Vault, str, keyledger.KeyInfo]


def test_a_granted_send_debits_and_describes_the_caller(seeded: Seeded) -> None:
    v, token, info = seeded
    g = v.authorize(token, route=SEND)
    assert (g.account_id, g.key_id, g.key_name, g.prefix) == ("acct_42", info.key_id, "server", "dial_live")
    assert (g.charged, g.credits, g.total_credits, g.replayed) == (1, 9, 10, False)
    assert g.auth_method == "apikey"
    assert g.scopes == ("sms:send",)
    assert g.ratelimits == []
    assert g.to_dict()["credits"] == 9
    assert v.balance("acct_42").credits == 9


def test_accounts_top_up_debit_and_balance(vault: keyledger.Vault) -> None:
    a = vault.create_account("did:privy:cm123", 5, metadata={"plan": "pro", "seats": [1, 2]})
    assert (a.id, a.credits, a.total_credits) == ("did:privy:cm123", 5, 5)
    assert a.metadata == {"plan": "pro", "seats": [1, 2]}
    assert a.created_at.tzinfo is not None
    assert vault.top_up("did:privy:cm123", 10, reference="inv-1").credits == 15
    b = vault.debit("did:privy:cm123", 4, idempotency_key="order-9")
    assert (b.credits, b.total_credits) == (11, 15)
    assert vault.debit("did:privy:cm123", 4, idempotency_key="order-9").credits == 11
    assert [x.id for x in vault.list_accounts()] == ["did:privy:cm123"]
    assert vault.account("did:privy:cm123").credits == 11
    with pytest.raises(keyledger.InsufficientCredits) as e:
        vault.debit("did:privy:cm123", 100)
    assert e.value.status == 402
    assert e.value.body == {
        "success": False,
        "error": "insufficient_credits",
        "message": e.value.message,
        "credits": 11,
        "required": 100,
    }


def test_keys_lifecycle(seeded: Seeded) -> None:
    v, token, info = seeded
    assert info.created_at.tzinfo is not None and info.expires_at is None
    assert v.key(info.key_id).name == "server"
    assert [k.key_id for k in v.list_keys("acct_42")] == [info.key_id]
    assert v.disable_key(info.key_id).disabled
    with pytest.raises(keyledger.ApiKeyInactive):
        v.authorize(token, route=SEND)
    assert not v.enable_key(info.key_id).disabled
    assert v.set_scopes(info.key_id, ["sms:*", "numbers:read"]).scopes == ("numbers:read", "sms:*")
    v.authorize(token, route=NUMBERS)
    soon = dt.datetime.now(UTC) + dt.timedelta(hours=1)
    k = v.set_expiry(info.key_id, soon)
    assert k.expires_at is not None and abs((k.expires_at - soon).total_seconds()) < 0.002
    assert v.set_expiry(info.key_id, None).expires_at is None
    revoked = v.revoke_key(info.key_id)
    assert revoked.revoked_at is not None
    with pytest.raises(keyledger.InvalidApiKey):
        v.authorize(token, route=SEND)


def test_expiry_accepts_datetime_timedelta_and_seconds(vault: keyledger.Vault) -> None:
    vault.create_account("a")
    now = dt.datetime.now(UTC)
    _, k1 = vault.create_key("a", "k1", ["x"], expires_in=dt.timedelta(minutes=5))
    _, k2 = vault.create_key("a", "k2", ["x"], expires_in=300)
    _, k3 = vault.create_key("a", "k3", ["x"], expires_at=now + dt.timedelta(minutes=5))
    for k in (k1, k2, k3):
        assert k.expires_at is not None
        assert dt.timedelta(minutes=4) < k.expires_at - now < dt.timedelta(minutes=6)
    with pytest.raises(keyledger.InvalidArgument):
        vault.create_key("a", "naive", ["x"], expires_at=dt.datetime.now() + dt.timedelta(minutes=5))


def test_authorize_at_an_injected_time_sees_expiry(vault: keyledger.Vault) -> None:
    vault.create_account("a")
    token, _ = vault.create_key("a", "k", ["x"], expires_in=60)
    later = dt.datetime.now(UTC) + dt.timedelta(minutes=2)
    vault.authorize(token, scope="x")
    with pytest.raises(keyledger.ApiKeyExpired) as e:
        vault.authorize(token, scope="x", now=later)
    assert (e.value.status, e.value.code) == (401, "api_key_expired")


def test_rotation_with_grace(seeded: Seeded) -> None:
    v, old, info = seeded
    new, new_info = v.rotate_key(info.key_id, grace=dt.timedelta(minutes=10))
    assert new_info.rotated_from == info.key_id
    v.authorize(old, route=SEND)
    v.authorize(new, route=SEND)
    with pytest.raises(keyledger.ApiKeyExpired):
        v.authorize(old, route=SEND, now=dt.datetime.now(UTC) + dt.timedelta(minutes=11))


def test_routes(vault: keyledger.Vault) -> None:
    r = vault.add_route("get", "/api/v1/messaging/threads/:counterparty", "numbers:read")
    assert (r.method, r.pattern, r.scope, r.cost) == ("GET", "/api/v1/messaging/threads/:counterparty", "numbers:read", 0)
    vault.add_route("GET", "/sms/*", "sms.read", cost=2)
    m = vault.match_route("GET", "/sms/inbox/1")
    assert m is not None and m.scope == "sms.read"
    assert vault.match_route("GET", "/nope") is None
    assert len(vault.list_routes()) == 2
    with pytest.raises(keyledger.AlreadyExists):
        vault.add_route("GET", "/sms/*", "x")
    assert vault.remove_route("GET", "/sms/*").cost == 2
    with pytest.raises(keyledger.NotFound):
        vault.remove_route("GET", "/sms/*")


def test_every_refusal_class_status_and_body(seeded: Seeded) -> None:
    v, token, info = seeded
    cases = [
        (lambda: v.authorize("nope", route=SEND), keyledger.InvalidApiKey, 401, "invalid_api_key"),
        (lambda: v.authorize(token, route=NUMBERS), keyledger.MissingScope, 403, "missing_scope"),
        (lambda: v.authorize(token, route=("GET", "/admin")), keyledger.RouteNotAllowed, 403, "route_not_allowed"),
        (lambda: v.authorize(token, route=SEND, cost=1000), keyledger.InsufficientCredits, 402, "insufficient_credits"),
    ]
    for call, cls, status, code in cases:
        with pytest.raises(cls) as e:
            call()
        assert (e.value.status, e.value.code, e.value.body["error"]) == (status, code, code)
        assert e.value.body["success"] is False
    assert issubclass(keyledger.InvalidApiKey, keyledger.AuthError)
    assert issubclass(keyledger.MissingScope, keyledger.ForbiddenError)
    assert issubclass(keyledger.InvalidArgument, ValueError)
    with pytest.raises(keyledger.MissingScope) as e2:
        v.authorize(token, route=NUMBERS)
    assert e2.value.body["required"] == "numbers:read"


def test_idempotent_replay(seeded: Seeded) -> None:
    v, token, _ = seeded
    first = v.authorize(token, route=SEND, idempotency_key="req-1")
    again = v.authorize(token, route=SEND, idempotency_key="req-1")
    assert again.replayed and not first.replayed
    assert again.credits == first.credits == 9
    assert v.balance("acct_42").credits == 9


def test_operator_keys_are_free_and_audited(seeded: Seeded) -> None:
    v, _, _ = seeded
    op, op_info = v.create_key("acct_42", "admin", [], operator=True)
    g = v.authorize(op, route=SEND)
    assert (g.auth_method, g.charged) == ("operator", 0)
    entries = v.audit(key_id=op_info.key_id, action="operator_authorized")
    assert len(entries) == 1 and entries[0].details["count"] == 1


def test_audit_usage_and_whoami(seeded: Seeded) -> None:
    v, token, info = seeded
    v.authorize(token, route=SEND)
    v.authorize(token, route=SEND)
    with pytest.raises(keyledger.MissingScope):
        v.authorize(token, route=NUMBERS)
    u = v.usage(info.key_id)
    assert (u.granted, u.refused) == (2, 1)
    assert u.last_used_at is not None and u.hourly[0][1] == 2
    entries = v.audit(account_id="acct_42", limit=50)
    actions = {e.action for e in entries}
    assert {"account_created", "key_created", "auth_refused"} <= actions
    assert all(e.time.tzinfo is not None for e in entries)
    assert v.audit(since=dt.datetime.now(UTC) + dt.timedelta(days=1)) == []
    w = v.whoami(token)
    assert (w.account_id, w.key_id, w.credits, w.auth_method) == ("acct_42", info.key_id, 8, "apikey")


def test_persistence_across_reopen(vault_path: pathlib.Path) -> None:
    with keyledger.Vault(vault_path, argon2="insecure-fast") as v:
        token, info = seed(v)
        v.authorize(token, route=SEND)
    with keyledger.Vault(vault_path) as v:
        assert v.balance("acct_42").credits == 9
        assert v.authorize(token, route=SEND).credits == 8
        assert v.usage(info.key_id).granted == 2


def test_a_closed_vault_refuses_clearly(vault_path: pathlib.Path) -> None:
    v = keyledger.Vault(vault_path, argon2="insecure-fast")
    v.close()
    v.close()  # idempotent
    with pytest.raises(keyledger.VaultClosed):
        v.list_accounts()


def test_exclusive_vault_locks_out_a_second_opener(vault_path: pathlib.Path) -> None:
    with keyledger.Vault(vault_path, exclusive=True, durability="eventual") as v:
        assert v.cache_mode == "private"
        with pytest.raises(keyledger.VaultLocked):
            keyledger.Vault(vault_path)
    with pytest.raises(keyledger.InvalidArgument):
        keyledger.Vault(vault_path, durability="eventual")


def test_the_hot_path_stays_hot(seeded: Seeded) -> None:
    v, token, _ = seeded
    v.add_route("GET", "/free", "sms:send")
    v.authorize(token, route=("GET", "/free"))
    before = v.stats()
    for _ in range(1000):
        v.authorize(token, route=("GET", "/free"))
    after = v.stats()
    assert after["argon2_runs"] == before["argon2_runs"] == 1
    assert after["read_txns"] == before["read_txns"]


def test_module_helpers(seeded: Seeded) -> None:
    _, token, info = seeded
    assert keyledger.looks_like_key(token)
    assert not keyledger.looks_like_key(token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert not keyledger.looks_like_key(None)
    assert keyledger.redact(token) == f"dial_live_{info.key_id}_…"
    assert keyledger.__version__


def test_reprs_never_show_a_secret(seeded: Seeded) -> None:
    v, token, info = seeded
    secret = token.rsplit("_", 1)[1]
    texts = [
        repr(v),
        repr(info),
        repr(v.authorize(token, route=SEND)),
        repr(v.key(info.key_id)),
        repr(v.list_keys()),
        repr(v.audit()),
        repr(v.whoami(token)),
        str(v.key(info.key_id).to_dict()),
    ]
    try:
        v.authorize(token[:-1] + "x", route=SEND)
    except keyledger.KeyLedgerError as e:
        texts += [repr(e), str(e), str(e.body)]
    for text in texts:
        assert secret not in text
        assert "$argon2" not in text
    assert repr(info).startswith("KeyInfo(key_id='")
