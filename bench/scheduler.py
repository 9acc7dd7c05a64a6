"""Benchmark: what beat's due sweep costs per 1,000 due accounts among 100,000 and 1,000,000
tracked ones in PostgreSQL: the query that selects and claims them plus sending their
`fcsync.refresh_account` tasks to Redis, as `fcsync.refresh_due_accounts` runs it. Prints one
JSON object last; targets: <= 200 ms per 1,000 due, within 20% between the two sizes.

Each size gets a database of its own (`bench_scheduler_<pid>_<n>`, loaded with COPY, dropped
after); every run marks 1,000 random accounts due, then times one sweep (FCSYNC_SWEEP_BATCH
1,000). Sizes and variants are interleaved, medians of repeats: the sweep as fcsync sends it
(one publish batch, one Redis pipeline), the same tasks sent one by one (one round trip and
declare each, as before), and the query alone. The sent tasks land in the `fcsync` queue of
the given Redis database and are deleted after each run. The embedded broker's figure (kombu's
SQLAlchemy transport on SQLite) comes from a child process, which needs its own broker setting.

    .venv/bin/python -m bench scheduler [--quick] [--repeats 5] [--redis-url redis://...]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from bench._support import POSTGRES_ADMIN_URL

if TYPE_CHECKING:
    from worker.records import Sweep
    from worker.runtime import Runtime

DUE = 1_000
TARGET_MS = 200.0
FLAT = 0.20
QUEUE = "fcsync"
COLUMNS = (
    "id, livemode, institution_name, category, subcategory, status, permissions, subscriptions,"
    " tracked, refresh_interval_s, next_due_at, sync_inserted, sync_updated, sync_requested,"
    " sync_requested_full, created_at, updated_at"
)


def account_id(n: int) -> str:
    return f"fca_bench{n:08d}"


@contextmanager
def database(name: str) -> Iterator[str]:
    """A database of this run's own on the local PostgreSQL, dropped when the block ends."""
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def load_accounts(engine: Engine, total: int) -> float:
    """`total` tracked, active accounts, none due (due within the next day), by COPY; seconds."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    rng = random.Random(total)
    chunk = 100_000
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        with cursor.copy(f"COPY accounts ({COLUMNS}) FROM STDIN") as copy:
            for start in range(0, total, chunk):
                buf = io.StringIO()
                for n in range(start, min(total, start + chunk)):
                    due = now + timedelta(seconds=3_600 + rng.randrange(86_400))
                    buf.write(
                        f'{account_id(n)}\tf\tBank\tcash\tchecking\tactive\t["transactions"]\t'
                        f'["transactions"]\tt\t86400\t{due.isoformat()}\t0\t0\tf\tf\t'
                        f"{now.isoformat()}\t{now.isoformat()}\n"
                    )
                copy.write(buf.getvalue())
        raw.commit()
        cursor.execute("ANALYZE accounts")
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - started


def mark_due(engine: Engine, total: int, rng: random.Random, due: int = DUE) -> None:
    """`due` random accounts due a minute ago (untimed)."""
    ids = [account_id(n) for n in rng.sample(range(total), due)]
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE accounts SET next_due_at = :at WHERE id = ANY(:ids)"),
            {"at": datetime.now(UTC) - timedelta(minutes=1), "ids": ids},
        )


def sweep_with(runtime: Runtime) -> Callable[[Session, Any, datetime], Sweep]:
    """What `fcsync.refresh_due_accounts` runs (tasks/refresh.py), with this runtime's settings."""
    from worker import refresh

    return lambda session, _gw, now: refresh.due_refreshes(
        session, now=now, settings=runtime.settings
    )


def measure(
    urls: dict[int, str], repeats: int, variants: dict[str, Any], drain: Callable[[], int]
) -> dict[str, dict[int, list[float]]]:
    """ms per sweep of 1,000 due accounts, per variant and size; interleaved."""
    from worker.runtime import Runtime
    from worker.settings import Settings

    rng = random.Random(13)
    engines = {total: create_engine(url) for total, url in urls.items()}
    runtimes = {
        (name, total): Runtime(
            Settings(
                database_url=url,
                stripe_api_key="sk_test_bench",
                fcsync_sweep_batch=DUE,
                fcsync_clock_url=None,
            ),
            send=send,
            send_many=send_many,
            engine=engines[total],
            gateway=lambda: None,  # type: ignore[arg-type,return-value]
        )
        for name, (send, send_many, _sends) in variants.items()
        for total, url in urls.items()
    }
    out: dict[str, dict[int, list[float]]] = {name: {t: [] for t in urls} for name in variants}
    # This process's own CPU time (Celery, kombu, the ORM), which the machine's load inflates
    # far less than the wall time: about what a sweep costs on an idle machine, servers aside.
    cpu_out: dict[str, dict[int, list[float]]] = {
        f"{name}_cpu": {t: [] for t in urls} for name in variants
    }
    try:
        # One unmeasured sweep each first: connections, statement caches, the queue's declare.
        for (_name, total), runtime in runtimes.items():
            mark_due(engines[total], total, rng, due=10)
            runtime.run(None, sweep_with(runtime))
            drain()
        for _ in range(repeats):
            for total in urls:
                for name in variants:
                    runtime = runtimes[(name, total)]
                    mark_due(engines[total], total, rng)
                    started, cpu = time.perf_counter(), time.process_time()
                    sweep = runtime.run(None, sweep_with(runtime))
                    elapsed = time.perf_counter() - started
                    cpu_out[f"{name}_cpu"][total].append((time.process_time() - cpu) * 1000)
                    sent = drain()
                    if len(sweep.intents) != DUE or sent != (DUE if variants[name][2] else 0):
                        raise SystemExit(
                            f"{name} at {total}: swept {len(sweep.intents)}, {sent} on the queue"
                        )
                    out[name][total].append(elapsed * 1000)
    finally:
        for engine in engines.values():
            engine.dispose()
    return {**out, **cpu_out}


def redis_variants(redis_url: str) -> tuple[dict[str, Any], Callable[[], int], Callable[[], None]]:
    import redis

    os.environ["CELERY_BROKER_URL"] = redis_url
    from worker.app import send_followup, send_followups

    client = redis.Redis.from_url(redis_url)

    def drain() -> int:
        pipe = client.pipeline()
        pipe.llen(QUEUE)
        pipe.delete(QUEUE)
        return int(pipe.execute()[0])

    def cleanup() -> None:
        client.delete(QUEUE, f"_kombu.binding.{QUEUE}", f"_kombu.binding_permanent.{QUEUE}")

    variants = {
        "batched": (send_followup, send_followups, True),
        "one_by_one": (send_followup, None, True),
        "query_only": (lambda _f: None, lambda _fs: None, False),
    }
    return variants, drain, cleanup


def embedded_child(urls: dict[int, str], repeats: int) -> dict[str, Any]:
    """Run in a child whose broker is the embedded one (CELERY_BROKER_URL set by the parent)."""
    from worker.app import send_followup, send_followups

    broker_db = os.environ["CELERY_BROKER_URL"].removeprefix("sqla+sqlite:///")

    def drain() -> int:
        # Straight on the transport's tables: reading 1,000 messages through kombu takes long.
        with sqlite3.connect(broker_db) as db:
            (n,) = db.execute("SELECT count(*) FROM kombu_message").fetchone()
            db.execute("DELETE FROM kombu_message")
        return int(n)

    variants = {"batched": (send_followup, send_followups, True)}
    return measure(urls, repeats, variants, drain)


def medians(samples: dict[str, dict[int, list[float]]]) -> dict[str, dict[str, float]]:
    return {
        name: {str(total): round(statistics.median(v), 1) for total, v in by_size.items()}
        for name, by_size in samples.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 and 100,000 accounts")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/13",
        help="a Redis database whose `fcsync` queue this run may fill and delete",
    )
    parser.add_argument("--embedded-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.embedded_child:
        spec = json.loads(args.embedded_child)
        urls = {int(k): v for k, v in spec["urls"].items()}
        print(json.dumps(medians(embedded_child(urls, spec["repeats"]))))
        return 0

    sizes = (10_000, 100_000) if args.quick else (100_000, 1_000_000)
    repeats = args.repeats or (3 if args.quick else 7)
    started = time.monotonic()
    try:
        create_engine(POSTGRES_ADMIN_URL).connect().close()
    except Exception as exc:
        print(
            f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {exc}; nothing measured",
            file=sys.stderr,
        )
        return 2

    from worker.db import upgrade_database

    with (
        database(f"bench_scheduler_{os.getpid()}_{sizes[0]}") as small,
        database(f"bench_scheduler_{os.getpid()}_{sizes[1]}") as large,
    ):
        urls = dict(zip(sizes, (small, large), strict=True))
        load_s = {}
        for total, url in urls.items():
            upgrade_database(url)
            engine = create_engine(url)
            load_s[str(total)] = round(load_accounts(engine, total), 1)
            engine.dispose()

        variants, drain, cleanup = redis_variants(args.redis_url)
        try:
            redis_ms = measure(urls, repeats, variants, drain)
        finally:
            cleanup()

        with tempfile.TemporaryDirectory(prefix="fcsync-bench-") as tmp:
            env = {
                **os.environ,
                "CELERY_BROKER_URL": f"sqla+sqlite:///{Path(tmp) / 'broker.sqlite'}",
            }
            env.pop("REDIS_URL", None)
            spec = json.dumps({"urls": urls, "repeats": 1 if args.quick else 3})
            child = subprocess.run(
                [sys.executable, "-m", "bench", "scheduler", "--embedded-child", spec],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if child.returncode != 0:
                print(child.stderr, file=sys.stderr)
                return 1
            embedded = json.loads(child.stdout.strip().splitlines()[-1])

    m = medians(redis_ms)
    small_ms, large_ms = (m["batched"][str(t)] for t in sizes)
    worst = max(small_ms, large_ms)
    spread = abs(large_ms - small_ms) / min(small_ms, large_ms)
    report = {
        "benchmark": "scheduler",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "machine": {
            "nproc": os.cpu_count(),
            "loadavg": os.getloadavg(),
            "python": platform.python_version(),
        },
        "sizes": list(sizes),
        "due_per_sweep": DUE,
        "repeats": repeats,
        "load_s": load_s,
        "sweep_ms_per_1000_due": m["batched"],
        "one_by_one_sweep_ms_per_1000_due": m["one_by_one"],
        "query_ms_per_1000_due": m["query_only"],
        "batched_speedup_vs_one_by_one": {
            str(t): round(m["one_by_one"][str(t)] / m["batched"][str(t)], 2) for t in sizes
        },
        "sweep_cpu_ms_per_1000_due": m["batched_cpu"],
        "one_by_one_cpu_ms_per_1000_due": m["one_by_one_cpu"],
        "embedded_broker_sweep_ms_per_1000_due": embedded["batched"],
        "samples_ms": {  # wall time, then this process's CPU time (`*_cpu`)
            n: {str(t): [round(x, 1) for x in v] for t, v in s.items()} for n, s in redis_ms.items()
        },
        "targets": {
            "sweep per 1,000 due": {
                "target": "<= 200 ms (query + enqueue to Redis), at both sizes",
                "value": worst,
                "holds": worst <= TARGET_MS,
            },
            "flat": {
                "target": f"within 20% between {sizes[0]:,} and {sizes[1]:,} accounts",
                "value": round(spread, 3),
                "holds": spread <= FLAT,
            },
        },
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
