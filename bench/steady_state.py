"""Benchmark: Stripe requests per account per emulated day once accounts are backfilled.

Runs the end-to-end scenario of tests/integration/test_end_to_end.py on the playground's stack
(subscribed accounts, webhooks on, Stripe's daily refreshes driven by the emulator's clock)
with real worker, beat and webhook-receiver processes on SQLite and the embedded broker (no
services needed), and counts the requests the emulator saw from day 1 to the last day. Prints
one JSON object; the bound is 1 + ceil(changed/100) per account and day. Exits 1 if the bound
is broken or the database differs from the emulator's truth.

    .venv/bin/python -m bench steady_state [--accounts 50] [--days 3] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from worker.playground.stack import Stack, StackOptions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--days", type=int, default=3, help="emulated days (>= 2)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.days < 2:
        parser.error("--days must be at least 2: day 1 is the baseline")
    # Tens to a few hundred transactions each, as in the end-to-end test.
    specs = [{"transactions": 20 + (i * 53) % 281} for i in range(args.accounts)]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fcsync-bench-") as tmp:
        workdir = Path(tmp)
        options = StackOptions(
            db_url=f"sqlite:///{workdir / 'fcsync.db'}",
            broker_url=f"sqla+sqlite:///{workdir / 'broker.sqlite'}",
            workdir=workdir,
            seed=args.seed,
        )
        with Stack(options, specs) as stack:
            stack.track_all()
            stack.converge("backfill", timeout_s=180)
            stack.run_days(args.days, timeout_s=120)
            problems = stack.problems()
            report = stack.steady_state("day 1", f"day {args.days}")
            backfill = stack.phase("backfill")
            violations = stack.ctl.stats()["gating_violations"]
    report.update(
        {
            "emulated_days": args.days,
            "measured_days": f"2-{args.days}",
            "seed": args.seed,
            "database": "sqlite",
            "broker": "embedded (sqla+sqlite)",
            "backfill_requests": sum(backfill.stats["requests"].values()),
            "db_equals_truth": not problems,
            "gating_violations": violations,
            "elapsed_s": round(time.monotonic() - started, 1),
        }
    )
    report["targets"] = {
        "requests per account-day": {
            "target": "<= 1 + ceil(changed/100) per account and day",
            "value": report["requests"],
            "bound": report["bound_requests"],
            "holds": report["requests"] <= report["bound_requests"],
        }
    }
    print(json.dumps(report, indent=2))
    if problems:
        print("\n".join(problems[:20]), file=sys.stderr)
    ok = not problems and report["requests"] <= report["bound_requests"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
