"""The account as the other services stand on it: fold Stripe's view of it into the database,
park it when Stripe cannot refresh it or no longer knows it, and when it is due next."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy.orm import Session

from models import Account, Refresh
from worker import feature_store, lifecycle, pacing, refresh_store, repository
from worker.contexts import context_name
from worker.errors import ErrorCode, PermanentError, StripeAccountMismatch, StripeKeyMismatch
from worker.records import FCAccount
from worker.refresh_backoff import failed_refresh_retry_at
from worker.settings import Settings
from worker.stripe_gateway import StripeGateway
from worker.stripe_keys import key_name

# Conditions Stripe reports on the account itself: only a fresh view of it clears them, never a
# sync that happened to succeed.
USABILITY_ERRORS = frozenset({ErrorCode.ACCOUNT_INACTIVE, ErrorCode.MISSING_PERMISSION})


def from_ts(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


@dataclass(frozen=True)
class Observation:
    account: Account
    refresh: Refresh | None
    needs_sync: bool


def stripe_context(session: Session, account_id: str, given: str | None) -> str | None:
    """The Stripe account context every request about the account goes out in: the stored
    one; for an account fcsync has never mirrored from Stripe, the one the request names (None =
    the platform). A request naming another context than the stored one is refused before
    anything is sent: it is the request that is wrong, and Stripe would answer for another
    account, or 404 and park this one as gone."""
    account = repository.get_account(session, account_id)
    if account is None:
        return given
    if account.status == "unknown":
        # Nothing Stripe confirmed yet (a failed track leaves a row with status `unknown`): a
        # retry with the right context is not held to a mistyped one, and the row shows it.
        account.stripe_account = given
        return given
    if given is not None and given != account.stripe_account:
        raise StripeAccountMismatch(
            f"account {account_id} belongs to Stripe account context "
            f"{context_name(account.stripe_account)}, not {given}"
        )
    return account.stripe_account


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
    if account is not None and account.status != "unknown":
        # The last line of defence behind `stripe_context` and the runtime's choice of key:
        # never fold one context's (or key's) view into another's row.
        if fc.stripe_account != account.stripe_account:
            raise StripeAccountMismatch(
                f"account {fc.id} belongs to Stripe account context "
                f"{context_name(account.stripe_account)}, not {context_name(fc.stripe_account)}"
            )
        if fc.stripe_key != account.stripe_key:
            raise StripeKeyMismatch(
                f"account {fc.id} is reached with the Stripe key `{key_name(account.stripe_key)}`"
                f", not `{key_name(fc.stripe_key)}`"
            )
    if account is None or mirror:
        before = lifecycle.seen(account)
        account = repository.save_account(session, fc, now=now)
        lifecycle.note_changes(session, account, before)
        if before is not None and before.status != "active" and account.status == "active":
            reactivate(session, account, now=now)
        if account.gone_at is not None:
            # Stripe answered for it again: it is back, and due as any account never scheduled.
            account.gone_at = None
            if account.last_error_code == ErrorCode.ACCOUNT_GONE:
                repository.clear_error(account)
    state = fc.transaction_refresh
    if state is None or not account.transactions_tracked:
        # An account tracked without transactions takes none of their state: nothing to sync,
        # no refresh to record or schedule (tracking transactions again folds it in then).
        return Observation(account, None, needs_sync=False)
    refresh = refresh_store.save_refresh(
        session,
        account.id,
        state,
        stripe_account=account.stripe_account,
        stripe_key=account.stripe_key,
        source=source,
        now=now,
        requested=requested,
    )
    previous_id = account.refresh_id
    moved = refresh_store.apply_refresh(account, state)
    # Due times count from the refresh itself, not from when we looked: seeing the same refresh
    # again (a retried poll, a late duplicate webhook) must not postpone the next one.
    attempted = from_ts(state.last_attempted_at)
    if moved and state.status == "succeeded":
        grace = settings.fcsync_subscription_grace_s if account.subscribed else 0
        account.next_due_at = attempted + timedelta(seconds=account.refresh_interval_s + grace)
    elif moved and state.status == "failed":
        # The refreshes table holds the run of failures (this one included) the backoff grows
        # with; the policy is every feature's (worker/refresh_backoff.py).
        account.next_due_at = failed_refresh_retry_at(
            attempted_at=state.last_attempted_at,
            failures=pacing.failed_refreshes_in_a_row(session, account.id),
            next_refresh_available_at=state.next_refresh_available_at,
            key=f"{account.id}/transactions",
            settings=settings,
        )
        refresh.error_code = refresh.error_code or ErrorCode.REFRESH_FAILED
        refresh.error_message = refresh.error_message or "Stripe reported the refresh as failed"
        repository.record_error(
            account, ErrorCode.REFRESH_FAILED, f"transaction refresh {state.id} failed", now=now
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
        ErrorCode.ACCOUNT_GONE,
        "Stripe no longer knows this account (404); fcsync stopped refreshing it. "
        f"If it exists again: fcsync track {account_id}",
        now=now,
    )
    return True


def retrieve_or_mark_gone(
    session: Session,
    gateway: StripeGateway,
    account_id: str,
    *,
    stripe_account: str | None,
    now: datetime,
) -> FCAccount | None:
    """Stripe's current view of the account (in its context), or None once it is marked gone.
    Only the account can be missing from a retrieve, so `resource_missing` here means it."""
    try:
        return gateway.retrieve_account(account_id, stripe_account=stripe_account)
    except PermanentError as exc:
        if exc.code != ErrorCode.RESOURCE_MISSING or not mark_gone(session, account_id, now=now):
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


Unusable = Literal["inactive", "no_permission"]


def refuse_unusable(
    account: Account, live: FCAccount, *, now: datetime, settings: Settings
) -> Unusable | None:
    """Why Stripe would refuse to refresh the account, recorded on it with the account parked
    (a permanent condition: retrying would not change it), or None when it is usable."""
    if live.status != "active":
        repository.record_error(
            account, ErrorCode.ACCOUNT_INACTIVE, f"account is {live.status}", now=now
        )
        park_unusable(account, now=now, settings=settings)
        return "inactive"
    if account.transactions_tracked and "transactions" not in live.permissions:
        repository.record_error(
            account,
            ErrorCode.MISSING_PERMISSION,
            "the account lacks the transactions permission; relink it with "
            "permissions=['transactions']",
            now=now,
        )
        park_unusable(account, now=now, settings=settings)
        return "no_permission"
    return None


def due_now(account: Account, *, now: datetime) -> None:
    """Let the next beat sweep consider the account at once (never postponing an earlier due)."""
    account.next_due_at = min(account.next_due_at or now, now)


def reactivate(session: Session, account: Account, *, now: datetime) -> None:
    """Stripe has the account active again: the account and each feature parked while it was
    not (until the unusable recheck, or a failed refresh's backoff) are due at once, beat's
    sweeps still holding each to Stripe's `next_refresh_available_at` and to a pending refresh."""
    if account.last_error_code == ErrorCode.ACCOUNT_INACTIVE:
        repository.clear_error(account)
    due_now(account, now=now)
    for row in feature_store.features_of(session, account.id):
        if row.last_error_code == ErrorCode.ACCOUNT_INACTIVE:
            feature_store.clear_feature_error(row)
        row.next_due_at = min(row.next_due_at or now, now)
