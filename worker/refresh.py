"""Refresh orchestration: observe Stripe's refresh state, gate new refreshes, poll pending ones.

Plain functions of (session, gateway, ids, now); they return intents (what should happen next)
instead of enqueueing work, so the edge can send it after its commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.orm import Session

from worker import due_accounts, failpoints, feature_store, pacing, repository
from worker.accounts import (
    from_ts,
    observe_account,
    park_unusable,
    refuse_unusable,
    retrieve_or_mark_gone,
    stripe_context,
)
from worker.errors import ErrorCode
from worker.intents import (
    Intent,
    PollRefresh,
    PollStaleRefresh,
    RefreshDue,
    RetryRefreshAt,
    SyncDue,
)
from worker.records import Sweep
from worker.refresh_gate import gate
from worker.settings import Settings
from worker.stripe_gateway import StripeGateway

RefreshOutcome = Literal[
    "started", "pending", "cooldown", "fresh", "inactive", "no_permission", "untracked", "gone"
]


@dataclass(frozen=True)
class RefreshDecision:
    outcome: RefreshOutcome
    refresh_id: str | None = None
    retry_at: datetime | None = None
    intents: tuple[Intent, ...] = field(default=())


# Stripe stores the first answer under an idempotency key, 500s included, for at least a day
# (stripe-fc-api.md section 7): a key that never changed would replay one unlucky 500 to every
# attempt. Keys therefore live for one window of this many seconds (at least a minute).
IDEMPOTENCY_WINDOW_MIN_S = 60


def refresh_idempotency_key(
    account_id: str, previous_refresh_id: str | None, *, now: datetime, window_s: int
) -> str:
    """Same account + same previous refresh + same window = same key: a redelivered or racing
    task replays Stripe's stored answer instead of starting a second refresh, while a failed
    answer stops being replayed once the window has passed."""
    window = int(now.timestamp()) // max(window_s, IDEMPOTENCY_WINDOW_MIN_S)
    return f"fcsync-refresh-{account_id}-{previous_refresh_id or 'initial'}-{window}"


def request_refresh(
    session: Session,
    gateway: StripeGateway,
    account_id: str,
    *,
    source: str,
    now: datetime,
    settings: Settings,
    stripe_account: str | None = None,
) -> RefreshDecision:
    """The gate: start a refresh only when Stripe would let one start, never while pending.
    `stripe_account` as in tracking.track_account: every request goes out in the context."""
    context = stripe_context(session, account_id, stripe_account)
    known = repository.get_account(session, account_id)
    if known is not None and not known.transactions_tracked:
        # Tracked without transactions: whoever asks, nothing reads what a refresh would bring.
        return RefreshDecision("untracked")
    if known is not None and not known.tracked and source == "beat":
        return RefreshDecision("untracked")
    if known is not None and known.gone_at is not None and source == "beat":
        return RefreshDecision("gone")
    previous_refresh_id = known.refresh_id if known is not None else None
    live = retrieve_or_mark_gone(session, gateway, account_id, stripe_account=context, now=now)
    if live is None:
        return RefreshDecision("gone")
    obs = observe_account(session, live, now=now, settings=settings)
    intents: list[Intent] = [SyncDue(account_id)] if obs.needs_sync else []
    account = obs.account
    unusable = refuse_unusable(account, live, now=now, settings=settings)
    if unusable is not None:
        return RefreshDecision(unusable, intents=tuple(intents))
    state = live.transaction_refresh
    now_ts = int(now.timestamp())
    allowed = gate(state, now_ts)
    if state is not None and allowed == "pending":
        intents.append(PollRefresh(account_id))
        return RefreshDecision("pending", refresh_id=state.id, intents=tuple(intents))
    if state is not None and allowed == "cooldown":
        retry_at = from_ts(int(state.next_refresh_available_at or now_ts))
        account.next_due_at = max(account.next_due_at or retry_at, retry_at)
        if source != "beat":  # beat asks again at the due time anyway
            intents.append(RetryRefreshAt(account_id, source, retry_at))
        return RefreshDecision("cooldown", retry_at=retry_at, intents=tuple(intents))
    if (
        source == "beat"
        and state is not None
        and state.status == "succeeded"
        and state.id != previous_refresh_id
        and state.last_attempted_at + account.refresh_interval_s > now_ts
    ):
        # Stripe's own daily refresh landed since we last looked: nothing to ask for.
        return RefreshDecision("fresh", refresh_id=state.id, intents=tuple(intents))
    started = gateway.refresh_transactions(
        account_id,
        stripe_account=context,
        idempotency_key=refresh_idempotency_key(
            account_id,
            state.id if state else None,
            now=now,
            window_s=settings.fcsync_failed_refresh_retry_s,
        ),
    )
    failpoints.failpoint("refresh.after_post")
    obs = observe_account(
        session, started, now=now, settings=settings, source=source, requested=True
    )
    repository.clear_error(obs.account)
    refresh_id = started.transaction_refresh.id if started.transaction_refresh else None
    intents.append(PollRefresh(account_id))
    return RefreshDecision("started", refresh_id=refresh_id, intents=tuple(intents))


PollOutcome = Literal["pending", "succeeded", "failed", "stale", "none", "gone"]


@dataclass(frozen=True)
class PollResult:
    outcome: PollOutcome
    refresh_id: str | None = None
    intents: tuple[Intent, ...] = field(default=())


def poll_refresh(
    session: Session,
    gateway: StripeGateway,
    account_id: str,
    *,
    now: datetime,
    settings: Settings,
    attempt: int = 0,
    stripe_account: str | None = None,
) -> PollResult:
    """Read the account once and act on its refresh state; still pending, poll it again (the
    `attempt`-th poll of it was this one) until the deadline marks it stale."""
    context = stripe_context(session, account_id, stripe_account)
    known = repository.get_account(session, account_id)
    if known is not None and not known.transactions_tracked:
        # A poll sent before transactions stopped being tracked: nothing waits for it.
        return PollResult("none")
    live = retrieve_or_mark_gone(session, gateway, account_id, stripe_account=context, now=now)
    if live is None:
        return PollResult("gone")
    obs = observe_account(session, live, now=now, settings=settings)
    intents: tuple[Intent, ...] = (SyncDue(account_id),) if obs.needs_sync else ()
    state = live.transaction_refresh
    if state is None:
        return PollResult("none", intents=intents)
    again = (*intents, PollRefresh(account_id, attempt + 1))
    if state.status == "pending":
        if int(now.timestamp()) - state.last_attempted_at > settings.fcsync_poll_deadline_s:
            repository.record_error(
                obs.account,
                ErrorCode.REFRESH_STALE,
                f"refresh {state.id} still pending after {settings.fcsync_poll_deadline_s}s",
                now=now,
            )
            # Stripe refuses new refreshes while one is pending: the account is unusable until
            # that one ends (its webhook ends the wait sooner), so the sweep re-reads it daily.
            park_unusable(obs.account, now=now, settings=settings)
            return PollResult("stale", state.id, intents)
        return PollResult("pending", state.id, again)
    if state.status == "succeeded":
        return PollResult("succeeded", state.id, intents)
    if state.status == "failed":
        return PollResult("failed", state.id, intents)
    # An enum value newer than this code: treat like pending, the deadline still bounds it.
    return PollResult("pending", state.id, again)


def due_refreshes(session: Session, *, now: datetime, settings: Settings) -> Sweep:
    """Accounts beat should refresh now (fan-out: one gated refresh task each).

    Each is claimed until FCSYNC_FAILED_REFRESH_RETRY_S from now (the task's outcome then sets
    the real due time): a lost message, a crash or an unforeseen permanent error costs one
    Stripe request per retry window, not one per beat tick."""
    claim_s = max(settings.fcsync_failed_refresh_retry_s, settings.fcsync_beat_interval_s)
    until = now + timedelta(seconds=claim_s)
    due = due_accounts.claim_due_account_ids(
        session, now=now, until=until, limit=settings.fcsync_sweep_batch
    )
    # Balances and ownership: each feature its own due time, claimed the same way.
    features = feature_store.claim_due_features(
        session, now=now, until=until, limit=settings.fcsync_sweep_batch
    )
    return Sweep(
        (
            *(RefreshDue(account_id) for account_id in due),
            *(RefreshDue(account_id, feature) for account_id, feature in features),
        )
    )


def stale_polls(session: Session, *, now: datetime, settings: Settings) -> Sweep:
    """Refreshes pending for too long with no webhook: poll them again, each at most once per
    FCSYNC_STALE_PENDING_S (its due time paces this while pending; the refresh's end resets it),
    so a slow refresh does not gather a new polling chain every sweep."""
    stale = due_accounts.stale_pending_account_ids(
        session,
        now=now,
        older_than_s=settings.fcsync_stale_pending_s,
        limit=settings.fcsync_sweep_batch,
    )
    until = now + timedelta(seconds=settings.fcsync_stale_pending_s)
    pacing.postpone(session, stale, until=until)
    features = feature_store.stale_pending_features(
        session,
        now=now,
        older_than_s=settings.fcsync_stale_pending_s,
        limit=settings.fcsync_sweep_batch,
    )
    for account_id, feature in features:
        row = feature_store.get_feature(session, account_id, feature)
        if row is not None:
            row.next_due_at = until
    return Sweep(
        (
            *(PollStaleRefresh(account_id) for account_id in stale),
            *(PollStaleRefresh(account_id, feature) for account_id, feature in features),
        )
    )
