"""Task wiring: names pinned, retry policy declared, bad arguments fail permanently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

import celeryconfig
from tasks import reconcile, refresh, sync, tracking, webhooks
from tasks.base import FcsyncTask
from worker.app import app
from worker.errors import PermanentError, TransientError
from worker.settings import Settings

PINNED = {
    "fcsync.track_account": tracking.track_account_task,
    "fcsync.untrack_account": tracking.untrack_account_task,
    "fcsync.refresh_account": refresh.refresh_account_task,
    "fcsync.poll_refresh": refresh.poll_refresh_task,
    "fcsync.sync_transactions": sync.sync_transactions_task,
    "fcsync.handle_event": webhooks.handle_event_task,
    "fcsync.handle_events": webhooks.handle_events_task,
    "fcsync.refresh_due_accounts": refresh.refresh_due_accounts_task,
    "fcsync.poll_stale_refreshes": refresh.poll_stale_refreshes_task,
    "fcsync.retry_failed_syncs": sync.retry_failed_syncs_task,
    "fcsync.sweep_events": webhooks.sweep_events_task,
    "fcsync.reconcile_account": reconcile.reconcile_account_task,
    "fcsync.reconcile_due_accounts": reconcile.reconcile_due_accounts_task,
}


def test_tasks_names_are_pinned() -> None:
    registered = {name for name in app.tasks if name.startswith("fcsync.")}
    assert registered == set(PINNED)
    for name, task in PINNED.items():
        assert task.name == name
        assert app.tasks[name].run is task.run


@pytest.mark.parametrize("name", sorted(PINNED))
def test_tasks_declare_retry_policy_and_time_limits(name: str) -> None:
    task = PINNED[name]
    assert TransientError in task.autoretry_for
    assert OperationalError in task.autoretry_for
    assert PermanentError not in task.autoretry_for
    # Expected: Celery neither retries it nor logs a traceback for it (see tasks/base.py).
    assert isinstance(task, FcsyncTask) and PermanentError in task.throws
    assert task.retry_backoff and task.retry_jitter
    assert task.max_retries is not None and task.max_retries > 0
    assert task.soft_time_limit and task.time_limit and task.soft_time_limit < task.time_limit


def test_tasks_beat_entries_all_expire_and_name_real_tasks() -> None:
    assert celeryconfig.beat_schedule
    for entry in celeryconfig.beat_schedule.values():
        assert entry["task"] in PINNED
        assert entry["options"]["expires"] > 0


def test_tasks_config_is_json_only_and_acks_late() -> None:
    assert celeryconfig.task_serializer == "json"
    assert celeryconfig.accept_content == ["json"]
    assert celeryconfig.task_acks_late and celeryconfig.worker_prefetch_multiplier == 1


ROOT = Path(__file__).resolve().parents[2]
REDIS_BROKER = "redis://127.0.0.1:6379/0"
RABBITMQ_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
CONFIG_ON_BROKER = """
import json, celeryconfig
from tasks.base import FcsyncTask
from worker.settings import get_settings
s = get_settings()
print(json.dumps({
    "broker_url": celeryconfig.broker_url,
    "transport_options": celeryconfig.broker_transport_options,
    "task_time_limit": FcsyncTask.time_limit,
    "max_countdown_s": s.fcsync_max_countdown_s,
    "poll_max_s": s.fcsync_poll_max_s,
    "events": [celeryconfig.worker_send_task_events, celeryconfig.task_send_sent_event],
    "beat": {name: [e["task"], e["schedule"], e["options"]["expires"]]
             for name, e in celeryconfig.beat_schedule.items()},
}))
"""


def celeryconfig_on(broker: str, **env: str) -> dict[str, Any]:
    """celeryconfig as a worker on `broker` builds it: imported afresh, in a process of its own
    (this one's settings are cached, and `make test` runs on the embedded broker)."""
    clean = {
        k: v for k, v in os.environ.items() if not k.upper().startswith(("FCSYNC_", "CELERY_"))
    }
    clean.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", CONFIG_ON_BROKER],
        env={**clean, "CELERY_BROKER_URL": broker, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("env", [{}, {"FCSYNC_MAX_COUNTDOWN_S": "20000"}])
def test_tasks_redis_visibility_timeout_outlasts_the_longest_countdown(env: dict[str, str]) -> None:
    config = celeryconfig_on(REDIS_BROKER, **env)
    assert config["broker_url"] == REDIS_BROKER
    timeout = config["transport_options"]["visibility_timeout"]
    # With acks_late a worker holds an ETA message unacknowledged through its countdown and its
    # run; Redis redelivers it (a second run) once the visibility timeout passes
    # (celery/celery#4766).
    countdown = max(config["max_countdown_s"], config["poll_max_s"])
    assert timeout > countdown + config["task_time_limit"]
    for task in PINNED.values():
        assert timeout > task.retry_backoff_max + task.time_limit, task.name
    # kombu's own sweep for overdue messages (every 10th tick of this timer).
    assert config["transport_options"]["unacked_restore_interval"] == 10


def test_tasks_a_short_visibility_timeout_is_swept_for_in_time() -> None:
    config = celeryconfig_on(
        REDIS_BROKER,
        FCSYNC_BROKER_VISIBILITY_TIMEOUT_S="40",
        FCSYNC_MAX_COUNTDOWN_S="30",
        FCSYNC_POLL_MAX_S="30",
    )
    options = config["transport_options"]
    assert options["visibility_timeout"] == 40
    # A sweep every 10th tick: an overdue message waits at most a quarter of the timeout more.
    assert 10 * options["unacked_restore_interval"] <= 40 / 4


def test_tasks_rabbitmq_gets_no_visibility_timeout() -> None:
    # RabbitMQ has none: its consumer timeout bounds fcsync's countdowns instead (below).
    config = celeryconfig_on(RABBITMQ_BROKER)
    assert config["broker_url"] == RABBITMQ_BROKER
    assert "visibility_timeout" not in config["transport_options"]


@pytest.mark.parametrize("consumer_timeout_s", [1_800, 3_600, 86_400])
@pytest.mark.parametrize("max_countdown_s", [60, 3_600, 200_000])
def test_tasks_rabbitmq_consumer_timeout_outlasts_every_countdown_and_run(
    consumer_timeout_s: int, max_countdown_s: int
) -> None:
    settings = Settings(
        celery_broker_url=RABBITMQ_BROKER,
        fcsync_broker_consumer_timeout_s=consumer_timeout_s,
        fcsync_max_countdown_s=max_countdown_s,
    )
    # With acks_late a worker holds an ETA message unacknowledged through its countdown, a wait
    # for a pool process that may be running out another task's time limit, and its own run:
    # RabbitMQ closes the channel (the worker stops) once its consumer timeout passes
    # (celery/celery#6760). The longest countdowns: a refresh retry (test_dispatch pins it to
    # longest_countdown_s), the poll backoff's cap and each task's retry backoff cap.
    runs = 2 * max(task.time_limit for task in PINNED.values())
    countdowns = [settings.longest_countdown_s, settings.fcsync_poll_max_s]
    countdowns += [task.retry_backoff_max for task in PINNED.values()]
    for countdown in countdowns:
        assert countdown + runs <= consumer_timeout_s, countdowns
    # The rule shortens nothing the server can hold.
    if max_countdown_s + runs <= consumer_timeout_s:
        assert settings.longest_countdown_s == max_countdown_s


@pytest.mark.parametrize(("env", "on"), [({}, True), ({"FCSYNC_TASK_EVENTS": "false"}, False)])
def test_tasks_events_are_on_unless_turned_off(env: dict[str, str], on: bool) -> None:
    # Workers' task events and every sender's task-sent event: what Flower shows.
    assert celeryconfig_on(REDIS_BROKER, **env)["events"] == [on, on]


@pytest.mark.parametrize(
    ("env", "every"),
    [({}, 300.0), ({"FCSYNC_EVENTS_SWEEP_S": "30"}, 30.0), ({"FCSYNC_EVENTS_SWEEP_S": "0"}, None)],
)
def test_tasks_events_sweep_runs_every_its_period_unless_off(
    env: dict[str, str], every: float | None
) -> None:
    beat = celeryconfig_on(REDIS_BROKER, **env)["beat"]
    if every is None:
        assert "fcsync.sweep_events" not in [task for task, _, _ in beat.values()]
    else:
        assert beat["sweep-events"] == ["fcsync.sweep_events", every, every]


@pytest.mark.parametrize(
    ("env", "every"),
    [
        ({}, 300.0),
        ({"FCSYNC_BEAT_INTERVAL_S": "10"}, 50.0),
        ({"FCSYNC_RECONCILE_INTERVAL_S": "0"}, None),
    ],
)
def test_tasks_reconcile_sweep_runs_every_five_beat_periods_and_expires_unless_off(
    env: dict[str, str], every: float | None
) -> None:
    beat = celeryconfig_on(REDIS_BROKER, **env)["beat"]
    if every is None:
        assert "fcsync.reconcile_due_accounts" not in [task for task, _, _ in beat.values()]
    else:
        # Expires with its period: a sweep beat sent while no worker ran is dropped, not run
        # late beside the next one (which finds the same accounts due).
        assert beat["reconcile-due-accounts"] == ["fcsync.reconcile_due_accounts", every, every]


@pytest.mark.parametrize(
    ("task", "kwargs"),
    [
        (tracking.track_account_task, {"account_id": 42}),
        (tracking.track_account_task, {"account_id": "acct_1"}),
        (tracking.track_account_task, {"account_id": "fca_1", "subscribe": "yes"}),
        (refresh.refresh_account_task, {"account_id": "fca_1", "source": "cron"}),
        (refresh.poll_refresh_task, {"account_id": "fca_1", "attempt": -1}),
        (refresh.poll_refresh_task, {"account_id": "fca_1", "attempt": 10**9}),
        (refresh.poll_refresh_task, {"account_id": "fca_1", "attempt": True}),
        (refresh.refresh_account_task, {"account_id": "fca_1", "source": ["manual"]}),
        (tracking.track_account_task, {"account_id": "fca_1", "bogus": 1}),
        (tracking.track_account_task, {"account_id": "fca_" + "1" * 61}),
        (sync.sync_transactions_task, {"account_id": None}),
        (webhooks.handle_event_task, {"event_id": "not-an-event"}),
        (webhooks.handle_event_task, {"event_id": "evt_1\x00"}),
        (webhooks.handle_events_task, {"event_ids": "evt_1"}),
        (webhooks.handle_events_task, {"event_ids": []}),
        (webhooks.handle_events_task, {"event_ids": ["evt_1", "fca_1"]}),
        (webhooks.handle_events_task, {"event_ids": ["evt_1"] * 101}),
        (webhooks.sweep_events_task, {"since": "yesterday"}),
        (webhooks.sweep_events_task, {"since": "2026-11-01T00:00:00"}),
        (webhooks.sweep_events_task, {"since": 1_790_000_000}),
        (reconcile.reconcile_account_task, {"account_id": "fca_1", "days": 0}),
        (reconcile.reconcile_account_task, {"account_id": "fca_1", "days": 181}),
        (reconcile.reconcile_account_task, {"account_id": "fca_1", "days": "30"}),
        (reconcile.reconcile_account_task, {"account_id": "fca_1", "days": True}),
        (reconcile.reconcile_account_task, {"account_id": "fca_1", "days": 7.0}),
        (reconcile.reconcile_account_task, {"account_id": "acct_1", "days": 7}),
        (reconcile.reconcile_account_task, {"account_id": "fca_1", "stripe_account": "fca_2"}),
        (reconcile.reconcile_due_accounts_task, {"account_id": "fca_1"}),
    ],
)
def test_tasks_bad_argument_is_a_permanent_failure_not_a_retry(task, kwargs) -> None:  # type: ignore[no-untyped-def]
    result = task.apply(kwargs=kwargs)
    assert result.failed()
    assert isinstance(result.result, PermanentError)
    assert result.result.code == "bad_argument"
    # A retry would surface as celery.exceptions.Retry (state RETRY), not as a FAILURE.
    assert result.state == "FAILURE"
