"""Beat and one worker in the test's process, on the emulator's clock: each tick moves emulated
time, runs beat's sweeps through the real tasks, then every follow-up whose countdown has run
out. The emulator counts the Stripe requests naming each account."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import pytest

from tasks.refresh import poll_stale_refreshes_task, refresh_due_accounts_task
from tasks.sync import retry_failed_syncs_task
from tests.service.conftest import TaskRig
from tests.service.harness import EmulatedFC, at
from worker.app import app
from worker.errors import PermanentError
from worker.records import Followup


class EmulatorClock:
    """The tasks' `now` is the emulator's (frozen, so it moves only when the test advances it):
    Stripe and fcsync compare like with like."""

    def __init__(self, fc: EmulatedFC) -> None:
        self.current = fc.now()

    def now(self) -> datetime:
        return self.current


@dataclass
class Beat:
    fc: EmulatedFC
    rig: TaskRig
    clock: EmulatorClock
    ticks: int = 0
    queue: list[tuple[float, Followup]] = field(default_factory=list)
    permanent_failures: Counter[str] = field(default_factory=Counter)

    def advance(self, seconds: float) -> datetime:
        # Straight on the emulator's bank, as its control API would do it, minus an HTTP round
        # trip: thousands of ticks must take seconds.
        bank = self.fc.emulator.bank
        with bank.lock:
            self.clock.current = at(bank.advance(seconds))
        return self.clock.current

    def tick(self, step_s: float) -> None:
        """One beat period; the other two sweeps run every second period, as in celeryconfig."""
        self.advance(step_s)
        refresh_due_accounts_task()
        if self.ticks % 2 == 0:
            poll_stale_refreshes_task()
            retry_failed_syncs_task()
        self.ticks += 1
        self.run_due()

    def run_for(self, seconds: float, step_s: float) -> None:
        for _ in range(int(seconds // step_s)):
            self.tick(step_s)

    def run_due(self) -> None:
        now = self.clock.current.timestamp()
        while True:
            for followup in self.rig.sent:
                self.queue.append((now + (followup.countdown or 0), followup))
            self.rig.sent.clear()
            ready = [item for item in self.queue if item[0] <= now]
            if not ready:
                return
            for item in ready:
                self.queue.remove(item)
                self._run(item[1])

    def _run(self, followup: Followup) -> None:
        try:
            app.tasks[followup.task].run(**followup.kwargs)
        except PermanentError as exc:
            # What Celery does with it: logged once, not retried.
            self.permanent_failures[f"{followup.task} {exc.code}"] += 1

    def requests_by_account(self) -> Counter[str]:
        return Counter(self.fc.control.stats()["requests_by_account"])


def make_beat(fc: EmulatedFC, rig: TaskRig, monkeypatch: pytest.MonkeyPatch) -> Beat:
    clock = EmulatorClock(fc)
    monkeypatch.setattr(rig.runtime, "clock", clock)
    return Beat(fc, rig, clock)
