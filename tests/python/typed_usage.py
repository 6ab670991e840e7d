"""Checked by `mypy --strict` in the test command: the stubs describe real usage."""

from __future__ import annotations

import datetime as dt
from typing import Dict, List, Optional, Tuple

import keyledger
from keyledger.asgi import KeyLedgerMiddleware


def gate(vault: keyledger.Vault, token: str) -> Tuple[int, Dict[str, object]]:
    try:
        grant: keyledger.Grant = vault.authorize(token, route=("POST", "/api/v1/messaging/send"))
    except keyledger.KeyLedgerError as refusal:
        return refusal.status, refusal.body
    credits: int = grant.credits
    scopes: Tuple[str, ...] = grant.scopes
    return 200, {"credits": credits, "scopes": list(scopes)}


def manage(path: str) -> Optional[dt.datetime]:
    with keyledger.Vault(path, argon2="insecure-fast") as vault:
        vault.create_account("acct_42", 100, metadata={"plan": "pro"})
        token, info = vault.create_key("acct_42", "srv", ["sms:send"], prefix="dial_live", expires_in=dt.timedelta(days=30))
        keys: List[keyledger.KeyInfo] = vault.list_keys("acct_42")
        new_token, _ = vault.rotate_key(info.key_id, grace=60)
        entries: List[keyledger.AuditEntry] = vault.audit(key_id=info.key_id, limit=10)
        assert keyledger.looks_like_key(new_token) and keys and entries
        balance: keyledger.Balance = vault.top_up("acct_42", 5, reference="inv-1")
        assert balance.credits > 0 and keyledger.redact(token)
        return info.expires_at


def middleware(app: object, vault: keyledger.Vault) -> KeyLedgerMiddleware:
    return KeyLedgerMiddleware(app, vault, cost=1)  # type: ignore[arg-type]
