"""Scenario 1, crash anywhere: worker processes SIGKILLed at random moments (a pool process, which
its master replaces and whose task is redelivered, or the whole worker, replaced by a new one) and
at failpoints (right after the refresh POST, between pages, between the last page's rows and the
cursor commit) while accounts backfill and live a day; and `fcsync run` itself SIGKILLed."""

from __future__ import annotations

import itertools
import math
import os
import random
import re
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from models import Account
from tests.chaos.conftest import NewOptions
from tests.chaos.scenario import Run, Scenario, full_load, matrix, run_scenario
from tests.cli.conftest import FCSYNC, clean_environ
from tests.processes import alive, cpu_s, descendants
from worker.failpoints import KILL_LINE
from worker.playground.convergence import wait_for
from worker.playground.emulator_env import free_port
from worker.playground.measures import PAGE, changed
from worker.supervisor import Supervisor

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.redis, pytest.mark.postgres]

TRANSACTIONS_LIST = "GET /v1/financial_connections/transactions"
REFRESH_POST = "POST /v1/financial_connections/accounts/{account}/refresh"
BEAT_REFRESHED = {5, 6}
CONCURRENCY = 2
# What `fcsync run` starts (besides the worker's pool processes).
ROLES = ("worker", "beat", "webhooks")
PHASES = ("backfill", "day 1")
# Every run must kill at least this many processes, whatever the seed.
MIN_KILLS = 20
# `make chaos` (full_load) kills more: the day also loses its whole worker.
CHAOS = full_load()
# Pool kills are cheap (the master forks a replacement at once): one every this many seconds,
# of a pool process that has used this much CPU (a task or a few: work, not the wall clock, so
# a slow machine is not killed into a standstill), this many at most per run.
POOL_KILL_GAP_S = (0.0, 0.3)
POOL_MIN_CPU_S = 0.1
POOL_KILLS = 60 if CHAOS else 24
# A whole worker costs a new worker's start (seconds): once per run, in the backfill (the
# longest phase), this many polls after every account is tracked.
WORKER_KILL_TICKS = (2, 8)
TASK_LINE = re.compile(r"Task [\w.]+\[(?P<id>[0-9a-f-]+)\] (?P<what>received|retry)")
FAILPOINT_KILL = re.compile(
    re.escape(KILL_LINE).replace("%s", r"(?P<name>\S+)").replace("%d", r"\d+")
)


def accounts(rng: random.Random) -> list[dict[str, Any]]:
    # One large backfill (many pages, many continuations) among small accounts.
    large = {"transactions": rng.randrange(1_000, 2_000)}
    return [large] + [{"transactions": rng.randrange(20, 300)} for _ in range(6)]


class Killer:
    """Kills worker processes at seeded moments, from the convergence loop's polls (the main
    thread: the supervisor is never touched by two threads at once)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.worker = "worker"
        self.next_pool_kill = time.monotonic() + run.rng.uniform(*POOL_KILL_GAP_S)
        self.worker_kill_phases = set(PHASES) if CHAOS else {"backfill"}
        self.worker_kill_in: int | None = None
        self.ready: set[str] = set()

    def phase(self, name: str) -> None:
        """A phase starts: plan its whole-worker kill, if any, a seeded number of polls in."""
        if name in self.worker_kill_phases:
            self.worker_kill_in = self.run.rng.randint(*WORKER_KILL_TICKS)

    def tick(self, _in_sync: int, _total: int) -> None:
        if self.worker_kill_in is not None and self.everyone_tracked():
            self.worker_kill_in -= 1
            if self.worker_kill_in <= 0:
                self.worker_kill_in = None
                self.kill_worker()
                return
        if time.monotonic() >= self.next_pool_kill and self.run.injected["pool_kills"] < POOL_KILLS:
            self.kill_pool_process()

    def everyone_tracked(self) -> bool:
        # A lost `track` message has no sweep to bring it back: kill the worker only after.
        with self.run.stack.session() as session:
            tracked = session.scalar(
                select(func.count()).select_from(Account).where(Account.tracked.is_(True))
            )
        return tracked == len(self.run.stack.accounts)

    def started(self) -> bool:
        """The worker is ready: Celery gives up on a worker whose pool process dies while it
        starts ("Could not start worker processes"), and only then replaces the dead."""
        if self.worker not in self.ready and self.run.stack.worker_ready(self.worker):
            self.ready.add(self.worker)
        return self.worker in self.ready

    def kill_pool_process(self) -> None:
        if not self.started():
            return
        pool = descendants(self.run.stack.procs.procs[self.worker].pid)
        worked = sorted(pid for pid in pool if cpu_s(pid) >= POOL_MIN_CPU_S)
        if not worked:
            return
        try:
            os.kill(self.run.rng.choice(worked), signal.SIGKILL)
        except ProcessLookupError:
            return
        self.run.injected["pool_kills"] += 1
        self.next_pool_kill = time.monotonic() + self.run.rng.uniform(*POOL_KILL_GAP_S)

    def kill_worker(self) -> None:
        """The whole worker, pool and all; its unacknowledged messages stay with Redis until
        the visibility timeout, so the sweeps (expired leases, stale polls) take over."""
        self.run.stack.procs.kill(self.worker)
        self.run.injected["worker_kills"] += 1
        self.worker = f"worker-{self.run.injected['worker_kills'] + 1}"
        self.run.stack.start_worker(self.worker)


def failpoint_kills(logs: Path) -> Counter[str]:
    """Processes that killed themselves at a failpoint, by failpoint, from the lines they wrote
    before dying (a dead process cannot count itself)."""
    found: Counter[str] = Counter()
    for log in logs.glob("worker*.log"):
        for match in FAILPOINT_KILL.finditer(log.read_text(errors="replace")):
            found[f"failpoint {match['name']}"] += 1
    return found


def redelivered(logs: Path) -> set[str]:
    """Tasks a worker received again, not as a retry: messages requeued when the pool process
    running them died."""
    received: Counter[str] = Counter()
    retried: set[str] = set()
    for log in logs.glob("worker*.log"):
        for match in TASK_LINE.finditer(log.read_text(errors="replace")):
            if match["what"] == "received":
                received[match["id"]] += 1
            else:
                retried.add(match["id"])
    return {task for task, n in received.items() if n > 1 and task not in retried}


def listing_needed(run: Run) -> int:
    """Listing pages the data needs: the backfill, then one page per 100 changes (at least one)
    per account and day."""
    stack = run.stack
    needed = sum(math.ceil(int(spec["transactions"]) / PAGE) for spec in stack.specs)
    for before, after in itertools.pairwise(stack.phases):
        needed += sum(max(1, math.ceil(changed(before, after, a) / PAGE)) for a in stack.accounts)
    return needed


def script(run: Run) -> None:
    stack = run.stack
    killer = Killer(run) if run.faulty else None
    stack.track_all(unsubscribed=BEAT_REFRESHED)
    for phase in PHASES:
        if phase != "backfill":
            stack.advance_day()
        if killer is not None:
            killer.phase(phase)
        # Each kill of a sync's process costs its lease (FCSYNC_SYNC_LEASE_S) and a sweep before
        # another run resumes it: two dozen kills can hold the large backfill up a minute or more.
        stack.converge(phase, timeout_s=180, progress=killer.tick if killer else None)
    run.injected.update(failpoint_kills(stack.options.workdir / "logs"))
    requests = stack.ctl.stats()["requests"]
    # Resumed from the last committed page, never restarted: each kill costs at most the pages
    # in flight when it struck (one per pool process; a whole worker has CONCURRENCY of them).
    in_flight = sum(run.injected.values()) + (CONCURRENCY - 1) * run.injected["worker_kills"]
    listed, needed = requests.get(TRANSACTIONS_LIST, 0), listing_needed(run)
    assert listed <= needed + in_flight, (listed, needed, dict(run.injected))
    if run.faulty:
        assert sum(run.injected.values()) >= MIN_KILLS, dict(run.injected)
        # acks_late + reject_on_worker_lost: what a killed pool process ran comes back.
        assert redelivered(stack.options.workdir / "logs"), "no task was redelivered"
        assert requests.get(REFRESH_POST, 0) >= len(BEAT_REFRESHED), requests


CRASH = Scenario(
    name="crash",
    accounts=accounts,
    script=script,
    env={
        # Emulator seconds (its clock runs with the wall's between days): a dead worker's lease
        # and its lost polls, refreshes and events are taken over within seconds.
        "FCSYNC_SYNC_LEASE_S": "5",
        "FCSYNC_STALE_PENDING_S": "5",
        "FCSYNC_FAILED_REFRESH_RETRY_S": "5",
        # Two pages per run: the large backfill goes through many continuations to crash in.
        "FCSYNC_PAGES_PER_RUN": "2",
    },
    # About eight failpoint deaths a run (one in two refresh POSTs, one in ten pages, one in three
    # cursor commits): a run without any is rare, and every sync still gets through.
    faulty_env={
        "FCSYNC_FAILPOINTS": (
            "refresh.after_post=0.5,sync.after_page=0.1,sync.before_cursor_commit=0.3"
        ),
    },
    concurrency=CONCURRENCY,
    # A kill repeats about the one request in flight (a page, an account read; a killed
    # worker's lost polls come back through the sweeps): 25-40 kills (up to ~80 with
    # FCSYNC_CHAOS_SEEDS) over a ~70-request fault-free run.
    factor=2.5,
)


@pytest.mark.parametrize(("broker", "seed"), matrix([1]))
def test_chaos_crash_anywhere_ends_equal_to_truth(
    new_options: NewOptions, broker: str, seed: int
) -> None:
    outcome = run_scenario(CRASH, new_options, seed, broker=broker)
    assert not outcome.failures(), "\n".join(outcome.failures())
    kinds = outcome.faults_by_kind
    assert kinds.get("pool_kills", 0) > 0 and kinds.get("worker_kills", 0) > 0, kinds
    assert any(kind.startswith("failpoint ") for kind in kinds), kinds


def test_run_killed_with_sigkill_leaves_no_process_behind(tmp_path: Path) -> None:
    """`fcsync run` SIGKILLed (no handler runs): its worker, the worker's pool, beat and the
    webhook receiver all die with it."""
    env = {
        **clean_environ(),
        "STRIPE_API_KEY": "sk_test_fcsync_crash",
        "STRIPE_WEBHOOK_SECRET": "whsec_fcsync_crash",
        "PYTHONUNBUFFERED": "1",
    }
    argv = [FCSYNC, "run", "--concurrency", str(CONCURRENCY), "--port", str(free_port())]
    supervisor = Supervisor(log_dir=tmp_path, cwd=tmp_path)
    below: dict[int, str] = {}
    try:
        proc = supervisor.spawn("run", argv, env=env)

        def everyone() -> dict[int, str]:
            found = descendants(proc.pid)
            commands = list(found.values())
            workers = sum(" worker.app worker " in f" {cmd} " for cmd in commands)
            started = all(any(f" {role} " in f" {c} " for c in commands) for role in ROLES)
            return found if started and workers == 1 + CONCURRENCY else {}

        below = wait_for(everyone, timeout=40, what=f"fcsync run's children\n{supervisor.logs()}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in below) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = {pid: cmd for pid, cmd in below.items() if alive(pid)}
        assert not left, f"outlived `fcsync run`: {left}"
    finally:
        for pid in below:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        supervisor.stop()
