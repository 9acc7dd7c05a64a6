"""The task that processes one stored webhook event."""

from __future__ import annotations

from typing import TypedDict

from tasks.arguments import EVENT_ID_MAX, stripe_id
from tasks.base import FcsyncTask, fcsync_task
from worker import contract, webhooks


class EventReport(TypedDict):
    event: str
    outcome: str


@fcsync_task(contract.HANDLE_EVENT)
def handle_event_task(self: FcsyncTask, event_id: str) -> EventReport:
    event_id = stripe_id(event_id, "evt_", "event_id", max_length=EVENT_ID_MAX)
    rt = self.runtime
    result = rt.run(
        None,
        lambda s, gw, now: webhooks.handle_event(s, gw, event_id, now=now, settings=rt.settings),
    )
    return {"event": event_id, "outcome": result.outcome}
