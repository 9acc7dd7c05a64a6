"""Read models of the balance and ownership features for people: each feature's freshness per
account, the balance history and the owners, in Stripe's shapes."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Account, AccountFeature, AccountOwner, Balance
from worker import feature_store
from worker.freshness import feature_state


def feature_status(
    session: Session, account_id: str | None, *, now: datetime
) -> dict[str, dict[str, Any]]:
    """Per account, each optional feature it is tracked with: its freshness state, Stripe's
    last refresh of it, when the data fcsync stored was refreshed (Unix seconds), when it is
    due next, its last error."""
    query = (
        select(AccountFeature, Account)
        .join(Account, Account.id == AccountFeature.account_id)
        .order_by(AccountFeature.account_id, AccountFeature.feature)
    )
    if account_id:
        query = query.where(AccountFeature.account_id == account_id)
    found: dict[str, dict[str, Any]] = defaultdict(dict)
    for f, account in session.execute(query):
        found[f.account_id][f.feature] = {
            "state": str(feature_state(account, f, now=now)),
            "refresh_status": f.refresh_status,
            "refresh_last_attempted_at": f.refresh_last_attempted_at,
            "next_refresh_available_at": f.refresh_next_available_at,
            "refreshed_at": f.stored_refresh_at,
            "next_due_at": int(f.next_due_at.timestamp()) if f.next_due_at else None,
            "last_error": f"[{f.last_error_code}] {f.last_error_message}"
            if f.last_error_code
            else None,
        }
    return found


def balance_as_stripe(b: Balance) -> dict[str, Any]:
    """A stored balance as Stripe's account shows it (`cash` / `credit` present as stored)."""
    shaped: dict[str, Any] = {"as_of": b.as_of, "current": b.current, "type": b.type}
    if b.cash_available is not None or b.type == "cash":
        shaped["cash"] = {"available": b.cash_available}
    if b.credit_used is not None or b.type == "credit":
        shaped["credit"] = {"used": b.credit_used}
    return shaped


def stored_balances(session: Session, account_id: str) -> list[dict[str, Any]]:
    """The balance history, newest first."""
    return [balance_as_stripe(b) for b in feature_store.balances_of(session, account_id)]


def owner_as_stripe(o: AccountOwner) -> dict[str, Any]:
    return {
        "id": o.id,
        "object": "financial_connections.account_owner",
        "email": o.email,
        "name": o.name,
        "ownership": o.ownership,
        "phone": o.phone,
        "raw_address": o.raw_address,
        "refreshed_at": o.refreshed_at,
    }


def stored_owners(session: Session, account_id: str) -> list[dict[str, Any]]:
    return [owner_as_stripe(o) for o in feature_store.owners_of(session, account_id)]
