"""Celery settings for fcsync (lowercase names) and the beat schedule; importable on its own."""

from __future__ import annotations

from worker import contract
from worker.settings import get_settings

_settings = get_settings()

broker_url = _settings.broker_url
broker_connection_retry_on_startup = True
# Redis redelivers a message not acknowledged within visibility_timeout, so it must be larger
# than any ETA (celery/celery#4766) and any task's run time; FCSYNC_BROKER_VISIBILITY_TIMEOUT_S
# is checked against the longest countdown (worker/settings.py), and anything further out goes
# through beat. kombu looks for such messages only about every 100 s (a 10 s timer, scanning on
# every 10th tick): a shorter timeout gets a tick of a fortieth of it (at least 0.1 s), so a
# message (say, a crashed worker's task) comes back at most a quarter of the timeout late.
# RabbitMQ has no visibility timeout: its consumer timeout bounds the countdown instead
# (Settings.longest_countdown_s). The embedded (SQLAlchemy) transport hands every transport
# option to create_engine(), and has no visibility timeout to tune: neither gets one.
_visibility_timeout = _settings.broker_visibility_timeout_s
broker_transport_options = (
    {}
    if _settings.uses_embedded_broker or _settings.uses_amqp_broker
    else {
        "visibility_timeout": _visibility_timeout,
        "unacked_restore_interval": min(10.0, max(0.1, _visibility_timeout / 40)),
    }
)

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True

# No result backend: tasks report through the database, callers never wait on results.
result_backend = None
task_ignore_result = True

# Every task is idempotent (upserts keyed by Stripe id, idempotency keys on POST), so a
# message is acknowledged only after the work and redelivered if a worker dies mid-task.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
# Time limits and the retry policy are declared once, on every task's base (tasks/base.py).

task_default_queue = "fcsync"
task_routes = {"fcsync.*": {"queue": "fcsync"}}
# Events for Flower and `celery events`. Their args are Celery's argsrepr/kwargsrepr of the JSON
# kwargs fcsync sends (Stripe ids, flags): readable, and never a secret.
worker_send_task_events = _settings.fcsync_task_events
task_send_sent_event = _settings.fcsync_task_events
worker_hijack_root_logger = True

imports = ("tasks.tracking", "tasks.refresh", "tasks.sync", "tasks.webhooks", "tasks.reconcile")
# Logs an undecodable message without its headers in full (see tasks/consumer.py).
worker_consumer = "tasks.consumer:FcsyncConsumer"

_every = _settings.fcsync_beat_interval_s
beat_schedule = {
    "refresh-due-accounts": {
        "task": contract.REFRESH_DUE_ACCOUNTS,
        "schedule": _every,
        "options": {"expires": _every},
    },
    "poll-stale-refreshes": {
        "task": contract.POLL_STALE_REFRESHES,
        "schedule": 2 * _every,
        "options": {"expires": 2 * _every},
    },
    "retry-failed-syncs": {
        "task": contract.RETRY_FAILED_SYNCS,
        "schedule": 2 * _every,
        "options": {"expires": 2 * _every},
    },
}

# The events sweep reads back what webhooks may have missed: its own period, off at 0.
_events_every = _settings.fcsync_events_sweep_s
if _events_every > 0:
    beat_schedule["sweep-events"] = {
        "task": contract.SWEEP_EVENTS,
        "schedule": _events_every,
        "options": {"expires": _events_every},
    }

# The reconciliation sweep only hands out slots (FCSYNC_RECONCILE_INTERVAL_S spread by account,
# worker/reconcile.py): every five beat periods is fine-grained enough for a weekly spread, and
# one that missed its period finds the same accounts due at the next. Off at 0.
if _settings.fcsync_reconcile_interval_s > 0:
    beat_schedule["reconcile-due-accounts"] = {
        "task": contract.RECONCILE_DUE_ACCOUNTS,
        "schedule": 5 * _every,
        "options": {"expires": 5 * _every},
    }
