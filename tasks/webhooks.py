"""The inbox's tasks: process one stored event; sweep Stripe's event list for missed ones."""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict

from tasks.arguments import EVENT_ID_MAX, moment, stripe_id
from tasks.base import FcsyncTask, fcsync_task
from worker import contract, events_sweep, webhooks
from worker.runtime import Work
from worker.settings import Settings


class EventReport(TypedDict):
    event: str
    outcome: str


class EventsSweepReport(TypedDict):
    contexts: int
    listed: int
    stored: int
    # Contexts whose newest inbox event was older than Stripe's 30 days of events.
    gaps: int


@fcsync_task(contract.HANDLE_EVENT)
def handle_event_task(self: FcsyncTask, event_id: str) -> EventReport:
    event_id = stripe_id(event_id, "evt_", "event_id", max_length=EVENT_ID_MAX)
    rt = self.runtime
    result = rt.run(
        None,
        lambda s, gw, now: webhooks.handle_event(s, gw, event_id, now=now, settings=rt.settings),
    )
    return {"event": event_id, "outcome": result.outcome}


@fcsync_task(contract.SWEEP_EVENTS, max_retries=3)
def sweep_events_task(self: FcsyncTask, since: str | None = None) -> EventsSweepReport:
    """`since` (ISO 8601): read the events created since then instead of since the newest in
    the inbox. Each context its own unit of work: one context's failure leaves the others swept
    (a retry reads them again, which the inbox's dedupe makes free)."""
    start = None if since is None else moment(since, "since")
    rt = self.runtime
    contexts = rt.run(None, lambda s, gw, now: events_sweep.contexts_to_sweep(s))
    report: EventsSweepReport = {"contexts": len(contexts), "listed": 0, "stored": 0, "gaps": 0}
    for context in contexts:
        swept = rt.run(None, _sweep_work(rt.settings, context, start))
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
