"""Read models for people: account status rows, transactions synced per day and stored
transactions in Stripe's shape."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from models import Account, Refresh, Transaction
from worker.contexts import context_order
from worker.feature_reports import feature_status
from worker.freshness import Facts, Freshness, freshness, refresh_facts
from worker.stripe_keys import DEFAULT, key_name, key_order


def _unix(moment: datetime | None) -> int | None:
    """Every time in a status row is Unix seconds, UTC: Stripe's own convention."""
    return int(moment.timestamp()) if moment is not None else None


def _per_account_counts() -> Select[str, int]:
    return select(Transaction.account_id, func.count().label("n")).group_by(Transaction.account_id)


def transaction_counts(session: Session) -> dict[str, int]:
    """Stored transactions per account, counted by the database (an account without any is
    left out)."""
    return {account_id: int(n) for account_id, n in session.execute(_per_account_counts())}


def account_status(
    session: Session, account_id: str | None = None, *, now: datetime
) -> list[dict[str, Any]]:
    facts = refresh_facts(session, account_id)
    counts = _per_account_counts().subquery()
    query = (
        select(Account, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.account_id == Account.id)
        # A key's accounts together (`default` first), within it a context's, the platform's
        # first: stripe_keys.key_order's and contexts.context_order's orders.
        .order_by(
            Account.stripe_key.is_not(None),
            Account.stripe_key,
            Account.stripe_account.is_not(None),
            Account.stripe_account,
            Account.id,
        )
    )
    if account_id:
        query = query.where(Account.id == account_id)
    rows = []
    features = feature_status(session, account_id, now=now)
    for a, n in session.execute(query):
        fresh = freshness(a, facts.get(a.id, Facts()), now=now)
        # Balances / ownership, each with its own freshness (transactions: the row itself).
        rows.append({**_status_row(a, int(n), fresh), "features": features.get(a.id, {})})
    return rows


def stored_contexts(session: Session) -> list[str | None]:
    """Every Stripe account context a stored account lives in (None = the platform), the
    platform first, then each connected account by id."""
    found = session.scalars(select(Account.stripe_account).distinct())
    return sorted(set(found), key=context_order)


def stored_keys(session: Session) -> list[str]:
    """The name of every Stripe key a stored account is reached with, `default` first."""
    found = session.scalars(select(Account.stripe_key).distinct())
    return sorted({key_name(s) for s in found}, key=key_order)


def known_keys(configured: Iterable[str], stored: Iterable[str]) -> list[str]:
    """Every key name configured or stored, `default` first; `default` alone when none is
    (a deployment that has not named its key yet is a single-key one)."""
    return sorted(set(configured) | set(stored), key=key_order) or [DEFAULT]


@dataclass(frozen=True)
class Section:
    """The status rows of the accounts one Stripe key reaches in one Stripe account context."""

    stripe_key: str
    stripe_account: str | None
    rows: list[dict[str, Any]] = field(default_factory=list)


def sections(rows: Sequence[dict[str, Any]], *, keys: Iterable[str] = ()) -> list[Section]:
    """A section per (Stripe key, context) of the rows: key by key (`default` first), within
    a key the platform first, then each acct_ by id; the rows keep their order. Each of `keys`
    has its platform section even when empty: where its new accounts land by default."""
    grouped: dict[tuple[str, str | None], list[dict[str, Any]]] = {(k, None): [] for k in keys}
    for row in rows:
        grouped.setdefault((row["stripe_key"], row["stripe_account"]), []).append(row)
    order = sorted(grouped, key=lambda pair: (key_order(pair[0]), context_order(pair[1])))
    return [Section(key, context, grouped[key, context]) for key, context in order]


def _status_row(a: Account, transactions: int, fresh: Freshness) -> dict[str, Any]:
    return {
        "id": a.id,
        # The name of the Stripe key the account is reached with (`default`: STRIPE_API_KEY).
        "stripe_key": key_name(a.stripe_key),
        # The Stripe account context: a connected account's `acct_...`, or null (the platform).
        "stripe_account": a.stripe_account,
        "institution_name": a.institution_name,
        "display_name": a.display_name,
        "status": a.status,
        "tracked": a.tracked,
        # Whether transactions are among the features it is tracked with (`features`: the rest).
        "transactions_tracked": a.transactions_tracked,
        "subscribed": a.subscribed,
        "refresh_id": a.refresh_id,
        "refresh_status": a.refresh_status,
        "refresh_last_attempted_at": a.refresh_last_attempted_at,
        "next_refresh_available_at": a.refresh_next_available_at,
        "cursor": a.cursor_refresh_id,
        "transactions": transactions,
        "last_synced_at": _unix(a.last_synced_at),
        "next_due_at": _unix(a.next_due_at),
        "sync_in_progress": a.sync_target_refresh_id is not None,
        "state": str(fresh.state),
        "stale_reason": fresh.reason,
        "state_until": _unix(fresh.until),
        "state_code": fresh.code,
        "last_refresh_succeeded_at": _unix(fresh.last_refresh_succeeded_at),
        "last_refresh_failed_at": _unix(fresh.last_refresh_failed_at),
        "refresh_pending_since": _unix(fresh.refresh_pending_since),
        "last_rows_changed_at": _unix(fresh.last_rows_changed_at),
        "gone_at": _unix(a.gone_at),
        # Stripe's status_details.active: a relink it asks for before the account deactivates.
        "status_details_action": a.status_details_action,
        "status_details_cause": a.status_details_cause,
        "expected_deactivation_date": a.expected_deactivation_date,
        "last_error": f"[{a.last_error_code}] {a.last_error_message}"
        if a.last_error_code
        else None,
        "last_error_at": _unix(a.last_error_at),
        # The last reconciliation and what it repaired (null: never reconciled), and the next.
        "reconciled_at": _unix(a.reconciled_at),
        "reconcile_inserted": a.reconcile_inserted,
        "reconcile_updated": a.reconcile_updated,
        "reconcile_vanished": a.reconcile_vanished,
        "next_reconcile_at": _unix(a.next_reconcile_at),
    }


def relink_text(row: dict[str, Any]) -> str:
    """What Stripe expects of an active account (a status row's), for people: "required by
    2026-12-31 00:00:00 (access_expired)", or "" when nothing is expected."""
    action = row["status_details_action"]
    if row["status"] != "active" or action in (None, "none"):
        return ""
    text = "required" if action == "relink_required" else str(action)
    deadline = row["expected_deactivation_date"]
    if deadline is not None:
        text += f" by {datetime.fromtimestamp(deadline, tz=UTC):%Y-%m-%d %H:%M:%S}"
    return f"{text} ({row['status_details_cause'] or 'unspecified'})"


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
