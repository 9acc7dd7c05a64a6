"""What Flower sees of fcsync: a real worker on Redis, with the default settings, reports every
task as Celery events (sent by whoever queued it, then received, started, succeeded or failed)
by name, with readable arguments and no secret; `celery -A worker.app inspect` answers from any
directory, a folder with another project's celeryconfig.py included."""

from __future__ import annotations

import ast
import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from emulator import Emulator, EmulatorConfig
from tests.cli.conftest import clean_environ
from tests.integration.conftest import Processes, wait_for
from tests.processes import BIN
from worker import contract
from worker.db import make_engine, session_scope
from worker.inbox import REFRESHED_TRANSACTIONS, InboxEvent, insert_webhook_events

pytestmark = pytest.mark.integration

API_KEY = "sk_test_51EventsNeverShowThisKey0000"
WEBHOOK_SECRET = "whsec_EventsNeverShowThisSecret"
NODE = f"worker@{socket.gethostname()}"
# What Flower needs to follow one task from the queue to its end.
LIFECYCLE = ["task-sent", "task-received", "task-started", "task-succeeded"]


def follows_lifecycle(events: list[dict[str, Any]]) -> bool:
    """One task-sent, and the worker's events in their order. The sender announces a task
    after publishing it, so its task-sent may arrive after the worker's task-received: events
    of two senders have no order."""
    types = [e["type"] for e in events]
    return types.count("task-sent") == 1 and [t for t in types if t != "task-sent"] == LIFECYCLE[1:]


class EventLog:
    """Every event on the broker, captured in a thread by Celery's own receiver (as Flower and
    `celery events` capture them)."""

    def __init__(self, broker_url: str) -> None:
        self.app = Celery("fcsync-event-log", broker=broker_url)
        self.events: list[dict[str, Any]] = []
        self._receiver: Any = None
        self._thread = threading.Thread(target=self._capture, daemon=True)

    def _capture(self) -> None:
        with self.app.connection() as conn:
            self._receiver = self.app.events.Receiver(conn, handlers={"*": self.events.append})
            self._receiver.capture(limit=None, timeout=None, wakeup=True)

    def __enter__(self) -> EventLog:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(timeout=10)
        self.app.close()

    def of_task(self, name: str) -> dict[str, list[dict[str, Any]]]:
        """uuid -> the events of each `name` task, in arrival order (task-started and
        task-succeeded carry only the uuid, as on the wire)."""
        uuids = {e["uuid"] for e in list(self.events) if e.get("name") == name}
        found: dict[str, list[dict[str, Any]]] = {u: [] for u in uuids}
        for event in list(self.events):
            if event.get("uuid") in found:
                found[event["uuid"]].append(event)
        return found

    def finished(self, name: str, kwargs: dict[str, Any], end: str = "task-succeeded") -> bool:
        return any(
            any(readable(e.get("kwargs")) == kwargs for e in events)
            and end in [e["type"] for e in events]
            for events in self.of_task(name).values()
        )


def readable(text: str | None) -> Any:
    """An event's args/kwargs are Python reprs (Celery's argsrepr/kwargsrepr): literals only."""
    return None if text is None else ast.literal_eval(text)


def elsewhere(tmp_path: Path) -> Path:
    """A folder that is not the repository, holding another project's celeryconfig.py."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "celeryconfig.py").write_text('broker_url = "redis://127.0.0.1:1/0"\n')
    return folder


def run(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    result = subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"{argv}: {result.returncode}\n{result.stdout}{result.stderr}"
    return result.stdout


def inspect(what: str, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """`celery -A worker.app inspect WHAT --json`: the answer of each worker by node name."""
    argv = [str(BIN / "celery"), "-A", "worker.app", "inspect", what, "--json", "-d", NODE]
    answer = json.loads(run(argv, env, cwd).strip().splitlines()[-1])
    assert isinstance(answer, dict), answer
    return answer


@contextmanager
def stack(
    processes: Processes, broker_url: str, db_url: str, emulator_url: str
) -> Iterator[tuple[EventLog, dict[str, str]]]:
    """The event log listening first, then one worker with fcsync's defaults (events not set)."""
    env = {
        **clean_environ(),
        "DATABASE_URL": db_url,
        "REDIS_URL": broker_url,
        "STRIPE_API_KEY": API_KEY,
        "STRIPE_API_BASE": emulator_url,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "FCSYNC_POLL_INITIAL_S": "0.2",
    }
    with EventLog(broker_url) as log:
        processes.worker(env, concurrency=1, name="worker")
        # Its first heartbeat (or worker-online) shows both ends are up and connected.
        wait_for(
            lambda: any(e.get("hostname") == NODE for e in list(log.events)),
            timeout=60,
            what=f"an event from {NODE}\n{processes.logs()}",
        )
        yield log, env


def store_event(db_url: str, account_id: str) -> str:
    """A refreshed_transactions event of the account in the inbox, as the receiver stores it."""
    event = InboxEvent(
        "evt_BatchOfTheReceiver1",
        REFRESHED_TRANSACTIONS,
        account_id,
        False,
        1_700_000_000,
        json.dumps(
            {
                "id": "evt_BatchOfTheReceiver1",
                "object": "event",
                "type": REFRESHED_TRANSACTIONS,
                "created": 1_700_000_000,
                "livemode": False,
                "data": {
                    "object": {
                        "id": account_id,
                        "object": "financial_connections.account",
                        "status": "active",
                    }
                },
            }
        ),
    )
    engine = make_engine(db_url)
    try:
        with session_scope(engine) as session:
            insert_webhook_events(session, [event], now=datetime.now(UTC))
    finally:
        engine.dispose()
    return event.id


def test_worker_events_show_each_task_queued_running_and_done_with_readable_arguments(
    stack_redis_url: str, processes: Processes, migrated_sqlite: str, tmp_path: Path
) -> None:
    cwd = elsewhere(tmp_path)
    with (
        Emulator(EmulatorConfig(seed=3, refresh_delay_s=0.5)) as emulator,
        stack(processes, stack_redis_url, migrated_sqlite, emulator.base_url) as (log, env),
    ):
        account = emulator.control.create_account(transactions=5)["id"]
        run([str(BIN / "fcsync"), "track", account], env, cwd)
        run([str(BIN / "fcsync"), "track", "fca_NeverLinked"], env, cwd)
        wait_for(
            lambda: (
                log.finished(contract.SYNC_TRANSACTIONS, {"account_id": account})
                and log.finished(
                    contract.TRACK_ACCOUNT,
                    {"account_id": "fca_NeverLinked", "subscribe": True},
                    end="task-failed",
                )
            ),
            timeout=60,
            what=f"the sync of {account} and the failed track\n{processes.logs()}",
        )
        # A receiver batch's message, as another service may send it by name too.
        batch = {"event_ids": [store_event(migrated_sqlite, account), "evt_NotInTheInbox"]}
        sender = Celery(broker=stack_redis_url)
        sender.send_task(contract.HANDLE_EVENTS, kwargs=batch, queue="fcsync")
        sender.close()
        wait_for(
            lambda: log.finished(contract.HANDLE_EVENTS, batch),
            timeout=60,
            what=f"the batch of events handled\n{processes.logs()}",
        )

    (track,) = [
        events
        for events in log.of_task(contract.TRACK_ACCOUNT).values()
        if readable(events[0].get("kwargs")) == {"account_id": account, "subscribe": True}
    ]
    assert follows_lifecycle(track), [e["type"] for e in track]
    by_type = {e["type"]: e for e in track}
    sent, received = by_type["task-sent"], by_type["task-received"]
    assert sent["name"] == received["name"] == contract.TRACK_ACCOUNT
    assert readable(sent["args"]) == readable(received["args"]) == ()
    assert received["hostname"] == NODE
    # The follow-ups the worker itself queued are announced too (sent events on in workers).
    syncs = log.of_task(contract.SYNC_TRANSACTIONS)
    assert any(follows_lifecycle(events) for events in syncs.values()), syncs

    failed = next(
        e
        for events in log.of_task(contract.TRACK_ACCOUNT).values()
        for e in events
        if e["type"] == "task-failed"
    )
    assert "resource_missing" in failed["exception"] or "No such" in failed["exception"], failed

    # Flower follows the batch from the worker's events (its sender announced nothing).
    ((handled, *_),) = [
        [e for e in events if e["type"] == "task-succeeded"]
        for events in log.of_task(contract.HANDLE_EVENTS).values()
    ]
    assert readable(handled["result"]) == {
        "outcomes": {batch["event_ids"][0]: "processed", "evt_NotInTheInbox": "unknown_event"}
    }

    everything = json.dumps(log.events)
    for secret in (API_KEY, WEBHOOK_SECRET, API_KEY[8:]):
        assert secret not in everything


def test_celery_inspect_answers_from_any_directory(
    stack_redis_url: str, processes: Processes, migrated_sqlite: str, tmp_path: Path
) -> None:
    cwd = elsewhere(tmp_path)
    with (
        Emulator(EmulatorConfig(seed=4)) as emulator,
        stack(processes, stack_redis_url, migrated_sqlite, emulator.base_url) as (log, env),
    ):
        assert inspect("ping", env, cwd) == {NODE: {"ok": "pong"}}
        registered = set(inspect("registered", env, cwd)[NODE])
        fcsync_names = {v for k, v in vars(contract).items() if k.isupper() and isinstance(v, str)}
        assert {n for n in fcsync_names if n.startswith("fcsync.")} <= registered

        # A task held up by Stripe (25 s for its one request, under the gateway's 30 s timeout)
        # is listed by `inspect active`: `celery inspect` alone took over 8 s to start and ask
        # on a loaded machine, after an 8 s request had ended.
        account = emulator.control.create_account()["id"]
        emulator.control.set_faults(latency_ms=25_000)
        run([str(BIN / "fcsync"), "track", account, "--no-subscribe"], env, cwd)
        wait_for(
            lambda: any(e["type"] == "task-started" for e in list(log.events)),
            timeout=30,
            what="the track to start",
        )
        active = inspect("active", env, cwd)[NODE]
        assert [(t["name"], t["args"], t["kwargs"]) for t in active] == [
            (contract.TRACK_ACCOUNT, [], {"account_id": account, "subscribe": False})
        ]
        # Done: no need to wait out the slow request (a warm shutdown would).
        processes.kill("worker")
