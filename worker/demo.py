"""`fcsync demo`: the whole job end to end on embedded defaults against a seeded emulator:
worker, beat and receiver as real processes (SQLite, embedded broker and every log in a temporary
folder), three emulated days of daily refreshes, then the database checked against the truth."""

from __future__ import annotations

import logging
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import select

from models import Account, Refresh
from worker import demo_tour
from worker.playground.stack import Stack, StackFailure, StackOptions
from worker.redaction import redact
from worker.reports import transaction_counts

WORKER_CONCURRENCY = 2
# Slower beat and polls than the test stacks.
DEMO_ENV = {
    "FCSYNC_BEAT_INTERVAL_S": "2",
    "FCSYNC_POLL_MAX_S": "5",
}
# The pages per task run the tour speaks of, at full scale: the large backfills take several.
PAGES_PER_RUN = 50


@dataclass(frozen=True)
class DemoAccount:
    label: str
    spec: dict[str, Any]


def demo_bank(scale: float = 1.0) -> list[DemoAccount]:
    """About 25 accounts: three large ones, one inactive, one whose refreshes often fail; each
    holds `scale` of its transactions (at least one)."""

    def n(full: int) -> int:
        return max(1, round(full * scale))

    bank = [
        DemoAccount(f"large-{i}", {"transactions": n(full)})
        for i, full in enumerate((30_000, 20_000, 12_000))
    ]
    bank.append(DemoAccount("inactive", {"transactions": n(300), "status": "inactive"}))
    bank.append(DemoAccount("flaky", {"transactions": n(800), "failure_rate": 0.5}))
    bank += [DemoAccount(f"small-{i}", {"transactions": n(120 + 97 * i)}) for i in range(20)]
    return bank


def pages_per_run(scale: float) -> int:
    """Scaled with the bank, so that a smaller demo's large backfills still take several runs."""
    return max(1, round(PAGES_PER_RUN * scale))


class Demo:
    def __init__(self, console: Console, *, workdir: Path, seed: int, scale: float = 1.0) -> None:
        self.console = console
        self.workdir = workdir
        self.seed = seed
        self.scale = scale
        self.pages_per_run = pages_per_run(scale)
        self.logs = workdir / "logs"

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {text}")

    def run(self, *, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        bank = demo_bank(self.scale)
        options = StackOptions(
            db_url=f"sqlite:///{self.workdir / 'fcsync-demo.db'}",
            broker_url=f"sqla+sqlite:///{self.workdir / 'broker.sqlite'}",
            workdir=self.workdir,
            seed=self.seed,
            concurrency=WORKER_CONCURRENCY,
            env={**DEMO_ENV, "FCSYNC_PAGES_PER_RUN": str(self.pages_per_run)},
            report_logs=lambda _tails: self._show_logs(),
        )
        demo_tour.show_intro(self.console)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        try:
            with Stack(options, [a.spec for a in bank]) as stack:
                return self._story(stack, bank, deadline)
        except StackFailure as exc:
            self.console.print(f"[red]FAILED[/red]: {escape(redact(str(exc)))}")
            return 1

    def _story(self, stack: Stack, bank: list[DemoAccount], deadline: float) -> int:
        accounts = dict(zip((a.label for a in bank), stack.accounts, strict=True))
        self.say(f"emulator at {stack.emulator.base_url} (seed {self.seed})")
        total = sum(a.spec["transactions"] for a in bank)
        self.say(f"seeded {len(accounts)} accounts holding {total:,} transactions:")
        demo_tour.show_cast(
            self.console,
            [(a.label, a.spec["transactions"]) for a in bank],
            pages_per_run=self.pages_per_run,
        )
        self.say(
            "worker, beat and webhook receiver started (SQLite + embedded broker), "
            f"logging to {self.logs}"
        )
        stack.track_all()
        self.say(f"enqueued fcsync.track_account for {len(accounts)} accounts")
        demo_tour.explain(self.console, demo_tour.TRACKING)
        self._converge(stack, "initial backfill", deadline)
        for day in (1, 2, 3):
            stack.advance_day()
            self.say(f"[bold]day {day}[/bold]")
            demo_tour.explain(self.console, demo_tour.DAY)
            self._converge(stack, f"day {day}", deadline)
        problems = stack.problems()
        problems += [
            f"{label} {account_id}: Stripe shows no transactions"
            for label, account_id in accounts.items()
            if label != "inactive" and not stack.ctl.transactions(account_id)
        ]
        self._summary(stack, accounts)
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

    def _converge(self, stack: Stack, phase: str, deadline: float) -> None:
        started = time.monotonic()
        total = len(stack.accounts)
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
            bar = progress.add_task(phase, total=total)
            last = -1

            def show(done: int, _total: int) -> None:
                nonlocal last
                progress.update(bar, completed=done)
                if not self.console.is_terminal and done != last:
                    self.say(f"{phase}: {done}/{total} accounts in sync")
                last = done

            stack.converge(phase, timeout_s=deadline - time.monotonic(), progress=show)
        self.say(f"{phase}: all {total} accounts in sync ({time.monotonic() - started:.1f}s)")

    def _show_logs(self) -> None:
        if not self.logs.is_dir():
            return
        for log in sorted(self.logs.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-15:]
            self.console.print(f"[dim]--- last lines of {log.name}[/dim]")
            for line in tail:
                self.console.print(line, markup=False, highlight=False)

    def _summary(self, stack: Stack, accounts: dict[str, str]) -> None:
        stats = stack.ctl.stats()
        with stack.session() as session:
            rows = {a.id: a for a in session.scalars(select(Account))}
            refreshes = list(session.scalars(select(Refresh)))
            counts = transaction_counts(session)
        stored = {i: counts.get(i, 0) for i in accounts.values()}
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


def run_demo(
    *,
    seed: int = 7,
    timeout_s: float = 110.0,
    scale: float = 1.0,
    console_factory: Callable[[], Console] = Console,
) -> int:
    with tempfile.TemporaryDirectory(prefix="fcsync-demo-") as tmp:
        workdir = Path(tmp)
        (workdir / "logs").mkdir()
        with _records_to(workdir / "logs" / "demo.log"):
            demo = Demo(console_factory(), workdir=workdir, seed=seed, scale=scale)
            return demo.run(timeout_s=timeout_s)


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
