"""`fcsync demo`: the whole job end to end on embedded defaults against a seeded emulator.

Starts the emulator, runs worker + beat + webhook receiver as real processes (SQLite and the
embedded broker in a temporary folder), tracks every account, moves Stripe's clock through
three days of daily refreshes and checks that the database equals the emulator's truth."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from celery import Celery
from rich.console import Console
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Account, Refresh
from worker import contract
from worker.db import make_engine, upgrade_database
from worker.reports import diff_transactions, stored_transactions
from worker.supervisor import Supervisor, stack_children

DAY_S = 86_400
WEBHOOK_SECRET = "whsec_fcsync_demo"
API_KEY = "sk_test_fcsync_demo"


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


class Control:
    """The emulator's control API over HTTP (/_emulator/...)."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")
        self.http = requests.Session()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.request(method, f"{self.base}/_emulator{path}", json=body, timeout=60)
        response.raise_for_status()
        return response.json()

    def create_account(self, **spec: Any) -> dict[str, Any]:
        return dict(self._call("POST", "/accounts", spec))

    def truth(self, account_id: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/accounts/{account_id}/transactions"))

    def advance(self, seconds: float) -> int:
        return int(self._call("POST", "/clock", {"advance_s": seconds})["now"])

    def add_webhook_endpoint(self, url: str, secret: str) -> None:
        self._call("POST", "/webhook_endpoints", {"url": url, "secret": secret})

    def stats(self) -> dict[str, Any]:
        return dict(self._call("GET", "/stats"))


class Demo:
    def __init__(self, console: Console, *, workdir: Path, seed: int) -> None:
        self.console = console
        self.workdir = workdir
        self.seed = seed
        self.db_url = f"sqlite:///{workdir / 'fcsync-demo.db'}"
        self.engine = make_engine(self.db_url)

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {text}")

    def run(self, *, timeout_s: float) -> int:
        from emulator import Emulator, EmulatorConfig

        deadline = time.monotonic() + timeout_s
        emu = Emulator(
            EmulatorConfig(seed=self.seed, refresh_delay_s=1.0, refresh_cooldown_s=3_600.0)
        )
        base_url = emu.start(host="127.0.0.1", port=0)
        supervisor: Supervisor | None = None
        try:
            control = Control(base_url)
            self.say(f"emulator at {base_url} (seed {self.seed})")
            accounts = {a.label: control.create_account(**a.spec)["id"] for a in demo_bank()}
            total = sum(a.spec["transactions"] for a in demo_bank())
            self.say(f"seeded {len(accounts)} accounts holding {total:,} transactions")
            upgrade_database(self.db_url)
            port = free_port()
            env = self._env(base_url)
            control.add_webhook_endpoint(f"http://127.0.0.1:{port}/webhooks/stripe", WEBHOOK_SECRET)
            supervisor = Supervisor(
                stack_children(
                    concurrency=2,
                    webhooks=True,
                    host="127.0.0.1",
                    port=port,
                    path="/webhooks/stripe",
                    schedule=self.workdir / "celerybeat-schedule",
                ),
                env=env,
            )
            supervisor.start()
            self.say("worker, beat and webhook receiver started (SQLite + embedded broker)")
            client = Celery("demo-client", broker=env["CELERY_BROKER_URL"])
            for account_id in accounts.values():
                client.send_task(
                    contract.TRACK_ACCOUNT, kwargs={"account_id": account_id}, queue="fcsync"
                )
            self.say(f"enqueued fcsync.track_account for {len(accounts)} accounts")
            expected = {k: v for k, v in accounts.items() if k != "inactive"}
            self._converge(control, expected, "initial backfill", deadline, supervisor)
            for day in (1, 2, 3):
                control.advance(DAY_S)
                self.say(f"[bold]day {day}[/bold]: Stripe's clock moved 24 h; daily refreshes run")
                self._converge(control, expected, f"day {day}", deadline, supervisor)
            problems = self._final_check(control, accounts)
            self._summary(control, accounts)
            if problems:
                for line in problems[:20]:
                    self.console.print(f"[red]mismatch[/red] {line}")
                self.console.print("[red]FAILED[/red]: the database differs from Stripe's truth")
                return 1
            self.console.print(
                "[green]OK[/green]: every account's transactions equal the emulator's ground truth"
            )
            return 0
        except TimeoutError as exc:
            self.console.print(f"[red]FAILED[/red]: {exc}")
            return 1
        finally:
            if supervisor is not None:
                supervisor.stop()
            emu.stop()
            self.engine.dispose()

    def _env(self, base_url: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FCSYNC_", "STRIPE_"))}
        env.pop("REDIS_URL", None)
        env.pop("CELERY_BROKER_URL", None)
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
                "FCSYNC_LOG_LEVEL": "WARNING",
            }
        )
        return env

    def _pending(self, control: Control, accounts: dict[str, str]) -> list[str]:
        behind = []
        with Session(self.engine) as session:
            for label, account_id in accounts.items():
                truth = control.truth(account_id)
                mine = stored_transactions(session, account_id)
                if diff_transactions(mine, truth, limit=1):
                    behind.append(label)
        return behind

    def _converge(
        self,
        control: Control,
        accounts: dict[str, str],
        phase: str,
        deadline: float,
        supervisor: Supervisor,
    ) -> None:
        started = time.monotonic()
        last = -1
        while True:
            behind = self._pending(control, accounts)
            if not behind:
                self.say(
                    f"{phase}: all {len(accounts)} accounts in sync "
                    f"({time.monotonic() - started:.1f}s)"
                )
                return
            if len(behind) != last:
                self.say(f"{phase}: {len(accounts) - len(behind)}/{len(accounts)} in sync")
                last = len(behind)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{phase}: still behind: {', '.join(sorted(behind))}")
            for name, proc in supervisor.procs.items():
                if proc.poll() is not None:
                    raise TimeoutError(f"{name} exited with {proc.returncode}")
            time.sleep(1.0)

    def _final_check(self, control: Control, accounts: dict[str, str]) -> list[str]:
        problems: list[str] = []
        with Session(self.engine) as session:
            for label, account_id in accounts.items():
                diffs = diff_transactions(
                    stored_transactions(session, account_id), control.truth(account_id), limit=3
                )
                problems += [f"{label} {account_id}: {d}" for d in diffs]
        return problems

    def _summary(self, control: Control, accounts: dict[str, str]) -> None:
        stats = control.stats()
        with Session(self.engine) as session:
            rows = {a.id: a for a in session.scalars(select(Account))}
            outcomes = Counter(r.status for r in session.scalars(select(Refresh)))
            stored = {i: len(stored_transactions(session, i)) for i in accounts.values()}
        table = Table(title="fcsync demo summary")
        for column in ("account", "id", "status", "transactions stored", "cursor", "last error"):
            table.add_column(column)
        for label, account_id in accounts.items():
            a = rows.get(account_id)
            table.add_row(
                label,
                account_id,
                a.status if a else "-",
                f"{stored[account_id]:,}",
                (a.cursor_refresh_id or "-") if a else "-",
                (a.last_error_code or "") if a else "",
            )
        self.console.print(table)
        requests_total = sum(stats.get("requests", {}).values())
        totals = Table(title="totals")
        totals.add_column("metric")
        totals.add_column("value", justify="right")
        totals.add_row("accounts", str(len(accounts)))
        totals.add_row("transactions stored", f"{sum(stored.values()):,}")
        for outcome, n in sorted(outcomes.items()):
            totals.add_row(f"refreshes {outcome}", str(n))
        totals.add_row("Stripe API requests", str(requests_total))
        totals.add_row("429 rate limited", str(stats.get("rate_limited", 0)))
        totals.add_row("gating violations", str(stats.get("gating_violations", 0)))
        totals.add_row("webhooks sent", str(stats.get("webhooks", {}).get("sent", 0)))
        self.console.print(totals)


def run_demo(
    *, seed: int = 7, timeout_s: float = 110.0, console_factory: Callable[[], Console] = Console
) -> int:
    with tempfile.TemporaryDirectory(prefix="fcsync-demo-") as tmp:
        return Demo(console_factory(), workdir=Path(tmp), seed=seed).run(timeout_s=timeout_s)
