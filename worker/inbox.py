"""The webhook inbox table: each event stored once, read back, marked failed, and picked for
the sweep; never commits (the edge that starts the unit of work does)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import bindparam, case, delete, func, or_, select
from sqlalchemy.orm import Session, load_only

from models import WebhookEvent
from worker import repository
from worker.event_envelope import FC_EVENT_PREFIX
from worker.json_rows import field, insert_rows
from worker.redaction import redact

REFRESHED_TRANSACTIONS = FC_EVENT_PREFIX + "refreshed_transactions"
# How long Stripe lists an event (GET /v1/events answers for the last 30 days only): how far
# back the events sweep can refill the inbox.
EVENTS_RETENTION = timedelta(days=30)


@dataclass(frozen=True)
class InboxEvent:
    """An event as the inbox stores it; `outcome` set means already processed (ignored)."""

    id: str
    type: str
    account_id: str | None
    livemode: bool
    created: int
    payload: str
    outcome: str | None = None
    # The event's `account` (a Connect event's connected account), None for the platform's.
    stripe_account: str | None = None
    # The configured key whose secret verified it, or that listed it (None = `default`).
    stripe_key: str | None = None


# An inbox row's values as insert_webhook_events sends them, in this order.
_EVENT_COLUMNS = (
    "id",
    "type",
    "account_id",
    "stripe_account",
    "stripe_key",
    "livemode",
    "created",
    "payload",
    "outcome",
)


def insert_webhook_events(
    session: Session, events: Sequence[InboxEvent], *, now: datetime
) -> set[str]:
    """Store each event once, all in one statement; returns the ids that were not in the inbox
    yet (an id given twice is stored, and returned, once)."""
    rows = {
        event.id: (
            event.id,
            event.type,
            event.account_id,
            event.stripe_account,
            event.stripe_key,
            event.livemode,
            event.created,
            event.payload,
            event.outcome,
        )
        for event in reversed(events)  # the first of an id's copies is the one kept
    }
    if not rows:
        return set()
    result = session.connection().execute(
        _insert_once(session.get_bind().dialect.name),
        {"rows": json.dumps(list(rows.values())), "now": now},
    )
    return set(result.scalars())


@cache
def _insert_once(dialect: str) -> Any:
    """The inbox's INSERT, built once per dialect and run with each batch's rows as one JSON
    parameter (worker/json_rows.py): building a statement per event (and the ORM's handling of
    it) cost the receiver as much CPU as the round trip to run it, and a parameter per value
    (SQLAlchemy's "insertmanyvalues") a fifth of the receiver's CPU per event. RETURNING names
    the rows it stored, the others being duplicates."""
    table = WebhookEvent.metadata.tables[WebhookEvent.__tablename__]
    now = bindparam("now", type_=table.c.received_at.type)
    outcome = _EVENT_COLUMNS.index("outcome")

    def processed_at(row: Any) -> Any:
        # An event kept only for the record (an outcome already) has nothing left to process.
        return case((field(row, outcome, table.c.outcome.type).is_not(None), now))

    stmt = insert_rows(
        dialect, table, _EVENT_COLUMNS, {"received_at": now, "processed_at": processed_at}
    )
    return stmt.on_conflict_do_nothing(index_elements=[table.c.id]).returning(table.c.id)


def claim_webhook_event(session: Session, event_id: str) -> WebhookEvent | None:
    """The event's row, locked until this unit of work ends (PostgreSQL; SQLite has one writer):
    a second worker handed the same event (a redelivered message, a sweep's copy of a slow one)
    waits for the first and finds it handled, instead of handling it again beside it."""
    return session.get(WebhookEvent, event_id, with_for_update=True)


def event_stripe_key(session: Session, event_id: str) -> str | None:
    """The key an inbox event came with (None: `default`, or no such event)."""
    event = session.get(WebhookEvent, event_id)
    return event.stripe_key if event is not None else None


def record_event_error(row: WebhookEvent, code: str, message: str) -> None:
    row.error = redact(f"[{code}] {message}")


def unhandled_webhook_events(
    session: Session, *, received_before: datetime, now: datetime, limit: int
) -> list[WebhookEvent]:
    """Unprocessed inbox rows due for a sweep, never-swept ones first (payloads not loaded)."""
    return list(
        session.scalars(
            select(WebhookEvent)
            .options(load_only(WebhookEvent.id, WebhookEvent.sweeps, WebhookEvent.next_sweep_at))
            .where(
                WebhookEvent.processed_at.is_(None),
                WebhookEvent.received_at <= received_before,
                or_(WebhookEvent.next_sweep_at.is_(None), WebhookEvent.next_sweep_at <= now),
            )
            .order_by(WebhookEvent.sweeps, WebhookEvent.received_at, WebhookEvent.id)
            .limit(limit)
        )
    )


def refresh_announced_at(session: Session, account_id: str, refresh_id: str) -> datetime | None:
    """When the first event saying the refresh's transactions are ready arrived, if one did."""
    return session.scalar(
        select(func.min(WebhookEvent.received_at)).where(
            WebhookEvent.account_id == account_id,
            WebhookEvent.type == REFRESHED_TRANSACTIONS,
            # The event's payload is the account, naming its latest refresh.
            WebhookEvent.payload.contains(f'"{refresh_id}"', autoescape=True),
        )
    )


def newest_event_created(
    session: Session, stripe_account: str | None = None, stripe_key: str | None = None
) -> int | None:
    """`created` of the newest event of the context `stripe_account` (None: the platform's own)
    of the key `stripe_key` (None: `default`) in the inbox, delivered or swept; None when there
    is none."""
    return session.scalar(
        select(func.max(WebhookEvent.created)).where(
            repository.nullable_equals(WebhookEvent.stripe_account, stripe_account),
            repository.nullable_equals(WebhookEvent.stripe_key, stripe_key),
        )
    )


def retention_start(now: datetime) -> int:
    """The oldest `created` Stripe still lists at `now`."""
    return int((now - EVENTS_RETENTION).timestamp())


def retention_gap(session: Session, *, now: datetime) -> datetime | None:
    """When the newest inbox event was created, if that is longer ago than Stripe lists events
    (events since then cannot be read back); None when the sweep can cover the gap."""
    newest = newest_event_created(session)
    if newest is None or newest >= retention_start(now):
        return None
    return datetime.fromtimestamp(newest, tz=now.tzinfo)


def delete_account_events(session: Session, account_id: str) -> int:
    """The inbox's events about the account (their payloads hold its data) gone; how many."""
    result: Any = session.execute(delete(WebhookEvent).where(WebhookEvent.account_id == account_id))
    return int(result.rowcount or 0)
