"""A whole fcsync stack on the playground's emulator: real `celery worker` / `celery beat` /
`fcsync webhooks` processes under the one supervisor, driven by Stripe's clock and checked
against the emulator's truth. `with Stack(options, accounts) as stack:` starts everything."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from celery import Celery
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from emulator import EmulatorControl
from models import Account
from worker import contract
from worker.db import make_engine, upgrade_database
from worker.embedded_broker import share_broker_files
from worker.playground import measures, truth
from worker.playground.convergence import Phase, StackFailure, lag
from worker.playground.emulator_env import (
    CONNECT_WEBHOOK_SECRET,
    DAY_S,
    WEBHOOK_PATH,
    WEBHOOK_SECRET,
    free_port,
    playground_emulator,
    stack_env,
)
from worker.supervisor import Supervisor, stack_children, worker_argv

__all__ = ["Phase", "Stack", "StackFailure", "StackKey", "StackOptions"]

QUEUE = "fcsync"


@dataclass(frozen=True)
class StackKey:
    """A Stripe key besides STRIPE_API_KEY (FCSYNC_STRIPE_ACCOUNTS): the emulator's platform
    `platform` (acct_...) it reaches, and its endpoints' signing secrets (the platform's own
    events, its connected accounts' on its Connect endpoint). An account spec with
    `stripe_key: name` is created on that platform and tracked with that key."""

    name: str
    api_key: str
    platform: str
    webhook_secret: str
    connect_webhook_secret: str


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
    keys: tuple[StackKey, ...] = ()
    # Where the children's last log lines go when the block fails.
    report_logs: Callable[[str], None] = print


def _emulated(spec: dict[str, Any], platforms: dict[str, str]) -> dict[str, Any]:
    """An account spec as the emulator takes it: a `stripe_key` becomes its key's platform."""
    if "stripe_key" not in spec:
        return spec
    rest = {k: v for k, v in spec.items() if k != "stripe_key"}
    return {**rest, "platform": platforms[spec["stripe_key"]]}


class Stack:
    """`with Stack(options, accounts) as stack:` starts the emulator holding `accounts` and the
    processes; the block tracks, advances and converges; leaving stops and reaps every process
    (reporting their logs if the block failed)."""

    def __init__(self, options: StackOptions, accounts: Sequence[dict[str, Any]]) -> None:
        self.options = options
        self.specs = list(accounts)
        self.emulator = playground_emulator(options.seed)
        self.control: EmulatorControl | None = None
        self.engine: Engine | None = None
        self.supervisor: Supervisor | None = None
        self.accounts: list[str] = []
        self.phases: list[Phase] = []
        self.cursors_seen: dict[str, set[str]] = defaultdict(set)
        self.webhook_port = free_port()
        self._client: Celery | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self._close(failed=True)
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._close(failed=exc_type is not None)

    def _start(self) -> None:
        base_url = self.emulator.start(host="127.0.0.1", port=0)
        self.control = EmulatorControl(base_url)
        platforms = {key.name: key.platform for key in self.options.keys}
        for key in self.options.keys:
            self.control.register_platform([key.api_key], key.platform)
        self.accounts = [
            self.control.create_account(**_emulated(spec, platforms))["id"] for spec in self.specs
        ]
        upgrade_database(self.options.db_url)
        self.engine = make_engine(self.options.db_url)
        logs = self.options.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = stack_env(
            base_url=base_url,
            db_url=self.options.db_url,
            broker_url=self.options.broker_url,
            redis_url=self.options.redis_url,
            concurrency=self.options.concurrency,
            overrides={**self._keys_file(), **self.options.env},
        )
        if self.options.webhooks:
            # Registered after the accounts exist: their `account.created` events go nowhere.
            # The platform's own events and, as a platform registers a Connect endpoint beside
            # it, its connected accounts' events, each signed with its endpoint's secret.
            url = f"http://127.0.0.1:{self.webhook_port}{WEBHOOK_PATH}"
            self.control.add_webhook_endpoint(url, WEBHOOK_SECRET)
            self.control.add_webhook_endpoint(url, CONNECT_WEBHOOK_SECRET, connect=True)
            for key in self.options.keys:
                self.control.add_webhook_endpoint(url, key.webhook_secret, platform=key.platform)
                self.control.add_webhook_endpoint(
                    url, key.connect_webhook_secret, connect=True, platform=key.platform
                )
        children = stack_children(
            concurrency=self.options.concurrency,
            webhooks=self.options.webhooks,
            host="127.0.0.1",
            port=self.webhook_port,
            path=WEBHOOK_PATH,
            schedule=self.options.workdir / "celerybeat-schedule",
            log_level="INFO",
        )
        # Its client sends on the embedded broker beside the processes starting on it.
        share_broker_files()
        self._client = Celery("fcsync-stack-client", broker=self.options.broker_url)
        self.supervisor = Supervisor(children, env, log_dir=logs)
        self.supervisor.start()
        if self.options.faults:
            self.control.set_faults(**self.options.faults)
        if self.options.webhooks:
            self._wait_for_receiver()

    def _keys_file(self) -> dict[str, str]:
        """FCSYNC_STRIPE_ACCOUNTS naming the options' keys (none: unset)."""
        if not self.options.keys:
            return {}
        path = self.options.workdir / "stripe-accounts.toml"
        path.write_text(
            "".join(
                f'[accounts.{k.name}]\napi_key = "{k.api_key}"\n'
                f'webhook_secrets = ["{k.webhook_secret}", "{k.connect_webhook_secret}"]\n'
                for k in self.options.keys
            )
        )
        return {"FCSYNC_STRIPE_ACCOUNTS": str(path)}

    # A wait, not a budget: the receiver answers within seconds on a quiet machine, but its
    # imports alone took over 30 s with two cores shared by a dozen processes.
    def _wait_for_receiver(self, timeout_s: float = 120.0) -> None:
        url = f"http://127.0.0.1:{self.webhook_port}/healthz"
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_alive()
            try:
                if requests.get(url, timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise StackFailure(f"the webhook receiver did not answer {url}")
            time.sleep(0.1)

    def worker_ready(self, name: str = "worker") -> bool:
        """Whether the worker `name` has said it is ready: its pool started, connected to the
        broker, consuming. Celery says so in its log (text or JSON), and nowhere else that a
        stack on the embedded broker, which has no remote control, could ask."""
        log = self.options.workdir / "logs" / f"{name}.log"
        return log.exists() and " ready." in log.read_text(errors="replace")

    def wait_for_worker(self, name: str = "worker", timeout_s: float = 120.0) -> None:
        """Block until the worker `name` is ready: tasks sent before wait in the queue, so a
        measurement started earlier counts the worker's start (imports, pool) as its own."""
        deadline = time.monotonic() + timeout_s
        while not self.worker_ready(name):
            self.check_alive()
            if time.monotonic() > deadline:
                raise StackFailure(f"the worker {name} did not say it was ready")
            time.sleep(0.05)

    def _close(self, *, failed: bool) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
            if failed:
                self.options.report_logs(self.supervisor.logs())
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
    def procs(self) -> Supervisor:
        assert self.supervisor is not None
        return self.supervisor

    def check_alive(self) -> None:
        for name, code in self.procs.exited().items():
            raise StackFailure(f"{name} exited with {code}")

    def start_worker(self, name: str) -> None:
        """One more worker (say, after one was killed), named apart from the first."""
        self.procs.spawn(name, worker_argv(self.options.concurrency, name=name))

    def send(self, task: str, **kwargs: Any) -> None:
        """Call fcsync the way another service does: by name, JSON kwargs, no fcsync import."""
        assert self._client is not None
        self._client.send_task(task, kwargs=kwargs, queue=QUEUE)

    def track_all(self, *, unsubscribed: Collection[int] = ()) -> None:
        """Track every account; those at the `unsubscribed` positions are left to beat's own
        refreshes instead of Stripe's daily subscription. An account created in a connected
        account's context (`stripe_account` in its spec) is tracked in it, one of another key
        (`stripe_key`) with that key."""
        for i, (account_id, spec) in enumerate(zip(self.accounts, self.specs, strict=True)):
            named = {k: spec[k] for k in ("stripe_account", "stripe_key") if spec.get(k)}
            self.send(
                contract.TRACK_ACCOUNT,
                account_id=account_id,
                subscribe=i not in unsubscribed,
                **named,
            )

    def advance_day(self) -> None:
        self.ctl.advance(DAY_S)

    def session(self) -> Session:
        assert self.engine is not None
        return Session(self.engine)

    # -- convergence --------------------------------------------------------------------

    def sample_cursors(self, session: Session) -> None:
        for account_id, cursor in session.execute(select(Account.id, Account.cursor_refresh_id)):
            if cursor is not None:
                self.cursors_seen[account_id].add(cursor)

    def converge(
        self,
        phase: str,
        *,
        timeout_s: float,
        progress: Callable[[int, int], None] | None = None,
    ) -> Phase:
        """Wait until every account has had a refresh since the previous phase (Stripe's daily
        one, or beat's for unsubscribed accounts) and equals Stripe's truth; record the phase.
        `progress(in_sync, total)` hears of every poll."""
        started = time.monotonic()
        before = self.phases[-1].refresh if self.phases else {}
        behind = list(self.accounts)
        while True:
            self.check_alive()
            with self.session() as session:
                self.sample_cursors(session)
                reasons: dict[str, str] = {}
                for account_id in behind:
                    previous = before.get(account_id)
                    reason = lag(
                        session, self.ctl, account_id, previous["id"] if previous else None
                    )
                    if reason is not None:
                        reasons[account_id] = reason
                    session.expire_all()
            behind = list(reasons)
            if progress is not None:
                progress(len(self.accounts) - len(behind), len(self.accounts))
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

    def phase(self, name: str) -> Phase:
        return next(p for p in self.phases if p.name == name)

    # -- the acceptance checks ----------------------------------------------------------

    def emulator_refreshes(self, account_id: str) -> dict[str, str]:
        """Every transaction refresh Stripe ran for the account: id -> final status."""
        bank = self.emulator.bank
        with bank.lock:
            return {r.id: r.status for r in bank.accounts[account_id].refreshes}

    def problems(self) -> list[str]:
        """Everything that differs from "the DB equals Stripe and no rule was broken"."""
        with self.session() as session:
            self.sample_cursors(session)
            return truth.problems(
                session,
                self.ctl,
                self.accounts,
                refreshes_at_stripe={a: self.emulator_refreshes(a) for a in self.accounts},
                cursors_seen=self.cursors_seen,
            )

    def steady_state(self, first: str, last: str) -> dict[str, Any]:
        """Stripe requests per account per emulated day between two phases (see measures)."""
        return measures.steady_state(self.phases, self.accounts, first, last)
