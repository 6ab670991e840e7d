"""Holds through the Python package: reserve (``Vault.hold`` and ``authorize(hold=)``),
settle, release, TTL expiry across two handles, the balance's ``held``/``available``, the
hold errors, and the async variants."""

from __future__ import annotations

import asyncio
import pathlib
import time
from datetime import timedelta

import pytest

import keyledger

from conftest import SEND, seed


def test_hold_settle_release_and_the_balance_parts(vault: keyledger.Vault) -> None:
    token, info = seed(vault, credits=100)
    h = vault.hold("acct_42", 30, ttl=timedelta(minutes=5))
    assert (h.state, h.amount, h.charged, h.replayed) == ("active", 30, 0, False)
    assert h.hold_id.startswith("hold_") and h.expires_at - h.created_at == 300_000
    b = vault.balance("acct_42")
    assert (b.credits, b.held, b.available) == (100, 30, 70)
    assert [x.hold_id for x in vault.holds("acct_42")] == [h.hold_id]
    s = vault.settle(h.hold_id, 12)
    assert (s.state, s.charged) == ("settled", 12)
    assert vault.settle(h.hold_id, 12).replayed
    with pytest.raises(keyledger.HoldSettled) as e:
        vault.settle(h.hold_id, 13)
    assert (e.value.status, e.value.code) == (409, "hold_settled")

    g = vault.authorize(token, route=SEND, hold=20, hold_ttl=60)
    assert g.hold_id is not None and g.charged == 0 and g.credits == 68
    assert vault.get_hold(g.hold_id).key_id == info.key_id
    r = vault.release(g.hold_id)
    assert r.state == "released"
    b = vault.balance("acct_42")
    assert (b.credits, b.held, b.available) == (88, 0, 88)
    assert len(vault.audit(action="hold_created")) == 2


def test_bad_holds_are_refused_and_change_nothing(vault: keyledger.Vault) -> None:
    token, _ = seed(vault, credits=10)
    with pytest.raises(keyledger.InsufficientCredits) as e:
        vault.hold("acct_42", 11)
    assert e.value.status == 402
    with pytest.raises(keyledger.InvalidArgument):
        vault.hold("acct_42", 0)
    with pytest.raises(keyledger.InvalidArgument):
        vault.hold("acct_42", 1, ttl=-1)
    with pytest.raises(TypeError):
        vault.hold("acct_42", "5")  # type: ignore[arg-type]
    with pytest.raises(keyledger.InvalidArgument):
        vault.authorize(token, route=SEND, hold=1, cost=1)
    with pytest.raises(keyledger.InvalidArgument):
        vault.release("not-a-hold")
    with pytest.raises(keyledger.HoldNotFound) as nf:
        vault.release("hold_0123456789abcdef01234567")
    assert nf.value.status == 404
    b = vault.balance("acct_42")
    assert (b.credits, b.held, b.available) == (10, 0, 10)


def test_an_expired_hold_is_released_once_across_two_handles(vault_path: pathlib.Path) -> None:
    with keyledger.Vault(vault_path, argon2="insecure-fast") as a, keyledger.Vault(vault_path) as b:
        a.create_account("acct", 50)
        h = a.hold("acct", 40, ttl=0.05)
        assert b.balance("acct").held == 40
        # Past the TTL (the package takes the system clock: wait out the 50 ms).
        time.sleep(0.1)
        assert a.balance("acct").available == 50
        assert b.balance("acct").available == 50
        assert b.get_hold(h.hold_id).state == "expired"
        with pytest.raises(keyledger.HoldSettled):
            b.settle(h.hold_id, 1)
        assert len(a.audit(action="hold_expired")) == 1


def test_the_async_variants_run_holds_off_the_event_loop(vault: keyledger.Vault) -> None:
    token, _ = seed(vault, credits=100)

    async def main() -> None:
        g = await vault.authorize_async(token, route=SEND, hold=10)
        assert g.hold_id is not None
        h = await vault.hold_async("acct_42", 5, idempotency_key="k")
        again = await vault.hold_async("acct_42", 5, idempotency_key="k")
        assert again.hold_id == h.hold_id and again.replayed
        assert (await vault.settle_async(g.hold_id, 3)).charged == 3
        assert (await vault.release_async(h.hold_id)).state == "released"

    asyncio.run(main())
    b = vault.balance("acct_42")
    assert (b.credits, b.held, b.available) == (97, 0, 97)
