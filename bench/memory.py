"""Benchmark: peak RSS of the process that syncs an account, at N and at 10x N transactions.

A user's backfill as they run it: `fcsync track ACCOUNT --inline`, then the measured
`fcsync refresh ACCOUNT --inline --wait` (refresh, poll, then every page of the first, full sync)
in a child process against the emulator, on a fresh SQLite file and a fresh PostgreSQL
database. The peak RSS is the kernel's count for that child alone (wait4). Targets: the large
account's peak <= 200 MB and within 10% of the small one's. Prints one JSON object last; exits 1
if a sync failed or stored a different number of rows than Stripe holds.

    .venv/bin/python -m bench memory [--quick] [--small N] [--large N] [--databases LIST]

Full: 100,000 vs 1,000,000 rows (minutes per database); --quick: 20,000 vs 200,000 on SQLite.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from bench._support import fcsync_env, postgres_database, run_facts, run_fcsync
from emulator import Emulator, EmulatorConfig
from models import Transaction
from worker.db import make_engine, upgrade_database

PEAK_LIMIT_MB = 200.0
GROWTH_LIMIT = 1.10


@contextmanager
def fresh_database(kind: str, label: str) -> Iterator[str]:
    """An empty, migrated database of `kind` for one case; gone afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="fcsync-bench-memory-") as tmp:
            url = f"sqlite:///{Path(tmp) / 'fcsync.db'}"
            upgrade_database(url)
            yield url
    else:
        with postgres_database(f"memory_{label}") as url:
            upgrade_database(url)
            yield url


def stored_rows(db_url: str, account_id: str) -> int:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            count = select(func.count()).select_from(Transaction)
            return int(conn.scalar(count.where(Transaction.account_id == account_id)) or 0)
    finally:
        engine.dispose()


def measure(emu: Emulator, kind: str, size: int) -> dict[str, Any]:
    """Back one account of `size` rows up into a fresh database; the sync's peak RSS."""
    control = emu.control
    account_id = control.create_account(transactions=size, refresh_delay_s=0, refresh_cooldown_s=0)[
        "id"
    ]
    with fresh_database(kind, str(size)) as db_url:
        env = fcsync_env(emu.base_url, db_url)
        track = run_fcsync(["track", account_id, "--no-subscribe", "--inline"], env)
        if track.exit_code != 0:
            raise RuntimeError(f"track failed ({track.exit_code}):\n{track.output[-2000:]}")
        synced = run_fcsync(["refresh", account_id, "--inline", "--wait"], env)
        if synced.exit_code != 0:
            raise RuntimeError(f"sync failed ({synced.exit_code}):\n{synced.output[-2000:]}")
        stored = stored_rows(db_url, account_id)
    with emu.bank.lock:
        at_stripe = len(emu.bank.accounts[account_id].ledger)
    control.delete_account(account_id)
    case = {
        "transactions": at_stripe,
        "stored": stored,
        "db_equals_truth_count": stored == at_stripe,
        "peak_rss_mb": round(synced.peak_rss_mb, 1),
        # The same command's floor: imports, settings, one account read, no rows.
        "track_peak_rss_mb": round(track.peak_rss_mb, 1),
        "sync_s": round(synced.seconds, 1),
        "rows_per_s": round(at_stripe / synced.seconds),
    }
    # A long run shows each case as it ends (the JSON comes last).
    print(f"{kind} {size:,}: {json.dumps(case)}", file=sys.stderr, flush=True)
    return case


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 vs 200,000 rows, SQLite")
    parser.add_argument("--small", type=int)
    parser.add_argument("--large", type=int)
    parser.add_argument("--databases", help="comma-separated: sqlite,postgresql")
    args = parser.parse_args()
    started = time.monotonic()
    small = args.small or (20_000 if args.quick else 100_000)
    large = args.large or (200_000 if args.quick else 1_000_000)
    databases = (args.databases or ("sqlite" if args.quick else "sqlite,postgresql")).split(",")
    report: dict[str, Any] = {**run_facts(), "small": small, "large": large, "databases": {}}
    targets: dict[str, Any] = {}
    ok = True
    with Emulator(EmulatorConfig(seed=13)) as emu:
        for kind in databases:
            try:
                cases = {"small": measure(emu, kind, small), "large": measure(emu, kind, large)}
            except OperationalError as exc:
                print(f"skipping {kind}: database unreachable ({exc.orig})", file=sys.stderr)
                report["databases"][kind] = {"skipped": "database unreachable"}
                continue
            peak = cases["large"]["peak_rss_mb"]
            growth = peak / cases["small"]["peak_rss_mb"]
            ok = ok and all(c["db_equals_truth_count"] for c in cases.values())
            report["databases"][kind] = {**cases, "large_over_small": round(growth, 3)}
            targets[f"{kind}_peak_rss_mb"] = {
                "target": f"<= {PEAK_LIMIT_MB:g} MB at {large:,} rows",
                "value": peak,
                "holds": peak <= PEAK_LIMIT_MB,
            }
            targets[f"{kind}_large_over_small"] = {
                "target": f"<= {GROWTH_LIMIT:g} ({large:,} vs {small:,} rows)",
                "value": round(growth, 3),
                "holds": growth <= GROWTH_LIMIT,
            }
    report["targets"] = targets
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
