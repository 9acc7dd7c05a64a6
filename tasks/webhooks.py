"""The inbox's tasks: process one stored event, or a receiver batch's events each on its own;
sweep Stripe's event list for missed ones."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TypedDict

from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.time import get_exponential_backoff_interval
from sqlalchemy.exc import OperationalError

from tasks.arguments import EVENT_ID_MAX, event_id_list, moment, stripe_id
from tasks.base import FcsyncTask, fcsync_task
from worker import contract, event_handlers, events_sweep, inbox, log_context
from worker.errors import PermanentError, TransientError
from worker.runtime import Runtime, Work
from worker.settings import Settings
from worker.stripe_keys import DEFAULT

log = logging.getLogger(__name__)


class EventReport(TypedDict):
    event: str
    outcome: str


class EventsReport(TypedDict):
    # Each event's outcome (handle_event's, or the code of the permanent error it met).
    outcomes: dict[str, str]


class EventsSweepReport(TypedDict):
    contexts: int
    listed: int
    stored: int
    # Contexts whose newest inbox event was older than Stripe's 30 days of events.
    gaps: int


@fcsync_task(contract.HANDLE_EVENT)
def handle_event_task(self: FcsyncTask, event_id: str) -> EventReport:
    event_id = stripe_id(event_id, "evt_", "event_id", max_length=EVENT_ID_MAX)
    return {"event": event_id, "outcome": _handle(self.runtime, event_id)}


@fcsync_task(contract.HANDLE_EVENTS)
def handle_events_task(self: FcsyncTask, event_ids: list[str]) -> EventsReport:
    """Each event as fcsync.handle_event handles it, in a unit of work of its own, one after
    another: an event that fails permanently (or unexpectedly) stays failed (or for the sweep)
    while the others go on; those that failed transiently are retried together in one message
    naming only them, so an event handled here is never handled again by this batch."""
    ids = event_id_list(event_ids)
    rt = self.runtime
    outcomes: dict[str, str] = {}
    again: list[str] = []
    cause: Exception | None = None
    unexpected = 0
    for n, event_id in enumerate(ids):
        try:
            with log_context.bound(event_id=event_id):
                outcomes[event_id] = _handle(rt, event_id)
        except (TransientError, OperationalError) as exc:
            again.append(event_id)
            cause = cause or exc
        except SoftTimeLimitExceeded as exc:
            # The batch outran its time: this event (rolled back) and the rest go to the retry.
            again += ids[n:]
            cause = exc
            break
        except PermanentError as exc:
            outcomes[event_id] = exc.code  # logged by the unit of work
        except Exception:
            # A bug met by one event: its traceback, and the others still handled. Unprocessed
            # in the inbox, it is retry_failed_syncs' to pick up.
            with log_context.bound(event_id=event_id):
                log.exception("event %s failed unexpectedly; left for the sweep", event_id)
            unexpected += 1
    if again:
        raise self.retry(kwargs={"event_ids": again}, exc=cause, countdown=_backoff(self))
    if unexpected:
        raise RuntimeError(
            f"{unexpected} of {len(ids)} events failed unexpectedly (logged above); the others"
            " were handled"
        )
    return {"outcomes": outcomes}


def _handle(rt: Runtime, event_id: str) -> str:
    result = rt.run(
        None,
        lambda s, gw, now: event_handlers.handle_event(
            s, gw, event_id, now=now, settings=rt.settings
        ),
        # The gateway of the key the event came with: a status change re-reads the account.
        key_of=lambda s: inbox.event_stripe_key(s, event_id),
    )
    return result.outcome


def _backoff(task: FcsyncTask) -> int:
    """The wait Celery's autoretry gives a transient failure (tasks/base.py's policy)."""
    return get_exponential_backoff_interval(
        factor=int(max(1.0, task.retry_backoff)),
        retries=task.request.retries,
        maximum=task.retry_backoff_max,
        full_jitter=task.retry_jitter,
    )


@fcsync_task(contract.SWEEP_EVENTS, max_retries=3)
def sweep_events_task(self: FcsyncTask, since: str | None = None) -> EventsSweepReport:
    """`since` (ISO 8601): read the events created since then instead of since the newest in
    the inbox. Per configured key, each of its contexts its own unit of work: one context's
    failure leaves the others swept (a retry reads them again, which the inbox's dedupe makes
    free)."""
    start = None if since is None else moment(since, "since")
    rt = self.runtime
    report: EventsSweepReport = {"contexts": 0, "listed": 0, "stored": 0, "gaps": 0}
    # Every key that can call Stripe lists its own account's events (none configured: the
    # `default` key's refusal says what is missing).
    names = [key.name for key in rt.keys.keys if key.api_key is not None] or [DEFAULT]
    for name in names:
        contexts = rt.run(
            None,
            lambda s, gw, now: events_sweep.contexts_to_sweep(s, gw.stripe_key),
            stripe_key=name,
        )
        report["contexts"] += len(contexts)
        for context in contexts:
            swept = rt.run(None, _sweep_work(rt.settings, context, start), stripe_key=name)
            report["listed"] += swept.listed
            report["stored"] += swept.stored
            report["gaps"] += swept.gap_beyond_retention
    return report


def _sweep_work(
    settings: Settings, context: str | None, since: datetime | None
) -> Work[events_sweep.EventsSweep]:
    return lambda s, gw, now: events_sweep.sweep_events(
        s, gw, now=now, settings=settings, stripe_account=context, since=since
    )
