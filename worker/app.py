"""The Celery application: configured from `celeryconfig`, with per-process resource hygiene."""

from __future__ import annotations

import logging
import sys
from typing import Any

from celery import Celery
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    beat_init,
    worker_init,
    worker_process_init,
)

from worker import logs
from worker.db import dispose_engines
from worker.errors import PermanentError
from worker.ratelimit import limiter_for
from worker.records import Followup
from worker.redaction import redact
from worker.settings import get_settings
from worker.stripe_gateway import gateway_from_settings
from worker.toplevel import claim
from worker.unit_of_work import UnitOfWork

app = Celery("fcsync")
# By file, not by name: `celery` puts its working directory first on sys.path, where another
# project's celeryconfig.py would win an import by name.
app.config_from_object(claim("celeryconfig"))


def _tune_embedded_broker() -> None:
    """kombu's SQLAlchemy transport polls its tables once a second when idle, which caps a
    worker at a task or two per second. Its `polling_interval` cannot be given as a transport
    option (the transport hands every option to create_engine()), so set it on the class."""
    settings = get_settings()
    if settings.uses_embedded_broker:
        from kombu.transport import sqlalchemy as sqla_transport

        sqla_transport.Transport.polling_interval = settings.fcsync_embedded_broker_poll_s


_tune_embedded_broker()

log = logging.getLogger(__name__)


def send_followup(followup: Followup) -> None:
    """Follow-ups named by fcsync go to its queue; a user's on-synced task goes to theirs."""
    settings = get_settings()
    queue = "fcsync" if followup.task.startswith("fcsync.") else settings.fcsync_on_synced_queue
    app.send_task(followup.task, kwargs=followup.kwargs, countdown=followup.countdown, queue=queue)


def _gateway() -> Any:
    settings = get_settings()
    return gateway_from_settings(
        settings, limiter=limiter_for(settings.redis_url, settings.fcsync_requests_per_second)
    )


uow = UnitOfWork(get_settings(), _gateway, send_followup)


@worker_process_init.connect
def _after_fork(**_: Any) -> None:
    # Pooled DB connections and HTTP sessions must not be shared with the parent process.
    dispose_engines(close=False)
    uow.reset()


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redact_logs(logger: logging.Logger, loglevel: int | str | None = None, **_: Any) -> None:
    # Worker and beat log through Celery's handlers: the same redaction and quiet stripe logger.
    logs.install(logger, loglevel)


def _refuse_to_start(*, needs_api_key: bool) -> None:
    """A worker or beat on an unmigrated database, or a worker without STRIPE_API_KEY, would
    only fail task after task: stop at start with one line naming the fix instead."""
    from worker.db import require_schema

    try:
        if needs_api_key:
            get_settings().require_api_key()
        require_schema()
    except PermanentError as exc:
        # Celery has redirected sys.stderr into its logger by now: write to the real stream.
        print(redact(f"error [{exc.code}]: {exc}"), file=sys.__stderr__, flush=True)
        raise SystemExit(3) from None  # the CLI's exit code for permanent errors


@worker_init.connect
def _check_worker_start(**_: Any) -> None:
    _refuse_to_start(needs_api_key=True)


@beat_init.connect
def _check_beat_start(**_: Any) -> None:
    # Beat only sends tasks: it never calls Stripe.
    _refuse_to_start(needs_api_key=False)
