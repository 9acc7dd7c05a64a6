"""Read models for people: account status rows and stored transactions in Stripe's shape."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Account, Transaction


def account_status(session: Session, account_id: str | None = None) -> list[dict[str, Any]]:
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
            "last_synced_at": a.last_synced_at.isoformat() if a.last_synced_at else None,
            "next_due_at": a.next_due_at.isoformat() if a.next_due_at else None,
            "sync_in_progress": a.sync_target_refresh_id is not None,
            "gone_at": a.gone_at.isoformat() if a.gone_at else None,
            "last_error": f"[{a.last_error_code}] {a.last_error_message}"
            if a.last_error_code
            else None,
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


COMPARED_FIELDS = (
    "status",
    "amount",
    "currency",
    "updated",
    "transacted_at",
    "transaction_refresh",
    "status_transitions",
)


def diff_transactions(
    stored: list[dict[str, Any]], truth: list[dict[str, Any]], *, limit: int = 5
) -> list[str]:
    """Differences between stored rows and a reference list (both in Stripe's shape)."""
    mine = {t["id"]: t for t in stored}
    theirs = {t["id"]: t for t in truth}
    problems = [f"missing {i}" for i in sorted(theirs.keys() - mine.keys())]
    problems += [f"unexpected {i}" for i in sorted(mine.keys() - theirs.keys())]
    for txn_id in sorted(mine.keys() & theirs.keys()):
        a, b = mine[txn_id], theirs[txn_id]
        for name in COMPARED_FIELDS:
            expected = b.get(name)
            if name == "status_transitions":
                expected = {k: (expected or {}).get(k) for k in ("posted_at", "void_at")}
            if a.get(name) != expected:
                problems.append(f"{txn_id}.{name}: stored {a.get(name)!r} != {expected!r}")
    return problems[:limit] if limit else problems
