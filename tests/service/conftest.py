"""Service- and task-level fixtures: a frozen-clock emulator spoken to over real HTTP, the real
gateway, and databases that really commit (a fresh SQLite file per test; the session's
PostgreSQL database, emptied after each test). Nothing here mocks the Stripe SDK."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from tests.emulator.conftest import API_KEY, make_emulator
from tests.service.harness import EmulatedFC
from tests.service.standin import StandIn, stand_in
from worker.records import Followup
from worker.runtime import Runtime, bound
from worker.settings import Settings
from worker.stripe_gateway import gateway_from_settings

WEBHOOK_SECRET = "whsec_service_tests"


def make_settings(base_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "stripe_api_key": API_KEY,
        "stripe_api_base": base_url,
        "stripe_webhook_secret": WEBHOOK_SECRET,
        # One HTTP attempt per call unless a test asks for the SDK's retries.
        "fcsync_max_network_retries": 0,
        "fcsync_requests_per_second": 0,
        "fcsync_clock_url": None,
        "fcsync_on_synced_task": None,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@contextmanager
def emulated_fc() -> Iterator[EmulatedFC]:
    """A frozen-clock emulator (time moves only through `fc.advance`) and a gateway to it."""
    with make_emulator() as emu:
        settings = make_settings(emu.base_url)
        control = emu.control
        try:
            yield EmulatedFC(emu, control, gateway_from_settings(settings), settings)
        finally:
            control.close()


@pytest.fixture
def fc() -> Iterator[EmulatedFC]:
    with emulated_fc() as fc:
        yield fc


@pytest.fixture
def session(committed_engine: Engine) -> Iterator[Session]:
    """Overrides the root `session` here: a plain session on this test's own database. The
    root one's savepoints do not isolate commits on SQLite (pysqlite emits no BEGIN, so
    RELEASE SAVEPOINT commits), and these tests commit after every step, as the tasks do."""
    with Session(committed_engine) as session:
        yield session


@dataclass
class TaskRig:
    """The runtime the tasks run with, pointed at the emulator and `engine`; follow-ups land in
    `sent`."""

    engine: Engine
    runtime: Runtime
    sent: list[Followup] = field(default_factory=list)

    def take(self, task: str) -> list[Followup]:
        """Remove and return the captured follow-ups for `task`."""
        taken = [f for f in self.sent if f.task == task]
        self.sent[:] = [f for f in self.sent if f.task != task]
        return taken


@pytest.fixture
def rig(fc: EmulatedFC, committed_engine: Engine) -> Iterator[TaskRig]:
    """Task functions run in this process, as `fcsync ... --inline` runs them: no broker."""
    sent: list[Followup] = []
    runtime = Runtime(
        fc.settings, send=sent.append, engine=committed_engine, gateway=lambda: fc.gateway
    )
    with bound(runtime):
        yield TaskRig(committed_engine, runtime, sent)


@pytest.fixture
def standin(fc: EmulatedFC) -> Iterator[StandIn]:
    """The stand-in (tests/service/standin.py) in front of the emulator; `fc.gateway`, and so
    every service and task, goes through it."""
    with stand_in(fc.emulator.base_url) as state:
        fc.gateway = gateway_from_settings(make_settings(state.url))
        yield state
