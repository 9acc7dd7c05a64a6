"""Refresh orchestration: observe Stripe's refresh state, gate new refreshes, poll pending ones.

Plain functions of (session, gateway, ids, now); they return intents (what should happen next)
instead of enqueueing work, so the edge can send it after its commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy.orm import Session

from models import Account, Refresh
from worker import pacing, repository
from worker.errors import PermanentError
from worker.intents import (
    Intent,
    PollRefresh,
    PollStaleRefresh,
    RefreshDue,
    RetryRefreshAt,
    SyncDue,
)
from worker.records import FCAccount, Sweep
from worker.settings import Settings
from worker.stripe_gateway import StripeGateway


def from_ts(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


@dataclass(frozen=True)
class Observation:
    account: Account
    refresh: Refresh | None
    needs_sync: bool


def observe_account(
    session: Session,
    fc: FCAccount,
    *,
    now: datetime,
    settings: Settings,
    source: str = "subscription",
    requested: bool = False,
    mirror: bool = True,
) -> Observation:
    """Fold a fresh view of the account into the database and say whether a sync is due.

    `mirror=False` takes only the refresh state (for event payloads that may be stale).
    """
    account = repository.get_account(session, fc.id)
    if account is None or mirror:
        account = repository.save_account(session, fc, now=now)
        if account.gone_at is not None:
            # Stripe answered for it again: it is back, and due as any account never scheduled.
            account.gone_at = None
            if account.last_error_code == GONE:
                repository.clear_error(account)
    state = fc.transaction_refresh
    if state is None:
        return Observation(account, None, needs_sync=False)
    refresh = repository.save_refresh(
        session, account.id, state, source=source, now=now, requested=requested
    )
    previous_id = account.refresh_id
    moved = repository.apply_refresh(account, state)
    # Due times count from the refresh itself, not from when we looked: seeing the same refresh
    # again (a retried poll, a late duplicate webhook) must not postpone the next one.
    attempted = from_ts(state.last_attempted_at)
    if moved and state.status == "succeeded":
        grace = settings.fcsync_subscription_grace_s if account.subscribed else 0
        account.next_due_at = attempted + timedelta(seconds=account.refresh_interval_s + grace)
    elif moved and state.status == "failed":
        # Doubling per failure in a row, up to the unusable recheck: an institution that keeps
        # failing costs a few requests a day, not four every FCSYNC_FAILED_REFRESH_RETRY_S.
        failures = pacing.failed_refreshes_in_a_row(session, account.id)
        backoff_s = settings.fcsync_failed_refresh_retry_s * 2 ** min(max(failures - 1, 0), 20)
        retry_at = attempted + timedelta(seconds=min(backoff_s, settings.fcsync_unusable_recheck_s))
        if state.next_refresh_available_at is not None:
            retry_at = max(retry_at, from_ts(state.next_refresh_available_at))
        account.next_due_at = retry_at
        refresh.error_code = refresh.error_code or "refresh_failed"
        refresh.error_message = refresh.error_message or "Stripe reported the refresh as failed"
        repository.record_error(
            account, "refresh_failed", f"transaction refresh {state.id} failed", now=now
        )
    elif moved and state.status == "pending" and state.id != previous_id:
        # A new refresh runs: until it ends, the due time only paces the stale-refresh sweep
        # (stale_polls), which may poll it as soon as it is overdue, whatever was due before.
        account.next_due_at = None
    needs_sync = (
        state.status == "succeeded"
        and state.id != account.cursor_refresh_id
        and (
            account.cursor_refresh_at is None
            or state.last_attempted_at >= account.cursor_refresh_at
        )
    )
    return Observation(account, refresh, needs_sync=needs_sync)


GONE = "account_gone"


def mark_gone(session: Session, account_id: str, *, now: datetime) -> bool:
    """Stripe answered 404 for the account: park it for good (no due time, left out of every
    sweep) until a live read succeeds again. False for an account fcsync never stored."""
    account = repository.get_account(session, account_id)
    if account is None:
        return False
    account.gone_at = account.gone_at or now
    account.next_due_at = None
    repository.record_error(
        account,
        GONE,
        "Stripe no longer knows this account (404); fcsync stopped refreshing it. "
        f"If it exists again: fcsync track {account_id}",
        now=now,
    )
    return True


def retrieve_or_mark_gone(
    session: Session, gateway: StripeGateway, account_id: str, *, now: datetime
) -> FCAccount | None:
    """Stripe's current view of the account, or None once it is marked gone. Only the
    account can be missing from a retrieve, so `resource_missing` here means the account."""
    try:
        return gateway.retrieve_account(account_id)
    except PermanentError as exc:
        if exc.code != "resource_missing" or not mark_gone(session, account_id, now=now):
            raise
        return None


def park_unusable(account: Account, *, now: datetime, settings: Settings) -> None:
    """An account that cannot refresh is re-read once per FCSYNC_UNUSABLE_RECHECK_S. A
    disconnected one never comes back at Stripe (relinking makes a new account): no due time,
    so beat leaves it to an event or an operator."""
    if account.status == "disconnected":
        account.next_due_at = None
    else:
        account.next_due_at = now + timedelta(seconds=settings.fcsync_unusable_recheck_s)


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
) -> RefreshDecision:
    """The gate: start a refresh only when Stripe would let one start, never while pending."""
    known = repository.get_account(session, account_id)
    if known is not None and not known.tracked and source == "beat":
        return RefreshDecision("untracked")
    if known is not None and known.gone_at is not None and source == "beat":
        return RefreshDecision("gone")
    previous_refresh_id = known.refresh_id if known is not None else None
    live = retrieve_or_mark_gone(session, gateway, account_id, now=now)
    if live is None:
        return RefreshDecision("gone")
    obs = observe_account(session, live, now=now, settings=settings)
    intents: list[Intent] = [SyncDue(account_id)] if obs.needs_sync else []
    account = obs.account
    if live.status != "active":
        repository.record_error(
            account,
            "account_inactive",
            f"account is {live.status}; Stripe refuses refreshes",
            now=now,
        )
        park_unusable(account, now=now, settings=settings)
        return RefreshDecision("inactive", intents=tuple(intents))
    if "transactions" not in live.permissions:
        repository.record_error(
            account,
            "missing_permission",
            "the account lacks the transactions permission",
            now=now,
        )
        park_unusable(account, now=now, settings=settings)
        return RefreshDecision("no_permission", intents=tuple(intents))
    state = live.transaction_refresh
    now_ts = int(now.timestamp())
    if state is not None and state.status == "pending":
        intents.append(PollRefresh(account_id))
        return RefreshDecision("pending", refresh_id=state.id, intents=tuple(intents))
    if state is not None and (state.next_refresh_available_at or 0) > now_ts:
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
        idempotency_key=refresh_idempotency_key(
            account_id,
            state.id if state else None,
            now=now,
            window_s=settings.fcsync_failed_refresh_retry_s,
        ),
    )
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
) -> PollResult:
    """Read the account once and act on its refresh state; still pending, poll it again (the
    `attempt`-th poll of it was this one) until the deadline marks it stale."""
    live = retrieve_or_mark_gone(session, gateway, account_id, now=now)
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
                "refresh_stale",
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
    due = repository.due_account_ids(session, now=now, limit=settings.fcsync_sweep_batch)
    claim_s = max(settings.fcsync_failed_refresh_retry_s, settings.fcsync_beat_interval_s)
    pacing.postpone(session, due, until=now + timedelta(seconds=claim_s))
    return Sweep(tuple(RefreshDue(account_id) for account_id in due))


def stale_polls(session: Session, *, now: datetime, settings: Settings) -> Sweep:
    """Refreshes pending for too long with no webhook: poll them again, each at most once per
    FCSYNC_STALE_PENDING_S (its due time paces this while pending; the refresh's end resets it),
    so a slow refresh does not gather a new polling chain every sweep."""
    stale = repository.stale_pending_account_ids(
        session,
        now=now,
        older_than_s=settings.fcsync_stale_pending_s,
        limit=settings.fcsync_sweep_batch,
    )
    pacing.postpone(session, stale, until=now + timedelta(seconds=settings.fcsync_stale_pending_s))
    return Sweep(tuple(PollStaleRefresh(account_id) for account_id in stale))
