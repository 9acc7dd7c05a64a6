"""Scenario 4, infrastructure restarts: the test's own Redis killed and started again on its port
and PostgreSQL connections terminated while accounts backfill and live a day; and Redis
redelivering long tasks while they still run (a visibility timeout shorter than a backfill)."""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select, text

from models import Account
from tests.chaos.conftest import NewOptions
from tests.chaos.scenario import Run, Scenario, run_scenario, seeds
from tests.processes import RedisServer
from worker.playground.stack import StackFailure

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.redis, pytest.mark.postgres]

QUEUE = "fcsync"
# Converge's progress hook runs about every 0.3 s: PostgreSQL is struck at three of a phase's
# first twenty ticks (seeded), while its work is still in flight.
KILL_TICKS = range(1, 20)
KILLS_PER_PHASE = 3
# The worker's line for each connection to the broker, the first and every reconnection.
RECONNECTED = "Connected to redis://"
RECONNECT_S = 30


def on_redis(default_seeds: list[int]) -> list[tuple[str, int]]:
    """Redis itself is the fault here (its restart, its visibility timeout): these scenarios run
    on Redis whatever FCSYNC_CHAOS_BROKERS asks for."""
    return [("redis", seed) for seed in seeds(default_seeds)]


def log_of(run: Run, child: str) -> Path:
    log_dir = run.stack.procs.log_dir
    assert log_dir is not None  # a stack's children always log to files
    return log_dir / f"{child}.log"


def queued_messages(broker_url: str) -> int:
    """Messages waiting in the fcsync queue (kombu keeps a list per priority), not yet taken
    by the worker: a restart of a Redis that saves nothing loses every one of them."""
    with redis.Redis.from_url(broker_url) as client:
        return sum(
            int(client.llen(key))
            for key in client.scan_iter(match=f"{QUEUE}*")
            if client.type(key) == b"list"
        )


def kill_postgres_connections(run: Run) -> int:
    """Terminate every other connection to the run's database (worker, beat, receiver, the
    cursor watch); returns how many there were."""
    assert run.stack.engine is not None
    with run.stack.engine.connect() as conn:
        killed = conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalars()
        return sum(1 for ok in killed if ok)


class Disruptions:
    """The faulty run's faults, struck from converge's progress ticks: in each phase, PostgreSQL
    connections killed at seeded ticks, and Redis restarted once as soon as messages wait in its
    queue with every account tracked (a lost `track_account` is the caller's to resend: fcsync
    never heard of the account). Redis keeps nothing on disk, so the queued messages are gone:
    beat's sweeps (retry_failed_syncs, poll_stale_refreshes, the inbox) must find the work
    again in the database."""

    def __init__(self, run: Run, server: RedisServer) -> None:
        self.run = run
        self.server = server
        self.worker = "worker"
        self.next_phase()

    def next_phase(self) -> None:
        self.tick = 0
        self.kill_at = set(self.run.rng.sample(KILL_TICKS, KILLS_PER_PHASE))
        self.restarted = False

    def __call__(self, in_sync: int, total: int) -> None:
        self.tick += 1
        if self.tick in self.kill_at:
            self.run.injected["postgres_kills"] += 1
            self.run.injected["postgres_connections_killed"] += kill_postgres_connections(self.run)
        if self.restarted or in_sync == total or not self._all_tracked():
            return
        waiting = queued_messages(self.run.stack.options.broker_url)
        if waiting:
            self._restart_redis()
            self.restarted = True
            self.run.injected["redis_restarts"] += 1
            self.run.injected["queued_messages_lost"] += waiting

    def _all_tracked(self) -> bool:
        with self.run.stack.session() as session:
            tracked = session.scalar(
                select(func.count()).select_from(Account).where(Account.tracked.is_(True))
            )
        return tracked == len(self.run.stack.accounts)

    def _restart_redis(self) -> None:
        """Restart Redis and wait for the worker to reconnect. kombu sometimes fails closing the
        lost connection instead (its restore of unacknowledged messages finds no connection, as
        in celery/kombu#970) and the worker exits 1: a new one is started, as the restart policy
        of docker-compose.yml would, and counted."""
        stack = self.run.stack
        log = log_of(self.run, self.worker)
        connected = log.read_text(errors="replace").count(RECONNECTED)
        self.server.restart()
        deadline = time.monotonic() + RECONNECT_S
        while log.read_text(errors="replace").count(RECONNECTED) == connected:
            if self.worker in stack.procs.exited():
                stack.procs.kill(self.worker)  # its pool processes go with its group
                self.run.injected["worker_died_on_redis_restart"] += 1
                self.worker = f"worker-{self.run.injected['worker_died_on_redis_restart'] + 1}"
                stack.start_worker(self.worker)
                return
            if time.monotonic() > deadline:
                raise StackFailure(
                    f"{self.worker} neither reconnected nor exited in {RECONNECT_S}s"
                )
            time.sleep(0.1)


def restart_accounts(rng: random.Random) -> list[dict[str, Any]]:
    return [{"transactions": rng.randrange(100, 600)} for _ in range(8)]


def restart_script(server: RedisServer, run: Run) -> None:
    stack = run.stack
    stack.track_all()
    strike = Disruptions(run, server) if run.faulty else None
    stack.converge("backfill", timeout_s=60, progress=strike)
    stack.advance_day()
    if strike is not None:
        strike.next_phase()
    stack.converge("day 1", timeout_s=45, progress=strike)


def restarts(server: RedisServer) -> Scenario:
    """Restarts of `server`, the Redis every run of the test uses (its own database each)."""
    return Scenario(
        name="infrastructure_restarts",
        accounts=restart_accounts,
        script=partial(restart_script, server),
        env={
            # Two pages per task: a backfill is a chain of messages, so a restart always cuts
            # some. Short leases and stale periods (emulator seconds, here wall seconds) let the
            # sweeps find the lost work within the test.
            "FCSYNC_PAGES_PER_RUN": "2",
            "FCSYNC_SYNC_LEASE_S": "5",
            "FCSYNC_STALE_PENDING_S": "5",
        },
        # A lost sync resumes from its last committed page and a lost poll is asked again; a
        # killed connection fails a unit of work before or after its one Stripe call.
        factor=1.5,
    )


@pytest.mark.parametrize(("broker", "seed"), on_redis([4]))
def test_chaos_infrastructure_restarts_end_equal_to_truth(
    new_options: NewOptions, stack_redis: RedisServer, broker: str, seed: int
) -> None:
    outcome = run_scenario(restarts(stack_redis), new_options, seed, broker=broker)
    assert not outcome.failures(), "\n".join(outcome.failures())
    assert outcome.faults_by_kind.get("queued_messages_lost", 0) > 0
    assert outcome.faults_by_kind.get("postgres_connections_killed", 0) > 0


# "Task fcsync.sync_transactions[<id>] succeeded in 1.2s: ...": a retry keeps the task's id
# but ends in "retry", so one id succeeding twice is one message delivered twice.
SUCCEEDED = re.compile(r"Task fcsync\.(\w+)\[([0-9a-f-]+)\] succeeded in")


# Celery's line for an exception no task expects (fcsync's own failures end "raised expected").
UNEXPECTED = re.compile(r"Task fcsync\.\w+\[[0-9a-f-]+\] raised unexpected: .*")


def ran_twice(worker_log: str) -> Counter[str]:
    """Extra successful runs of one task id, by task name."""
    runs = Counter(SUCCEEDED.findall(worker_log))
    extra: Counter[str] = Counter()
    for (name, _), n in runs.items():
        extra[f"ran_twice:{name}"] += n - 1
    return +extra


def redelivery_accounts(rng: random.Random) -> list[dict[str, Any]]:
    large = [{"transactions": rng.randrange(1_500, 2_500)} for _ in range(2)]
    return large + [{"transactions": rng.randrange(50, 300)} for _ in range(4)]


def redelivery_script(run: Run) -> None:
    # Backfills only: the long tasks, and each row written once in the fault-free run, so any
    # second write of a row is a copy's.
    run.stack.track_all()
    run.stack.converge("backfill", timeout_s=60)
    if run.faulty:
        log = log_of(run, "worker").read_text(errors="replace")
        run.injected.update(ran_twice(log))
        # A copy running beside its original must not even fail: it writes the same rows.
        failed = UNEXPECTED.findall(log)
        assert not failed, f"{len(failed)} task runs failed:\n" + "\n".join(failed[:5])


REDELIVERY = Scenario(
    name="redelivery",
    accounts=redelivery_accounts,
    script=redelivery_script,
    # A large backfill is one task of several seconds in both runs: every page in one run, and
    # a budget of 8 requests a second that the two large ones share.
    env={"FCSYNC_PAGES_PER_RUN": "100", "FCSYNC_REQUESTS_PER_SECOND": "8"},
    # Redis hands such a task out again 2 s after delivery while it still runs: a third pool
    # process runs the copy beside it, under the same task id (so the same sync lease), and
    # copies of ETA tasks held past it run too.
    faulty_env={
        "FCSYNC_BROKER_VISIBILITY_TIMEOUT_S": "2",
        "FCSYNC_MAX_COUNTDOWN_S": "1",
        "FCSYNC_POLL_MAX_S": "1",
    },
    concurrency=3,
    # Copies of a sync page on from the page either of them stored last, so two copies may
    # fetch the same page: at most about twice a backfill's listing.
    factor=2.0,
)


@pytest.mark.parametrize(("broker", "seed"), on_redis([5]))
def test_chaos_redelivered_tasks_change_nothing(
    new_options: NewOptions, broker: str, seed: int
) -> None:
    outcome = run_scenario(REDELIVERY, new_options, seed, broker=broker)
    assert not outcome.failures(), "\n".join(outcome.failures())
    assert outcome.faults_by_kind.get("ran_twice:sync_transactions", 0) > 0
