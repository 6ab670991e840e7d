"""Threads and processes on one vault file: exactly N grants for N credits; fork safety."""

from __future__ import annotations

import multiprocessing as mp
import os
import pathlib
import threading
from typing import List

import pytest

import keyledger

N = 200


def spend(v: keyledger.Vault, token: str) -> int:
    granted = 0
    misses = 0
    while misses < 3:
        try:
            v.authorize(token, scope="x", cost=1)
            granted += 1
        except keyledger.InsufficientCredits:
            misses += 1
    return granted


def test_eight_threads_spend_exactly_the_balance(vault: keyledger.Vault) -> None:
    vault.create_account("a", N)
    token, _ = vault.create_key("a", "k", ["x"])
    results: List[int] = []
    lock = threading.Lock()

    def worker() -> None:
        n = spend(vault, token)
        with lock:
            results.append(n)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == N
    assert vault.balance("a").credits == 0


def _child(path: str, token: str, q: "mp.Queue[int]") -> None:
    with keyledger.Vault(path) as v:
        q.put(spend(v, token))


def test_four_spawned_processes_spend_exactly_the_balance(vault_path: pathlib.Path) -> None:
    with keyledger.Vault(vault_path, argon2="insecure-fast") as v:
        v.create_account("a", N)
        token, _ = v.create_key("a", "k", ["x"])
    ctx = mp.get_context("spawn")
    q: "mp.Queue[int]" = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(str(vault_path), token, q)) for _ in range(4)]
    for p in procs:
        p.start()
    total = sum(q.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert total == N
    with keyledger.Vault(vault_path) as v:
        assert v.balance("a").credits == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_vault_opened_before_fork_refuses_in_the_child(vault: keyledger.Vault) -> None:
    vault.create_account("a", 1)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            vault.balance("a")
            msg = b"no error"
        except keyledger.VaultClosed as e:
            msg = b"ok" if "fork" in str(e) else str(e).encode()
        except BaseException as e:  # noqa: BLE001 - report anything to the parent
            msg = repr(e).encode()
        os.write(w, msg)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        answer = f.read()
    os.waitpid(pid, 0)
    assert answer == b"ok"
    # The parent's handle is unaffected, and a vault opened in a child works.
    assert vault.balance("a").credits == 1
