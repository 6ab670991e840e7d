"""The argon2 guards seen from Python: the owner of a flooded key_id still gets in on a
fresh worker, and argon2 parameters change only through an audited call."""

from __future__ import annotations

import pathlib
import secrets
import zlib

import pytest

import keyledger

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
MID = {"m_kib": 64, "t": 2, "p": 1}


def wrong_token(prefix: str, key_id: str) -> str:
    """A well-formed token (valid checksum) for `key_id` with a random, wrong secret."""
    body = f"{prefix}_{key_id}_" + "".join(secrets.choice(BASE62) for _ in range(40))
    crc = zlib.crc32(body.encode())
    check = ""
    for _ in range(6):
        check = BASE62[crc % 62] + check
        crc //= 62
    token = body + check
    assert keyledger.looks_like_key(token)
    return token


def test_a_fresh_worker_grants_the_owner_after_a_flood_of_wrong_secrets(vault_path: pathlib.Path) -> None:
    """Regression: a dozen wrong secrets against a known key_id made a new worker answer
    the owner's correct token with 401 invalid_api_key (refused without verifying it)."""
    with keyledger.Vault(vault_path, argon2="insecure-fast") as v:
        v.create_account("a", 0)
        token, info = v.create_key("a", "k", ["x"])
    with keyledger.Vault(vault_path) as worker:
        for _ in range(12):
            with pytest.raises(keyledger.InvalidApiKey):
                worker.authorize(wrong_token(info.prefix, info.key_id), scope="x")
        assert worker.stats()["argon2_runs"] == 12
        worker.authorize(token, scope="x")
        assert worker.stats()["argon2_runs"] == 13
    with keyledger.Vault(vault_path) as other:
        # The same wrong secret again is refused without argon2 (before the owner's key
        # is verified in this process).
        wrong = wrong_token(info.prefix, info.key_id)
        for _ in range(20):
            with pytest.raises(keyledger.InvalidApiKey):
                other.authorize(wrong, scope="x")
        assert other.stats()["argon2_runs"] == 1
        other.authorize(token, scope="x")


def test_argon2_params_change_only_through_an_audited_call(vault_path: pathlib.Path) -> None:
    """Regression: any opener's argon2 option was written for the whole vault."""
    with keyledger.Vault(vault_path, argon2=MID) as v:
        assert v.argon2_params() == MID
    with keyledger.Vault(vault_path, argon2="insecure-fast") as v:
        assert v.argon2_params() == MID, "an opener does not rewrite them"
        v.set_argon2_params({"m_kib": 128, "t": 2, "p": 1})
        assert v.argon2_params() == {"m_kib": 128, "t": 2, "p": 1}
        entries = v.audit(action="argon2_params_changed")
        assert len(entries) == 1
        assert entries[0].details == {"from": MID, "to": {"m_kib": 128, "t": 2, "p": 1}}
        with pytest.raises(keyledger.InvalidArgument):
            v.set_argon2_params({"m_kib": 128, "t": 0, "p": 1})
        with pytest.raises(keyledger.InvalidArgument):
            v.set_argon2_params("insecure")
        assert v.argon2_params() == {"m_kib": 128, "t": 2, "p": 1}
    with keyledger.Vault(vault_path) as v:
        assert v.argon2_params() == {"m_kib": 128, "t": 2, "p": 1}
