"""The refreshes table and an account's latest-refresh fields: recorded, moved only forward,
never reopened once terminal; never commits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Account, Refresh
from worker import metrics
from worker.records import TransactionRefreshState

TERMINAL_REFRESH_STATUSES = frozenset({"succeeded", "failed"})


def apply_refresh(account: Account, state: TransactionRefreshState) -> bool:
    """Move the account's latest-refresh fields forward; an older or equal-but-earlier-stage
    observation (late or reordered webhook) never overwrites a newer one."""
    stored_at = account.refresh_last_attempted_at
    if stored_at is not None and state.last_attempted_at < stored_at:
        return False
    if (
        account.refresh_id == state.id
        and account.refresh_status in TERMINAL_REFRESH_STATUSES
        and state.status not in TERMINAL_REFRESH_STATUSES
    ):
        return False
    account.refresh_id = state.id
    account.refresh_status = state.status
    account.refresh_last_attempted_at = state.last_attempted_at
    account.refresh_next_available_at = state.next_refresh_available_at
    return True


def save_refresh(
    session: Session,
    account_id: str,
    state: TransactionRefreshState,
    *,
    stripe_account: str | None,
    source: str,
    now: datetime,
    requested: bool = False,
    stripe_key: str | None = None,
) -> Refresh:
    """Record a refresh we asked for or observed; a terminal status is never reopened."""
    refresh = session.get(Refresh, state.id)
    # An end fcsync saw happen (not an old refresh it learns of already ended) counts once.
    seen_running = requested or (
        refresh is not None and refresh.status not in TERMINAL_REFRESH_STATUSES
    )
    if refresh is None:
        refresh = Refresh(
            id=state.id,
            account_id=account_id,
            stripe_account=stripe_account,
            stripe_key=stripe_key,
            source=source,
            requested_at=now if requested else None,
            status=state.status,
            last_attempted_at=state.last_attempted_at,
            inserted=0,
            updated=0,
        )
        session.add(refresh)
    elif refresh.status not in TERMINAL_REFRESH_STATUSES:
        refresh.status = state.status
    if refresh.status in TERMINAL_REFRESH_STATUSES and refresh.completed_at is None:
        refresh.completed_at = now
        if seen_running:
            asked = refresh.requested_at
            waited = (now - asked).total_seconds() if asked is not None else None
            metrics.refresh_ended(session, refresh.status, waited)
    session.flush()
    return refresh


def latest_succeeded_refresh(session: Session, account_id: str) -> Refresh | None:
    return session.scalars(
        select(Refresh)
        .where(Refresh.account_id == account_id, Refresh.status == "succeeded")
        .order_by(Refresh.last_attempted_at.desc(), Refresh.id.desc())
        .limit(1)
    ).first()
