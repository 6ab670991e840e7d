#!/usr/bin/env python3
"""The Python hot path: what one cache-hit authorization costs a Python caller.

A release build of the extension installed into the virtualenv ``target/pyhot``
(``maturin build --release`` with its own cargo target dir ``target/pyhot-build``, then the
wheel installed with pip: ``maturin develop`` would install it editable, copying the release
module into ``python/keyledger/`` over the test build that ``scripts/test python`` put
there), then, on a vault in a temp dir with one verified key (every call a cache hit,
nothing debited):

* ``authorize(token, scope=...)`` and ``authorize(token, route=(GET, path))``,
* ``try_authorize`` with the same arguments (the call every async host makes inline first),
* ``try_authorize_http`` (the ASGI gate's call: raw target and header parsing included),
* ``await authorize_async(token, scope=...)`` inside one running asyncio coroutine.

Each figure: the median per call over batches of 50 calls, and p99 of single timed calls
(which includes the clock's own cost, about 50 ns). The target for the hot path from
Python is 0.7 µs per call.

    python3 bench/python_hot.py                 # build (≈ 2 min the first time) and run
    python3 bench/python_hot.py --no-build      # run with the extension already built
    python3 bench/python_hot.py --json target/bench-results/python_hot.json

No test runs this file (pytest does not collect ``bench/``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "target" / "pyhot"
VPY = VENV / "bin" / "python"
BUILD_DIR = ROOT / "target" / "pyhot-build"
WHEELS = ROOT / "target" / "pyhot-wheels"

BATCH = 50
TARGET_US = 0.7
SCOPE = "numbers:read"
ROUTE = ("GET", "/api/v1/numbers/mine")


def build() -> None:
    """The virtualenv with maturin, and the extension built in release mode into it."""
    if not VPY.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
    subprocess.check_call([str(VPY), "-m", "pip", "install", "--quiet", "maturin>=1.9.4,<2"])
    env = dict(
        os.environ,
        VIRTUAL_ENV=str(VENV),
        PATH=f"{VENV / 'bin'}:{os.environ['PATH']}",
        CARGO_TARGET_DIR=str(BUILD_DIR),
        CARGO_INCREMENTAL="0",
    )
    shutil.rmtree(WHEELS, ignore_errors=True)
    subprocess.check_call(
        [str(VENV / "bin" / "maturin"), "build", "--release", "--locked", "--quiet", "--features", "python",
         "--interpreter", str(VPY), "--out", str(WHEELS)],
        cwd=ROOT,
        env=env,
    )
    wheel = next(WHEELS.glob("keyledger-*.whl"))
    subprocess.check_call([str(VPY), "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps", str(wheel)])


def figures(call: Callable[[], Any], calls: int) -> Dict[str, float]:
    """Median per call (batches of BATCH calls) and p99 (single timed calls), in µs."""
    for _ in range(min(calls // 10, 5000)):
        call()
    clock = time.perf_counter_ns
    batches: List[float] = []
    for _ in range(calls // BATCH):
        t = clock()
        for _ in range(BATCH):
            call()
        batches.append((clock() - t) / BATCH)
    singles: List[int] = []
    for _ in range(calls):
        t = clock()
        call()
        singles.append(clock() - t)
    singles.sort()
    return {"median_us": statistics.median(batches) / 1e3, "p99_us": singles[int(len(singles) * 0.99)] / 1e3}


def async_figures(make: Callable[[], Awaitable[Any]], calls: int) -> Dict[str, float]:
    """``figures`` for a coroutine: each call awaited in one running asyncio coroutine."""

    async def run() -> Dict[str, float]:
        for _ in range(min(calls // 10, 5000)):
            await make()
        clock = time.perf_counter_ns
        batches: List[float] = []
        for _ in range(calls // BATCH):
            t = clock()
            for _ in range(BATCH):
                await make()
            batches.append((clock() - t) / BATCH)
        singles: List[int] = []
        for _ in range(calls):
            t = clock()
            await make()
            singles.append(clock() - t)
        singles.sort()
        return {"median_us": statistics.median(batches) / 1e3, "p99_us": singles[int(len(singles) * 0.99)] / 1e3}

    return asyncio.run(run())


def run(calls: int) -> Dict[str, Any]:
    import keyledger

    # The installed release wheel, never the source tree's module (a debug test build).
    assert Path(keyledger.__file__).resolve().is_relative_to(VENV.resolve()), keyledger.__file__

    results: Dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, keyledger.Vault(Path(tmp) / "hot.redb") as v:
        v.create_account("acct_42", 1000)
        v.add_route(*ROUTE, SCOPE)
        token, _ = v.create_key("acct_42", "bench", [SCOPE], prefix="dial_live")
        v.authorize(token, scope=SCOPE)  # verified once (argon2): every call below is a hit
        bearer = f"Bearer {token}".encode()
        target = ROUTE[1].encode()
        cases: Dict[str, Callable[[], Any]] = {
            "authorize(scope)": lambda: v.authorize(token, scope=SCOPE),
            "try_authorize(scope)": lambda: v.try_authorize(token, scope=SCOPE),
            "authorize(route)": lambda: v.authorize(token, route=ROUTE),
            "try_authorize(route)": lambda: v.try_authorize(token, route=ROUTE),
            "try_authorize_http(GET target)": lambda: v.try_authorize_http("GET", target, authorization=bearer),
        }
        for name, call in cases.items():
            assert call() is not None, name  # a hit, decided inline
            results[name] = figures(call, calls)
            print(f"  {name:<34} {results[name]['median_us']:7.3f} µs   p99 {results[name]['p99_us']:7.3f} µs", flush=True)
        name = "await authorize_async(scope)"
        results[name] = async_figures(lambda: v.authorize_async(token, scope=SCOPE), calls)
        print(f"  {name:<34} {results[name]['median_us']:7.3f} µs   p99 {results[name]['p99_us']:7.3f} µs", flush=True)
        assert v.stats()["argon2_runs"] == 1, v.stats()
    return {
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_1min": os.getloadavg()[0],
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        },
        "target_us": TARGET_US,
        "calls": calls,
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-build", action="store_true", help="use the extension already built in target/pyhot")
    parser.add_argument("--calls", type=int, default=200_000, help="timed calls per figure (default 200 000)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if Path(sys.prefix).resolve() != VENV.resolve():
        if not args.no_build:
            build()
        os.execv(str(VPY), [str(VPY), __file__, "--no-build", *sys.argv[1:]])
    print(f"keyledger hot path from Python (release build, {args.calls} calls per figure; target {TARGET_US} µs):")
    out = run(args.calls)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
