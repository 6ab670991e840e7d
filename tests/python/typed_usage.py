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


def signing_and_limits(vault: keyledger.Vault) -> int:
    token, info = vault.create_key("acct_42", "signed", ["sms:send"], signing=True)
    secret: Optional[str] = token.signing_secret
    assert secret is not None and vault.reveal_signing_secret(info.key_id) == secret
    header: str = keyledger.sign_request(secret, "POST", "/v1/send", b"{}")
    grant = vault.authorize(token, route=("POST", "/v1/send"), signature=header, body=b"{}", limits=["burst"], limit_cost=2)
    lim: keyledger.RateLimit = vault.set_ratelimit("burst", 10, dt.timedelta(seconds=1), key_id=info.key_id)
    acct: keyledger.Account = vault.set_refill("acct_42", 100, "monthly", day=1)
    assert acct.refill is not None and lim.duration.total_seconds() == 1
    moved: int = vault.rekey(keyledger.generate_master_key())
    return grant.credits + moved


def raw_gate(vault: keyledger.Vault, token: str, raw_target: str) -> int:
    try:
        grant = vault.authorize_request(token, "GET", raw_target, case_insensitive=False)
    except keyledger.AmbiguousPath as refusal:
        return refusal.status
    rule: Optional[keyledger.RouteRule] = vault.match_request("HEAD", raw_target, case_insensitive=True)
    assert rule is None or rule.cost >= 0
    return grant.charged


async def non_blocking(vault: keyledger.Vault, token: str) -> int:
    inline: Optional[keyledger.Grant] = vault.try_authorize(token, scope="numbers:read")
    grant = inline if inline is not None else await vault.authorize_async(token, scope="numbers:read", cost=1)
    out = vault.try_authorize_http("GET", "/x", authorization=f"Bearer {token}")
    status, headers, body, maybe = out if out is not None else await vault.authorize_http_async("GET", b"/x")
    return grant.credits + status + len(headers) + len(body) + (maybe.credits if maybe else 0)
