"""Read models for people: account status rows, transactions synced per day and stored
transactions in Stripe's shape."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from models import Account, Refresh, Transaction
from worker.errors import ErrorCode


def _unix(moment: datetime | None) -> int | None:
    """Every time in a status row is Unix seconds, UTC: Stripe's own convention."""
    return int(moment.timestamp()) if moment is not None else None


def _at(ts: int | datetime) -> str:
    moment = ts if isinstance(ts, datetime) else datetime.fromtimestamp(ts, tz=UTC)
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def stale_reason(a: Account, *, now: datetime) -> str | None:
    """Why the account's stored transactions are not fresh, from stored facts only; None when
    they are. Fresh = synced up to Stripe's latest refresh, and that refresh is younger than the
    account's refresh interval. The most specific reason wins; one place, so every view agrees."""
    now_ts = int(now.timestamp())
    # A recorded error explains a stuck account, so it rides along with the vaguer reasons.
    error = f" (last error [{a.last_error_code}])" if a.last_error_code else ""
    cooldown = a.refresh_next_available_at
    cooling = cooldown is not None and cooldown > now_ts
    if not a.tracked:
        return "not tracked"
    if a.gone_at is not None:
        return "gone: Stripe no longer knows the account; `fcsync track` it to try again"
    if a.status == "disconnected":
        # Final at Stripe: relinking creates a new account with a new id.
        return "disconnected at Stripe: final; the user must link the account again"
    if a.status != "active":
        return f"{a.status} at Stripe: no refresh possible until it is reactivated"
    if a.last_error_code == ErrorCode.MISSING_PERMISSION or (
        a.permissions and not a.has_transactions_permission
    ):
        return "no transactions permission: relink the account with it"
    if a.refresh_status == "pending":
        return f"refresh {a.refresh_id} pending at Stripe"
    if a.sync_target_refresh_id is not None:
        if a.sync_lease_expires_at is not None and a.sync_lease_expires_at > now:
            return f"sync to {a.sync_target_refresh_id} in progress"
        return f"sync to {a.sync_target_refresh_id} interrupted{error}; the next sweep resumes it"
    if a.refresh_status == "failed":
        failed = f"refresh {a.refresh_id} failed"
        if cooling and cooldown is not None:
            return f"{failed}; cooling down until {_at(cooldown)}"
        return f"{failed}; next try at {_at(a.next_due_at)}" if a.next_due_at else failed
    if a.cursor_refresh_id is None:
        return f"never synced{'' if a.refresh_id else ': no refresh yet'}{error}"
    if a.refresh_status == "succeeded" and a.refresh_id != a.cursor_refresh_id:
        return f"sync behind the latest refresh {a.refresh_id}{error}"
    synced_refresh_at = a.cursor_refresh_at or 0
    if now_ts - synced_refresh_at <= a.refresh_interval_s:
        return None
    if cooling and cooldown is not None:
        return f"cooling down until {_at(cooldown)}"
    if a.next_due_at is not None and a.next_due_at > now:
        if a.subscribed:
            return f"waiting for Stripe's daily refresh (fcsync steps in at {_at(a.next_due_at)})"
        return f"refresh due at {_at(a.next_due_at)}"
    return f"refresh overdue since {_at(synced_refresh_at + a.refresh_interval_s)}{error}"


def account_status(
    session: Session, account_id: str | None = None, *, now: datetime
) -> list[dict[str, Any]]:
    counts = (
        select(Transaction.account_id, func.count().label("n"))
        .group_by(Transaction.account_id)
        .subquery()
    )
    query = (
        select(Account, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.account_id == Account.id)
        .order_by(Account.id)
    )
    if account_id:
        query = query.where(Account.id == account_id)
    return [
        {
            "id": a.id,
            "institution_name": a.institution_name,
            "display_name": a.display_name,
            "status": a.status,
            "tracked": a.tracked,
            "subscribed": a.subscribed,
            "refresh_id": a.refresh_id,
            "refresh_status": a.refresh_status,
            "refresh_last_attempted_at": a.refresh_last_attempted_at,
            "next_refresh_available_at": a.refresh_next_available_at,
            "cursor": a.cursor_refresh_id,
            "transactions": int(n),
            "last_synced_at": _unix(a.last_synced_at),
            "next_due_at": _unix(a.next_due_at),
            "sync_in_progress": a.sync_target_refresh_id is not None,
            "stale_reason": stale_reason(a, now=now),
            "gone_at": _unix(a.gone_at),
            "last_error": f"[{a.last_error_code}] {a.last_error_message}"
            if a.last_error_code
            else None,
            "last_error_at": _unix(a.last_error_at),
        }
        for a, n in session.execute(query)
    ]


def transaction_as_stripe(t: Transaction) -> dict[str, Any]:
    return {
        "id": t.id,
        "object": "financial_connections.transaction",
        "account": t.account_id,
        "amount": t.amount,
        "currency": t.currency,
        "description": t.description,
        "livemode": t.livemode,
        "status": t.status,
        "status_transitions": {"posted_at": t.posted_at, "void_at": t.void_at},
        "transacted_at": t.transacted_at,
        "transaction_refresh": t.transaction_refresh,
        "updated": t.updated,
    }


def stored_transactions(
    session: Session, account_id: str, *, since: int | None = None
) -> list[dict[str, Any]]:
    query = (
        select(Transaction)
        .where(Transaction.account_id == account_id)
        .order_by(Transaction.transacted_at.desc(), Transaction.id.desc())
    )
    if since is not None:
        query = query.where(Transaction.transacted_at >= since)
    return [transaction_as_stripe(t) for t in session.scalars(query)]


@dataclass(frozen=True)
class DaySynced:
    """Rows written by the syncs that finished on one UTC day."""

    day: date
    inserted: int
    updated: int


def synced_per_day(session: Session, *, now: datetime, days: int) -> list[DaySynced]:
    """Transactions synced on each of the last `days` UTC days, oldest first, today included:
    the rows a refresh's sync inserted or updated (refreshes.inserted/updated), counted on the
    day it finished (refreshes.synced_at). One query of conditional sums, one pair per day, so
    the database does the grouping the same way on SQLite and PostgreSQL."""
    today = now.astimezone(UTC).date()
    starts = [
        datetime.combine(today - timedelta(days=back), time(), tzinfo=UTC)
        for back in range(days - 1, -1, -1)
    ]
    bounds = [(start, start + timedelta(days=1)) for start in starts]
    sums = []
    for start, end in bounds:
        on_day = (Refresh.synced_at >= start) & (Refresh.synced_at < end)
        sums.append(func.coalesce(func.sum(case((on_day, Refresh.inserted), else_=0)), 0))
        sums.append(func.coalesce(func.sum(case((on_day, Refresh.updated), else_=0)), 0))
    row = session.execute(select(*sums).where(Refresh.synced_at >= bounds[0][0])).one()
    return [
        DaySynced(start.date(), int(row[2 * i]), int(row[2 * i + 1]))
        for i, (start, _) in enumerate(bounds)
    ]
