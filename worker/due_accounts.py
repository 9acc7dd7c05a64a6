"""Which accounts have work due, as SQL: a refresh (Stripe's gate open), a re-poll of a
pending refresh, a sync behind its succeeded refresh; never commits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.orm import Session

from models import Account, Refresh


def gate_open(status: Any, next_available_at: Any, now_ts: int) -> Any:
    """The refresh gate as SQL, for any feature's state columns: not pending, and not before
    Stripe's `next_refresh_available_at` (refresh_gate.gate in Python)."""
    return and_(
        or_(status.is_(None), status != "pending"),
        or_(next_available_at.is_(None), next_available_at <= now_ts),
    )


def _transactions_tracked() -> Any:
    """Accounts beat keeps the transactions of: tracked with them, and not gone."""
    return and_(
        Account.tracked.is_(True),
        Account.transactions_tracked.is_(True),
        Account.gone_at.is_(None),
    )


def _refreshable(now_ts: int) -> Any:
    return and_(
        _transactions_tracked(),
        gate_open(Account.refresh_status, Account.refresh_next_available_at, now_ts),
    )


def _due_accounts(now: datetime, limit: int) -> Select[str]:
    now_ts = int(now.timestamp())
    return (
        select(Account.id)
        .where(
            _refreshable(now_ts),
            or_(
                and_(Account.next_due_at.is_(None), Account.status == "active"),
                Account.next_due_at <= now,
            ),
        )
        .order_by(Account.next_due_at.asc().nulls_first(), Account.id)
        .limit(limit)
    )


def due_account_ids(session: Session, *, now: datetime, limit: int) -> list[str]:
    """Tracked accounts whose due time has passed and that Stripe would let us refresh.

    No due time means never scheduled: due at once if active, otherwise parked until an event
    or an operator schedules it. An unusable account is due only at its recheck time."""
    return list(session.scalars(_due_accounts(now, limit)))


def claim_due_account_ids(
    session: Session, *, now: datetime, until: datetime, limit: int
) -> list[str]:
    """The due accounts (the most overdue, as `due_account_ids` picks them; returned in no
    particular order), each claimed in the same statement: its due time moves to `until`, so
    no sweep picks it again while its task is in flight, and a lost task is sent again once
    `until` passes.
    Rows another sweep is claiming right now are skipped (PostgreSQL), neither waited for nor
    sent twice."""
    due = _due_accounts(now, limit).with_for_update(skip_locked=True)
    return list(
        session.scalars(
            update(Account)
            .where(Account.id.in_(due))
            .values(next_due_at=until)
            .returning(Account.id)
        )
    )


def stale_pending_account_ids(
    session: Session, *, now: datetime, older_than_s: int, limit: int
) -> list[str]:
    cutoff = int(now.timestamp()) - older_than_s
    return list(
        session.scalars(
            select(Account.id)
            .where(
                _transactions_tracked(),
                Account.refresh_status == "pending",
                Account.refresh_last_attempted_at <= cutoff,
                # While pending, the due time paces these re-polls (see refresh.stale_polls).
                or_(Account.next_due_at.is_(None), Account.next_due_at <= now),
            )
            .order_by(Account.refresh_last_attempted_at, Account.id)
            .limit(limit)
        )
    )


def unsynced_account_ids(session: Session, *, now: datetime, limit: int) -> list[str]:
    """Accounts with a succeeded refresh newer than their cursor and no live sync lease:
    a sync that failed, was lost with its worker, or was never enqueued."""
    newest_succeeded = (
        select(func.max(Refresh.last_attempted_at))
        .where(Refresh.account_id == Account.id, Refresh.status == "succeeded")
        .correlate(Account)
        .scalar_subquery()
    )
    return list(
        session.scalars(
            select(Account.id)
            .where(
                _transactions_tracked(),
                or_(Account.sync_retry_at.is_(None), Account.sync_retry_at <= now),
                or_(Account.sync_lease_owner.is_(None), Account.sync_lease_expires_at < now),
                or_(
                    Account.sync_target_refresh_id.is_not(None),
                    Account.sync_requested.is_(True),
                    and_(
                        newest_succeeded.is_not(None),
                        or_(
                            Account.cursor_refresh_at.is_(None),
                            newest_succeeded > Account.cursor_refresh_at,
                        ),
                    ),
                ),
            )
            .order_by(Account.id)
            .limit(limit)
        )
    )
