"""Start and stop keeping an account in sync, including Stripe's daily-refresh subscription."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy.orm import Session

from worker import repository
from worker.accounts import (
    mark_gone,
    observe_account,
    refuse_unusable,
    retrieve_or_mark_gone,
    stripe_context,
)
from worker.errors import ErrorCode, PermanentError
from worker.intents import Intent, PollRefresh, SyncDue
from worker.settings import Settings
from worker.stripe_gateway import StripeGateway

TrackOutcome = Literal["tracked", "subscribed", "inactive", "no_permission", "untracked", "gone"]


@dataclass(frozen=True)
class TrackResult:
    outcome: TrackOutcome
    subscribed: bool
    intents: tuple[Intent, ...] = field(default=())


def track_account(
    session: Session,
    gateway: StripeGateway,
    account_id: str,
    *,
    subscribe: bool,
    now: datetime,
    settings: Settings,
    stripe_account: str | None = None,
) -> TrackResult:
    """Mirror the account and mark it tracked; subscribe it to Stripe's daily refreshes.

    An inactive account or one without the `transactions` permission is stored with the
    reason in `last_error` (a permanent condition: retrying would not change it) and re-read
    once per FCSYNC_UNUSABLE_RECHECK_S. Tracking an account marked gone asks Stripe again.
    `stripe_account`: the connected account it lives in (None = the platform, or the stored
    context of an account fcsync knows; another one than that is refused)."""
    context = stripe_context(session, account_id, stripe_account)
    live = retrieve_or_mark_gone(session, gateway, account_id, stripe_account=context, now=now)
    if live is None:
        return TrackResult("gone", subscribed=False)
    obs = observe_account(session, live, now=now, settings=settings)
    account = obs.account
    account.tracked = True
    account.refresh_interval_s = settings.fcsync_refresh_interval_s
    intents: list[Intent] = [SyncDue(account_id)] if obs.needs_sync else []
    unusable = refuse_unusable(account, live, now=now, settings=settings)
    if unusable is not None:
        return TrackResult(unusable, account.subscribed, tuple(intents))
    repository.clear_error(account)
    if subscribe and not account.subscribed:
        subscribed = gateway.subscribe_transactions(account_id, stripe_account=context)
        observe_account(
            session, subscribed, now=now, settings=settings, source="subscription", requested=True
        )
        state = subscribed.transaction_refresh
        if state is not None and state.status == "pending":
            intents.append(PollRefresh(account_id))
        return TrackResult("subscribed", True, tuple(intents))
    if account.next_due_at is None:
        # Never refreshed through us: let the next beat sweep consider it right away.
        account.next_due_at = now
    state = live.transaction_refresh
    if state is not None and state.status == "pending":
        # A refresh already running (a redelivered track whose subscribe went through, or one
        # started elsewhere): learn its outcome now rather than from the stale-refresh sweep.
        intents.append(PollRefresh(account_id))
    return TrackResult("tracked", account.subscribed, tuple(intents))


def untrack_account(
    session: Session,
    gateway: StripeGateway,
    account_id: str,
    *,
    unsubscribe: bool,
    now: datetime,
    settings: Settings,
    stripe_account: str | None = None,
) -> TrackResult:
    """Stop scheduling the account (its stored transactions stay)."""
    context = stripe_context(session, account_id, stripe_account)
    account = repository.get_account(session, account_id)
    gone = account is not None and account.gone_at is not None
    if unsubscribe and (account is None or account.subscribed) and not gone:
        try:
            live = gateway.unsubscribe_transactions(account_id, stripe_account=context)
            account = observe_account(session, live, now=now, settings=settings).account
        except PermanentError as exc:
            # Stripe no longer knows it: nothing to unsubscribe, stop tracking it here.
            if exc.code != ErrorCode.RESOURCE_MISSING or not mark_gone(
                session, account_id, now=now
            ):
                raise
    if account is None:
        live = gateway.retrieve_account(account_id, stripe_account=context)
        account = observe_account(session, live, now=now, settings=settings).account
    account.tracked = False
    account.next_due_at = None
    return TrackResult("untracked", account.subscribed)
