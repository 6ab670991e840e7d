"""Python over a PostgreSQL URL: `keyledger.Vault("postgresql://…")` does what a user does.

Run by tests/postgres_hosts/run (from `scripts/test postgres`) with an extension built with
the `postgres` feature, installed into a virtualenv of its own. KEYLEDGER_PGHOSTS_URL is a
fresh database on the throwaway cluster; KEYLEDGER_PGHOSTS_CLI the `keyledger` binary built
with the feature (the second process of the cross-process check). Without them every test
fails: these tests never skip.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import time
from typing import Tuple

import pytest

import keyledger

SEND = ("POST", "/v1/send")
UTC = dt.timezone.utc


def env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        pytest.fail(f"{name} is not set (tests/postgres_hosts/run sets it)")
    return value


@pytest.fixture(scope="module")
def url() -> str:
    return env("KEYLEDGER_PGHOSTS_URL")


@pytest.fixture(scope="module")
def master() -> str:
    return keyledger.generate_master_key()


@pytest.fixture
def vault(url: str, master: str) -> keyledger.Vault:
    v = keyledger.Vault(url, argon2="insecure-fast", master_key=master, actor="py-pg")
    yield v
    v.close()


def seed(v: keyledger.Vault, account: str, credits: int) -> Tuple[str, keyledger.KeyInfo]:
    v.create_account(account, credits)
    try:
        v.add_route(*SEND, "sms:send", cost=1)
    except keyledger.AlreadyExists:
        pass
    return v.create_key(account, "server", ["sms:send"], prefix="dial_live")


def refusal(v: keyledger.Vault, token: str) -> Tuple[int, str]:
    with pytest.raises(keyledger.KeyLedgerError) as e:
        v.authorize(token, route=SEND)
    return e.value.status, e.value.code


def test_the_vault_opens_the_url_and_never_shows_a_password(vault: keyledger.Vault, url: str) -> None:
    # `path` is a str: the URL as given, password masked.
    assert vault.path.startswith("postgresql://") and "kl_hosts_python" in vault.path
    secret_url = url.replace("postgresql://keyledger@", "postgresql://keyledger:hunter2@", 1)
    assert secret_url != url
    with keyledger.Vault(secret_url, argon2="insecure-fast") as v:
        assert "hunter2" not in str(v.path) and "hunter2" not in repr(v)


def test_a_database_that_cannot_be_reached_is_a_storage_error(url: str) -> None:
    base, _, query = url.partition("?")
    missing = base.rsplit("/", 1)[0] + "/kl_no_such_database" + ("?" + query if query else "")
    with pytest.raises(keyledger.StorageError) as e:
        keyledger.Vault(missing, argon2="insecure-fast")
    assert (e.value.status, e.value.code) == (500, "storage")


def test_grant_then_402_when_credits_run_out_and_403_for_a_missing_scope(vault: keyledger.Vault) -> None:
    token, info = seed(vault, "py_credits", 2)
    g = vault.authorize(token, route=SEND)
    assert (g.key_id, g.charged, g.credits) == (info.key_id, 1, 1)
    assert vault.authorize(token, route=SEND).credits == 0
    assert refusal(vault, token) == (402, "insufficient_credits")
    with pytest.raises(keyledger.MissingScope) as e:
        vault.authorize(token, scope="admin:read")
    assert (e.value.status, e.value.code) == (403, "missing_scope")
    status, _headers, body, grant = vault.authorize_http("GET", "/v1/other", authorization=f"Bearer {token}", scope="admin:read")
    assert (status, grant) == (403, None) and b"missing_scope" in body
    assert vault.balance("py_credits").credits == 0


def test_401_after_a_revoke_in_this_process(vault: keyledger.Vault) -> None:
    token, info = seed(vault, "py_revoke", 5)
    assert vault.authorize(token, route=SEND).charged == 1
    vault.revoke_key(info.key_id)
    assert refusal(vault, token) == (401, "invalid_api_key")
    assert vault.balance("py_revoke").credits == 4


def test_debits_are_exact_and_idempotent_and_the_audit_reads_back(vault: keyledger.Vault) -> None:
    vault.create_account("py_debit", 100)
    for i in range(10):
        vault.debit("py_debit", 3, idempotency_key=f"job-{i}")
    vault.debit("py_debit", 3, idempotency_key="job-0")  # a replay charges nothing
    assert vault.balance("py_debit").credits == 70
    with pytest.raises(keyledger.InsufficientCredits):
        vault.debit("py_debit", 71)
    assert vault.balance("py_debit").credits == 70
    debits = vault.audit(account_id="py_debit", action="credits_debited", limit=1000)
    assert len(debits) == 10
    assert all(e.actor == "py-pg" for e in debits)
    seqs = [e.seq for e in vault.audit(account_id="py_debit", limit=1000)]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)


def test_a_signing_secret_round_trips_and_signs_a_granted_request(vault: keyledger.Vault, url: str, master: str) -> None:
    vault.create_account("py_sign", 10)
    try:
        vault.add_route(*SEND, "sms:send", cost=1)
    except keyledger.AlreadyExists:
        pass
    token, info = vault.create_key("py_sign", "signed", ["sms:send"], signing=True)
    secret = token.signing_secret
    assert secret is not None and vault.reveal_signing_secret(info.key_id) == secret
    body = b'{"to":"+15550100"}'
    now = dt.datetime.now(UTC).replace(microsecond=0)
    sig = keyledger.sign_request(secret, "POST", "/v1/send", body, t=now)
    assert vault.authorize(token, route=SEND, signature=sig, body=body, now=now).charged == 1
    with pytest.raises(keyledger.InvalidSignature):
        vault.authorize(token, route=SEND)
    # Another handle with the same master key reads the same secret from the database.
    with keyledger.Vault(url, argon2="insecure-fast", master_key=master) as other:
        assert other.reveal_signing_secret(info.key_id) == secret
    assert vault.audit(action="signing_secret_revealed", key_id=info.key_id)


def test_a_revoke_by_another_process_is_refused_here_once_the_notification_arrives(
    vault: keyledger.Vault, url: str
) -> None:
    token, info = seed(vault, "py_cross", 1000)
    # The cache serves nothing until the change listener has confirmed its position.
    listening_by = time.monotonic() + 10
    while vault.cache_mode != "shared":
        assert time.monotonic() < listening_by, "the change listener did not connect within 10 s"
        time.sleep(0.001)
    assert vault.authorize(token, route=SEND).charged == 1  # the key is now in this process's cache
    out = subprocess.run(
        [env("KEYLEDGER_PGHOSTS_CLI"), "--vault", url, "--json", "key", "revoke", info.key_id],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    deadline = time.monotonic() + 10
    refused = None
    while time.monotonic() < deadline:
        try:
            vault.authorize(token, route=SEND)
        except keyledger.InvalidApiKey as e:
            refused = (e.status, e.code)
            break
        time.sleep(0.001)
    assert refused == (401, "invalid_api_key"), "still granted 10 s after the other process revoked"
