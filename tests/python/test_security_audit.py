"""Refusal floods stay bounded in the audit log; refusal retention is a vault option."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

import keyledger


def test_unmatched_paths_fold_into_one_refusal_entry(tmp_path: Path) -> None:
    with keyledger.Vault(tmp_path / "v.redb", argon2="insecure-fast") as v:
        v.create_account("acct_1", credits=0)
        v.add_route("GET", "/ok", "read")
        token, info = v.create_key("acct_1", "k", ["read"])
        for i in range(2000):
            with pytest.raises(keyledger.RouteNotAllowed):
                v.authorize(token, route=("GET", f"/nope/{i}"))
        v.flush()
        refused = [e for e in v.audit(limit=10_000) if e.action == "auth_refused"]
        assert sum(e.details["count"] for e in refused) == 2000
        assert len(refused) <= 2
        assert all(e.key_id == info.key_id for e in refused)
        assert len(refused[0].details["samples"]) == 5


def test_refusal_retention_accepts_a_duration_and_refuses_a_negative_one(tmp_path: Path) -> None:
    keyledger.Vault(tmp_path / "a.redb", refusal_retention=timedelta(days=7)).close()
    keyledger.Vault(tmp_path / "b.redb", refusal_retention=0).close()
    with pytest.raises(keyledger.InvalidArgument):
        keyledger.Vault(tmp_path / "c.redb", refusal_retention=-1)
