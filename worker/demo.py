"""`fcsync demo`: the whole job end to end on embedded defaults against a seeded emulator:
worker, beat and receiver as real processes (SQLite, embedded broker and every log in a temporary
folder), three emulated days of daily refreshes, then the database checked against the truth."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from emulator import Emulator, EmulatorConfig, EmulatorControl, FaultSettings
from models import Account, Refresh
from worker import contract, demo_tour
from worker.db import make_engine, upgrade_database
from worker.redaction import redact
from worker.reports import diff_transactions, stored_transactions
from worker.supervisor import Supervisor, stack_children

DAY_S = 86_400
WEBHOOK_SECRET = "whsec_fcsync_demo"
API_KEY = "sk_test_fcsync_demo"
STRIPE_TEST_RPS = 25
WORKER_CONCURRENCY = 2


@dataclass(frozen=True)
class DemoAccount:
    label: str
    spec: dict[str, Any]


def demo_bank() -> list[DemoAccount]:
    """About 25 accounts: three large ones, one inactive, one whose refreshes often fail."""
    bank = [
        DemoAccount(f"large-{i}", {"transactions": n})
        for i, n in enumerate((30_000, 20_000, 12_000))
    ]
    bank.append(DemoAccount("inactive", {"transactions": 300, "status": "inactive"}))
    bank.append(DemoAccount("flaky", {"transactions": 800, "failure_rate": 0.5}))
    bank += [DemoAccount(f"small-{i}", {"transactions": 120 + 97 * i}) for i in range(20)]
    return bank


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Demo:
    def __init__(self, console: Console, *, workdir: Path, seed: int) -> None:
        self.console = console
        self.workdir = workdir
        self.seed = seed
        self.db_url = f"sqlite:///{workdir / 'fcsync-demo.db'}"
        self.engine = make_engine(self.db_url)
        self.logs = workdir / "logs"

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {text}")

    def run(self, *, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        emu = Emulator(
            EmulatorConfig(
                seed=self.seed,
                refresh_delay_s=1.0,
                refresh_cooldown_s=3_600.0,
                # Stripe's test-mode limit; fcsync's own budget below keeps under it.
                faults=FaultSettings(seed=self.seed, requests_per_second=STRIPE_TEST_RPS),
            )
        )
        base_url = emu.start(host="127.0.0.1", port=0)
        control = EmulatorControl(base_url)
        supervisor: Supervisor | None = None
        try:
            demo_tour.show_intro(self.console)
            self.say(f"emulator at {base_url} (seed {self.seed})")
            bank = demo_bank()
            accounts = {a.label: control.create_account(**a.spec)["id"] for a in bank}
            total = sum(a.spec["transactions"] for a in bank)
            self.say(f"seeded {len(accounts)} accounts holding {total:,} transactions:")
            demo_tour.show_cast(self.console, [(a.label, a.spec["transactions"]) for a in bank])
            logging.getLogger("alembic").setLevel(logging.WARNING)
            upgrade_database(self.db_url)
            port = free_port()
            env = self._env(base_url)
            control.add_webhook_endpoint(f"http://127.0.0.1:{port}/webhooks/stripe", WEBHOOK_SECRET)
            supervisor = Supervisor(
                stack_children(
                    concurrency=WORKER_CONCURRENCY,
                    webhooks=True,
                    host="127.0.0.1",
                    port=port,
                    path="/webhooks/stripe",
                    schedule=self.workdir / "celerybeat-schedule",
                    log_level="INFO",
                ),
                env=env,
                log_dir=self.logs,
            )
            supervisor.start()
            self.say(
                "worker, beat and webhook receiver started (SQLite + embedded broker), "
                f"logging to {self.logs}"
            )
            client = Celery("demo-client", broker=env["CELERY_BROKER_URL"])
            for account_id in accounts.values():
                client.send_task(
                    contract.TRACK_ACCOUNT, kwargs={"account_id": account_id}, queue="fcsync"
                )
            self.say(f"enqueued fcsync.track_account for {len(accounts)} accounts")
            demo_tour.explain(self.console, demo_tour.TRACKING)
            self._converge(control, accounts, "initial backfill", deadline, supervisor)
            for day in (1, 2, 3):
                control.advance(DAY_S)
                self.say(f"[bold]day {day}[/bold]")
                demo_tour.explain(self.console, demo_tour.DAY)
                self._converge(control, accounts, f"day {day}", deadline, supervisor)
            problems = self._final_check(control, accounts)
            self._summary(control, accounts)
            if problems:
                for line in problems[:20]:
                    self.console.print(f"[red]mismatch[/red] {escape(line)}")
                self.console.print("[red]FAILED[/red]: the database differs from Stripe's truth")
                self._show_logs()
                return 1
            self.console.print(
                "[green]OK[/green]: every account's transactions equal the emulator's ground "
                "truth, with no refresh requested too early"
            )
            demo_tour.show_try_next(self.console)
            return 0
        except DemoFailure as exc:
            self.console.print(f"[red]FAILED[/red]: {escape(redact(str(exc)))}")
            self._show_logs()
            return 1
        finally:
            if supervisor is not None:
                supervisor.stop()
            control.close()
            emu.stop()
            self.engine.dispose()

    def _env(self, base_url: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FCSYNC_", "STRIPE_"))}
        for name in ("REDIS_URL", "CELERY_BROKER_URL", "DATABASE_URL"):
            env.pop(name, None)
        env.update(
            {
                "DATABASE_URL": self.db_url,
                "CELERY_BROKER_URL": f"sqla+sqlite:///{self.workdir / 'broker.sqlite'}",
                "STRIPE_API_KEY": API_KEY,
                "STRIPE_API_BASE": base_url,
                "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "FCSYNC_CLOCK_URL": f"{base_url}/_emulator/clock",
                "FCSYNC_BEAT_INTERVAL_S": "2",
                "FCSYNC_POLL_INITIAL_S": "1",
                "FCSYNC_POLL_MAX_S": "5",
                "FCSYNC_PAGES_PER_RUN": "50",
                # Without Redis the request budget is per process: split Stripe's among them.
                "FCSYNC_REQUESTS_PER_SECOND": str(0.9 * STRIPE_TEST_RPS / WORKER_CONCURRENCY),
                "FCSYNC_LOG_LEVEL": "INFO",
            }
        )
        return env

    def _lag(self, control: EmulatorControl, account_id: str, label: str) -> str | None:
        """Why the account is not yet in sync with Stripe, or None when it is."""
        with Session(self.engine) as session:
            row = session.get(Account, account_id)
            if row is None:
                return "not tracked yet"
            if label == "inactive":
                # Refreshing an inactive account is a permanent error: recorded, not retried.
                return None if row.last_error_code else "error not recorded yet"
            theirs = control.account(account_id)["transaction_refresh"]
            if theirs is None or theirs["status"] == "pending":
                return "refresh pending at Stripe"
            if theirs["status"] == "succeeded" and row.cursor_refresh_id != theirs["id"]:
                return f"{theirs['id']} not synced yet"
            if theirs["status"] == "failed" and row.refresh_id != theirs["id"]:
                return f"failed refresh {theirs['id']} not observed yet"
            if diff_transactions(
                stored_transactions(session, account_id), control.transactions(account_id), limit=1
            ):
                return "rows differ"
        return None

    def _converge(
        self,
        control: EmulatorControl,
        accounts: dict[str, str],
        phase: str,
        deadline: float,
        supervisor: Supervisor,
    ) -> None:
        started = time.monotonic()
        behind = dict(accounts)
        with Progress(
            TextColumn(f"{phase}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("accounts in sync"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,
        ) as progress:
            bar = progress.add_task(phase, total=len(accounts))
            last = -1
            while behind:
                behind = {
                    label: account_id
                    for label, account_id in behind.items()
                    if self._lag(control, account_id, label) is not None
                }
                done = len(accounts) - len(behind)
                progress.update(bar, completed=done)
                if not self.console.is_terminal and done != last:
                    self.say(f"{phase}: {done}/{len(accounts)} accounts in sync")
                last = done
                if not behind:
                    break
                for name, proc in supervisor.procs.items():
                    if proc.poll() is not None:
                        raise DemoFailure(f"{name} exited with {proc.returncode}")
                if time.monotonic() > deadline:
                    reasons = [
                        f"{label} ({self._lag(control, account_id, label)})"
                        for label, account_id in sorted(behind.items())
                    ]
                    raise DemoFailure(f"{phase} timed out; behind: {', '.join(reasons[:8])}")
                time.sleep(0.5)
        self.say(
            f"{phase}: all {len(accounts)} accounts in sync ({time.monotonic() - started:.1f}s)"
        )

    def _final_check(self, control: EmulatorControl, accounts: dict[str, str]) -> list[str]:
        problems: list[str] = []
        stats = control.stats()
        if stats["gating_violations"]:
            problems.append(f"{stats['gating_violations']} refreshes were requested too early")
        with Session(self.engine) as session:
            for label, account_id in accounts.items():
                truth = control.transactions(account_id)
                if not truth and label != "inactive":
                    problems.append(f"{label} {account_id}: Stripe shows no transactions")
                diffs = diff_transactions(stored_transactions(session, account_id), truth, limit=3)
                problems += [f"{label} {account_id}: {d}" for d in diffs]
                row = session.get(Account, account_id)
                cursor = row.cursor_refresh_id if row else None
                if cursor is not None:
                    refresh = session.get(Refresh, cursor)
                    if refresh is None or refresh.status != "succeeded":
                        problems.append(f"{label}: cursor {cursor} is not a succeeded refresh")
        return problems

    def _show_logs(self) -> None:
        if not self.logs.is_dir():
            return
        for log in sorted(self.logs.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-15:]
            self.console.print(f"[dim]--- last lines of {log.name}[/dim]")
            for line in tail:
                self.console.print(line, markup=False, highlight=False)

    def _summary(self, control: EmulatorControl, accounts: dict[str, str]) -> None:
        stats = control.stats()
        with Session(self.engine) as session:
            rows = {a.id: a for a in session.scalars(select(Account))}
            refreshes = list(session.scalars(select(Refresh)))
            stored = {i: len(stored_transactions(session, i)) for i in accounts.values()}
        per_account = Counter((r.account_id, r.status) for r in refreshes)
        # No side borders and ids that never wrap: the whole table fits 80 columns, ids whole.
        table = Table(
            title="fcsync demo: accounts", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False
        )
        table.add_column("account", no_wrap=True)
        table.add_column("id", no_wrap=True)
        table.add_column("rows", justify="right")
        table.add_column("refreshes\nok/failed", justify="right")
        table.add_column("last error", no_wrap=True)
        for label, account_id in accounts.items():
            a = rows.get(account_id)
            table.add_row(
                label,
                account_id,
                f"{stored[account_id]:,}",
                f"{per_account[(account_id, 'succeeded')]}/{per_account[(account_id, 'failed')]}",
                (a.last_error_code or "") if a else "not tracked",
            )
        self.console.print(table)
        outcomes = Counter(r.status for r in refreshes)
        totals = Table(title="fcsync demo: totals")
        totals.add_column("metric")
        totals.add_column("value", justify="right")
        totals.add_row("accounts", str(len(accounts)))
        totals.add_row("transactions stored", f"{sum(stored.values()):,}")
        for outcome, n in sorted(outcomes.items()):
            totals.add_row(f"refreshes {outcome}", str(n))
        totals.add_row("Stripe API requests", str(sum(stats["requests"].values())))
        totals.add_row("429 rate limited", str(stats["rate_limited"]))
        totals.add_row("gating violations", str(stats["gating_violations"]))
        totals.add_row("webhooks sent", str(stats["webhooks"]["sent"]))
        self.console.print(totals)
        demo_tour.explain(self.console, demo_tour.GATING)


class DemoFailure(Exception):
    """The demo could not show the job done; the message says why."""


def run_demo(
    *, seed: int = 7, timeout_s: float = 110.0, console_factory: Callable[[], Console] = Console
) -> int:
    with tempfile.TemporaryDirectory(prefix="fcsync-demo-") as tmp:
        workdir = Path(tmp)
        (workdir / "logs").mkdir()
        with _records_to(workdir / "logs" / "demo.log"):
            return Demo(console_factory(), workdir=workdir, seed=seed).run(timeout_s=timeout_s)


@contextmanager
def _records_to(path: Path) -> Iterator[None]:
    """This process's log records (the supervisor's, the emulator's) go to a file while the demo
    talks, so they never interleave with its story."""
    root = logging.getLogger()
    saved = root.handlers[:]
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers = [handler]
    try:
        yield
    finally:
        root.handlers = saved
        handler.close()
