"""How fresh each account's stored transactions are, and why not: one model, derived from stored
facts only, that `fcsync status`, the status page and the metrics all read, so every view agrees.

Fresh means synced up to Stripe's latest refresh, and that refresh younger than the account's
refresh interval. Only a completed sync moves the cursor, so a 429, a cooldown or a failed refresh
never counts as synced."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from models import Account, AccountFeature, Refresh
from worker.errors import ErrorCode


class State(StrEnum):
    FRESH = "fresh"
    # A refresh pending at Stripe, or a sync holding a live lease.
    REFRESHING = "refreshing"
    # Older than its interval, and Stripe allows no refresh before `until`.
    COOLING_DOWN = "cooling_down"
    # Older than its interval (or never synced) with nothing wrong: the next sweep catches up.
    STALE = "stale"
    # Not fresh because the last attempt failed; `code` says how.
    FAILING = "failing"
    # Stripe refreshes it, but fcsync may not read its transactions: the user must link it again.
    RELINK_REQUIRED = "relink_required"
    INACTIVE = "inactive"
    # Final at Stripe (relinking makes a new account), or Stripe no longer knows the account.
    DISCONNECTED = "disconnected"
    UNTRACKED = "untracked"


# Each state in a line, for people: the status page's legend.
MEANING = {
    State.FRESH: "synced up to Stripe's latest refresh, younger than the refresh interval",
    State.REFRESHING: "a refresh is pending at Stripe, or a sync is running",
    State.COOLING_DOWN: "older than the interval; Stripe allows the next refresh later",
    State.STALE: "behind Stripe or older than the interval, no error: the next sweep catches up",
    State.FAILING: "the last refresh or sync failed; the reason and last error say how",
    State.RELINK_REQUIRED: "no transactions permission: the user must link the account again",
    State.INACTIVE: "inactive at Stripe: no refresh until it is reactivated",
    State.DISCONNECTED: "disconnected at Stripe, or Stripe no longer knows it: final",
    State.UNTRACKED: "stored, but fcsync does not keep its transactions in sync",
}


@dataclass(frozen=True)
class Facts:
    """What the refreshes table adds to an account row."""

    last_refresh_succeeded_at: datetime | None = None
    last_refresh_failed_at: datetime | None = None
    last_rows_changed_at: datetime | None = None


@dataclass(frozen=True)
class Freshness:
    state: State
    # Why the account is not fresh; None when it is.
    reason: str | None
    # Until when a cooldown (or a failed refresh's cooldown) holds.
    until: datetime | None
    # The error code of a failing account.
    code: str | None
    last_refresh_succeeded_at: datetime | None
    last_refresh_failed_at: datetime | None
    # When Stripe started the refresh that is still pending.
    refresh_pending_since: datetime | None
    # When the latest sync that inserted or updated a row finished.
    last_rows_changed_at: datetime | None
    next_due_at: datetime | None


def _from_ts(ts: int | None) -> datetime | None:
    return datetime.fromtimestamp(ts, tz=UTC) if ts is not None else None


def _at(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _judge(a: Account, *, now: datetime) -> tuple[State, str | None, str | None]:
    """The state, the reason and the failing code: the most specific reason wins."""
    now_ts = int(now.timestamp())
    code = a.last_error_code
    # A recorded error explains a stuck account, so it rides along with the vaguer reasons.
    error = f" (last error [{code}])" if code else ""
    failing_or_stale = State.FAILING if code else State.STALE
    cooldown = _from_ts(a.refresh_next_available_at)
    cooling = cooldown is not None and cooldown > now
    next_due = a.next_due_at
    if not a.tracked:
        return State.UNTRACKED, "not tracked", None
    if a.gone_at is not None:
        gone = "gone: Stripe no longer knows the account; `fcsync track` it to try again"
        return State.DISCONNECTED, gone, None
    if a.status == "disconnected":
        # Final at Stripe: relinking creates a new account with a new id.
        final = "disconnected at Stripe: final; the user must link the account again"
        return State.DISCONNECTED, final, None
    if a.status != "active":
        reason = f"{a.status} at Stripe: no refresh possible until it is reactivated"
        return State.INACTIVE, reason, None
    if not a.transactions_tracked:
        # Its other features (balances, ownership) have their own freshness (`features`).
        return (
            State.UNTRACKED,
            "transactions not tracked: fcsync keeps only its other features fresh",
            None,
        )
    if code == ErrorCode.MISSING_PERMISSION or (
        a.permissions and not a.has_transactions_permission
    ):
        return State.RELINK_REQUIRED, "no transactions permission: relink the account with it", None
    if a.refresh_status == "pending":
        return State.REFRESHING, f"refresh {a.refresh_id} pending at Stripe", None
    if a.sync_target_refresh_id is not None:
        lease = a.sync_lease_expires_at
        if lease is not None and lease > now:
            return State.REFRESHING, f"sync to {a.sync_target_refresh_id} in progress", None
        reason = f"sync to {a.sync_target_refresh_id} interrupted{error}; the next sweep resumes it"
        return failing_or_stale, reason, code
    if a.refresh_status == "failed":
        failed = f"refresh {a.refresh_id} failed"
        if cooling and cooldown is not None:
            failed += f"; cooling down until {_at(cooldown)}"
        elif next_due is not None:
            failed += f"; next try at {_at(next_due)}"
        return State.FAILING, failed, code or ErrorCode.REFRESH_FAILED
    if a.cursor_refresh_id is None:
        reason = f"never synced{'' if a.refresh_id else ': no refresh yet'}{error}"
        return failing_or_stale, reason, code
    if a.refresh_status == "succeeded" and a.refresh_id != a.cursor_refresh_id:
        return failing_or_stale, f"sync behind the latest refresh {a.refresh_id}{error}", code
    synced_refresh_at = a.cursor_refresh_at or 0
    if now_ts - synced_refresh_at <= a.refresh_interval_s:
        return State.FRESH, None, None
    if cooling and cooldown is not None:
        return State.COOLING_DOWN, f"cooling down until {_at(cooldown)}", None
    if next_due is not None and next_due > now:
        if a.subscribed:
            reason = f"waiting for Stripe's daily refresh (fcsync steps in at {_at(next_due)})"
        else:
            reason = f"refresh due at {_at(next_due)}"
        return State.STALE, reason, None
    overdue = _from_ts(synced_refresh_at + a.refresh_interval_s)
    assert overdue is not None
    return failing_or_stale, f"refresh overdue since {_at(overdue)}{error}", code


def in_transactions_freshness(*, tracked: bool, transactions_tracked: bool) -> bool:
    """Whether an account counts in the transactions' freshness (the states by which /metrics,
    the status page count accounts): every one but those tracked with other features only,
    which their features' freshness counts instead (a balances-only account is no more
    `untracked` than an inactive one is failing)."""
    return transactions_tracked or not tracked


def freshness(a: Account, facts: Facts, *, now: datetime) -> Freshness:
    state, reason, code = _judge(a, now=now)
    cooldown = _from_ts(a.refresh_next_available_at)
    pending = a.refresh_status == "pending" and state is State.REFRESHING
    return Freshness(
        state=state,
        reason=reason,
        until=cooldown if cooldown is not None and cooldown > now else None,
        code=code,
        last_refresh_succeeded_at=facts.last_refresh_succeeded_at,
        last_refresh_failed_at=facts.last_refresh_failed_at,
        refresh_pending_since=_from_ts(a.refresh_last_attempted_at) if pending else None,
        last_rows_changed_at=facts.last_rows_changed_at,
        next_due_at=a.next_due_at,
    )


def feature_state(a: Account, f: AccountFeature, *, now: datetime) -> State:
    """A balance or ownership feature's freshness, on the account's scale: what stops the
    account's refreshes stops its features' (untracked, gone, inactive); then the feature's own
    refresh, error and data, fresh while the refresh its data came from is younger than the
    account's refresh interval."""
    if not a.tracked:
        return State.UNTRACKED
    if a.gone_at is not None or a.status == "disconnected":
        return State.DISCONNECTED
    if a.status != "active":
        return State.INACTIVE
    if f.last_error_code == ErrorCode.MISSING_PERMISSION:
        return State.RELINK_REQUIRED
    if f.refresh_status == "pending":
        return State.REFRESHING
    if f.last_error_code:
        return State.FAILING
    now_ts = int(now.timestamp())
    if f.stored_refresh_at is not None and now_ts - f.stored_refresh_at <= a.refresh_interval_s:
        return State.FRESH
    if (f.refresh_next_available_at or 0) > now_ts:
        return State.COOLING_DOWN
    return State.STALE


def refresh_facts(session: Session, account_id: str | None = None) -> dict[str, Facts]:
    """Per account, the latest succeeded and failed refresh and the latest sync that changed rows:
    one grouped query over the refreshes table."""
    query = select(
        Refresh.account_id,
        func.max(case((Refresh.status == "succeeded", Refresh.completed_at))),
        func.max(case((Refresh.status == "failed", Refresh.completed_at))),
        func.max(case((Refresh.inserted + Refresh.updated > 0, Refresh.synced_at))),
    ).group_by(Refresh.account_id)
    if account_id is not None:
        query = query.where(Refresh.account_id == account_id)
    return {row[0]: Facts(row[1], row[2], row[3]) for row in session.execute(query)}
