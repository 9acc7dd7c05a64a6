"""Benchmark: Stripe requests of an incremental sync after a refresh that changes k of N rows.

Per N, one emulator account is backfilled as a user does it (`fcsync track ACCOUNT --inline`,
then `fcsync refresh ACCOUNT --inline --wait`); then, for each k, the emulator's next refresh
changes exactly k rows (`next_refresh_changes`: pending rows settle, new rows arrive) and the
same refresh command runs again in a child process. The emulator's /stats count the requests
it makes: an account read, the refresh POST, a poll read, and the transaction list pages.
Targets: list pages = ceil(k/100), all requests <= ceil(k/100) + 3, the same at every N.
Prints one JSON object last; exits 1 if a command failed or the database differs from the
emulator's truth afterwards (every stored field of every row).

    .venv/bin/python -m bench incremental [--quick] [--sizes 10000,200000] [--changes 1,150,1000]

Full: N = 10,000 and 200,000; --quick: N = 1,000 and 20,000.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from bench._support import fcsync_env, run_facts, run_fcsync
from emulator import Emulator, EmulatorConfig, EmulatorControl
from worker.db import make_engine, upgrade_database
from worker.playground.truth import row_problems
from worker.reports import stored_transactions

LIST_ROUTE = "GET /v1/financial_connections/transactions"
# What a refresh costs besides the pages: the account read that gates it, the POST, one poll.
CONSTANT = 3
PAGE = 100


def requests_by_route(control: EmulatorControl) -> Counter[str]:
    return Counter(control.stats()["requests"])


def refresh_and_sync(
    control: EmulatorControl, account_id: str, env: dict[str, str]
) -> Counter[str]:
    """`fcsync refresh ACCOUNT --inline --wait`; the requests it made, by route."""
    before = requests_by_route(control)
    done = run_fcsync(["refresh", account_id, "--inline", "--wait"], env)
    if done.exit_code != 0:
        raise RuntimeError(f"refresh failed ({done.exit_code}):\n{done.output[-2000:]}")
    return requests_by_route(control) - before


def db_problems(db_url: str, control: EmulatorControl, account_id: str) -> list[str]:
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            stored = len(stored_transactions(session, account_id))
            return row_problems(session, control, account_id) + (
                [] if stored else [f"{account_id}: nothing stored"]
            )
    finally:
        engine.dispose()


def measure(emu: Emulator, size: int, changes: list[int], workdir: Path) -> dict[str, Any]:
    control = emu.control
    account_id = control.create_account(transactions=size, refresh_delay_s=0, refresh_cooldown_s=0)[
        "id"
    ]
    db_url = f"sqlite:///{workdir / f'fcsync-{size}.db'}"
    upgrade_database(db_url)
    env = fcsync_env(emu.base_url, db_url)
    track = run_fcsync(["track", account_id, "--no-subscribe", "--inline"], env)
    if track.exit_code != 0:
        raise RuntimeError(f"track failed ({track.exit_code}):\n{track.output[-2000:]}")
    backfill = refresh_and_sync(control, account_id, env)
    result: dict[str, Any] = {
        "transactions": size,
        "backfill_requests": sum(backfill.values()),
        "backfill_list_pages": backfill[LIST_ROUTE],
        "changes": {},
    }
    for k in changes:
        control.update_account(account_id, next_refresh_changes=k)
        made = refresh_and_sync(control, account_id, env)
        result["changes"][str(k)] = {
            "requests": sum(made.values()),
            "list_pages": made[LIST_ROUTE],
            "by_route": dict(sorted(made.items())),
            "problems": db_problems(db_url, control, account_id),
        }
    control.delete_account(account_id)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 1,000 and 20,000")
    parser.add_argument("--sizes", help="comma-separated N values")
    parser.add_argument("--changes", default="1,150,1000", help="comma-separated k values")
    args = parser.parse_args()
    started = time.monotonic()
    default_sizes = "1000,20000" if args.quick else "10000,200000"
    sizes = [int(n) for n in (args.sizes or default_sizes).split(",")]
    changes = [int(k) for k in args.changes.split(",")]
    report: dict[str, Any] = {
        **run_facts(),
        "database": "sqlite",
        "constant": CONSTANT,
        "sizes": {},
    }
    with (
        tempfile.TemporaryDirectory(prefix="fcsync-bench-incremental-") as tmp,
        Emulator(EmulatorConfig(seed=13)) as emu,
    ):
        for size in sizes:
            report["sizes"][str(size)] = measure(emu, size, changes, Path(tmp))
    targets: dict[str, Any] = {}
    problems: list[str] = []
    for k in changes:
        runs = [report["sizes"][str(n)]["changes"][str(k)] for n in sizes]
        pages = math.ceil(k / PAGE)
        worst = max(r["requests"] for r in runs)
        problems += [p for r in runs for p in r["problems"]]
        targets[f"k{k}_list_pages"] = {
            "target": f"= ceil({k}/{PAGE}) = {pages} at every N",
            "value": max(r["list_pages"] for r in runs),
            "holds": all(r["list_pages"] == pages for r in runs),
        }
        targets[f"k{k}_requests"] = {
            "target": f"<= ceil({k}/{PAGE}) + {CONSTANT} = {pages + CONSTANT} at every N",
            "value": worst,
            "holds": worst <= pages + CONSTANT,
        }
        targets[f"k{k}_same_at_every_n"] = {
            "target": f"requests equal at N = {', '.join(f'{n:,}' for n in sizes)}",
            "value": worst - min(r["requests"] for r in runs),
            "holds": len({r["requests"] for r in runs}) == 1,
        }
    report["db_equals_truth"] = not problems
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    report["targets"] = targets
    print(json.dumps(report, indent=2))
    if problems:
        print("\n".join(problems[:20]), file=sys.stderr)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
