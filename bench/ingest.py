"""Benchmark: a full sync of one emulator account (200,000 transactions) into PostgreSQL and into
SQLite, side by side with what the API and the database allow and with Stripe's guide's loop.

Competitors, interleaved in one run (medians of --repeats):
- fcsync: worker/sync_run.py's `run_sync(runtime, full=True)` as `fcsync sync --full --inline`
  runs it (its default pages per run, then the next run), into a fresh database each time; the
  request budget off.
- naive: Stripe's guide: stripe-python `auto_paging_iter()`, ORM `session.merge` + commit per
  row, on the first --naive-rows rows only (it is slow; rows/s is what is compared).
- api_only: the same pages over raw HTTP (requests + json), rows discarded.
- db_only: the same rows already in memory, loaded the fastest way the database allows:
  PostgreSQL COPY into a temporary table + one INSERT ... ON CONFLICT; SQLite one
  `executemany` of the upsert in one transaction.
Also fcsync on an account a tenth the size (flatness) and a second full sync into the database
that already holds the rows (`resync`: every row a conflict). The emulator runs in its own
process. Prints one JSON object last; exits 1 when the database differs from the emulator.

    .venv/bin/python -m bench ingest [--quick] [--rows N] [--repeats R] [--db postgresql,sqlite]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import stripe
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from bench._support import POSTGRES_ADMIN_URL
from emulator import EmulatorControl
from models import Transaction
from worker import tracking
from worker.db import make_engine, upgrade_database
from worker.playground.databases import create_postgres_database, drop_postgres_database
from worker.playground.emulator_env import free_port, scrubbed_environ
from worker.playground.truth import row_problems
from worker.records import Followup
from worker.runtime import Runtime
from worker.settings import STRIPE_API_VERSION, Settings
from worker.stripe_gateway import gateway_from_settings
from worker.sync_run import run_sync

API_KEY = "sk_test_bench_ingest"
PAGE = 100
# The columns `all_rows` gives, in its order: all but those a platform's synced row leaves NULL
# (its context and key name, and `vanished_at`, which only a reconciliation sets).
LEFT_NULL = frozenset({"stripe_account", "stripe_key", "vanished_at"})
COLUMNS = tuple(
    column.name for column in Transaction.__table__.columns if column.name not in LEFT_NULL
)


# -- the emulator, in a process of its own (so it never shares this one's interpreter lock) --


@contextmanager
def emulator_process() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulator",
            "--port",
            str(port),
            "--seed",
            "1",
            "--refresh-delay-s",
            "0.2",
            "--refresh-cooldown-s",
            "0",
        ],
        env=scrubbed_environ(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{base_url}/_emulator/clock", timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the emulator did not start") from None
                time.sleep(0.1)
        yield base_url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def refreshed_account(control: EmulatorControl, base_url: str, rows: int) -> str:
    """An account holding `rows` transactions whose refresh has succeeded."""
    account_id = str(control.create_account(transactions=rows, refresh_cooldown_s=0)["id"])
    headers = {"Authorization": f"Bearer {API_KEY}"}
    url = f"{base_url}/v1/financial_connections/accounts/{account_id}"
    requests.post(
        f"{url}/refresh", data={"features[]": "transactions"}, headers=headers
    ).raise_for_status()
    for _ in range(200):
        if (
            requests.get(url, headers=headers).json()["transaction_refresh"]["status"]
            == "succeeded"
        ):
            return account_id
        time.sleep(0.05)
    raise RuntimeError(f"the refresh of {account_id} never succeeded")


# -- databases --------------------------------------------------------------------------------


def pg_reachable() -> str | None:
    try:
        engine = create_engine(POSTGRES_ADMIN_URL)
        with engine.connect():
            pass
        engine.dispose()
        return None
    except Exception as exc:
        return str(exc).splitlines()[0]


@contextmanager
def fresh_database(kind: str, workdir: Path) -> Iterator[str]:
    """A new, migrated, never-analysed database; dropped afterwards."""
    if kind == "sqlite":
        path = workdir / f"ingest_{uuid.uuid4().hex[:8]}.db"
        url = f"sqlite:///{path}"
        upgrade_database(url)
        try:
            yield url
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    url = create_postgres_database(POSTGRES_ADMIN_URL, f"bench_ingest_{os.getpid()}")
    try:
        upgrade_database(url)
        yield url
    finally:
        drop_postgres_database(POSTGRES_ADMIN_URL, url)


# -- competitors ------------------------------------------------------------------------------


def settings_for(base_url: str, db_url: str) -> Settings:
    return Settings(
        database_url=db_url,
        stripe_api_key=API_KEY,
        stripe_api_base=base_url,
        fcsync_requests_per_second=0,
        fcsync_clock_url=None,
        fcsync_on_synced_task=None,
    )


class FcsyncRun:
    """Track the account in the database, then time the full sync, run after run."""

    def __init__(self, base_url: str, db_url: str, account_id: str) -> None:
        self.settings = settings_for(base_url, db_url)
        self.engine = make_engine(db_url)
        self.account_id = account_id
        self.runtime = Runtime(
            self.settings,
            send=self._sent,
            engine=self.engine,
            gateway=lambda: gateway_from_settings(self.settings),
            clock=_WallClock(),
            on_page=self._committed,
        )
        # When the last sync started and when each of its pages committed.
        self.started = 0.0
        self.page_times: list[float] = []
        self._run_pages = 0
        # The lease token a run that stopped at FCSYNC_PAGES_PER_RUN handed on to its
        # continuation message: the next run carries it, as the task chain does.
        self._handoff: str | None = None
        settings = self.settings
        self.runtime.run(
            account_id,
            lambda s, gw, now: tracking.track_account(
                s, gw, account_id, subscribe=False, now=now, settings=settings
            ),
        )

    def _sent(self, followup: Followup) -> None:
        handoff = followup.kwargs.get("handoff")
        if isinstance(handoff, str):
            self._handoff = handoff

    def _committed(self, progress: dict[str, Any]) -> None:
        # A commit may hold several pages (those read ahead that were waiting): each of them
        # counts as committed then. `pages` counts from each run's start.
        pages = progress["pages"]
        added = pages - self._run_pages if pages > self._run_pages else pages
        self._run_pages = pages
        self.page_times.extend([time.perf_counter()] * added)

    def sync(self) -> tuple[float, int]:
        self.page_times = []
        self._run_pages = 0
        started = self.started = time.perf_counter()
        rows = 0
        self._handoff = None
        while True:
            # The first run asks for the full sync; each later one is its continuation.
            report = run_sync(
                self.runtime,
                self.account_id,
                full=self._handoff is None,
                owner="bench",
                handoff=self._handoff,
            )
            rows += report["inserted"] + report["updated"]
            if report["outcome"] != "continued":
                break
        return time.perf_counter() - started, rows

    def rates_by_tenth(self) -> list[float]:
        """Rows/s over each tenth of the last sync's pages (100 rows a page): a table that
        slows the sync as it grows shows as falling figures, whatever the machine's load."""
        times = [self.started, *self.page_times]
        tenth = max(1, (len(times) - 1) // 10)
        return [
            round(100 * tenth / max(times[i + tenth] - times[i], 1e-6))
            for i in range(0, tenth * 10, tenth)
            if i + tenth < len(times)
        ]

    def problems(self, control: EmulatorControl) -> list[str]:
        with Session(self.engine) as session:
            return row_problems(session, control, self.account_id)

    def close(self) -> None:
        self.engine.dispose()


class _WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def api_only(base_url: str, account_id: str) -> tuple[float, int]:
    http = requests.Session()
    headers = {"Authorization": f"Bearer {API_KEY}", "Stripe-Version": STRIPE_API_VERSION}
    url = f"{base_url}/v1/financial_connections/transactions"
    params: dict[str, Any] = {"account": account_id, "limit": PAGE}
    rows = 0
    started = time.perf_counter()
    while True:
        body = json.loads(http.get(url, params=params, headers=headers).content)
        rows += len(body["data"])
        if not body["has_more"]:
            break
        params["starting_after"] = body["data"][-1]["id"]
    elapsed = time.perf_counter() - started
    http.close()
    return elapsed, rows


def all_rows(base_url: str, account_id: str) -> list[tuple[Any, ...]]:
    """The account's rows as the database stores them (for db_only)."""
    http = requests.Session()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    url = f"{base_url}/v1/financial_connections/transactions"
    params: dict[str, Any] = {"account": account_id, "limit": PAGE}
    now = datetime.now(UTC).replace(tzinfo=None)
    rows: list[tuple[Any, ...]] = []
    while True:
        body = http.get(url, params=params, headers=headers).json()
        for t in body["data"]:
            transitions = t.get("status_transitions") or {}
            rows.append(
                (
                    t["id"],
                    t["account"],
                    t["amount"],
                    t["currency"],
                    t["description"],
                    t["status"],
                    transitions.get("posted_at"),
                    transitions.get("void_at"),
                    t["transacted_at"],
                    t["transaction_refresh"],
                    t["updated"],
                    t["livemode"],
                    now,
                    now,
                )
            )
        if not body["has_more"]:
            break
        params["starting_after"] = body["data"][-1]["id"]
    http.close()
    return rows


UPDATE_SET = ", ".join(
    f"{c} = excluded.{c}" for c in COLUMNS if c not in ("id", "account_id", "first_seen_at")
)


def db_only(db_url: str, account_id: str, rows: list[tuple[Any, ...]]) -> float:
    """The database's own limit for loading `rows` (the account row exists, as for fcsync)."""
    upsert_tail = (
        f"ON CONFLICT (id) DO UPDATE SET {UPDATE_SET} "
        "WHERE excluded.updated >= transactions.updated"
    )
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(db_url.removeprefix("sqlite:///"))
        conn.execute("PRAGMA journal_mode=WAL")
        placeholders = ", ".join("?" for _ in COLUMNS)
        sql = (
            f"INSERT INTO transactions ({', '.join(COLUMNS)}) VALUES ({placeholders}) {upsert_tail}"
        )
        started = time.perf_counter()
        with conn:
            conn.executemany(sql, rows)
        elapsed = time.perf_counter() - started
        conn.close()
        return elapsed
    import psycopg

    conn_pg = psycopg.connect(db_url.replace("postgresql+psycopg", "postgresql"))
    started = time.perf_counter()
    with conn_pg.cursor() as cur:
        cur.execute("CREATE TEMP TABLE load (LIKE transactions INCLUDING DEFAULTS) ON COMMIT DROP")
        with cur.copy(f"COPY load ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(
            f"INSERT INTO transactions ({', '.join(COLUMNS)}) "
            f"SELECT {', '.join(COLUMNS)} FROM load {upsert_tail}"
        )
    conn_pg.commit()
    elapsed = time.perf_counter() - started
    conn_pg.close()
    return elapsed


def naive(base_url: str, db_url: str, account_id: str, limit: int) -> tuple[float, int]:
    """Stripe's guide: auto-paging, one ORM merge and one commit per row."""
    client = stripe.StripeClient(API_KEY, base_addresses={"api": base_url})
    engine = make_engine(db_url)
    rows = 0
    started = time.perf_counter()
    with Session(engine) as session:
        pages = client.v1.financial_connections.transactions.list(
            {"account": account_id, "limit": PAGE}
        )
        for t in pages.auto_paging_iter():
            now = datetime.now(UTC)
            session.merge(
                Transaction(
                    id=t.id,
                    account_id=t.account,
                    amount=t.amount,
                    currency=t.currency,
                    description=t.description,
                    status=t.status,
                    posted_at=t.status_transitions.posted_at,
                    void_at=t.status_transitions.void_at,
                    transacted_at=t.transacted_at,
                    transaction_refresh=t.transaction_refresh,
                    updated=t.updated,
                    livemode=t.livemode,
                    first_seen_at=now,
                    last_seen_at=now,
                )
            )
            session.commit()
            rows += 1
            if rows >= limit:
                break
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed, rows


# -- the run ----------------------------------------------------------------------------------


def rate(samples: list[float]) -> float:
    return round(statistics.median(samples), 1)


def bench_database(
    kind: str,
    base_url: str,
    control: EmulatorControl,
    accounts: dict[str, str],
    args: Any,
    rows_in_memory: list[tuple[Any, ...]],
    workdir: Path,
) -> tuple[dict[str, Any], list[str]]:
    big, small = accounts["large"], accounts["small"]
    n_big, n_small = args.rows, args.small
    samples: dict[str, list[float]] = {
        k: [] for k in ("fcsync", "fcsync_small", "resync", "naive", "api_only", "db_only")
    }
    problems: list[str] = []
    naive_rows = 0
    tenths: list[list[float]] = []
    for repeat in range(args.repeats):
        # One round: each competitor once, in turn.
        with fresh_database(kind, workdir) as url:
            run = FcsyncRun(base_url, url, big)
            elapsed, rows = run.sync()
            samples["fcsync"].append(n_big / elapsed)
            tenths.append(run.rates_by_tenth())
            if rows != n_big:
                problems.append(f"{kind}: fcsync stored {rows} of {n_big} rows")
            if repeat == 0:
                problems += run.problems(control)
                # Once: every row of a second full sync is a replay (a conflict, nothing written).
                elapsed, _ = run.sync()
                samples["resync"].append(n_big / elapsed)
            run.close()
        elapsed, rows = api_only(base_url, big)
        samples["api_only"].append(rows / elapsed)
        with fresh_database(kind, workdir) as url:
            FcsyncRun(base_url, url, big).close()  # the account row the rows point at
            samples["db_only"].append(len(rows_in_memory) / db_only(url, big, rows_in_memory))
        with fresh_database(kind, workdir) as url:
            run = FcsyncRun(base_url, url, small)
            elapsed, rows = run.sync()
            samples["fcsync_small"].append(n_small / elapsed)
            run.close()
        with fresh_database(kind, workdir) as url:
            FcsyncRun(base_url, url, big).close()
            elapsed, naive_rows = naive(base_url, url, big, args.naive_rows)
            samples["naive"].append(naive_rows / elapsed)
        print(
            f"{kind} round {repeat + 1}: "
            + ", ".join(f"{k} {v[-1]:.0f}" for k, v in samples.items()),
            file=sys.stderr,
            flush=True,
        )
    fcsync, naive_rate = rate(samples["fcsync"]), rate(samples["naive"])
    api, dbo = rate(samples["api_only"]), rate(samples["db_only"])
    small_rate = rate(samples["fcsync_small"])
    limit = min(api, dbo)
    flatness = round(fcsync / small_rate, 3)
    # Within each large sync: its last three tenths against its first three (median of repeats).
    within = round(statistics.median(sum(t[-3:]) / sum(t[:3]) for t in tenths if len(t) >= 6), 3)
    result = {
        "fcsync_rows_per_s": fcsync,
        "fcsync_resync_rows_per_s": rate(samples["resync"]),
        "fcsync_small_rows_per_s": small_rate,
        "naive_rows_per_s": naive_rate,
        "naive_rows_measured": naive_rows,
        "api_only_rows_per_s": api,
        "db_only_rows_per_s": dbo,
        "fcsync_over_naive": round(fcsync / naive_rate, 2),
        "fcsync_over_min_api_db": round(fcsync / limit, 3),
        "flatness_large_over_small": flatness,
        "fcsync_rows_per_s_by_tenth_of_the_large_sync": tenths,
        "flatness_within_the_large_sync": within,
        "samples_rows_per_s": {k: [round(x) for x in v] for k, v in samples.items()},
        "targets": {
            "fcsync >= 10x naive": {
                "target": ">= 10x naive",
                "value": round(fcsync / naive_rate, 2),
                "holds": fcsync >= 10 * naive_rate,
            },
            "fcsync >= 0.8x min(api_only, db_only)": {
                "target": ">= 0.8x min(api_only, db_only)",
                "value": round(fcsync / limit, 3),
                "holds": fcsync >= 0.8 * limit,
            },
            f"flat from {n_small} to {n_big} rows": {
                "target": f"rows/s at {n_big} >= 0.9x rows/s at {n_small}",
                "value": flatness,
                "holds": flatness >= 0.9,
            },
            "flat within the large sync": {
                "target": "its last three tenths' rows/s >= 0.9x its first three tenths'",
                "value": within,
                "holds": within >= 0.9,
            },
            "on a fresh database": {
                "target": "both targets above, each sync into a fresh, never-analysed database",
                "value": fcsync,
                "holds": fcsync >= 10 * naive_rate and fcsync >= 0.8 * limit,
            },
        },
    }
    return result, problems


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 rows, under 3 minutes")
    parser.add_argument("--rows", type=int, default=None, help="default 200,000 (--quick 20,000)")
    parser.add_argument("--small", type=int, default=None, help="the flatness size (rows/10)")
    parser.add_argument(
        "--naive-rows", type=int, default=None, help="default 2,000 (--quick 1,000)"
    )
    parser.add_argument("--repeats", type=int, default=None, help="default 2 (--quick 1)")
    parser.add_argument("--db", default="postgresql,sqlite")
    args = parser.parse_args()
    args.rows = args.rows or (20_000 if args.quick else 200_000)
    args.small = args.small or max(args.rows // 10, 1_000)
    args.naive_rows = args.naive_rows or (1_000 if args.quick else 2_000)
    args.repeats = args.repeats or (1 if args.quick else 2)
    started = time.monotonic()
    report: dict[str, Any] = {
        "benchmark": "ingest",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
            "note": "a shared machine with other work running: ratios matter",
        },
        "repeats": args.repeats,
        "naive_rows": args.naive_rows,
        "request_budget": "off (FCSYNC_REQUESTS_PER_SECOND=0): the path's own cost is measured",
    }
    problems: list[str] = []
    kinds = [k.strip() for k in args.db.split(",") if k.strip()]
    with emulator_process() as base_url, tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        control = EmulatorControl(base_url)
        accounts = {
            "large": refreshed_account(control, base_url, args.rows),
            "small": refreshed_account(control, base_url, args.small),
        }
        # A refresh adds a few rows to what the account was created with.
        args.rows = len(control.transactions(accounts["large"]))
        args.small = len(control.transactions(accounts["small"]))
        rows_in_memory = all_rows(base_url, accounts["large"])
        for kind in kinds:
            if kind == "postgresql" and (why := pg_reachable()) is not None:
                report["postgresql"] = {"skipped": f"PostgreSQL is not reachable: {why}"}
                print(f"postgresql skipped: {why}", file=sys.stderr)
                continue
            report[kind], found = bench_database(
                kind, base_url, control, accounts, args, rows_in_memory, Path(tmp)
            )
            problems += found
        control.close()
    report["rows"], report["small_rows"] = args.rows, args.small
    report["machine"]["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    report["db_equals_truth"] = not problems
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(report, indent=2))
    if problems:
        print("\n".join(problems[:20]), file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
