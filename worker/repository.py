"""Database reads and writes for fcsync: upserts, cursors, leases and due queries; never commits.
The webhook inbox's table has its own module, worker/inbox.py."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Select,
    and_,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models import Account, Refresh, Transaction
from worker import metrics
from worker.records import FCAccount, TransactionRefreshState
from worker.redaction import redact

TERMINAL_REFRESH_STATUSES = frozenset({"succeeded", "failed"})


def dialect_insert(session: Session, table: Any) -> Any:
    """The dialect's INSERT, which has `on_conflict_do_update` on PostgreSQL and SQLite alike."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def get_account(session: Session, account_id: str) -> Account | None:
    return session.get(Account, account_id)


def save_account(
    session: Session, fc: FCAccount, *, now: datetime, tracked: bool | None = None
) -> Account:
    """Mirror the account's descriptive fields (its refresh state goes through `apply_refresh`)."""
    account = session.get(Account, fc.id)
    adopt_context = account is None or account.status == "unknown"
    if account is None:
        account = _new_account(
            session, fc.id, tracked=True if tracked is None else tracked, now=now
        )
    elif tracked is not None:
        account.tracked = tracked
    if adopt_context:
        # A new row, or one Stripe never confirmed, takes the context Stripe answered in; a
        # confirmed row keeps its own (observe_account refuses a view from another context).
        account.stripe_account = fc.stripe_account
    account.livemode = fc.livemode
    account.institution_name = fc.institution_name
    account.display_name = fc.display_name
    account.last4 = fc.last4
    account.category = fc.category
    account.subcategory = fc.subcategory
    account.status = fc.status
    account.permissions = list(fc.permissions)
    account.subscriptions = list(fc.subscriptions)
    account.customer = fc.customer
    account.created = fc.created
    account.updated_at = now
    session.flush()
    return account


def save_unknown_account(
    session: Session, account_id: str, *, stripe_account: str | None, now: datetime
) -> Account:
    """A row for an account Stripe never showed us (tracking it failed): untracked, status
    `unknown`, so nothing schedules it, until a successful track mirrors the real one."""
    account = _new_account(session, account_id, tracked=False, now=now)
    account.status = "unknown"
    account.stripe_account = stripe_account
    session.flush()
    return account


def _new_account(session: Session, account_id: str, *, tracked: bool, now: datetime) -> Account:
    account = Account(
        id=account_id,
        tracked=tracked,
        created_at=now,
        updated_at=now,
        sync_inserted=0,
        sync_updated=0,
        sync_requested=False,
        sync_requested_full=False,
    )
    session.add(account)
    return account


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


def record_error(account: Account, code: str, message: str, *, now: datetime) -> None:
    account.last_error_code = code[:128]
    # Shown by `status` and read by anyone with the database: never a key or a URL password.
    account.last_error_message = redact(message)
    account.last_error_at = now


def clear_error(account: Account) -> None:
    account.last_error_code = None
    account.last_error_message = None
    account.last_error_at = None


def _refreshable(now_ts: int) -> Any:
    return and_(
        Account.tracked.is_(True),
        Account.gone_at.is_(None),
        or_(Account.refresh_status.is_(None), Account.refresh_status != "pending"),
        or_(
            Account.refresh_next_available_at.is_(None),
            Account.refresh_next_available_at <= now_ts,
        ),
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
                Account.tracked.is_(True),
                Account.gone_at.is_(None),
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
                Account.tracked.is_(True),
                Account.gone_at.is_(None),
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


def tracked_stripe_accounts(session: Session) -> list[str]:
    """The Connect connected accounts (acct_...) that tracked FC accounts live in."""
    return list(
        session.scalars(
            select(Account.stripe_account)
            .where(Account.tracked.is_(True), Account.stripe_account.is_not(None))
            .distinct()
            .order_by(Account.stripe_account)
        )
    )


def count_transactions(session: Session, account_id: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Transaction)
            .where(Transaction.account_id == account_id)
        )
        or 0
    )
