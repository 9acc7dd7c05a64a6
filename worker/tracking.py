"""Start and stop keeping an account in sync, including Stripe's daily-refresh subscription."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from sqlalchemy.orm import Session

from models import Account
from worker import feature_store, inbox, repository
from worker.accounts import (
    due_now,
    mark_gone,
    observe_account,
    refuse_unusable,
    retrieve_or_mark_gone,
    stripe_context,
)
from worker.errors import ErrorCode, PermanentError
from worker.features import choose_features
from worker.intents import Intent, PollRefresh, SyncDue
from worker.settings import Settings
from worker.stripe_gateway import StripeGateway

TrackOutcome = Literal["tracked", "subscribed", "inactive", "no_permission", "untracked", "gone"]


@dataclass(frozen=True)
class TrackResult:
    outcome: TrackOutcome
    subscribed: bool
    intents: tuple[Intent, ...] = field(default=())
    # Features the account is tracked with that its permissions do not grant (outcome
    # `no_permission`): each is parked with the reason and re-checked, see choose_features.
    missing_permissions: tuple[str, ...] = ()


def track_account(
    session: Session,
    gateway: StripeGateway,
    account_id: str,
    *,
    subscribe: bool,
    now: datetime,
    settings: Settings,
    stripe_account: str | None = None,
    features: Sequence[str] | None = None,
) -> TrackResult:
    """Mirror the account and mark it tracked with `features`: any of transactions, balances,
    ownership (None keeps what is tracked; a new account: transactions). With transactions,
    subscribe it to Stripe's daily refreshes (transactions-only, as Stripe's are); without,
    no transaction refresh, sync or subscription for it (a re-track that drops them ends
    the subscription).

    An inactive account is stored with the reason in `last_error` (a permanent condition:
    retrying would not change it) and re-read once per FCSYNC_UNUSABLE_RECHECK_S; so is a
    tracked feature the account's permissions do not grant (outcome `no_permission`, which
    names them). Tracking an account marked gone asks Stripe again.
    `stripe_account`: the connected account it lives in (None = the platform, or the stored
    context of an account fcsync knows; another one than that is refused)."""
    context = stripe_context(session, account_id, stripe_account)
    live = retrieve_or_mark_gone(session, gateway, account_id, stripe_account=context, now=now)
    if live is None:
        return TrackResult("gone", subscribed=False)
    known = repository.get_account(session, account_id)
    if features is None:
        transactions = known is None or known.transactions_tracked
    else:
        transactions = "transactions" in features
    added = transactions and known is not None and not known.transactions_tracked
    dropped = not transactions and known is not None and known.transactions_tracked
    if known is not None:
        # Before the account is observed: a row with transactions takes their state in now.
        known.transactions_tracked = transactions
    # Without transactions, none of their state is taken in (observe_account skips it for a
    # stored row; a new one is created from a view without it).
    seen = live if transactions else replace(live, transaction_refresh=None)
    obs = observe_account(session, seen, now=now, settings=settings)
    account = obs.account
    account.tracked = True
    account.transactions_tracked = transactions
    account.refresh_interval_s = settings.fcsync_refresh_interval_s
    intents: list[Intent] = [SyncDue(account_id)] if obs.needs_sync and transactions else []
    intents += choose_features(session, account, live, features, now=now, settings=settings)
    missing = _missing_permissions(session, account, live.permissions)
    unusable = refuse_unusable(account, live, now=now, settings=settings)
    if unusable is not None:
        named = missing if unusable == "no_permission" else ()
        return TrackResult(unusable, account.subscribed, tuple(intents), named)
    repository.clear_error(account)
    if not transactions:
        if dropped and account.subscribed:
            # Stripe's daily refresh is of transactions, which nothing reads any more. (One
            # fcsync never asked for, on an account never tracked with them, is not its own.)
            ended = gateway.unsubscribe_transactions(account_id, stripe_account=context)
            observe_account(session, ended, now=now, settings=settings)
        return _tracked("tracked", account, intents, missing)
    if subscribe and not account.subscribed:
        subscribed = gateway.subscribe_transactions(account_id, stripe_account=context)
        observe_account(
            session, subscribed, now=now, settings=settings, source="subscription", requested=True
        )
        state = subscribed.transaction_refresh
        if state is not None and state.status == "pending":
            intents.append(PollRefresh(account_id))
        return _tracked("subscribed", account, intents, missing)
    if account.next_due_at is None or added:
        # Never refreshed through us (or transactions newly tracked): let the next beat sweep
        # consider it right away.
        due_now(account, now=now)
    state = live.transaction_refresh
    if state is not None and state.status == "pending":
        # A refresh already running (a redelivered track whose subscribe went through, or one
        # started elsewhere): learn its outcome now rather than from the stale-refresh sweep.
        intents.append(PollRefresh(account_id))
    return _tracked("tracked", account, intents, missing)


def _missing_permissions(
    session: Session, account: Account, permissions: Sequence[str]
) -> tuple[str, ...]:
    """The features the account is tracked with that `permissions` do not grant."""
    tracked = ["transactions"] if account.transactions_tracked else []
    tracked += [row.feature for row in feature_store.features_of(session, account.id)]
    return tuple(f for f in tracked if f not in permissions)


def missing_permissions_text(missing: Sequence[str]) -> str:
    """What to do about features tracked without their permission, for people."""
    return (
        f"the account lacks the {', '.join(missing)} permission, which tracking "
        f"{'it' if len(missing) == 1 else 'them'} needs; relink it with "
        f"permissions={list(missing)}, or track it with --features without "
        f"{'it' if len(missing) == 1 else 'them'}"
    )


def _tracked(
    outcome: TrackOutcome, account: Account, intents: list[Intent], missing: tuple[str, ...]
) -> TrackResult:
    """Tracked as asked, or `no_permission` naming the features the permissions do not grant
    (still tracked: a relink that grants them lets them refresh at the next recheck)."""
    return TrackResult(
        "no_permission" if missing else outcome, account.subscribed, tuple(intents), missing
    )


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


@dataclass(frozen=True)
class PurgeResult:
    transactions: int
    refreshes: int
    events: int


def purge_account(session: Session, account_id: str) -> PurgeResult:
    """Delete everything fcsync stored about an untracked account: its transactions, refreshes,
    inbox events and the account row. Refused for a tracked one (a sync would bring it back)."""
    account = repository.get_account(session, account_id)
    if account is None:
        raise PermanentError(
            f"account {account_id} is not stored, so there is nothing to purge",
            code=ErrorCode.UNKNOWN_ACCOUNT,
        )
    if account.tracked:
        raise PermanentError(
            f"account {account_id} is still tracked: untrack it before purging its data",
            code=ErrorCode.ACCOUNT_TRACKED,
        )
    events = inbox.delete_account_events(session, account_id)
    transactions, refreshes = repository.delete_account(session, account_id)
    return PurgeResult(transactions, refreshes, events)
