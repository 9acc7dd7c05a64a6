"""The balance and ownership features: which an account keeps fresh, each through the refresh
gate transactions use, completed by webhook or by poll, with its own due time. A completed
balance refresh adds to the balance history; an ownership refresh replaces the stored owners.

Plain functions of (session, gateway, ids, now) returning intents, as worker/refresh.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.orm import Session

from models import Account, AccountFeature
from worker import feature_store, metrics, repository
from worker.accounts import from_ts, observe_account, retrieve_or_mark_gone, stripe_context
from worker.errors import ErrorCode
from worker.intents import Intent, PollRefresh, RefreshDue, SyncDue
from worker.records import FCAccount, FCOwner, FeatureRefreshState
from worker.refresh import refresh_idempotency_key
from worker.refresh_backoff import failed_refresh_retry_at
from worker.refresh_gate import OPTIONAL_FEATURES, STRIPE_REFRESH_FEATURE, gate
from worker.settings import Settings
from worker.stripe_gateway import StripeGateway

FeatureOutcome = Literal[
    "started", "pending", "cooldown", "inactive", "no_permission", "untracked", "gone"
]
FeaturePollOutcome = Literal["pending", "succeeded", "failed", "stale", "none", "gone"]


@dataclass(frozen=True)
class FeatureResult:
    outcome: FeatureOutcome | FeaturePollOutcome
    retry_at: datetime | None = None
    intents: tuple[Intent, ...] = field(default=())
    # Only transaction refreshes have ids: the tasks report the same keys for every feature.
    refresh_id: None = None


def refresh_state(fc: FCAccount, feature: str) -> FeatureRefreshState | None:
    return fc.balance_refresh if feature == "balances" else fc.ownership_refresh


def choose_features(
    session: Session,
    account: Account,
    live: FCAccount,
    wanted: Sequence[str] | None,
    *,
    now: datetime,
    settings: Settings,
) -> tuple[Intent, ...]:
    """Track the optional features in `wanted` (None: keep those tracked), each only if the
    account's permissions allow it, else parked with the reason recorded on it. Allowed ones
    are refreshed at once (their gate still applies)."""
    rows = (
        feature_store.features_of(session, account.id)
        if wanted is None
        else feature_store.set_features(
            session, account.id, [f for f in wanted if f in OPTIONAL_FEATURES]
        )
    )
    intents: list[Intent] = []
    for row in rows:
        if _refuse(row, live, now=now, settings=settings) is None:
            feature_store.clear_feature_error(row)
            intents.append(RefreshDue(account.id, row.feature))
    return tuple(intents)


def _refuse(
    row: AccountFeature, live: FCAccount, *, now: datetime, settings: Settings
) -> Literal["inactive", "no_permission"] | None:
    """Why Stripe would refuse to refresh this feature, recorded and parked until the unusable
    recheck (a permanent condition: retrying sooner would not change it), or None."""
    recheck = now + timedelta(seconds=settings.fcsync_unusable_recheck_s)
    if live.status != "active":
        feature_store.record_feature_error(
            row, ErrorCode.ACCOUNT_INACTIVE, f"account is {live.status}", now=now
        )
        row.next_due_at = None if live.status == "disconnected" else recheck
        return "inactive"
    if row.feature not in live.permissions:
        feature_store.record_feature_error(
            row,
            ErrorCode.MISSING_PERMISSION,
            f"the account lacks the {row.feature} permission; relink it with "
            f"permissions=['{row.feature}'] to keep its {row.feature} fresh",
            now=now,
        )
        row.next_due_at = recheck
        return "no_permission"
    return None


def complete_features(
    session: Session,
    gateway: StripeGateway,
    fc: FCAccount,
    *,
    now: datetime,
    settings: Settings,
    stripe_account: str | None,
) -> None:
    """Fold Stripe's view of the account's feature refreshes into each tracked feature: a
    succeeded balance refresh adds its balance to the history, a succeeded ownership refresh
    newer than the stored owners replaces them. Older views (late events) change nothing."""
    for row in feature_store.features_of(session, fc.id):
        state = refresh_state(fc, row.feature)
        if state is None:
            continue
        known, was = row.refresh_last_attempted_at, row.refresh_status
        moved = feature_store.apply_feature_refresh(row, state)
        attempted = from_ts(state.last_attempted_at)
        if state.status == "succeeded" and (row.stored_refresh_at or 0) <= state.last_attempted_at:
            if row.feature == "balances" and fc.balance is not None:
                feature_store.save_balance(session, fc.id, fc.balance)
                row.stored_refresh_at = state.last_attempted_at
            elif row.feature == "ownership" and fc.ownership not in (None, row.ownership_id):
                assert fc.ownership is not None
                owners = _all_owners(gateway, fc.id, fc.ownership, stripe_account)
                feature_store.replace_owners(session, fc.id, owners)
                row.ownership_id = fc.ownership
                row.stored_refresh_at = state.last_attempted_at
        if not moved:
            continue
        # An end fcsync saw happen counts once; a refresh it first sees already ended (the one
        # before tracking began) does not, as for transactions (refresh_store.save_refresh).
        seen_end = known is not None and (was == "pending" or state.last_attempted_at > known)
        if state.status in ("succeeded", "failed") and seen_end:
            metrics.feature_refresh_ended(session, row.feature, state.status)
        if state.status == "succeeded":
            feature_store.clear_feature_error(row)
            row.refresh_failures = 0
            row.next_due_at = attempted + timedelta(seconds=settings.fcsync_refresh_interval_s)
        elif state.status == "failed":
            # A failed refresh is folded in once (apply_feature_refresh), so this counts each.
            row.refresh_failures = (row.refresh_failures or 0) + 1
            row.next_due_at = failed_refresh_retry_at(
                attempted_at=state.last_attempted_at,
                failures=row.refresh_failures,
                next_refresh_available_at=state.next_refresh_available_at,
                key=f"{fc.id}/{row.feature}",
                settings=settings,
            )
            feature_store.record_feature_error(
                row, ErrorCode.REFRESH_FAILED, f"{row.feature} refresh failed", now=now
            )
        elif state.status == "pending":
            # While pending, the due time only paces the stale-refresh sweep (as for
            # transactions): it may poll the refresh once it is overdue.
            row.next_due_at = None


def _all_owners(
    gateway: StripeGateway, account_id: str, ownership: str, stripe_account: str | None
) -> list[FCOwner]:
    """Every owner of `ownership`, paged to the end before any is stored."""
    owners: list[FCOwner] = []
    starting_after: str | None = None
    while True:
        page = gateway.list_owners_page(
            account_id,
            stripe_account=stripe_account,
            ownership=ownership,
            starting_after=starting_after,
        )
        owners.extend(page.owners)
        if not page.has_more:
            return owners
        starting_after = page.owners[-1].id


def _read(
    session: Session,
    gateway: StripeGateway,
    account_id: str,
    *,
    now: datetime,
    settings: Settings,
    stripe_account: str | None,
) -> tuple[FCAccount, str | None, list[Intent]] | None:
    """The account read live, mirrored and its features folded in; None once it is gone."""
    context = stripe_context(session, account_id, stripe_account)
    live = retrieve_or_mark_gone(session, gateway, account_id, stripe_account=context, now=now)
    if live is None:
        return None
    obs = observe_account(session, live, now=now, settings=settings)
    complete_features(session, gateway, live, now=now, settings=settings, stripe_account=context)
    return live, context, [SyncDue(account_id)] if obs.needs_sync else []


def request_feature_refresh(
    session: Session,
    gateway: StripeGateway,
    account_id: str,
    *,
    feature: str,
    source: str,
    now: datetime,
    settings: Settings,
    stripe_account: str | None = None,
) -> FeatureResult:
    """The gate for one optional feature: start a refresh only when Stripe would let one
    start, never while one is pending, never before its `next_refresh_available_at`."""
    known = repository.get_account(session, account_id)
    row = feature_store.get_feature(session, account_id, feature)
    if known is None or row is None or (not known.tracked and source == "beat"):
        return FeatureResult("untracked")
    if known.gone_at is not None and source == "beat":
        return FeatureResult("gone")
    read = _read(
        session, gateway, account_id, now=now, settings=settings, stripe_account=stripe_account
    )
    if read is None:
        return FeatureResult("gone")
    live, context, intents = read
    refused = _refuse(row, live, now=now, settings=settings)
    if refused is not None:
        return FeatureResult(refused, intents=tuple(intents))
    state = refresh_state(live, feature)
    allowed = gate(state, int(now.timestamp()))
    if allowed == "pending":
        return FeatureResult("pending", intents=(*intents, PollRefresh(account_id, 0, feature)))
    if allowed == "cooldown":
        assert state is not None and state.next_refresh_available_at is not None
        retry_at = from_ts(state.next_refresh_available_at)
        row.next_due_at = max(row.next_due_at or retry_at, retry_at)
        return FeatureResult("cooldown", retry_at=retry_at, intents=tuple(intents))
    started = gateway.refresh_feature(
        account_id,
        STRIPE_REFRESH_FEATURE[feature],
        stripe_account=context,
        idempotency_key=refresh_idempotency_key(
            f"{account_id}-{feature}",
            str(state.last_attempted_at) if state else None,
            now=now,
            window_s=settings.fcsync_failed_refresh_retry_s,
        ),
    )
    complete_features(session, gateway, started, now=now, settings=settings, stripe_account=context)
    feature_store.clear_feature_error(row)
    return FeatureResult("started", intents=(*intents, PollRefresh(account_id, 0, feature)))


def poll_feature(
    session: Session,
    gateway: StripeGateway,
    account_id: str,
    *,
    feature: str,
    now: datetime,
    settings: Settings,
    attempt: int = 0,
    stripe_account: str | None = None,
) -> FeatureResult:
    """Read the account once and fold in its `feature` refresh; still pending, poll again
    until FCSYNC_POLL_DEADLINE_S marks it stale (the stale-refresh sweep polls it then)."""
    read = _read(
        session, gateway, account_id, now=now, settings=settings, stripe_account=stripe_account
    )
    if read is None:
        return FeatureResult("gone")
    live, _, intents = read
    state = refresh_state(live, feature)
    row = feature_store.get_feature(session, account_id, feature)
    if state is None or row is None:
        return FeatureResult("none", intents=tuple(intents))
    if state.status in ("succeeded", "failed"):
        return FeatureResult(
            "succeeded" if state.status == "succeeded" else "failed", intents=tuple(intents)
        )
    if int(now.timestamp()) - state.last_attempted_at > settings.fcsync_poll_deadline_s:
        feature_store.record_feature_error(
            row,
            ErrorCode.REFRESH_STALE,
            f"{feature} refresh still pending after {settings.fcsync_poll_deadline_s}s",
            now=now,
        )
        row.next_due_at = now + timedelta(seconds=settings.fcsync_stale_pending_s)
        return FeatureResult("stale", intents=tuple(intents))
    # Pending, or a status newer than this code: poll again, the deadline still bounds it.
    return FeatureResult(
        "pending", intents=(*intents, PollRefresh(account_id, attempt + 1, feature))
    )


def on_refreshed_feature(
    session: Session,
    gateway: StripeGateway,
    account_id: str,
    *,
    now: datetime,
    settings: Settings,
) -> tuple[Intent, ...]:
    """A `refreshed_balance` / `refreshed_ownership` event of a tracked account: the account is
    re-read (an event's payload is rendered at the account's default API version and may be
    older than what is stored) and its feature refreshes folded in."""
    known = repository.get_account(session, account_id)
    read = _read(
        session,
        gateway,
        account_id,
        now=now,
        settings=settings,
        stripe_account=known.stripe_account if known is not None else None,
    )
    return () if read is None else tuple(read[2])
