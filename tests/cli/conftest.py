"""The `fcsync` command as a user runs it: a process of its own (forked from one that imported
fcsync once: tests/forked_cli.py) with its own environment, a SQLite database in a temporary
folder, the embedded broker there too, and an in-process emulator standing in for Stripe. Tests
of how the console script itself starts run it with subprocess."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from emulator import Emulator, EmulatorConfig, EmulatorControl
from models import Account
from tests.forked_cli import run_fcsync
from tests.processes import BIN, embedded_queue
from worker.db import make_engine, upgrade_database
from worker.playground.convergence import wait_for
from worker.playground.emulator_env import free_port
from worker.reports import stored_transactions
from worker.supervisor import Supervisor

ROOT = Path(__file__).resolve().parents[2]
# Re-exported for the test modules: one subprocess toolkit for every test folder.
__all__ = ["BIN", "Supervisor", "free_port", "wait_for"]
FCSYNC = str(BIN / "fcsync")
API_KEY = "sk_test_fcsync_cli"
WEBHOOK_SECRET = "whsec_fcsync_cli"
# Two pages per run: a 250-row backfill takes two runs, so --inline must follow continuations.
PAGES_PER_RUN = 2


def clean_environ() -> dict[str, str]:
    """The caller's environment without any fcsync/Stripe/broker configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FCSYNC_", "STRIPE_"))}
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "FORCE_COLOR", "TTY_COMPATIBLE"):
        env.pop(name, None)
    return env


@dataclass
class Workdir:
    """One user's folder: database, embedded broker and environment for `fcsync`."""

    path: Path
    base_url: str
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.path / 'fcsync.db'}"

    @property
    def broker_file(self) -> Path:
        return self.path / "broker.sqlite"

    def env(self, **overrides: str | None) -> dict[str, str]:
        env = clean_environ()
        env.update(
            {
                "DATABASE_URL": self.db_url,
                "FCSYNC_EMBEDDED_BROKER_PATH": str(self.broker_file),
                "STRIPE_API_KEY": API_KEY,
                "STRIPE_API_BASE": self.base_url,
                "FCSYNC_LOG_LEVEL": "WARNING",
                "FCSYNC_POLL_INITIAL_S": "0.2",
                "FCSYNC_POLL_MAX_S": "1",
                "FCSYNC_PAGES_PER_RUN": str(PAGES_PER_RUN),
                "FCSYNC_MAX_NETWORK_RETRIES": "0",
                "FCSYNC_INLINE_RETRY_S": "0.01",
                # Workers of tests running side by side would contend for the default port.
                "FCSYNC_METRICS_PORT": "0",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra)
        for name, value in overrides.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def run(
        self, *args: str, expect: int | None = 0, timeout: float = 60, **env: str | None
    ) -> subprocess.CompletedProcess[str]:
        """Run `fcsync ARGS` (a process forked from one that imported fcsync: tests/forked_cli.py);
        check the exit code, and that no error ever shows a traceback."""
        proc = run_fcsync(list(args), env=self.env(**env), cwd=self.path, timeout=timeout)
        detail = f"fcsync {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr + proc.stdout, detail
        if expect is not None:
            assert proc.returncode == expect, detail
        return proc

    def start_and_exit(
        self, argv: list[str], **env: str | None
    ) -> subprocess.CompletedProcess[str]:
        """Start a long-running command (a worker, beat, the receiver, `run`) that is expected to
        refuse and exit; the warning filter hides Celery's "running as root" banner."""
        return subprocess.run(
            argv,
            cwd=self.path,
            env=self.env(PYTHONWARNINGS="ignore", **env),
            capture_output=True,
            text=True,
            timeout=60,
        )

    def query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        engine = create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return [tuple(row) for row in conn.execute(text(sql), params)]
        finally:
            engine.dispose()

    def execute(self, sql: str, **params: Any) -> None:
        """Change the database behind fcsync's back (in one committed transaction)."""
        engine = create_engine(self.db_url)
        try:
            with engine.begin() as conn:
                conn.execute(text(sql), params)
        finally:
            engine.dispose()

    def stored(self, account: str) -> list[dict[str, Any]]:
        """The account's stored transactions in Stripe's shape (what `transactions` reads)."""
        engine = make_engine(self.db_url)
        try:
            with Session(engine) as session:
                return stored_transactions(session, account)
        finally:
            engine.dispose()

    def account(self, account: str) -> dict[str, Any]:
        engine = make_engine(self.db_url)
        try:
            with Session(engine) as session:
                row = session.get(Account, account)
                assert row is not None, f"{account} is not in the database"
                return {
                    "tracked": row.tracked,
                    "subscribed": row.subscribed,
                    "refresh_id": row.refresh_id,
                    "refresh_status": row.refresh_status,
                    "cursor": row.cursor_refresh_id,
                    "last_error_code": row.last_error_code,
                }
        finally:
            engine.dispose()

    def insert_account(
        self,
        account: str,
        *,
        tracked: bool = True,
        stripe_account: str | None = None,
        stripe_key: str | None = None,
    ) -> None:
        """An active account row as a successful `track` leaves it, without asking Stripe."""
        now = datetime.now(UTC)
        engine = make_engine(self.db_url)
        try:
            with Session(engine) as session, session.begin():
                session.add(
                    Account(
                        id=account,
                        stripe_account=stripe_account,
                        stripe_key=stripe_key,
                        tracked=tracked,
                        permissions=["transactions"],
                        subscriptions=[],
                        created_at=now,
                        updated_at=now,
                    )
                )
        finally:
            engine.dispose()

    def queued(self) -> list[dict[str, Any]]:
        """Messages waiting on the embedded broker's fcsync queue: task name and kwargs."""
        return [
            {"task": m["task"], "args": m["args"], "kwargs": m["kwargs"]}
            for m in embedded_queue(self.broker_file)
        ]


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    """Wall-clock emulator (fcsync reads wall time too): refreshes finish 0.2 s after they
    start and may start again right away."""
    with Emulator(
        EmulatorConfig(seed=11, refresh_delay_s=0.2, refresh_cooldown_s=0.0, transactions=50)
    ) as emu:
        yield emu


@pytest.fixture(scope="session")
def control(emulator: Emulator) -> Iterator[EmulatorControl]:
    ctl = EmulatorControl(emulator.base_url)
    yield ctl
    ctl.close()


@pytest.fixture
def workdir(tmp_path: Path, emulator: Emulator) -> Workdir:
    return Workdir(tmp_path, emulator.base_url)


@pytest.fixture
def migrated(workdir: Workdir) -> Workdir:
    """Migrated in-process (test_db.py covers `fcsync db upgrade` itself): a second saved."""
    upgrade_database(workdir.db_url)
    return workdir


@dataclass(frozen=True)
class Synced:
    """A folder whose database holds one account synced by `track` + `refresh --wait`."""

    workdir: Workdir
    account: str


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory, emulator: Emulator) -> Synced:
    control = EmulatorControl(emulator.base_url)
    try:
        # Stripe's next refresh an hour off: what status shows (its state and until when) holds
        # still through the module's tests, however fast they run.
        account = control.create_account(transactions=250, refresh_cooldown_s=3_600)["id"]
    finally:
        control.close()
    workdir = Workdir(tmp_path_factory.mktemp("synced"), emulator.base_url)
    upgrade_database(workdir.db_url)
    workdir.run("track", account, "--inline", "--no-subscribe")
    workdir.run("refresh", account, "--inline", "--wait")
    return Synced(workdir, account)


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Supervisor]:
    """Long-running `fcsync`/`celery` children, run in the test's folder, always reaped."""
    procs = Supervisor(log_dir=tmp_path, cwd=tmp_path)
    yield procs
    procs.stop()
