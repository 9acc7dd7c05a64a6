"""The Celery application: configured from `celeryconfig`, with per-process resource hygiene."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from celery import Celery
from celery.events import Event
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    beat_init,
    celeryd_init,
    worker_init,
    worker_process_init,
)
from celery.utils.log import get_multiprocessing_logger
from celery.utils.time import utcoffset
from kombu.utils.uuid import uuid
from pydantic import ValidationError

from worker import embedded_broker, logs, metrics
from worker import task_metrics as _task_metrics  # noqa: F401  (connects its signals)
from worker.db import dispose_engines
from worker.errors import PermanentError
from worker.records import Followup
from worker.redaction import redact
from worker.settings import Settings, get_settings, invalid_settings
from worker.toplevel import claim

if TYPE_CHECKING:
    from worker.runtime import Runtime


def _refuse_malformed_settings() -> None:
    """A worker or beat with a malformed setting stops here, with one line naming each, as the
    CLI says it: every process reads the settings on import, and pydantic's traceback is long."""
    try:
        get_settings()
    except ValidationError as exc:
        for line in invalid_settings(exc):
            print(redact(line), file=sys.__stderr__, flush=True)
        raise SystemExit(3) from None  # the CLI's exit code for permanent errors


_refuse_malformed_settings()

# Every task's base (Celery's per-process resources pattern): retry policy, time limits and the
# process's runtime. By name, because the task layer sits above this module.
app = Celery("fcsync", task_cls="tasks.base:FcsyncTask")
# By file, not by name: `celery` puts its working directory first on sys.path, where another
# project's celeryconfig.py would win an import by name.
app.config_from_object(claim("celeryconfig"))


def _tune_embedded_broker() -> None:
    settings = get_settings()
    if settings.uses_embedded_broker:
        embedded_broker.tune(settings.broker_url, settings.fcsync_embedded_broker_poll_s)


_tune_embedded_broker()

log = logging.getLogger(__name__)


def send_followup(followup: Followup) -> None:
    """Follow-ups named by fcsync go to its queue; a user's on-synced task goes to theirs."""
    # The path of many, for one: on Redis the task and its task-sent event (FCSYNC_TASK_EVENTS)
    # in one round trip instead of two, and none of send_task's per-call work (the webhook
    # receiver sends one per event).
    send_followups([followup])


def _queue_for(followup: Followup, settings: Settings) -> str:
    if followup.queue is not None:
        return followup.queue
    return "fcsync" if followup.task.startswith("fcsync.") else settings.fcsync_on_synced_queue


def send_followups(followups: Sequence[Followup]) -> None:
    """Many follow-ups at once (a sweep's hundreds) on one of the app's connections."""
    with app.producer_or_acquire() as producer:
        publish_followups(producer, followups, get_settings())


def prepare_sending() -> None:
    """The broker's transport imported and the producer pool built now, without connecting:
    the webhook receiver's first batch, and every request waiting on it, would otherwise wait
    for them (~130 ms of imports)."""
    _ = app.producer_pool


def publish_followups(producer: Any, followups: Sequence[Followup], settings: Settings) -> None:
    """Each queue declared once and every message in kombu's publish batch: on Redis one pipeline
    (one round trip) for all, elsewhere one publish each on the same channel. A failed pipeline
    may have sent some: the sweep's claims bring the rest back later."""
    declared: set[str] = set()
    # A batched publish only buffers (the batch's one flush is what may fail, unretried);
    # a broker without batches publishes each at once, retried as Celery retries any.
    retry = not producer.supports_batch_publish
    sent: list[dict[str, Any]] = []
    with producer.batch():
        for followup in followups:
            queue = _queue_for(followup, settings)
            if queue not in declared:
                producer.maybe_declare(app.amqp.queues[queue])
                declared.add(queue)
            if followup.countdown is None:
                sent.extend(_publish_now(producer, followup, queue, retry=retry))
            else:
                # Timed work keeps Celery's whole path (its ETA handling, native delays).
                app.send_task(
                    followup.task,
                    kwargs=followup.kwargs,
                    countdown=followup.countdown,
                    queue=queue,
                    producer=producer,
                    declare=[],
                    retry=retry,
                )
        if sent:
            _announce_sent(producer, sent, retry=retry)


def _publish_now(
    producer: Any, followup: Followup, queue: str, *, retry: bool
) -> list[dict[str, Any]]:
    """The message `app.send_task` builds and sends for a task due now, minus what that costs
    per call and fcsync never uses (routing by name, results, link/chord options, saferepr of
    ids): a third of the CPU, the most of a sweep's time once its round trips are batched.
    Returns its task-sent event (none when FCSYNC_TASK_EVENTS is off), for `_announce_sent`."""
    parent = app.current_worker_task
    root_id = (parent.request.root_id or parent.request.id) if parent else None
    headers, properties, body, sent_event = app.amqp.create_task_message(
        uuid(),
        followup.task,
        (),
        followup.kwargs,
        reply_to=app.thread_oid,
        create_sent_event=app.conf.task_send_sent_event,
        root_id=root_id,
        parent_id=parent.request.id if parent else None,
        ignore_result=None,  # as send_task leaves it: the task's own setting decides
        # What Celery would show (saferepr) for ids and flags.
        argsrepr="()",
        kwargsrepr=repr(followup.kwargs),
    )
    # The event is announced with the batch's others, not by send_task_message one by one.
    app.amqp.send_task_message(
        producer,
        followup.task,
        (headers, properties, body, None),
        queue=queue,
        declare=[],
        retry=retry,
    )
    if sent_event is None:
        return []
    # What send_task_message adds: a task for a direct queue goes by the default exchange.
    return [{**sent_event, "queue": queue, "exchange": "", "routing_key": queue}]


@cache
def _sent_events() -> Any:
    """The dispatcher task-sent events are published with (Celery's own builds one the same way:
    disabled, since it is only handed a producer)."""
    return app.events.Dispatcher(enabled=False)


def _announce_sent(producer: Any, sent: list[dict[str, Any]], *, retry: bool) -> None:
    """The task-sent events of a batch in one message, a list, as a worker sends its task
    events (`task.multi`): Celery's event receivers (Flower, `celery events`) take either.
    One event each cost the sweep as much as its tasks did."""
    dispatcher = _sent_events()
    events = [
        Event(
            "task-sent",
            hostname=dispatcher.hostname,
            utcoffset=utcoffset(),
            pid=dispatcher.pid,
            clock=dispatcher.clock.forward(),
            **fields,
        )
        for fields in sent
    ]
    producer.publish(
        events if len(events) > 1 else events[0],
        routing_key="task.multi" if len(events) > 1 else "task.sent",
        exchange=dispatcher.exchange.name,
        declare=[dispatcher.exchange],
        serializer=dispatcher.serializer,
        headers=dispatcher.headers,
        delivery_mode=dispatcher.delivery_mode,
        retry=retry,
        retry_policy=app.conf.task_publish_retry_policy,
    )


_process_runtime: Runtime | None = None


def runtime() -> Runtime:
    """The runtime tasks run with: one bound to this context (a test, the CLI's --inline), else
    this process's own, built on first use from the environment's settings."""
    global _process_runtime
    # Here, not at the top: a process that only sends tasks (`fcsync track`) never loads the
    # services and the Stripe SDK they bring.
    from worker.runtime import Runtime, bound_runtime

    bound = bound_runtime()
    if bound is not None:
        return bound
    if _process_runtime is None:
        _process_runtime = Runtime(get_settings(), send=send_followup, send_many=send_followups)
    return _process_runtime


@worker_process_init.connect
def _after_fork(**_: Any) -> None:
    # Pooled DB connections and HTTP sessions must not be shared with the parent process.
    dispose_engines(close=False)
    if _process_runtime is not None:
        _process_runtime.reset()


@celeryd_init.connect
def _log_json_from_the_start(**_: Any) -> None:
    # A worker warns (running as root) before Celery sets up its logging: with JSON logs, that
    # warning is a JSON line too. Celery replaces these handlers with its own, filtered below.
    settings = get_settings()
    if settings.fcsync_log_format == "json":
        logs.configure_logging(settings.fcsync_log_level, "json")


@after_setup_logger.connect
@after_setup_task_logger.connect
def _install_logs(logger: logging.Logger, loglevel: int | str | None = None, **_: Any) -> None:
    # Worker and beat log through Celery's handlers: the same format, filters and quiet stripe
    # logger as every other fcsync process; so does the pool's (billiard's) own logger, which
    # Celery gives a handler of its own.
    log_format = get_settings().fcsync_log_format
    for each in (logger, get_multiprocessing_logger()):
        if each is not None:
            logs.install(each, loglevel, log_format)


def _refuse_to_start(*, needs_api_key: bool) -> None:
    """A worker or beat on an unmigrated database, a worker without a Stripe key (STRIPE_API_KEY
    or FCSYNC_STRIPE_ACCOUNTS'), or either with an FCSYNC_STRIPE_ACCOUNTS file fcsync cannot
    use, would only fail task after task: stop at start with one line naming the fix instead."""
    from worker.db import require_schema
    from worker.stripe_keys_file import load_stripe_keys

    try:
        keys = load_stripe_keys(get_settings())
        if needs_api_key:
            keys.api_keys()
        require_schema()
    except PermanentError as exc:
        # Celery has redirected sys.stderr into its logger by now: write to the real stream.
        print(redact(f"error [{exc.code}]: {exc}"), file=sys.__stderr__, flush=True)
        raise SystemExit(3) from None  # the CLI's exit code for permanent errors


@worker_init.connect
def _check_worker_start(**_: Any) -> None:
    _refuse_to_start(needs_api_key=True)
    _serve_metrics()


def _serve_metrics() -> None:
    """/metrics on FCSYNC_METRICS_PORT, from the worker's main process: its pool processes'
    samples (multiprocess files) and the accounts' freshness, read at each scrape."""
    settings = get_settings()
    if settings.fcsync_metrics_port:
        served = metrics.registry(fleet=lambda: runtime().fleet_snapshot())
        metrics.serve(settings.fcsync_metrics_host, settings.fcsync_metrics_port, served)


@beat_init.connect
def _check_beat_start(**_: Any) -> None:
    # Beat only sends tasks: it never calls Stripe.
    _refuse_to_start(needs_api_key=False)
