"""A real `celery worker` fed bad arguments by name, as another service would send them: each
message fails once, with one short log line, no retry and no traceback, and the worker lives on
(also through bodies that are not Celery task messages at all)."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from tests.cli.conftest import clean_environ
from tests.integration.conftest import Processes, wait_for
from tests.integration.test_worker_send_task import _outcome, _store_event
from worker.db import upgrade_database

pytestmark = pytest.mark.integration

HUGE = "fca_" + "A" * 1_000_000
HUGE_NAME = "k" * 100_000

# (task, args, kwargs, send_task options)
BAD: list[tuple[str, list[Any], dict[str, Any], dict[str, Any]]] = [
    ("fcsync.track_account", [], {"account_id": 42}, {}),
    ("fcsync.track_account", [], {"account_id": "acct_1"}, {}),
    ("fcsync.track_account", [], {"account_id": "fca_1", "subscribe": 1}, {}),
    ("fcsync.refresh_account", [], {"account_id": "fca_1", "source": ["manual"]}, {}),
    ("fcsync.poll_refresh", [], {"account_id": "fca_1", "attempt": 10**9}, {}),
    ("fcsync.poll_refresh", [], {"account_id": "fca_1", "attempt": True}, {}),
    ("fcsync.sync_transactions", [], {"account_id": HUGE}, {}),
    ("fcsync.sync_transactions", ["fca_1", False, "extra"], {}, {}),
    ("fcsync.untrack_account", [], {"account_id": "fca_1", "bogus": 1}, {}),
    ("fcsync.refresh_account", [], {"account_id": "fca_1", HUGE_NAME: 1}, {}),
    ("fcsync.handle_event", [], {}, {}),
    ("fcsync.handle_event", [], {"event_id": "evt_" + "\u0000" * 10}, {}),
    # A forged retry count: Celery would compute 2**retries on the first transient error.
    ("fcsync.poll_refresh", [], {"account_id": "fca_1"}, {"retries": 10**9}),
    ("fcsync.refresh_due_accounts", [], {"surprise": HUGE}, {}),
    ("fcsync.reconcile_account", [], {"account_id": "fca_1", "days": 0}, {}),
    ("fcsync.reconcile_account", [], {"account_id": "fca_1", "days": "30"}, {}),
    ("fcsync.reconcile_account", [], {"account_id": "fca_1", "stripe_key": HUGE_NAME}, {}),
    ("fcsync.sync_transactions", [], {"account_id": "fca_1", "stripe_key": ["default"]}, {}),
    ("fcsync.track_account", [], {"account_id": "fca_1", "stripe_key": "Default"}, {}),
]
# JSON text on the wire. Bodies that are not [args, kwargs, options]: Celery alone would stop
# the worker on the first of them, and again on each redelivery.
WRONG_SHAPE = [
    '"' + "notalist" * 1000 + '"',
    "[[], {}]",
    "42",
    '[[], ["account_id", "fca_1"], {}]',
    '["fca_' + "B" * 100_000 + '", {}, {}]',
]
# Not JSON Python can read: an integer past its digit limit, nesting past its recursion limit.
UNDECODABLE = ['[[], {"account_id": ' + "1" * 5000 + "}, {}]", "[" * 100_000 + "]" * 100_000]


def test_worker_bad_arguments_sent_by_name_fail_once_with_one_short_line_and_no_retry(
    processes: Processes, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'fcsync.db'}"
    broker = f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    upgrade_database(db_url)
    env = {
        **clean_environ(),
        "DATABASE_URL": db_url,
        "CELERY_BROKER_URL": broker,
        "STRIPE_API_KEY": "sk_test_x",
    }
    worker = processes.worker(env, concurrency=1)
    log_file = tmp_path / "worker.log"

    client = Celery("caller", broker=broker)
    ids = [
        client.send_task(name, args=args, kwargs=kwargs, queue="fcsync", **options).id
        for name, args, kwargs, options in BAD
    ]
    with client.connection_for_write() as conn:
        producer = conn.Producer()
        for body in WRONG_SHAPE + UNDECODABLE:
            producer.publish(
                body,
                routing_key="fcsync",
                content_type="application/json",
                content_encoding="utf-8",
                # Celery logs an undecodable message's headers; a sender controls their size.
                headers={
                    "task": "fcsync.track_account",
                    "id": str(uuid.uuid4()),
                    "lang": "py",
                    "argsrepr": "H" * 100_000,
                },
            )
        producer.publish(
            '[["fca_1"], {}, {}]',
            routing_key="fcsync",
            content_type="application/json",
            content_encoding="utf-8",
            headers={"task": "fcsync.track_account"},  # no id
        )
    # A permanent failure inside the unit of work: logged (and recorded) there, once.
    unknown = client.send_task(
        "fcsync.handle_event", kwargs={"event_id": "evt_NotInTheInbox1"}, queue="fcsync"
    ).id
    # A well-formed key name no configured key has: refused in the unit of work, unsent.
    unknown_key = client.send_task(
        "fcsync.refresh_account",
        kwargs={"account_id": "fca_1", "stripe_key": "nokey"},
        queue="fcsync",
    ).id
    # A good message sent after the bad ones: the same worker process still does real work.
    event_id = _store_event(db_url)
    client.send_task("fcsync.handle_event", kwargs={"event_id": event_id}, queue="fcsync")
    wait_for(
        lambda: _outcome(db_url, event_id) == "ignored",
        timeout=60,
        what=f"the worker to process a good task after the bad ones\n{processes.logs()}",
    )
    # Time for a retry to show up, had any been scheduled (the policy's first countdown is <= 2 s).
    time.sleep(2.5)
    log = log_file.read_text(errors="replace")

    assert worker.poll() is None, processes.logs()
    assert processes.exited() == {}
    lines = log.splitlines()
    for task_id, (name, _, kwargs, _) in zip(ids, BAD, strict=True):
        about = [line for line in lines if task_id in line and not line.endswith(" received")]
        assert len(about) == 1, (name, kwargs.keys(), about)
        assert re.search(rf"bad argument to {re.escape(name)}\[{task_id}\]", about[0]), about
        assert len(about[0]) < 400, about[0][:1000]
        received = [line for line in lines if task_id in line and line.endswith(" received")]
        assert len(received) == 1, (name, "delivered more than once: a retry", received)
    about_unknown = [line for line in lines if "evt_NotInTheInbox1" in line or unknown in line]
    assert len(about_unknown) == 2, about_unknown  # "received", then fcsync's own line
    assert "[unknown_event]" in about_unknown[1], about_unknown
    about_key = [line for line in lines if unknown_key in line or "'nokey'" in line]
    assert len(about_key) == 2, about_key
    assert "permanent failure for fca_1: [unknown_stripe_key]" in about_key[1], about_key
    # Each wrongly shaped body is discarded with one ERROR record (Celery's: a traceback, the
    # body cut to 1 kB), each undecodable one with one line; no other traceback anywhere.
    assert log.count("Received invalid task message") == len(WRONG_SHAPE) + 1, log[-3000:]
    assert log.count("Traceback") == len(WRONG_SHAPE) + 1, log[-3000:]
    assert log.count("cannot decode a message, discarded") == len(UNDECODABLE), log[-3000:]
    for word in ("Unrecoverable", "raised unexpected", "raised expected", "] retry:"):
        assert word not in log, (word, log[-3000:])
    assert "A" * 100 not in log and "k" * 100 not in log and "B" * 1100 not in log
    assert "H" * 100 not in log
    assert len(log) < 20_000, "the log holds far more than one short line per failure"
