"""Low-balance alerts, the event log, on_event callbacks and usage reports, on a real vault file."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List

import pytest

import keyledger
from conftest import SEND, seed


def wait_for(cond: Any, timeout: float = 20.0) -> None:
    """Poll a condition (a deadline for a background thread, not a timing measurement)."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_debit_crossing_a_threshold_writes_a_balance_below_event(vault: keyledger.Vault) -> None:
    token, _ = seed(vault, credits=3)
    assert vault.set_alert("acct_42", 2) == [2]
    assert vault.alerts("acct_42") == [2]
    vault.authorize(token, route=SEND)  # 3 -> 2: not below
    assert vault.events() == []
    vault.authorize(token, route=SEND)  # 2 -> 1: below 2
    events = vault.events()
    assert [e["type"] for e in events] == ["balance_below"]
    assert events[0]["seq"] == 1
    assert events[0]["data"] == {"threshold": 2, "credits": 1, "previous": 2}
    assert vault.events(after=1) == []
    assert vault.remove_alert("acct_42", 2) is True
    assert vault.remove_alert("acct_42", 2) is False
    with pytest.raises(keyledger.InvalidArgument):
        vault.set_alert("acct_42", 0)
    with pytest.raises(keyledger.NotFound):
        vault.set_alert("nobody", 5)
    with pytest.raises(keyledger.InvalidArgument):
        vault.events(limit=0)


def test_on_event_delivers_in_order_acks_and_survives_a_raising_callback(vault: keyledger.Vault) -> None:
    seed(vault, credits=100)
    vault.set_alert("acct_42", 50)
    vault.set_alert("acct_42", 10)
    got: List[Dict[str, Any]] = []
    calls = {"n": 0}
    lock = threading.Lock()

    def callback(event: Dict[str, Any]) -> None:
        with lock:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("the first delivery fails")
            got.append(event)

    unraisable: List[Any] = []
    import sys

    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda u: unraisable.append(u.exc_value)
    try:
        sub = vault.on_event(callback, consumer="app", poll_interval=0.01)
        assert sub.consumer == "app"
        vault.debit("acct_42", 60)  # below 50
        vault.debit("acct_42", 35)  # below 10
        wait_for(lambda: len(got) == 2)
        sub.stop()
    finally:
        sys.unraisablehook = old_hook
    # The failed first delivery was offered again: at least once, in order.
    assert [e["data"]["threshold"] for e in got] == [50, 10]
    assert any(isinstance(e, RuntimeError) for e in unraisable)
    wait_for(lambda: vault.event_cursor("app") == 2)
    assert sub.stopped


def test_a_second_handle_resumes_from_the_shared_cursor(vault: keyledger.Vault, vault_path: Any) -> None:
    seed(vault, credits=100)
    vault.set_alert("acct_42", 90)
    vault.debit("acct_42", 20)
    assert vault.ack_events("worker", 1) == 1
    with keyledger.Vault(vault_path) as other:
        assert other.event_cursor("worker") == 1
        assert other.ack_events("worker", 0) == 1


def test_revocations_and_expiry_notices_are_events(vault: keyledger.Vault) -> None:
    _, info = seed(vault)
    vault.revoke_key(info.key_id)
    assert [e["type"] for e in vault.events()] == ["key_revoked"]
    soon = datetime.now(timezone.utc) + timedelta(hours=1)
    _, k2 = vault.create_key("acct_42", "soon", ["sms:send"], expires_at=soon)
    vault.set_expiry_notice(timedelta(days=1))
    assert vault.check_expiring_keys() == 1
    assert vault.check_expiring_keys() == 0
    last = vault.events(after=1)
    assert last[0]["type"] == "key_expiring" and last[0]["key_id"] == k2.key_id
    vault.set_expiry_notice(None)


def test_usage_report_by_key_route_and_day(vault: keyledger.Vault) -> None:
    token, info = seed(vault, credits=10)
    for _ in range(3):
        vault.authorize(token, route=SEND)
    vault.flush()
    now = datetime.now(timezone.utc)
    since, until = now - timedelta(days=1), now + timedelta(hours=1)
    assert vault.usage_report("acct_42", since, until, by="key") == [
        {"group": info.key_id, "charged": 3, "calls": 3, "refusals": 0}
    ]
    assert vault.usage_report("acct_42", since, until, by="route") == [
        {"group": "POST /api/v1/messaging/send", "charged": 3, "calls": 3, "refusals": 0}
    ]
    (day,) = vault.usage_report("acct_42", since, until, by="day")
    assert day["calls"] == 3
    with pytest.raises(keyledger.InvalidArgument):
        vault.usage_report("acct_42", since, until, by="hour")  # type: ignore[arg-type]
    m = vault.metrics()
    assert m["grants"] == 3 and m["debits"] == 3
    assert "keyledger_grants_total 3" in vault.metrics_prometheus()
