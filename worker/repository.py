"""Database reads and writes of fcsync's account rows: upserts, errors, counts, deletes; never
commits. Refreshes have worker/refresh_store.py, a sync's cursor and lease worker/sync_store.py,
due queries worker/due_accounts.py, and the webhook inbox's table worker/inbox.py."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models import Account, Refresh, Transaction
from worker.records import FCAccount
from worker.redaction import redact


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
    """Mirror the account's descriptive fields (its refresh state: refresh_store.apply_refresh)."""
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
        # So does the key it was read with.
        account.stripe_account = fc.stripe_account
        account.stripe_key = fc.stripe_key
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
    details = fc.status_details_active
    account.status_details_action = details.action if details else None
    account.status_details_cause = details.cause if details else None
    account.expected_deactivation_date = details.expected_deactivation_date if details else None
    account.updated_at = now
    session.flush()
    return account


def save_unknown_account(
    session: Session,
    account_id: str,
    *,
    stripe_account: str | None,
    now: datetime,
    stripe_key: str | None = None,
) -> Account:
    """A row for an account Stripe never showed us (tracking it failed): untracked, status
    `unknown`, so nothing schedules it, until a successful track mirrors the real one."""
    account = _new_account(session, account_id, tracked=False, now=now)
    account.status = "unknown"
    account.stripe_account = stripe_account
    account.stripe_key = stripe_key
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


def record_error(account: Account, code: str, message: str, *, now: datetime) -> None:
    account.last_error_code = code[:128]
    # Shown by `status` and read by anyone with the database: never a key or a URL password.
    account.last_error_message = redact(message)
    account.last_error_at = now


def clear_error(account: Account) -> None:
    account.last_error_code = None
    account.last_error_message = None
    account.last_error_at = None


def tracked_stripe_accounts(session: Session, stripe_key: str | None = None) -> list[str]:
    """The Connect connected accounts (acct_...) that tracked FC accounts of the key
    `stripe_key` (as the column holds it: None = `default`) live in."""
    return list(
        session.scalars(
            select(Account.stripe_account)
            .where(
                Account.tracked.is_(True),
                Account.stripe_account.is_not(None),
                nullable_equals(Account.stripe_key, stripe_key),
            )
            .distinct()
            .order_by(Account.stripe_account)
        )
    )


def nullable_equals(column: Any, value: str | None) -> Any:
    """`column = value`, where NULL equals NULL."""
    return column.is_(None) if value is None else column == value


def count_transactions(session: Session, account_id: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Transaction)
            .where(Transaction.account_id == account_id)
        )
        or 0
    )


def delete_account(session: Session, account_id: str) -> tuple[int, int]:
    """The account's row, its transactions and its refreshes gone (its transaction and refresh
    counts returned); explicit deletes, since SQLite enforces no ON DELETE CASCADE by default."""
    transactions = session.execute(delete(Transaction).where(Transaction.account_id == account_id))
    refreshes = session.execute(delete(Refresh).where(Refresh.account_id == account_id))
    session.execute(delete(Account).where(Account.id == account_id))
    return _deleted(transactions), _deleted(refreshes)


def _deleted(result: Any) -> int:
    return int(result.rowcount or 0)
