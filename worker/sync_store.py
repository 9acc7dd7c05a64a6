"""A sync's database state on the account row: its cursor, which only moves forward, and its
per-account lease; never commits."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from models import Account


def advance_cursor(session: Session, account_id: str, refresh_id: str, refresh_at: int) -> bool:
    """Set the cursor to `refresh_id` unless the stored cursor is from a later refresh (the
    account's loaded row, if any, follows)."""
    result = session.execute(
        update(Account)
        .where(
            Account.id == account_id,
            or_(Account.cursor_refresh_at.is_(None), Account.cursor_refresh_at <= refresh_at),
        )
        .values(cursor_refresh_id=refresh_id, cursor_refresh_at=refresh_at)
        .execution_options(synchronize_session="fetch")
    )
    return bool(getattr(result, "rowcount", 0))


def acquire_sync_lease(
    session: Session,
    account_id: str,
    owner: str,
    *,
    now: datetime,
    lease_s: int,
    handoff: str | None = None,
) -> bool:
    """Take (or renew) the per-account sync lease; an expired lease is free for anyone, and one
    handed on to `handoff` (see hand_on_sync_lease) is free for the message carrying it."""
    holders = [Account.sync_lease_owner == owner]
    if handoff is not None:
        holders.append(Account.sync_lease_owner == handoff)
    result = session.execute(
        update(Account)
        .where(
            Account.id == account_id,
            or_(
                Account.sync_lease_owner.is_(None),
                *holders,
                Account.sync_lease_expires_at < now,
            ),
        )
        .values(sync_lease_owner=owner, sync_lease_expires_at=now + timedelta(seconds=lease_s))
        .execution_options(synchronize_session="fetch")
    )
    return bool(getattr(result, "rowcount", 0))


def hand_on_sync_lease(
    session: Session, account_id: str, owner: str, token: str, *, now: datetime, lease_s: int
) -> None:
    """Pass the lease to `token`, the continuation message's, instead of releasing it."""
    session.execute(
        update(Account)
        .where(Account.id == account_id, Account.sync_lease_owner == owner)
        .values(sync_lease_owner=token, sync_lease_expires_at=now + timedelta(seconds=lease_s))
        .execution_options(synchronize_session="fetch")
    )


def release_sync_lease(session: Session, account_id: str, owner: str) -> None:
    session.execute(
        update(Account)
        .where(Account.id == account_id, Account.sync_lease_owner == owner)
        .values(sync_lease_owner=None, sync_lease_expires_at=None)
        .execution_options(synchronize_session="fetch")
    )
