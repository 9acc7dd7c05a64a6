"""Task wiring: names pinned, retry policy declared, bad arguments fail permanently."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

import celeryconfig
from tasks import refresh, sync, tracking, webhooks
from tasks.base import FcsyncTask
from worker.app import app
from worker.errors import PermanentError, TransientError

PINNED = {
    "fcsync.track_account": tracking.track_account_task,
    "fcsync.untrack_account": tracking.untrack_account_task,
    "fcsync.refresh_account": refresh.refresh_account_task,
    "fcsync.poll_refresh": refresh.poll_refresh_task,
    "fcsync.sync_transactions": sync.sync_transactions_task,
    "fcsync.handle_event": webhooks.handle_event_task,
    "fcsync.refresh_due_accounts": refresh.refresh_due_accounts_task,
    "fcsync.poll_stale_refreshes": refresh.poll_stale_refreshes_task,
    "fcsync.retry_failed_syncs": sync.retry_failed_syncs_task,
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
    timeout = celeryconfig.broker_transport_options.get("visibility_timeout")
    if timeout is not None:
        assert timeout > celeryconfig._settings.fcsync_max_countdown_s


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
    ],
)
def test_tasks_bad_argument_is_a_permanent_failure_not_a_retry(task, kwargs) -> None:  # type: ignore[no-untyped-def]
    result = task.apply(kwargs=kwargs)
    assert result.failed()
    assert isinstance(result.result, PermanentError)
    assert result.result.code == "bad_argument"
    # A retry would surface as celery.exceptions.Retry (state RETRY), not as a FAILURE.
    assert result.state == "FAILURE"
