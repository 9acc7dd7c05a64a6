"""Stripe webhooks, framework-free: verify -> dedupe into the inbox -> route through handlers.

Receiving never calls Stripe; handling an inbox event returns intents for the edge.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.orm import Session

from models import WebhookEvent
from worker import inbox, log_context, metrics, repository
from worker.accounts import (
    due_now,
    observe_account,
    refuse_unusable,
    retrieve_or_mark_gone,
)
from worker.contexts import context_name
from worker.errors import ConfigurationError, ErrorCode, PermanentError
from worker.event_envelope import (
    FC_EVENT_PREFIX,
    InvalidEventError,
    is_event_id,
    is_fc_event_type,
)
from worker.intents import HandleEvent, Intent, SyncDue, TrackAccount
from worker.records import FCEvent, Sweep
from worker.settings import Settings
from worker.stripe_gateway import StripeGateway, parse_event, verify_webhook

log = logging.getLogger(__name__)

EVENT_PREFIX = FC_EVENT_PREFIX


@dataclass(frozen=True)
class Receipt:
    """What the HTTP edge answers: 200 for stored, duplicate or ignored events, 400 otherwise.

    `enqueue` is true only for a newly stored event that a handler will process."""

    status: int
    event_id: str | None = None
    account_id: str | None = None
    event_type: str | None = None
    duplicate: bool = False
    error: str | None = None
    code: str | None = None
    ignored: str | None = None
    enqueue: bool = False

    @property
    def outcome(self) -> str:
        """What became of the delivery: rejected, duplicate, ignored or stored."""
        if self.status != 200:
            return "rejected"
        if self.duplicate:
            return "duplicate"
        return "ignored" if self.ignored else "stored"


# What parsing a body can raise besides PermanentError if a shape slipped past validation.
# Parsing is a pure function of the body, so these are the sender's fault, never ours.
_INPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError)


def _read_event(parse: Callable[[], tuple[FCEvent, dict[str, Any]]]) -> FCEvent:
    """Run a parse of an event body; whatever it raises is the body's fault (a PermanentError)."""
    try:
        return parse()[0]
    except _INPUT_ERRORS as exc:
        log.exception("an event body got past validation and failed parsing")
        raise InvalidEventError("not a Stripe event fcsync can read") from exc


@dataclass(frozen=True)
class Verified:
    """A signed Financial Connections event to store, and what to answer once it is."""

    event: inbox.InboxEvent

    def receipt(self, *, stored: bool) -> Receipt:
        """The answer once the inbox has it: newly `stored`, or a duplicate of a stored one."""
        handled = self.event.outcome is None
        return Receipt(
            200,
            self.event.id,
            self.event.account_id,
            event_type=self.event.type,
            duplicate=not stored,
            ignored=None if handled else "no handler for this event type",
            enqueue=stored and handled,
        )


def read_webhook(
    payload: bytes, sig_header: str | None, *, settings: Settings
) -> Receipt | Verified:
    """A delivery checked (signature, then envelope) without the database: the answer when
    there is nothing to store, else the event to store."""
    secrets = settings.webhook_secrets()  # a configuration error is not the sender's fault
    try:
        event = _read_event(
            lambda: verify_webhook(
                payload, sig_header, secrets, tolerance=settings.fcsync_webhook_tolerance_s
            )
        )
    except PermanentError as exc:
        return Receipt(400, error=str(exc), code=exc.code)
    return _check_event(event, payload.decode("utf-8"), settings=settings)


def receive_listed_event(
    session: Session, body: str, *, settings: Settings, now: datetime
) -> Receipt:
    """An event read back from Stripe's `GET /v1/events` (the events sweep), through the same
    checks and into the same inbox as a delivered one: only the signature is not there to
    check, the event having come over the authenticated API."""
    try:
        event = _read_event(lambda: parse_event(body))
    except PermanentError as exc:
        return Receipt(400, error=str(exc), code=exc.code)
    checked = _check_event(event, body, settings=settings)
    if isinstance(checked, Receipt):
        return checked
    stored = inbox.insert_webhook_events(session, [checked.event], now=now)
    return checked.receipt(stored=bool(stored))


def _check_event(event: FCEvent, body: str, *, settings: Settings) -> Receipt | Verified:
    """A verified event's fate: acknowledged without work (the answer), or to be stored once
    by its id (the event to store)."""
    expected = settings.livemode
    if expected is not None and event.livemode != expected:
        # Both modes' endpoints may point here; the other mode's events are never applied,
        # and a 2xx stops Stripe from redelivering them for days.
        mode = "live" if event.livemode else "test"
        return Receipt(
            200,
            event.id,
            event_type=event.type,
            ignored=f"{mode}mode event; this endpoint is for the other",
        )
    if not is_fc_event_type(event.type):
        return Receipt(
            200,
            event.id,
            event_type=event.type,
            ignored="not a Financial Connections account event",
        )
    return Verified(
        inbox.InboxEvent(
            id=event.id,
            type=event.type,
            account_id=event.account.id if event.account else None,
            stripe_account=event.stripe_account,
            livemode=event.livemode,
            created=event.created,
            payload=body,
            # Kept for the record, with nothing left to do for a type fcsync does not act on.
            outcome=None if event.type in HANDLERS else "ignored",
        )
    )


def receive_webhook(
    session: Session,
    payload: bytes,
    sig_header: str | None,
    *,
    settings: Settings,
    now: datetime,
) -> Receipt:
    """One delivery read and, when it is to be stored, stored once."""
    read = read_webhook(payload, sig_header, settings=settings)
    if isinstance(read, Receipt):
        return read
    stored = inbox.insert_webhook_events(session, [read.event], now=now)
    return read.receipt(stored=bool(stored))


EventOutcome = Literal["processed", "ignored", "duplicate", "failed"]


@dataclass(frozen=True)
class EventResult:
    outcome: EventOutcome
    intents: tuple[Intent, ...] = field(default=())


@dataclass(frozen=True)
class _Context:
    session: Session
    gateway: StripeGateway
    now: datetime
    settings: Settings


Handler = Callable[[_Context, FCEvent], EventResult]


def _on_refreshed_transactions(ctx: _Context, event: FCEvent) -> EventResult:
    if event.account is None:
        return EventResult("ignored")
    account = repository.get_account(ctx.session, event.account.id)
    if account is None or not account.tracked:
        return _maybe_autotrack(ctx, event)
    # The payload may be older than what we know: fold in only its refresh state, guarded.
    obs = observe_account(
        ctx.session, event.account, now=ctx.now, settings=ctx.settings, mirror=False
    )
    return EventResult("processed", (SyncDue(account.id),) if obs.needs_sync else ())


def _on_status_change(ctx: _Context, event: FCEvent) -> EventResult:
    """deactivated / reactivated / disconnected: status is re-read, since events arrive in any
    order and only Stripe's current view is certain."""
    if event.account is None:
        return EventResult("ignored")
    known = repository.get_account(ctx.session, event.account.id)
    if known is None:
        return _maybe_autotrack(ctx, event)
    live = retrieve_or_mark_gone(
        ctx.session,
        ctx.gateway,
        event.account.id,
        stripe_account=known.stripe_account,
        now=ctx.now,
    )
    if live is None:
        return EventResult("processed")
    obs = observe_account(ctx.session, live, now=ctx.now, settings=ctx.settings)
    account = obs.account
    if live.status == "active":
        if account.last_error_code == ErrorCode.ACCOUNT_INACTIVE:
            repository.clear_error(account)
        due_now(account, now=ctx.now)
    else:
        refuse_unusable(account, live, now=ctx.now, settings=ctx.settings)
    return EventResult("processed", (SyncDue(account.id),) if obs.needs_sync else ())


def _maybe_autotrack(ctx: _Context, event: FCEvent) -> EventResult:
    if ctx.settings.fcsync_auto_track and event.account is not None:
        # In the context the event came from: a Connect event's account is the connected one's.
        return EventResult(
            "processed", (TrackAccount(event.account.id, stripe_account=event.stripe_account),)
        )
    return EventResult("ignored")


HANDLERS: dict[str, Handler] = {
    inbox.REFRESHED_TRANSACTIONS: _on_refreshed_transactions,
    EVENT_PREFIX + "deactivated": _on_status_change,
    EVENT_PREFIX + "reactivated": _on_status_change,
    EVENT_PREFIX + "disconnected": _on_status_change,
    EVENT_PREFIX + "created": _maybe_autotrack,
}


def handle_event(
    session: Session,
    gateway: StripeGateway,
    event_id: str,
    *,
    now: datetime,
    settings: Settings,
) -> EventResult:
    """Process one inbox event once; unknown types are kept and marked ignored."""
    row = inbox.get_webhook_event(session, event_id)
    if row is None:
        raise PermanentError(f"event {event_id} is not in the inbox", code=ErrorCode.UNKNOWN_EVENT)
    log_context.note(account_id=row.account_id)
    result = _handle_row(session, gateway, row, now=now, settings=settings)
    metrics.webhook_handled(session, row.type, result.outcome)
    return result


def _handle_row(
    session: Session,
    gateway: StripeGateway,
    row: WebhookEvent,
    *,
    now: datetime,
    settings: Settings,
) -> EventResult:
    if row.processed_at is not None:
        return EventResult("duplicate")
    try:
        # Rows stored before envelopes were validated may not parse: a permanent failure too.
        event = _read_event(lambda: parse_event(row.payload))
        handler = HANDLERS.get(event.type)
        expected = settings.livemode
        mismatch = _context_mismatch(session, event)
        if handler is None or (expected is not None and event.livemode != expected):
            result = EventResult("ignored")
        elif mismatch is not None:
            # Kept with the reason, never applied to an account of another context.
            inbox.record_event_error(row, ErrorCode.STRIPE_ACCOUNT_MISMATCH, mismatch)
            log.warning("webhook event %r ignored: %s", row.id, mismatch)
            result = EventResult("ignored")
        else:
            result = handler(_Context(session, gateway, now, settings), event)
    except ConfigurationError:
        # fcsync's own setup, not the event: left unprocessed for when it is fixed.
        raise
    except PermanentError as exc:
        # Kept in the inbox with the reason and never swept again; a transient error instead
        # leaves the row unprocessed so the task's retry (or the sweep) handles it again.
        _mark_failed(row, exc.code, str(exc), now=now)
        return EventResult("failed")
    row.processed_at = now
    row.outcome = result.outcome
    return result


def _context_mismatch(session: Session, event: FCEvent) -> str | None:
    """Why the event must not touch the stored account it names: it happened in another Stripe
    account context (a Connect event's `account`, or none for the platform). None when it may:
    the contexts agree, or fcsync has no confirmed row for the account (tracking it, if
    auto-track is on, takes the event's context)."""
    if event.account is None:
        return None
    account = repository.get_account(session, event.account.id)
    if account is None or account.status == "unknown":
        return None
    if account.stripe_account == event.stripe_account:
        return None
    return (
        f"event of Stripe account context {context_name(event.stripe_account)} names account "
        f"{account.id}, which belongs to {context_name(account.stripe_account)}"
    )


def _mark_failed(row: WebhookEvent, code: str, message: str, *, now: datetime) -> None:
    inbox.record_event_error(row, code, message)  # redacted: it may quote a Stripe answer
    log.warning("webhook event %r failed permanently and is kept as failed: %s", row.id, row.error)
    row.processed_at = now
    row.outcome = "failed"


# A row that keeps failing transiently is re-enqueued after 2, 4, 8... times
# FCSYNC_STALE_PENDING_S, then daily: it costs at most one task (and its Stripe call) a day.
SWEEP_BACKOFF_MAX = timedelta(days=1)
# 2**17 times the smallest FCSYNC_STALE_PENDING_S (1 s) is past a day: doubling stops there
# (a row failing daily for years would otherwise overflow timedelta).
_SWEEP_DOUBLINGS_MAX = 17


def unhandled_events(session: Session, *, now: datetime, settings: Settings) -> Sweep:
    """Inbox rows whose handling never finished (enqueue lost after commit, worker died,
    retries spent). Never-swept rows come first and swept ones back off, so rows that keep
    failing cannot crowd a lost event out of the batch."""
    stale = timedelta(seconds=settings.fcsync_stale_pending_s)
    intents: list[Intent] = []
    for row in inbox.unhandled_webhook_events(
        session, received_before=now - stale, now=now, limit=settings.fcsync_sweep_batch
    ):
        if not is_event_id(row.id):
            # Stored before ids were validated: the task would refuse it on every sweep.
            _mark_failed(
                row, ErrorCode.BAD_EVENT, "the stored id is not a Stripe event id", now=now
            )
            continue
        row.sweeps += 1
        backoff = stale * 2 ** min(row.sweeps, _SWEEP_DOUBLINGS_MAX)
        row.next_sweep_at = now + min(backoff, SWEEP_BACKOFF_MAX)
        intents.append(HandleEvent(row.id))
    return Sweep(tuple(intents))
