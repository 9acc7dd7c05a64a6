"""The webhook inbox table: each event stored once, read back, marked failed, and picked for
the sweep; never commits (the edge that starts the unit of work does)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, load_only

from models import WebhookEvent
from worker.event_envelope import FC_EVENT_PREFIX
from worker.redaction import redact

REFRESHED_TRANSACTIONS = FC_EVENT_PREFIX + "refreshed_transactions"


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


def insert_webhook_events(
    session: Session, events: Sequence[InboxEvent], *, now: datetime
) -> set[str]:
    """Store each event once, all in one statement; returns the ids that were not in the inbox
    yet (an id given twice is stored, and returned, once)."""
    rows = {
        event.id: {
            "id": event.id,
            "type": event.type,
            "account_id": event.account_id,
            "stripe_account": event.stripe_account,
            "livemode": event.livemode,
            "created": event.created,
            "payload": event.payload,
            "received_at": now,
            "processed_at": None if event.outcome is None else now,
            "outcome": event.outcome,
        }
        for event in reversed(events)  # the first of an id's copies is the one kept
    }
    if not rows:
        return set()
    result = session.connection().execute(
        _insert_once(session.get_bind().dialect.name), list(rows.values())
    )
    return set(result.scalars())


@cache
def _insert_once(dialect: str) -> Any:
    """The inbox's INSERT, built once per dialect and run with each batch's values: building a
    statement per event (and the ORM's handling of it) cost the receiver as much CPU as the
    round trip to run it. Run with many rows, SQLAlchemy sends them as one multi-row INSERT
    ("insertmanyvalues"); RETURNING names the rows it stored, the others being duplicates."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = WebhookEvent.metadata.tables[WebhookEvent.__tablename__]
    return (
        insert(table).on_conflict_do_nothing(index_elements=[WebhookEvent.id]).returning(table.c.id)
    )


def get_webhook_event(session: Session, event_id: str) -> WebhookEvent | None:
    return session.get(WebhookEvent, event_id)


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


def newest_event_created(session: Session, stripe_account: str | None = None) -> int | None:
    """`created` of the newest event of the context `stripe_account` (None: the platform's own)
    in the inbox, delivered or swept; None when there is none."""
    context = (
        WebhookEvent.stripe_account.is_(None)
        if stripe_account is None
        else WebhookEvent.stripe_account == stripe_account
    )
    return session.scalar(select(func.max(WebhookEvent.created)).where(context))
