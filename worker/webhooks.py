"""Stripe webhooks, framework-free: verify -> dedupe into the inbox -> route through handlers.

Receiving never calls Stripe; handling an inbox event returns follow-up work for the edge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.orm import Session

from worker import contract, repository
from worker.errors import PermanentError
from worker.records import FCEvent, Followup, Sweep
from worker.refresh import observe_account, park_unusable, retrieve_or_mark_gone, sync_followup
from worker.settings import Settings
from worker.stripe_gateway import StripeGateway, WebhookSignatureError, parse_event, verify_webhook

EVENT_PREFIX = "financial_connections.account."


@dataclass(frozen=True)
class Receipt:
    """What the HTTP edge answers: 200 for stored or duplicate events, 400 otherwise."""

    status: int
    event_id: str | None = None
    duplicate: bool = False
    error: str | None = None


def receive_webhook(
    session: Session,
    payload: bytes,
    sig_header: str | None,
    *,
    settings: Settings,
    now: datetime,
) -> Receipt:
    try:
        event, _ = verify_webhook(
            payload,
            sig_header,
            settings.webhook_secrets(),
            tolerance=settings.fcsync_webhook_tolerance_s,
        )
    except WebhookSignatureError as exc:
        return Receipt(400, error=str(exc))
    expected = settings.livemode
    if expected is not None and event.livemode != expected:
        mode = "live" if event.livemode else "test"
        return Receipt(
            400, event.id, error=f"{mode}mode event sent to an endpoint for the other mode"
        )
    stored = repository.insert_webhook_event(
        session,
        event_id=event.id,
        type=event.type,
        account_id=event.account.id if event.account else None,
        livemode=event.livemode,
        created=event.created,
        payload=payload.decode("utf-8"),
        now=now,
    )
    return Receipt(200, event.id, duplicate=not stored)


EventOutcome = Literal["processed", "ignored", "duplicate", "failed"]


@dataclass(frozen=True)
class EventResult:
    outcome: EventOutcome
    followups: tuple[Followup, ...] = field(default=())


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
    followups = (sync_followup(account.id),) if obs.needs_sync else ()
    return EventResult("processed", followups)


def _on_status_change(ctx: _Context, event: FCEvent) -> EventResult:
    """deactivated / reactivated / disconnected: status is re-read, since events arrive in any
    order and only Stripe's current view is certain."""
    if event.account is None:
        return EventResult("ignored")
    if repository.get_account(ctx.session, event.account.id) is None:
        return _maybe_autotrack(ctx, event)
    live = retrieve_or_mark_gone(ctx.session, ctx.gateway, event.account.id, now=ctx.now)
    if live is None:
        return EventResult("processed")
    obs = observe_account(ctx.session, live, now=ctx.now, settings=ctx.settings)
    account = obs.account
    if live.status == "active":
        if account.last_error_code == "account_inactive":
            repository.clear_error(account)
        account.next_due_at = min(account.next_due_at or ctx.now, ctx.now)
    else:
        repository.record_error(
            account, "account_inactive", f"account is {live.status}", now=ctx.now
        )
        park_unusable(account, now=ctx.now, settings=ctx.settings)
    followups = (sync_followup(account.id),) if obs.needs_sync else ()
    return EventResult("processed", followups)


def _maybe_autotrack(ctx: _Context, event: FCEvent) -> EventResult:
    if ctx.settings.fcsync_auto_track and event.account is not None:
        return EventResult(
            "processed", (Followup(contract.TRACK_ACCOUNT, {"account_id": event.account.id}),)
        )
    return EventResult("ignored")


HANDLERS: dict[str, Handler] = {
    EVENT_PREFIX + "refreshed_transactions": _on_refreshed_transactions,
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
    row = repository.get_webhook_event(session, event_id)
    if row is None:
        raise PermanentError(f"event {event_id} is not in the inbox", code="unknown_event")
    if row.processed_at is not None:
        return EventResult("duplicate")
    event, _ = parse_event(row.payload)
    handler = HANDLERS.get(event.type)
    try:
        result = (
            handler(_Context(session, gateway, now, settings), event)
            if handler
            else EventResult("ignored")
        )
    except PermanentError as exc:
        # Kept in the inbox with the reason; a transient error instead leaves the row
        # unprocessed so the task's retry (or the sweep) handles it again.
        row.error = f"[{exc.code}] {exc}"
        result = EventResult("failed")
    row.processed_at = now
    row.outcome = result.outcome
    return result


def unhandled_events(session: Session, *, now: datetime, settings: Settings) -> Sweep:
    """Inbox rows whose handle_event never ran (enqueue lost after commit, worker died)."""
    cutoff = now - timedelta(seconds=settings.fcsync_stale_pending_s)
    return Sweep(
        tuple(
            Followup(contract.HANDLE_EVENT, {"event_id": event_id})
            for event_id in repository.unprocessed_event_ids(
                session, received_before=cutoff, limit=settings.fcsync_sweep_batch
            )
        )
    )
