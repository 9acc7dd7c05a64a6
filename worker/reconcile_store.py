"""The reconciliation's SQL: which accounts' weekly slot has come, and marking the pending
rows Stripe no longer lists. The upsert it repairs with is the sync's, in worker/page_store.py."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from models import Account, Transaction


def claim_reconcile_due(session: Session, *, now: datetime, limit: int) -> list[Account]:
    """Tracked, synced accounts whose reconciliation slot has come or was never given
    (NULL), the most overdue first; the caller holds each one or gives it a slot in the same
    transaction. Rows another sweep is claiming are skipped (PostgreSQL)."""
    return list(
        session.scalars(
            select(Account)
            .where(
                Account.tracked.is_(True),
                Account.transactions_tracked.is_(True),
                Account.gone_at.is_(None),
                # Nothing to heal before the first sync has stored the account's rows.
                Account.cursor_refresh_id.is_not(None),
                or_(Account.next_reconcile_at.is_(None), Account.next_reconcile_at <= now),
            )
            .order_by(Account.next_reconcile_at.asc().nulls_first(), Account.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )


def held_accounts(
    session: Session, account_ids: Collection[str], *, until: datetime
) -> list[Account]:
    """The accounts of `account_ids` still held by the sweep that holds them `until`."""
    return list(
        session.scalars(
            select(Account)
            .where(Account.id.in_(account_ids), Account.next_reconcile_at == until)
            .order_by(Account.id)
        )
    )


def mark_vanished(
    session: Session,
    account_id: str,
    *,
    since: int,
    listed: Collection[str],
    before: datetime,
    now: datetime,
) -> list[str]:
    """Mark the account's pending rows transacted at or after `since` that Stripe did not
    list (`listed`) as vanished at `now`; returns their ids. Only rows stored before `before`
    (the listing's start): a row a concurrent sync stored meanwhile may be newer than the
    listing, not gone from it."""
    candidates = session.scalars(
        select(Transaction.id).where(
            Transaction.account_id == account_id,
            Transaction.status == "pending",
            Transaction.vanished_at.is_(None),
            Transaction.transacted_at >= since,
            Transaction.first_seen_at < before,
        )
    )
    vanished = sorted(set(candidates) - set(listed))
    if vanished:
        session.execute(
            update(Transaction)
            .where(
                Transaction.id.in_(vanished),
                Transaction.status == "pending",
                Transaction.vanished_at.is_(None),
            )
            .values(vanished_at=now)
            .execution_options(synchronize_session=False)
        )
    return vanished
