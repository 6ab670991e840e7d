"""Bad input raises the documented exception and changes nothing."""

from __future__ import annotations

from typing import Any, Callable, List, Tuple

import pytest

import keyledger
from conftest import SEND

Seeded = Tuple[keyledger.Vault, str, keyledger.KeyInfo]


def snapshot(v: keyledger.Vault) -> str:
    return repr((v.list_accounts(), [k.to_dict() for k in v.list_keys()], v.list_routes(), v.audit(limit=1000)))


def test_bad_values_are_invalid_argument_and_change_nothing(seeded: Seeded) -> None:
    v, token, info = seeded
    before = snapshot(v)
    bad: List[Callable[[], Any]] = [
        lambda: v.create_account(""),
        lambda: v.create_account("x" * 129),
        lambda: v.create_account("a2", -1),
        lambda: v.create_account("a2", 2**64),
        lambda: v.create_account("a2", metadata={"blob": "x" * 5000}),
        lambda: v.create_account("a2", metadata={"bad": object()}),
        lambda: v.top_up("acct_42", 0),
        lambda: v.top_up("acct_42", -5),
        lambda: v.top_up("acct_42", 2**64 - 1),
        lambda: v.top_up("acct_42", 10**30),
        lambda: v.debit("acct_42", 0),
        lambda: v.debit("acct_42", 1, idempotency_key="k" * 256),
        lambda: v.create_key("acct_42", "n", ["UPPER"]),
        lambda: v.create_key("acct_42", "n", ["bad scope"]),
        lambda: v.create_key("acct_42", "n", ["s" * 65]),
        lambda: v.create_key("acct_42", "", ["a"]),
        lambda: v.create_key("acct_42", "n", ["a"], prefix="Bad"),
        lambda: v.create_key("acct_42", "n", ["a"], expires_in=-1),
        lambda: v.create_key("acct_42", "n", ["a"], expires_in=0),
        lambda: v.create_key("acct_42", "n", ["a"], signing=True),
        lambda: v.set_scopes(info.key_id, ["a*b"]),
        lambda: v.set_scopes("short", ["a"]),
        lambda: v.rotate_key(info.key_id, grace=-1),
        lambda: v.add_route("GET", "no-slash", "x"),
        lambda: v.add_route("GET", "/x", "x", cost=-1),
        lambda: v.authorize(token, route=SEND, cost=-1),
        lambda: v.authorize(token, route=SEND, scope="sms:send"),
        lambda: v.authorize(token),
        lambda: v.authorize(token, scope="NOT VALID"),
        lambda: v.audit(limit=10**9),
        lambda: keyledger.Vault(v.path, durability="sometimes"),
        lambda: keyledger.Vault(v.path, argon2="weird"),
    ]
    for call in bad:
        with pytest.raises(keyledger.InvalidArgument):
            call()
    assert snapshot(v) == before


def test_wrong_types_are_type_errors_and_change_nothing(seeded: Seeded) -> None:
    v, token, info = seeded
    before = snapshot(v)
    wrong: List[Callable[[], Any]] = [
        lambda: v.create_account(42),  # type: ignore[arg-type]
        lambda: v.create_account("a2", "10"),  # type: ignore[arg-type]
        lambda: v.create_account("a2", 1.5),  # type: ignore[arg-type]
        lambda: v.create_account("a2", True),  # type: ignore[arg-type]
        lambda: v.create_account("a2", metadata=[1, 2]),  # type: ignore[arg-type]
        lambda: v.top_up("acct_42", None),  # type: ignore[arg-type]
        lambda: v.create_key("acct_42", "n", "sms:send"),
        lambda: v.create_key("acct_42", "n", [1, 2]),  # type: ignore[list-item]
        lambda: v.authorize(None),  # type: ignore[arg-type]
        lambda: v.authorize(token, route="POST /x"),  # type: ignore[arg-type]
        lambda: v.create_key("acct_42", "n", ["a"], expires_in="soon"),  # type: ignore[arg-type]
    ]
    for call in wrong:
        with pytest.raises(TypeError):
            call()
    assert snapshot(v) == before


def test_hostile_tokens_and_paths_are_refused_not_crashed(seeded: Seeded) -> None:
    v, token, _ = seeded
    for bad in ["", "_", "\x00", "🔑" * 100, "a" * 10_000, token + "\x00", token.replace("_", "-")]:
        with pytest.raises(keyledger.InvalidApiKey):
            v.authorize(bad, route=SEND)
    for path in ["", "relative", "/api/v1/messaging/send/../../admin", "/\x00"]:
        with pytest.raises(keyledger.RouteNotAllowed):
            v.authorize(token, route=("POST", path))
    assert v.balance("acct_42").credits == 10


def test_unknown_ids_are_not_found(vault: keyledger.Vault) -> None:
    for call in [
        lambda: vault.account("nobody"),
        lambda: vault.balance("nobody"),
        lambda: vault.top_up("nobody", 1),
        lambda: vault.key("zzzzzzzz"),
        lambda: vault.revoke_key("zzzzzzzz"),
        lambda: vault.usage("zzzzzzzz"),
        lambda: vault.create_key("nobody", "n", ["a"]),
    ]:
        with pytest.raises(keyledger.NotFound) as e:
            call()
        assert e.value.code == "not_found"
