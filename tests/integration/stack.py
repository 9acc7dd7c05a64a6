"""A whole fcsync stack for end-to-end, chaos and benchmark runs: the emulator in this process,
real `celery worker` / `celery beat` / `fcsync webhooks` subprocesses, and checks of the
database against the emulator's ground truth. Free of pytest, so bench/ can drive it too."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
from celery import Celery
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.orm import Session

from emulator import Emulator, EmulatorConfig, EmulatorControl, FaultSettings
from models import Account, Refresh, Transaction
from tests.processes import (
    ProcessGroup,
    free_port,
)
from worker.db import make_engine, upgrade_database
from worker.supervisor import beat_argv, webhooks_argv, worker_argv

DAY_S = 86_400
API_KEY = "sk_test_fcsync_stack"
WEBHOOK_SECRET = "whsec_fcsync_stack"
WEBHOOK_PATH = "/webhooks/stripe"
# The emulator enforces Stripe's test-mode limit; fcsync's shared budget stays below it, so
# every 429 a run sees is an injected fault, never fcsync outrunning Stripe.
STRIPE_TEST_RPS = 25
FCSYNC_RPS = 20
# A failed refresh may be retried only after this much emulator time: beat never retries one
# within an emulated day, which keeps the number of refreshes per day predictable.
REFRESH_COOLDOWN_S = 3_600.0
PAGE = 100


# What "the DB equals the truth" compares, per transaction (the id is the key).
FIELDS = (
    "status",
    "amount",
    "currency",
    "updated",
    "posted_at",
    "void_at",
    "transacted_at",
    "transaction_refresh",
)


class StackFailure(AssertionError):
    """The stack did not reach the expected state; the message says why."""


def create_database(admin_url: str) -> str:
    """A fresh, empty database on the server of `admin_url`; returns its URL."""
    name = f"fcsync_e2e_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def drop_database(admin_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


class Children(ProcessGroup):
    """The stack's subprocesses (see tests.processes), started with the stack's environment."""

    def worker(self, name: str, *, concurrency: int) -> subprocess.Popen[bytes]:
        return self.start(name, worker_argv(concurrency, name=name))

    def check_alive(self) -> None:
        for name, code in self.exited().items():
            raise StackFailure(f"{name} exited with {code}")


@dataclass
class Phase:
    """The state when every account had caught up after one step of the scenario."""

    name: str
    stats: dict[str, Any]
    # Per account: the truth as {transaction id: updated}, and Stripe's latest refresh.
    truth: dict[str, dict[str, int]]
    refresh: dict[str, dict[str, Any] | None]
    elapsed_s: float


@dataclass
class StackOptions:
    db_url: str
    broker_url: str
    workdir: Path
    # Redis for the shared request budget; None = a budget per worker process.
    redis_url: str | None = None
    seed: int = 7
    webhooks: bool = True
    concurrency: int = 2
    faults: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


class Stack:
    """`with Stack(options, accounts) as stack:` starts everything; the block tracks, advances
    and converges; leaving stops and reaps every process (printing logs if the block failed)."""

    def __init__(self, options: StackOptions, accounts: Sequence[dict[str, Any]]) -> None:
        self.options = options
        self.specs = list(accounts)
        self.emulator = Emulator(
            EmulatorConfig(
                seed=options.seed,
                refresh_delay_s=1.0,
                refresh_cooldown_s=REFRESH_COOLDOWN_S,
                faults=FaultSettings(seed=options.seed, requests_per_second=STRIPE_TEST_RPS),
            )
        )
        self.control: EmulatorControl | None = None
        self.engine: Engine | None = None
        self.children: Children | None = None
        self.accounts: list[str] = []
        self.phases: list[Phase] = []
        self.cursors_seen: dict[str, set[str]] = defaultdict(set)
        self.webhook_port = free_port()
        self._client: Celery | None = None
        self._started = time.monotonic()

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self._close(failed=True)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close(failed=exc is not None)

    def _start(self) -> None:
        base_url = self.emulator.start(host="127.0.0.1", port=0)
        self.control = EmulatorControl(base_url)
        self.accounts = [self.control.create_account(**spec)["id"] for spec in self.specs]
        upgrade_database(self.options.db_url)
        self.engine = make_engine(self.options.db_url)
        logs = self.options.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.children = Children(logs, self.env(base_url))
        if self.options.webhooks:
            # Registered after the accounts exist: their `account.created` events go nowhere.
            self.control.add_webhook_endpoint(
                f"http://127.0.0.1:{self.webhook_port}{WEBHOOK_PATH}", WEBHOOK_SECRET
            )
            self.children.start(
                "webhooks", webhooks_argv("127.0.0.1", self.webhook_port, WEBHOOK_PATH)
            )
        self.children.worker("worker", concurrency=self.options.concurrency)
        self.children.start("beat", beat_argv(self.options.workdir / "celerybeat-schedule"))
        if self.options.faults:
            self.control.set_faults(**self.options.faults)
        if self.options.webhooks:
            self._wait_for_receiver()
        self._client = Celery("fcsync-stack-client", broker=self.options.broker_url)

    def env(self, base_url: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("FCSYNC_", "STRIPE_", "CELERY_"))
            and k not in ("REDIS_URL", "DATABASE_URL")
        }
        budget = float(FCSYNC_RPS)
        if self.options.redis_url:
            env["REDIS_URL"] = self.options.redis_url
        else:
            # Without Redis the budget is per process: split it among the pool processes.
            budget = 0.9 * STRIPE_TEST_RPS / self.options.concurrency
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "DATABASE_URL": self.options.db_url,
                "CELERY_BROKER_URL": self.options.broker_url,
                "STRIPE_API_KEY": API_KEY,
                "STRIPE_API_BASE": base_url,
                "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                # Every process reads the emulator's clock, so a day passes in one call.
                "FCSYNC_CLOCK_URL": f"{base_url}/_emulator/clock",
                "FCSYNC_BEAT_INTERVAL_S": "1",
                "FCSYNC_POLL_INITIAL_S": "1",
                "FCSYNC_POLL_MAX_S": "3",
                "FCSYNC_REQUESTS_PER_SECOND": f"{budget:g}",
                "FCSYNC_EMBEDDED_BROKER_POLL_S": "0.05",
                "FCSYNC_LOG_LEVEL": "INFO",
            }
        )
        env.update(self.options.env)
        return env

    def _wait_for_receiver(self, timeout_s: float = 30.0) -> None:
        url = f"http://127.0.0.1:{self.webhook_port}/healthz"
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.children is not None
            self.children.check_alive()
            try:
                if requests.get(url, timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise StackFailure(f"the webhook receiver did not answer {url}")
            time.sleep(0.1)

    def _close(self, *, failed: bool) -> None:
        if self.children is not None:
            self.children.stop()
            if failed:
                print(self.children.logs())
        if self._client is not None:
            self._client.close()
        if self.control is not None:
            self.control.close()
        self.emulator.stop()
        if self.engine is not None:
            self.engine.dispose()

    # -- driving ------------------------------------------------------------------------

    @property
    def ctl(self) -> EmulatorControl:
        assert self.control is not None
        return self.control

    @property
    def procs(self) -> Children:
        assert self.children is not None
        return self.children

    def send(self, task: str, **kwargs: Any) -> None:
        """Call fcsync the way another service does: by name, JSON kwargs, no fcsync import."""
        assert self._client is not None
        self._client.send_task(task, kwargs=kwargs, queue="fcsync")

    def track_all(self, *, unsubscribed: Collection[int] = ()) -> None:
        """Track every account; those at the `unsubscribed` positions are left to beat's own
        refreshes instead of Stripe's daily subscription."""
        for i, account_id in enumerate(self.accounts):
            self.send(
                "fcsync.track_account", account_id=account_id, subscribe=i not in unsubscribed
            )

    def advance_day(self) -> None:
        self.ctl.advance(DAY_S)

    def session(self) -> Session:
        assert self.engine is not None
        return Session(self.engine)

    # -- truth and convergence ----------------------------------------------------------

    def stored(self, session: Session, account_id: str) -> dict[str, tuple[Any, ...]]:
        rows = session.execute(
            select(Transaction.id, *(getattr(Transaction, f) for f in FIELDS)).where(
                Transaction.account_id == account_id
            )
        )
        return {row[0]: tuple(row[1:]) for row in rows}

    def truth(self, account_id: str) -> dict[str, tuple[Any, ...]]:
        return {t["id"]: _truth_row(t) for t in self.ctl.transactions(account_id)}

    def row_problems(self, session: Session, account_id: str, limit: int = 3) -> list[str]:
        mine, theirs = self.stored(session, account_id), self.truth(account_id)
        problems = [f"missing {i}" for i in sorted(theirs.keys() - mine.keys())]
        problems += [f"unexpected {i}" for i in sorted(mine.keys() - theirs.keys())]
        for txn_id in sorted(mine.keys() & theirs.keys()):
            if mine[txn_id] != theirs[txn_id]:
                changed = {
                    name: (a, b)
                    for name, a, b in zip(FIELDS, mine[txn_id], theirs[txn_id], strict=True)
                    if a != b
                }
                problems.append(f"{txn_id} differs (stored, truth): {changed}")
        return [f"{account_id}: {p}" for p in problems[:limit]]

    def lag(self, session: Session, account_id: str, previous: str | None = None) -> str | None:
        """Why the account is not yet in sync with Stripe, or None when it is. `previous` is
        the refresh it was in sync with before: a day is done only after a newer one."""
        row = session.get(Account, account_id)
        if row is None:
            return "not tracked yet"
        stripe_account = self.ctl.account(account_id)
        theirs = stripe_account["transaction_refresh"]
        if theirs is None or theirs["status"] == "pending":
            return "refresh pending at Stripe"
        if theirs["id"] == previous:
            return (
                f"no refresh since {previous} (Stripe: {theirs['status']}, subscriptions "
                f"{stripe_account['subscriptions']}, next allowed "
                f"{theirs['next_refresh_available_at']}, now {self.ctl.now()}; fcsync: "
                f"{row.refresh_status} {row.refresh_id}, subscriptions {row.subscriptions}, "
                f"next_due_at {row.next_due_at}, error {row.last_error_code})"
            )
        if theirs["status"] == "succeeded" and row.cursor_refresh_id != theirs["id"]:
            return f"{theirs['id']} not synced yet (cursor {row.cursor_refresh_id})"
        if theirs["status"] == "failed" and (
            row.refresh_id != theirs["id"] or row.refresh_status != "failed"
        ):
            return f"failed refresh {theirs['id']} not observed yet"
        if row.sync_target_refresh_id is not None:
            return "sync in progress"
        if self.row_problems(session, account_id, limit=1):
            return "rows differ"
        return None

    def sample_cursors(self, session: Session) -> None:
        for account_id, cursor in session.execute(select(Account.id, Account.cursor_refresh_id)):
            if cursor is not None:
                self.cursors_seen[account_id].add(cursor)

    def converge(self, phase: str, *, timeout_s: float) -> Phase:
        """Wait until every account has had a refresh since the previous phase (Stripe's daily
        one, or beat's for unsubscribed accounts) and equals Stripe's truth; record the phase."""
        started = time.monotonic()
        before = self.phases[-1].refresh if self.phases else {}
        behind = list(self.accounts)
        reasons: dict[str, str] = {}
        while True:
            self.procs.check_alive()
            with self.session() as session:
                self.sample_cursors(session)
                reasons = {}
                for account_id in behind:
                    previous = before.get(account_id)
                    reason = self.lag(session, account_id, previous["id"] if previous else None)
                    if reason is not None:
                        reasons[account_id] = reason
                    session.expire_all()
            behind = list(reasons)
            if not behind:
                break
            if time.monotonic() - started > timeout_s:
                listed = ", ".join(f"{a} ({r})" for a, r in list(reasons.items())[:8])
                raise StackFailure(
                    f"{phase}: {len(behind)} accounts still behind after {timeout_s:.0f}s: {listed}"
                )
            time.sleep(0.3)
        recorded = Phase(
            name=phase,
            stats=self.ctl.stats(),
            truth={
                a: {t["id"]: int(t["updated"]) for t in self.ctl.transactions(a)}
                for a in self.accounts
            },
            refresh={a: self.ctl.account(a)["transaction_refresh"] for a in self.accounts},
            elapsed_s=time.monotonic() - started,
        )
        self.phases.append(recorded)
        return recorded

    def run_days(self, days: int, *, timeout_s: float) -> None:
        for day in range(1, days + 1):
            self.advance_day()
            self.converge(f"day {day}", timeout_s=timeout_s)

    # -- what the emulator knows --------------------------------------------------------

    def emulator_refreshes(self, account_id: str) -> dict[str, str]:
        """Every transaction refresh Stripe ran for the account: id -> final status."""
        bank = self.emulator.bank
        with bank.lock:
            return {r.id: r.status for r in bank.accounts[account_id].refreshes}

    def phase(self, name: str) -> Phase:
        return next(p for p in self.phases if p.name == name)

    # -- the acceptance checks ----------------------------------------------------------

    def problems(self) -> list[str]:
        """Everything that differs from "the DB equals Stripe and no rule was broken"."""
        problems: list[str] = []
        stats = self.ctl.stats()
        if stats["gating_violations"]:
            problems.append(f"{stats['gating_violations']} refreshes were requested too early")
        with self.session() as session:
            self.sample_cursors(session)
            stored_refreshes = {r.id: r for r in session.scalars(select(Refresh))}
            for account_id in self.accounts:
                problems += self.row_problems(session, account_id)
                problems += self._cursor_problems(session, account_id, stored_refreshes)
        return problems

    def _cursor_problems(
        self, session: Session, account_id: str, stored_refreshes: dict[str, Refresh]
    ) -> list[str]:
        problems: list[str] = []
        at_stripe = self.emulator_refreshes(account_id)
        succeeded = [i for i, status in at_stripe.items() if status == "succeeded"]
        failed = {i for i, status in at_stripe.items() if status == "failed"}
        row = session.get(Account, account_id)
        cursor = row.cursor_refresh_id if row else None
        expected = succeeded[-1] if succeeded else None
        if cursor != expected:
            problems.append(f"{account_id}: cursor {cursor} != latest succeeded {expected}")
        if cursor is not None:
            ours = stored_refreshes.get(cursor)
            if ours is None or ours.status != "succeeded" or ours.synced_at is None:
                problems.append(f"{account_id}: cursor {cursor} is not a synced succeeded refresh")
        for bad in sorted(self.cursors_seen[account_id] & failed):
            problems.append(f"{account_id}: failed refresh {bad} was a cursor")
        for refresh_id in failed:
            ours = stored_refreshes.get(refresh_id)
            if ours is not None and (ours.status != "failed" or ours.synced_at is not None):
                problems.append(
                    f"{account_id}: failed refresh {refresh_id} stored as {ours.status}, "
                    f"synced_at={ours.synced_at}"
                )
        return problems

    # -- Stripe requests ----------------------------------------------------------------

    @staticmethod
    def requests_between(first: Phase, last: Phase, prefix: str = "") -> int:
        def total(phase: Phase) -> int:
            return sum(n for k, n in phase.stats["requests"].items() if k.startswith(prefix))

        return total(last) - total(first)

    def changed(self, before: Phase, after: Phase, account_id: str) -> int:
        """Transactions the account's refreshes created or changed between two phases."""
        old, new = before.truth[account_id], after.truth[account_id]
        return sum(1 for i, updated in new.items() if old.get(i) != updated)

    def steady_state(self, first: str, last: str) -> dict[str, Any]:
        """Stripe requests per account per emulated day between two phases, against the bound
        1 + ceil(changed/100) summed over every account and day."""
        names = [p.name for p in self.phases]
        window = self.phases[names.index(first) : names.index(last) + 1]
        days = len(window) - 1
        bound = 0
        changed = 0
        pages = 0
        for before, after in itertools.pairwise(window):
            for account_id in self.accounts:
                n = self.changed(before, after, account_id)
                changed += n
                bound += 1 + math.ceil(n / PAGE)
                pages += max(1, math.ceil(n / PAGE))
        requests_total = self.requests_between(window[0], window[-1])
        by_endpoint = {
            k: n - window[0].stats["requests"].get(k, 0)
            for k, n in window[-1].stats["requests"].items()
            if n != window[0].stats["requests"].get(k, 0)
        }
        per = max(1, len(self.accounts) * days)
        return {
            "accounts": len(self.accounts),
            "days": days,
            "requests": requests_total,
            "requests_by_endpoint": by_endpoint,
            "requests_per_account_day": round(requests_total / per, 3),
            "bound": round(bound / per, 3),
            "bound_requests": bound,
            "transaction_pages_expected": pages,
            "changed_transactions": changed,
        }


def _truth_row(t: dict[str, Any]) -> tuple[Any, ...]:
    transitions = t.get("status_transitions") or {}
    flat = {**t, "posted_at": transitions.get("posted_at"), "void_at": transitions.get("void_at")}
    return tuple(flat[name] for name in FIELDS)
