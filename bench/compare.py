#!/usr/bin/env python3
"""keyledger side by side with the tools a Python backend would otherwise use.

One script, one run, one machine: the same workload through

  * keyledger's Python module (built here with `maturin build --release`),
  * keyshield (argon2-hashed keys; its CachedApiKeyService, in-memory repository — the
    fastest configuration it offers; the random response delay set to 0),
  * djangorestframework-api-key (Django + SQLite, `APIKey.objects.is_valid`),
  * a hand-written sqlite3 gate (WAL, synchronous=FULL, sha256 of the key, the debit an
    `UPDATE … SET credits = credits - ? WHERE id = ? AND credits >= ?`).

Measured: hot verify (median from batches of 50 calls, p99 from single timed calls), cold
verify (first verification of a key in a fresh process-level object), durable debit
throughput at 1, 8 and 16 threads (where the peer has credits at all; median of 3 rounds,
the systems interleaved). Ratios are
peer / keyledger (higher = keyledger faster).

    python3 bench/compare.py            # sets up target/benchenv, builds, runs, prints
    python3 bench/compare.py --json out.json

The peers come from bench/requirements.txt, installed into target/benchenv by this
script's own set-up; the keyledger package itself never depends on them.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "target" / "benchenv"
VPY = VENV / "bin" / "python"

HOT_CALLS = 30_000
BATCH = 50
DEBIT_SECONDS = 1.0
DEBIT_ROUNDS = 3
THREADS = (1, 8, 16)
COLD_KEYS = 3

# name → (one durable debit, credits left): the systems with credits. Their debit runs
# are interleaved (round after round, system after system) so a disk that speeds up or
# slows down during the run (a shared machine) weighs on every system alike.
DEBITS: dict = {}


# --------------------------------------------------------------------------- set-up


def setup() -> None:
    """Create the venv, install the peers, build and install keyledger, re-exec inside."""
    if not VPY.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
    subprocess.check_call(
        [str(VPY), "-m", "pip", "install", "--quiet", "-r", str(ROOT / "bench" / "requirements.txt")]
    )
    wheels = ROOT / "target" / "bench-wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    env = dict(os.environ, VIRTUAL_ENV=str(VENV), PATH=f"{VENV / 'bin'}:{os.environ['PATH']}")
    # `maturin build` (not `develop`): the wheel goes to target/, the source tree is untouched.
    subprocess.check_call(
        [str(VENV / "bin" / "maturin"), "build", "--release", "--quiet", "--locked",
         "--interpreter", str(VPY), "--out", str(wheels)],
        cwd=ROOT,
        env=env,
    )
    wheel = next(wheels.glob("keyledger-*.whl"))
    subprocess.check_call(
        [str(VPY), "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps", str(wheel)]
    )


# --------------------------------------------------------------------------- timing


def hot_figures(call, n: int = HOT_CALLS) -> dict:
    """Median per call (from batches of BATCH calls) and p99 (single timed calls), in µs."""
    for _ in range(min(n // 10, 2000)):
        call()
    clock = time.perf_counter_ns
    batches = []
    for _ in range(n // BATCH):
        t = clock()
        for _ in range(BATCH):
            call()
        batches.append((clock() - t) / BATCH)
    singles = []
    for _ in range(n):
        t = clock()
        call()
        singles.append(clock() - t)
    singles.sort()
    return {
        "median_us": statistics.median(batches) / 1e3,
        "p99_us": singles[int(len(singles) * 0.99)] / 1e3,
    }


def async_hot_figures(loop, make_coro, n: int = HOT_CALLS) -> dict:
    """hot_figures for an async API: every call is awaited inside one running coroutine."""

    async def run():
        clock = time.perf_counter_ns
        for _ in range(min(n // 10, 2000)):
            await make_coro()
        batches = []
        for _ in range(n // BATCH):
            t = clock()
            for _ in range(BATCH):
                await make_coro()
            batches.append((clock() - t) / BATCH)
        singles = []
        for _ in range(n):
            t = clock()
            await make_coro()
            singles.append(clock() - t)
        singles.sort()
        return {
            "median_us": statistics.median(batches) / 1e3,
            "p99_us": singles[int(len(singles) * 0.99)] / 1e3,
        }

    return loop.run_until_complete(run())


def throughput(worker_factory, threads: int, seconds: float = DEBIT_SECONDS) -> tuple[float, int]:
    """Calls per second of `threads` threads each running its own worker until time's up."""
    stop = threading.Event()
    counts = [0] * threads
    barrier = threading.Barrier(threads + 1)

    def run(i: int) -> None:
        work = worker_factory()
        barrier.wait()
        n = 0
        while not stop.is_set():
            work()
            n += 1
        counts[i] = n

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - start
    total = sum(counts)
    return total / elapsed, total


# --------------------------------------------------------------------------- keyledger

HOT_ROUTE = ("GET", "/api/v1/numbers/mine")
SEND_ROUTE = ("POST", "/api/v1/messaging/send")
CREDITS = 10**12


def bench_keyledger(tmp: Path) -> dict:
    import keyledger

    path = tmp / "kl.redb"
    v = keyledger.Vault(str(path))
    v.create_account("acct_42", CREDITS)
    v.add_route("GET", "/api/v1/numbers/mine", "numbers:read", 0)
    v.add_route("POST", "/api/v1/messaging/send", "sms:send", 1)
    tok, _ = v.create_key("acct_42", "bench", ["numbers:read", "sms:send"], prefix="dial_live")
    token = str(tok)
    v.authorize(token, route=HOT_ROUTE)  # its one argon2
    out = {"name": "keyledger", "hot": hot_figures(lambda: v.authorize(token, route=HOT_ROUTE))}
    # Cold: a fresh Vault (a new worker's caches) and the first authorize of a key.
    colds = []
    for _ in range(COLD_KEYS):
        t2, _ = v.create_key("acct_42", "cold", ["numbers:read"], prefix="dial_live")
        fresh = keyledger.Vault(str(path))
        t = time.perf_counter_ns()
        fresh.authorize(str(t2), route=HOT_ROUTE)
        colds.append((time.perf_counter_ns() - t) / 1e3)
        fresh.close()
    out["cold_us"] = statistics.median(colds)
    DEBITS["keyledger"] = (
        lambda: v.authorize(token, route=SEND_ROUTE),
        lambda: v.balance("acct_42").credits,
    )
    out["version"] = getattr(keyledger, "__version__", "dev")
    return out


# --------------------------------------------------------------------------- sqlite3 gate


class SqliteGate:
    """The gate a careful developer writes by hand: sha256 of the key, one indexed lookup,
    a scope check, and a guarded UPDATE for the debit. One connection per thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.local = threading.local()

    def conn(self):
        import sqlite3

        c = getattr(self.local, "c", None)
        if c is None:
            c = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=FULL")
            c.execute("PRAGMA busy_timeout=30000")
            self.local.c = c
        return c

    def init(self) -> str:
        c = self.conn()
        c.execute("CREATE TABLE accounts (id TEXT PRIMARY KEY, credits INTEGER NOT NULL)")
        c.execute(
            "CREATE TABLE keys (hash TEXT PRIMARY KEY, account_id TEXT NOT NULL, scopes TEXT NOT NULL)"
        )
        c.execute("INSERT INTO accounts VALUES ('acct_42', ?)", (CREDITS,))
        return self.new_key()

    def new_key(self) -> str:
        token = "sk_live_" + secrets.token_urlsafe(32)
        h = hashlib.sha256(token.encode()).hexdigest()
        self.conn().execute(
            "INSERT INTO keys VALUES (?, 'acct_42', 'numbers:read sms:send')", (h,)
        )
        return token

    def verify(self, token: str, scope: str) -> str:
        h = hashlib.sha256(token.encode()).hexdigest()
        row = self.conn().execute(
            "SELECT account_id, scopes FROM keys WHERE hash = ?", (h,)
        ).fetchone()
        if row is None or scope not in row[1].split():
            raise PermissionError("invalid key")
        return row[0]

    def debit(self, token: str, scope: str, cost: int) -> None:
        account = self.verify(token, scope)
        cur = self.conn().execute(
            "UPDATE accounts SET credits = credits - ? WHERE id = ? AND credits >= ?",
            (cost, account, cost),
        )
        if cur.rowcount != 1:
            raise PermissionError("insufficient credits")

    def credits(self) -> int:
        return self.conn().execute("SELECT credits FROM accounts WHERE id='acct_42'").fetchone()[0]


def bench_sqlite(tmp: Path) -> dict:
    gate = SqliteGate(tmp / "gate.sqlite")
    token = gate.init()
    out = {
        "name": "sqlite3 gate",
        "hot": hot_figures(lambda: gate.verify(token, "numbers:read")),
    }
    colds = []
    for _ in range(COLD_KEYS):
        t2 = gate.new_key()
        fresh = SqliteGate(gate.path)  # a new connection, as a fresh worker would open
        t = time.perf_counter_ns()
        fresh.verify(t2, "numbers:read")
        colds.append((time.perf_counter_ns() - t) / 1e3)
        fresh.conn().close()
    out["cold_us"] = statistics.median(colds)
    DEBITS["sqlite3 gate"] = (lambda: gate.debit(token, "sms:send", 1), gate.credits)
    out["version"] = "sqlite " + __import__("sqlite3").sqlite_version
    return out


# --------------------------------------------------------------------------- keyshield


def bench_keyshield(tmp: Path) -> dict:
    import asyncio
    import importlib.metadata

    from keyshield.hasher.argon2 import Argon2ApiKeyHasher
    from keyshield.repositories.in_memory import InMemoryApiKeyRepository
    from keyshield.services.cached import CachedApiKeyService

    loop = asyncio.new_event_loop()
    repo = InMemoryApiKeyRepository()
    hasher = Argon2ApiKeyHasher(pepper="bench-pepper-" + secrets.token_hex(8))

    def service():
        return CachedApiKeyService(repo=repo, hasher=hasher, min_delay=0.0, max_delay=0.0)

    svc = service()
    _, key = loop.run_until_complete(svc.create(name="bench", scopes=["numbers:read", "sms:send"]))
    loop.run_until_complete(svc.verify_key(key, ["numbers:read"]))  # fills its cache
    out = {
        "name": "keyshield",
        "hot": async_hot_figures(loop, lambda: svc.verify_key(key, ["numbers:read"])),
    }
    colds = []
    for _ in range(COLD_KEYS):
        _, k2 = loop.run_until_complete(svc.create(name="cold", scopes=["numbers:read"]))
        fresh = service()  # a new worker: empty cache, same store
        t = time.perf_counter_ns()
        loop.run_until_complete(fresh.verify_key(k2, ["numbers:read"]))
        colds.append((time.perf_counter_ns() - t) / 1e3)
    out["cold_us"] = statistics.median(colds)
    out["debit_per_s"] = None  # keyshield has no credits
    out["version"] = importlib.metadata.version("keyshield")
    loop.close()
    return out


# --------------------------------------------------------------------------- DRF API key


def bench_drf(tmp: Path) -> dict:
    import importlib.metadata

    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-" + secrets.token_hex(16),
        USE_TZ=True,
        DATABASES={
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp / "drf.sqlite3")}
        },
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "rest_framework",
            "rest_framework_api_key",
        ],
    )
    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from rest_framework_api_key.models import APIKey

    call_command("migrate", verbosity=0)
    _, key = APIKey.objects.create_key(name="bench")
    assert APIKey.objects.is_valid(key)
    out = {"name": "djangorestframework-api-key", "hot": hot_figures(lambda: APIKey.objects.is_valid(key))}
    colds = []
    for _ in range(COLD_KEYS):
        _, k2 = APIKey.objects.create_key(name="cold")
        connection.close()  # a new worker's first request opens its connection
        t = time.perf_counter_ns()
        assert APIKey.objects.is_valid(k2)
        colds.append((time.perf_counter_ns() - t) / 1e3)
    out["cold_us"] = statistics.median(colds)
    out["debit_per_s"] = None  # no credits in djangorestframework-api-key
    out["version"] = importlib.metadata.version("djangorestframework-api-key")
    return out


def run_debits(results: list[dict]) -> None:
    """Durable debit throughput of every system with credits, interleaved; the median of
    DEBIT_ROUNDS runs per (system, threads); totals checked exact."""
    rates = {name: {n: [] for n in THREADS} for name in DEBITS}
    calls = {name: 0 for name in DEBITS}
    before = {name: credits() for name, (_, credits) in DEBITS.items()}
    names = list(DEBITS)
    for rnd in range(DEBIT_ROUNDS):
        for n in THREADS:
            for name in names if rnd % 2 == 0 else reversed(names):
                call = DEBITS[name][0]
                rate, total = throughput(lambda: call, n)
                rates[name][n].append(rate)
                calls[name] += total
    for r in results:
        name = r["name"]
        if name not in DEBITS:
            continue
        left = DEBITS[name][1]()
        assert before[name] - left == calls[name], f"{name}: {before[name] - left} debited for {calls[name]} calls"
        r["debit_per_s"] = {str(n): statistics.median(v) for n, v in rates[name].items()}
        r["debit_rounds"] = {str(n): v for n, v in rates[name].items()}
        r["debit_exact"] = True


# --------------------------------------------------------------------------- report


def ratio(peer, ours, higher_is_better=False):
    if peer is None or ours is None or ours == 0 or peer == 0:
        return None
    return ours / peer if higher_is_better else peer / ours


def fmt(x, unit=""):
    if x is None:
        return "n/a"
    if x >= 100:
        return f"{x:,.0f}{unit}"
    return f"{x:.2f}{unit}"


def print_table(results: list[dict]) -> None:
    kl = results[0]
    cols = ["hot median µs", "hot p99 µs", "cold µs"] + [f"debit/s {n}t" for n in THREADS]
    print()
    print(f"{'':30}" + "".join(f"{c:>22}" for c in cols))
    for r in results:
        cells = []
        pairs = [
            (r["hot"]["median_us"], kl["hot"]["median_us"], False),
            (r["hot"]["p99_us"], kl["hot"]["p99_us"], False),
            (r["cold_us"], kl["cold_us"], False),
        ]
        for n in THREADS:
            d = r["debit_per_s"]
            pairs.append((d[str(n)] if d else None, kl["debit_per_s"][str(n)], True))
        for peer, ours, hib in pairs:
            if r is kl:
                cells.append(fmt(peer))
            else:
                q = ratio(peer, ours, hib)
                cells.append(fmt(peer) + (f" ({q:.1f}×)" if q else ""))
        print(f"{r['name']:30}" + "".join(f"{c:>22}" for c in cells))
    print("\n(×) = how many times keyledger is faster on that column (peer/keyledger for times,")
    print("keyledger/peer for throughput); n/a = the peer has no credits to debit.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--no-setup", action="store_true", help="skip the venv/peer/wheel set-up")
    ap.add_argument("--in-venv", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.in_venv:
        if not args.no_setup:
            setup()
        cmd = [str(VPY), str(Path(__file__).resolve()), "--in-venv"]
        if args.json:
            cmd += ["--json", str(Path(args.json).resolve())]
        os.chdir(tempfile.gettempdir())  # never import keyledger from the source tree
        sys.exit(subprocess.call(cmd))
    results = []
    with tempfile.TemporaryDirectory(prefix="kl-compare-") as d:
        tmp = Path(d)
        for fn in (bench_keyledger, bench_sqlite, bench_keyshield, bench_drf):
            print(f"running {fn.__name__[6:]} …", file=sys.stderr, flush=True)
            results.append(fn(tmp))
        print("running durable debits (interleaved) …", file=sys.stderr, flush=True)
        run_debits(results)
        DEBITS.clear()
    doc = {
        "machine": {
            "cores": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        },
        "config": {
            "hot_calls": HOT_CALLS,
            "batch": BATCH,
            "debit_seconds": DEBIT_SECONDS,
            "debit_rounds": DEBIT_ROUNDS,
        },
        "results": results,
    }
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
