"""Benchmark: a fleet's throughput against Stripe's rate limit, and its request economy.

The emulator enforces 25 requests/s and answers each API request after 100 ms. Real `celery
worker` processes (the playground's stack: Redis broker, the shared Redis token bucket at
FCSYNC_REQUESTS_PER_SECOND, PostgreSQL) track N accounts of ~3 transaction pages each, all due
at once. Measured: the achieved request rate against the limit, the 429s, and the wall time
against requests / limit, and the CPU the stack spent per request (what this machine's cores
would allow). Then the same stack runs 3 emulated days of the subscribed accounts with
webhooks on, and bench/steady_state's measure counts requests per account-day against
1 + ceil(changed/100). Before the stack, the Redis bucket alone is measured against the same
emulator (its old one-second burst and today's, interleaved): what the throttle allows.
Prints one JSON object last; exits 1 if the database differs from the emulator's truth, 2 if
PostgreSQL or Redis is unreachable. `--quick`: 60 accounts, 2 emulated days (~2 minutes).

    .venv/bin/python -m bench fleet [--quick] [--accounts 300] [--concurrency 4] [--rps 25]

Redis: FCSYNC_BENCH_FLEET_REDIS_URL (default redis://127.0.0.1:6379/15).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import requests
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from bench._support import postgres_database, run_facts
from emulator import EmulatorControl
from models import Account
from worker.playground.emulator_env import API_KEY, STRIPE_TEST_RPS, playground_emulator
from worker.playground.stack import Stack, StackOptions
from worker.ratelimit import RedisTokenBucket, default_burst

# Its own Redis database (broker, bucket): a run shares it with no other stack.
REDIS_URL = os.environ.get("FCSYNC_BENCH_FLEET_REDIS_URL", "redis://127.0.0.1:6379/15")


LATENCY_MS = 100.0


def cpu_seconds(stack: Stack, database: str) -> dict[str, float]:
    """CPU time (user + system) spent so far by the stack's processes (every process of each
    child's group: celery's pool, beat, the receiver), this process (the emulator's threads) and
    the PostgreSQL backends serving the benchmark's database. Read from /proc (Linux)."""
    groups = {proc.pid: name for name, proc in stack.procs.procs.items()}
    tick = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = defaultdict(float)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        # Fields after the command name, which may itself hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        pgid, used = int(fields[2]), (int(fields[11]) + int(fields[12])) / tick
        if pgid in groups:
            totals[groups[pgid]] += used
        elif cmdline.startswith(b"postgres: ") and f" {database} ".encode() in cmdline:
            totals["postgresql"] += used
    me = resource.getrusage(resource.RUSAGE_SELF)
    totals["emulator"] = me.ru_utime + me.ru_stime
    return dict(totals)


def synced(stack: Stack) -> int:
    """Accounts whose latest refresh succeeded and is synced, with no sync in progress."""
    with stack.session() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Account)
                .where(
                    Account.refresh_status == "succeeded",
                    Account.cursor_refresh_id == Account.refresh_id,
                    Account.sync_target_refresh_id.is_(None),
                )
            )
            or 0
        )


def api_requests(stats: dict[str, Any]) -> int:
    return sum(stats["requests"].values())


# How often the bench looks whether every account is synced: the wall time's resolution (a
# cheap count). The request count is sampled about once a second, for the rates.
POLL_S = 0.1


def time_until(
    done: Callable[[], bool],
    count: Callable[[], int],
    *,
    started: float,
    first: int,
    timeout_s: float,
    check: Callable[[], None] = lambda: None,
) -> tuple[float, list[tuple[float, int]]]:
    """Seconds from `started` (time.monotonic) until `done()`, seen within POLL_S, and
    `count()` sampled about every second: (seconds since `started`, count), from (0.0, first)."""
    samples = [(0.0, first)]
    while not done():
        check()
        elapsed = time.monotonic() - started
        if elapsed > timeout_s:
            raise TimeoutError(f"not done after {elapsed:.1f}s")
        time.sleep(POLL_S)
        elapsed = time.monotonic() - started
        if elapsed - samples[-1][0] >= 1.0:
            samples.append((elapsed, count()))
    return time.monotonic() - started, samples


def backfill(stack: Stack, timeout_s: float, database: str) -> dict[str, Any]:
    """Track every account at once, once the worker is ready, and wait (a cheap count, not the
    full convergence check, so the bench does not load the emulator) until all are synced; the
    emulator's counters say how many requests that took. The wall time starts at the first
    `track` and ends when the last account is synced: the worker's own start (imports, pool)
    is the stack's, before it (reported as `worker_start_excluded_s`: how long the worker
    still took once the stack was up). Samples the request count each second for the peak
    rate."""
    waited = time.monotonic()
    stack.wait_for_worker()
    waited = time.monotonic() - waited
    before = stack.ctl.stats()
    cpu_before = cpu_seconds(stack, database)
    load_before = os.getloadavg()[0]
    n = len(stack.accounts)
    started = time.monotonic()
    stack.track_all()
    try:
        wall, samples = time_until(
            lambda: synced(stack) >= n,
            lambda: api_requests(stack.ctl.stats()),
            started=started,
            first=api_requests(before),
            timeout_s=timeout_s,
            check=stack.check_alive,
        )
    except TimeoutError as exc:
        raise TimeoutError(f"{n - synced(stack)} of {n} accounts not synced: {exc}") from None
    cpu = {k: v - cpu_before.get(k, 0.0) for k, v in cpu_seconds(stack, database).items()}
    after = stack.ctl.stats()
    requests = api_requests(after) - api_requests(before)
    limited = after["rate_limited"] - before["rate_limited"]
    # The best 10 s window: what the fleet reaches once it is going, apart from its ramp and tail.
    window = [
        (b[1] - a[1]) / (b[0] - a[0])
        for a in samples
        for b in samples
        if 9.5 <= b[0] - a[0] <= 10.5
    ]
    return {
        "requests": requests,
        "requests_by_endpoint": {
            k: v - before["requests"].get(k, 0)
            for k, v in after["requests"].items()
            if v != before["requests"].get(k, 0)
        },
        "rate_limited": limited,
        "wall_s": round(wall, 2),
        "worker_start_excluded_s": round(waited, 2),
        "achieved_rps": round(requests / wall, 2),
        "peak_10s_rps": round(max(window), 2) if window else None,
        # What each request cost in CPU on this machine, and the rate its cores allow at that
        # cost: when that is below the limit, the fleet is CPU-bound here, not throttled.
        "cpu_s": {k: round(v, 1) for k, v in sorted(cpu.items())},
        "cpu_ms_per_request": round(1000 * sum(cpu.values()) / max(1, requests), 1),
        "cpu_bound_rps": round((os.cpu_count() or 1) * requests / max(sum(cpu.values()), 1e-9), 1),
        "load_average_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        # Requests the emulator saw in each second of the run: the ramp, the plateau, the tail.
        "requests_each_second": [b[1] - a[1] for a, b in itertools.pairwise(samples)],
    }


def limiter_alone(*, seed: int, rps: float, burst: float, total: int) -> dict[str, Any]:
    """The shared Redis bucket alone in front of the same emulator (25/s, 100 ms): 8 threads
    ask as fast as it lets them, so the throttle, not the workers' own pace, sets the rate."""
    emulator = playground_emulator(seed)
    base_url = emulator.start(host="127.0.0.1", port=0)
    control = EmulatorControl(base_url)
    client = redis.Redis.from_url(REDIS_URL)
    key = f"fcsync:bench:fleet:{os.getpid()}:{uuid.uuid4().hex}"
    try:
        account = control.create_account(transactions=1)["id"]
        control.set_faults(latency_ms=LATENCY_MS)
        bucket = RedisTokenBucket(client, rate=rps, burst=burst, key=key)
        url = f"{base_url}/v1/financial_connections/accounts/{account}"
        left = itertools.count()
        statuses: Counter[int] = Counter()
        lock = threading.Lock()

        def ask() -> None:
            with requests.Session() as http:
                while next(left) < total:
                    bucket.acquire()
                    status = http.get(url, auth=(API_KEY, ""), timeout=10).status_code
                    with lock:
                        statuses[status] += 1

        threads = [threading.Thread(target=ask) for _ in range(8)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - started
    finally:
        client.delete(key)
        client.close()
        control.close()
        emulator.stop()
    return {"rate_limited": statuses[429], "achieved_rps": total / wall}


def limiter_competitors(*, seed: int, rps: float, total: int, repeats: int) -> dict[str, Any]:
    """The bucket's burst as it was (a second's worth) against today's default, interleaved;
    medians of the repeats."""
    bursts = {"burst_1s": max(1.0, rps), "burst_default": default_burst(rps)}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in bursts}
    for _ in range(repeats):
        for name, burst in bursts.items():
            runs[name].append(limiter_alone(seed=seed, rps=rps, burst=burst, total=total))
    return {
        name: {
            "burst": bursts[name],
            "requests_each_run": total,
            "rate_limited_each_run": [r["rate_limited"] for r in results],
            "achieved_rps_median": round(statistics.median(r["achieved_rps"] for r in results), 2),
            "ratio_429_median": round(
                statistics.median(r["rate_limited"] for r in results) / total, 4
            ),
        }
        for name, results in runs.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 accounts, 2 emulated days")
    parser.add_argument("--accounts", type=int, default=None, help="default 300 (60 quick)")
    parser.add_argument("--days", type=int, default=None, help="emulated days, default 3")
    parser.add_argument("--concurrency", type=int, default=4, help="as README and compose run it")
    parser.add_argument(
        "--rps",
        type=float,
        default=float(STRIPE_TEST_RPS),
        help="FCSYNC_REQUESTS_PER_SECOND (default: Stripe's test-mode limit)",
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    accounts = args.accounts or (60 if args.quick else 300)
    days = args.days or (2 if args.quick else 3)
    # 210-299 transactions: three pages of 100 each.
    specs = [{"transactions": 210 + (i * 37) % 90} for i in range(accounts)]
    broker = redis.Redis.from_url(REDIS_URL)
    ours_before: set[bytes | str] | None = None
    try:
        ours_before = set(broker.keys("*"))
        limiter = limiter_competitors(
            seed=args.seed,
            rps=args.rps,
            total=250 if args.quick else 500,
            repeats=1 if args.quick else 3,
        )
        with (
            postgres_database("fleet") as db_url,
            tempfile.TemporaryDirectory(prefix="fcsync-bench-fleet-") as tmp,
        ):
            options = StackOptions(
                db_url=db_url,
                broker_url=REDIS_URL,
                redis_url=REDIS_URL,
                workdir=Path(tmp),
                seed=args.seed,
                concurrency=args.concurrency,
                faults={"latency_ms": LATENCY_MS},
                env={"FCSYNC_REQUESTS_PER_SECOND": f"{args.rps:g}"},
            )
            with Stack(options, specs) as stack:
                fleet = backfill(
                    stack, timeout_s=30 + 10 * accounts, database=db_url.rsplit("/", 1)[1]
                )
                stack.converge("backfill", timeout_s=120)
                stack.run_days(days, timeout_s=60 + accounts)
                economy = stack.steady_state("day 1", f"day {days}")
                problems = stack.problems()
    except (OperationalError, redis.ConnectionError) as exc:
        print(f"PostgreSQL or Redis is not reachable: {exc}", file=sys.stderr)
        return 2
    finally:
        # Only the keys this run created: the queue, kombu's bindings, the token bucket.
        if ours_before is not None:
            created = set(broker.keys("*")) - ours_before
            if created:
                broker.delete(*created)
    limit = float(STRIPE_TEST_RPS)
    ideal = fleet["requests"] / limit
    ratio_429 = fleet["rate_limited"] / max(1, fleet["requests"])
    report: dict[str, Any] = {
        "benchmark": "fleet",
        **run_facts(),
        "accounts": accounts,
        "transactions_per_account": "210-299 (3 pages)",
        "emulator_limit_rps": limit,
        "emulator_latency_ms": LATENCY_MS,
        "fcsync_requests_per_second": args.rps,
        "concurrency": args.concurrency,
        "database": "postgresql",
        "broker": "redis",
        **fleet,
        "rate_of_limit": round(fleet["achieved_rps"] / limit, 3),
        "ratio_429": round(ratio_429, 4),
        "ideal_wall_s": round(ideal, 2),
        "wall_over_ideal": round(fleet["wall_s"] / ideal, 3),
        # A pool slot's time per request (its share of the wall time): the slots the limit needs
        # at this cost is limit x that, when the cores have room for them.
        "slot_s_per_request": round(args.concurrency * fleet["wall_s"] / fleet["requests"], 3),
        "concurrency_for_limit": math.ceil(
            limit * args.concurrency * fleet["wall_s"] / fleet["requests"]
        ),
        "limiter_alone": limiter,
        "economy": {**economy, "emulated_days": days, "measured_days": f"2-{days}"},
        "db_equals_truth": not problems,
    }
    report["targets"] = {
        "achieved rate": {
            "target": ">= 0.9 of the limit",
            "value": report["rate_of_limit"],
            "holds": report["rate_of_limit"] >= 0.9,
        },
        "429s": {
            "target": "<= 1% of requests",
            "value": report["ratio_429"],
            "holds": ratio_429 <= 0.01,
        },
        "wall time": {
            "target": "<= 1.1x requests / limit",
            "value": report["wall_over_ideal"],
            "holds": report["wall_over_ideal"] <= 1.1,
        },
        "requests per account-day": {
            "target": "<= 1 + ceil(changed/100) per account and day",
            "value": economy["requests_per_account_day"],
            "holds": economy["requests"] <= economy["bound_requests"],
        },
    }
    print(json.dumps(report, indent=2))
    if problems:
        print("\n".join(problems[:20]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
