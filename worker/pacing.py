"""Pacing: how often fcsync asks Stripe about one account. Claims on due times, and the run
of failed refreshes the retry backoff doubles over; never commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models import Account, Refresh


def postpone(session: Session, account_ids: Sequence[str], *, until: datetime) -> None:
    """Move the accounts' due time to `until` (a claim: later outcomes overwrite it)."""
    if account_ids:
        session.execute(
            update(Account)
            .where(Account.id.in_(account_ids))
            .values(next_due_at=until)
            .execution_options(synchronize_session="fetch")
        )


def failed_refreshes_in_a_row(session: Session, account_id: str, *, limit: int = 32) -> int:
    """How many of the account's latest refreshes failed, counting back to the last other one."""
    statuses = session.scalars(
        select(Refresh.status)
        .where(Refresh.account_id == account_id)
        .order_by(Refresh.last_attempted_at.desc(), Refresh.id.desc())
        .limit(limit)
    )
    count = 0
    for status in statuses:
        if status != "failed":
            break
        count += 1
    return count
