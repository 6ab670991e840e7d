#!/usr/bin/env python3
"""Instructions per hot `authorize`, and where they go, counted by callgrind.

    bench/breakdown.py [--calls N] [--api grant|view] [--json OUT]

Runs target/release/examples/hotloop (build it first: `cargo build --release --example
hotloop`) under `valgrind --tool=callgrind` twice, with 1 call and with 1 + N calls (default
100 000): the difference divided by N is the cost of one hot call, free of the setup (vault,
key, the one argon2). The parts are callgrind's inclusive counts of the functions below,
divided by the calls. `--api view` counts `Vault::authorize_view` (the grant reads the
cached key record: what the C ABI, Python, Node and Elixir use) instead of `Vault::authorize`
(an owned `Grant`: its strings copied). Instruction counts do not depend on the load of the machine, so this
figure can be compared between runs where wall times cannot.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOTLOOP = ROOT / "target" / "release" / "examples" / "hotloop"

# (label, regex on the callgrind_annotate function column); the first line matching is used.
PARTS = [
    ("authorize (all)", r"keyledger::vault::authorize::<impl keyledger::vault::Inner>::authorize \["),
    ("authenticate: format, key, secret, key state", r"<impl keyledger::vault::Inner>::authenticate \["),
    ("token::parse (format, checksum)", r"keyledger::token::parse$"),
    ("keyed hash of the secret (BLAKE3)", r"blake3::keyed_hash \["),
    ("key probe (per-thread copy, generation slot)", r"keyledger::cache::with_local$"),
    ("route table (generation slot, per-thread copy)", r"<impl keyledger::vault::Inner>::router$"),
    ("Router::find", r"keyledger::policy::router::Router::find$"),
    ("scope check", r"keyledger::policy::scopes::scope_grants \["),
    ("account view", r"<impl keyledger::vault::Inner>::account_view$"),
    ("credits step (a grant of the cached record; no write)", r"<impl keyledger::vault::Inner>::charge \["),
    ("malloc", r"malloc\.c:malloc \["),
    ("free (the owned Grant, dropped by the caller; none with --api view)", r"malloc\.c:free \["),
]


def run(calls: int, out: Path, api: str) -> int:
    p = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", str(HOTLOOP), str(calls), "1",
         api],
        capture_output=True, text=True, check=True)
    m = re.search(r"Collected : (\d+)", p.stderr)
    if not m:
        sys.exit("callgrind printed no instruction count:\n" + p.stderr)
    return int(m.group(1))


def annotate(out: Path) -> list[tuple[int, str]]:
    ann = subprocess.run(["callgrind_annotate", "--inclusive=yes", str(out)],
                         capture_output=True, text=True, check=True).stdout
    lines = []
    for line in ann.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)", line)
        if m:
            lines.append((int(m.group(1).replace(",", "")), m.group(2)))
    return lines


def first(lines: list[tuple[int, str]], pattern: str) -> int | None:
    return next((n for n, f in lines if re.search(pattern, f)), None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--api", choices=["grant", "view"], default="grant")
    ap.add_argument("--json")
    args = ap.parse_args()
    if not HOTLOOP.exists():
        sys.exit(f"{HOTLOOP} is missing: cargo build --release --example hotloop")
    with tempfile.TemporaryDirectory() as d:
        base_out, full_out = Path(d) / "base.out", Path(d) / "full.out"
        base = run(1, base_out, args.api)
        full = run(1 + args.calls, full_out, args.api)
        base_lines, full_lines = annotate(base_out), annotate(full_out)
    parts = []
    for label, pattern in PARTS:
        # The 1-call run's count (setup and the cold first call) taken off.
        hit = first(full_lines, pattern)
        if hit is not None:
            hit -= first(base_lines, pattern) or 0
        parts.append({"part": label, "instructions": None if hit is None else round(hit / args.calls)})
    result = {
        "calls": args.calls,
        "api": args.api,
        "instructions_per_call": round((full - base) / args.calls),
        "parts": parts,
        "note": "inclusive counts; parts overlap (authenticate contains token::parse, the keyed "
                "hash and the key probe)",
    }
    text = json.dumps(result)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
