"""Inbox events handled once, each through the handler of its type (a table), returning
intents for the edge; and the sweep of events whose handling never finished."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.orm import Session

from models import WebhookEvent
from worker import inbox, lifecycle, log_context, metrics, repository
from worker.accounts import (
    observe_account,
    reactivate,
    refuse_unusable,
    retrieve_or_mark_gone,
)
from worker.contexts import context_name
from worker.errors import ConfigurationError, ErrorCode, PermanentError
from worker.event_envelope import FC_EVENT_PREFIX, is_event_id, read_event
from worker.features import on_refreshed_feature
from worker.intents import HandleEvent, Intent, SyncDue, TrackAccount
from worker.records import FCEvent, Sweep
from worker.settings import Settings
from worker.stripe_events import parse_event
from worker.stripe_gateway import StripeGateway
from worker.stripe_keys import key_name

log = logging.getLogger(__name__)

EVENT_PREFIX = FC_EVENT_PREFIX


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
    if not account.transactions_tracked:
        # Kept in the inbox; tracked with other features only, nothing of it is read.
        return EventResult("ignored")
    # The payload may be older than what we know: fold in only its refresh state, guarded.
    obs = observe_account(
        ctx.session, event.account, now=ctx.now, settings=ctx.settings, mirror=False
    )
    return EventResult("processed", (SyncDue(account.id),) if obs.needs_sync else ())


def _on_refreshed_feature(ctx: _Context, event: FCEvent) -> EventResult:
    """refreshed_balance / refreshed_ownership: the feature's refresh ended (worker/features)."""
    if event.account is None:
        return EventResult("ignored")
    account = repository.get_account(ctx.session, event.account.id)
    if account is None or not account.tracked:
        return _maybe_autotrack(ctx, event)
    intents = on_refreshed_feature(
        ctx.session, ctx.gateway, account.id, now=ctx.now, settings=ctx.settings
    )
    return EventResult("processed", intents)


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
        # Also when an earlier read already saw it active (observe_account did this then).
        reactivate(ctx.session, account, now=ctx.now)
    else:
        refuse_unusable(account, live, now=ctx.now, settings=ctx.settings)
    return EventResult("processed", (SyncDue(account.id),) if obs.needs_sync else ())


def _on_account_numbers(ctx: _Context, event: FCEvent) -> EventResult:
    """account_numbers_updated / upcoming_account_number_expiry: nothing for a transactions
    sync to do; the account task (FCSYNC_ON_ACCOUNT_TASK) hears of it."""
    if event.account is None:
        return EventResult("ignored")
    account = repository.get_account(ctx.session, event.account.id)
    if account is None or not account.tracked:
        return _maybe_autotrack(ctx, event)
    lifecycle.note_event(ctx.session, account, event)
    return EventResult("processed")


def _maybe_autotrack(ctx: _Context, event: FCEvent) -> EventResult:
    if ctx.settings.fcsync_auto_track and event.account is not None:
        # In the context the event came from: a Connect event's account is the connected one's.
        account = event.account
        return EventResult(
            "processed",
            (TrackAccount(account.id, account.stripe_account, stripe_key=account.stripe_key),),
        )
    return EventResult("ignored")


HANDLERS: dict[str, Handler] = {
    inbox.REFRESHED_TRANSACTIONS: _on_refreshed_transactions,
    EVENT_PREFIX + "refreshed_balance": _on_refreshed_feature,
    EVENT_PREFIX + "refreshed_ownership": _on_refreshed_feature,
    EVENT_PREFIX + "deactivated": _on_status_change,
    EVENT_PREFIX + "reactivated": _on_status_change,
    EVENT_PREFIX + "disconnected": _on_status_change,
    EVENT_PREFIX + "created": _maybe_autotrack,
    EVENT_PREFIX + "account_numbers_updated": _on_account_numbers,
    EVENT_PREFIX + "upcoming_account_number_expiry": _on_account_numbers,
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
    row = inbox.claim_webhook_event(session, event_id)
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
        event = read_event(lambda: parse_event(row.payload))[0]
        if event.account is not None:
            # The account is the one of the key the event came with (the gateway's).
            event = replace(event, account=replace(event.account, stripe_key=row.stripe_key))
        handler = HANDLERS.get(event.type)
        # The key's mode, checked again: a row may predate a change of key.
        expected = gateway.livemode
        mismatch = _context_mismatch(session, event)
        if handler is None or (expected is not None and event.livemode != expected):
            result = EventResult("ignored")
        elif mismatch is not None:
            # Kept with the reason, never applied to an account of another context.
            code, reason = mismatch
            inbox.record_event_error(row, code, reason)
            log.warning("webhook event %r ignored: %s", row.id, reason)
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


def _context_mismatch(session: Session, event: FCEvent) -> tuple[ErrorCode, str] | None:
    """Why (a code, a reason) the event must not touch the stored account it names: it
    happened in another Stripe account context (a Connect event's `account`, or none for the
    platform), or came with another key. None when it may: both agree, or fcsync has no
    confirmed row for the account (tracking it, if auto-track is on, takes the event's
    context and key)."""
    if event.account is None:
        return None
    account = repository.get_account(session, event.account.id)
    if account is None or account.status == "unknown":
        return None
    if account.stripe_account != event.stripe_account:
        return ErrorCode.STRIPE_ACCOUNT_MISMATCH, (
            f"event of Stripe account context {context_name(event.stripe_account)} names "
            f"account {account.id}, which belongs to {context_name(account.stripe_account)}"
        )
    if account.stripe_key != event.account.stripe_key:
        return ErrorCode.STRIPE_KEY_MISMATCH, (
            f"event of the Stripe key `{key_name(event.account.stripe_key)}` names account "
            f"{account.id}, which is reached with `{key_name(account.stripe_key)}`"
        )
    return None


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
