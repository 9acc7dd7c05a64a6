"""The task that processes one stored webhook event."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import OperationalError

from tasks.arguments import EVENT_ID_MAX, stripe_id
from tasks.base import TASK_OPTIONS
from worker import contract, webhooks
from worker.app import app, uow
from worker.errors import TransientError

TRANSIENT = (TransientError, OperationalError)


@app.task(
    name=contract.HANDLE_EVENT,
    autoretry_for=TRANSIENT,
    max_retries=uow.settings.fcsync_max_retries,
    **TASK_OPTIONS,
)
def handle_event_task(event_id: str) -> dict[str, Any]:
    event_id = stripe_id(event_id, "evt_", "event_id", max_length=EVENT_ID_MAX)
    result = uow.run(
        None,
        lambda s, gw, now: webhooks.handle_event(s, gw, event_id, now=now, settings=uow.settings),
    )
    return {"event": event_id, "outcome": result.outcome}
