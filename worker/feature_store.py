"""Database reads and writes of the balance and ownership features: which an account is tracked
with and their refresh state, the balance history, the owners; due queries. Never commits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from models import Account, AccountFeature, AccountOwner, Balance
from worker.due_accounts import gate_open
from worker.records import FCBalance, FCOwner, FeatureRefreshState
from worker.redaction import redact
from worker.repository import dialect_insert


def features_of(session: Session, account_id: str) -> list[AccountFeature]:
    return list(
        session.scalars(
            select(AccountFeature)
            .where(AccountFeature.account_id == account_id)
            .order_by(AccountFeature.feature)
        )
    )


def get_feature(session: Session, account_id: str, feature: str) -> AccountFeature | None:
    return session.get(AccountFeature, (account_id, feature))


def set_features(session: Session, account_id: str, wanted: Iterable[str]) -> list[AccountFeature]:
    """Track exactly `wanted` of the optional features: rows added (due at once, see
    claim_due_features) or removed; kept rows keep their state. Stored data stays either way."""
    wanted = set(wanted)
    rows = {row.feature: row for row in features_of(session, account_id)}
    for feature, row in rows.items():
        if feature not in wanted:
            session.delete(row)
    for feature in wanted - set(rows):
        rows[feature] = AccountFeature(account_id=account_id, feature=feature)
        session.add(rows[feature])
    session.flush()
    return [rows[f] for f in sorted(wanted)]


def apply_feature_refresh(row: AccountFeature, state: FeatureRefreshState) -> bool:
    """Fold Stripe's refresh state in unless it is older than what is stored (events arrive in
    any order); True when it changed anything."""
    stored = row.refresh_last_attempted_at
    if stored is not None and state.last_attempted_at < stored:
        return False
    # The same refresh seen again: a terminal status never goes back to pending.
    if (
        stored == state.last_attempted_at
        and row.refresh_status in ("succeeded", "failed")
        and state.status in ("pending", row.refresh_status)
    ):
        return False
    row.refresh_status = state.status[:16]
    row.refresh_last_attempted_at = state.last_attempted_at
    row.refresh_next_available_at = state.next_refresh_available_at
    return True


def record_feature_error(row: AccountFeature, code: str, message: str, *, now: datetime) -> None:
    row.last_error_code = code[:128]
    row.last_error_message = redact(message)
    row.last_error_at = now


def clear_feature_error(row: AccountFeature) -> None:
    row.last_error_code = row.last_error_message = None
    row.last_error_at = None


def save_balance(session: Session, account_id: str, balance: FCBalance) -> bool:
    """One row per refreshed balance; the same `as_of` again (a duplicate event, a re-read) is
    the same balance and is skipped. True when a row was added."""
    insert = dialect_insert(session, Balance)
    result = session.execute(
        insert.values(
            account_id=account_id,
            as_of=balance.as_of,
            type=balance.type[:16],
            current=balance.current,
            cash_available=balance.cash_available,
            credit_used=balance.credit_used,
            currency=next(iter(balance.current), None),
        )
        .on_conflict_do_nothing(index_elements=["account_id", "as_of"])
        .returning(Balance.id)
    )
    return result.scalar_one_or_none() is not None


def replace_owners(session: Session, account_id: str, owners: Sequence[FCOwner]) -> None:
    """The owners of the account's latest ownership, swapped in one unit of work: a reader sees
    the previous ownership's owners or these, never a mix."""
    session.execute(delete(AccountOwner).where(AccountOwner.account_id == account_id))
    if owners:
        session.execute(
            dialect_insert(session, AccountOwner),
            [
                {
                    "id": o.id,
                    "account_id": account_id,
                    "ownership": o.ownership,
                    "name": o.name,
                    "email": o.email,
                    "phone": o.phone,
                    "raw_address": o.raw_address,
                    "refreshed_at": o.refreshed_at,
                }
                for o in owners
            ],
        )


def balances_of(session: Session, account_id: str) -> list[Balance]:
    """The stored balance history, newest first."""
    return list(
        session.scalars(
            select(Balance).where(Balance.account_id == account_id).order_by(Balance.as_of.desc())
        )
    )


def owners_of(session: Session, account_id: str) -> list[AccountOwner]:
    return list(
        session.scalars(
            select(AccountOwner)
            .where(AccountOwner.account_id == account_id)
            .order_by(AccountOwner.name, AccountOwner.id)
        )
    )


def _of_tracked_accounts() -> Any:
    """Feature rows of accounts beat looks after: tracked and not gone."""
    return AccountFeature.account_id.in_(
        select(Account.id).where(Account.tracked.is_(True), Account.gone_at.is_(None))
    )


def claim_due_features(
    session: Session, *, now: datetime, until: datetime, limit: int
) -> list[tuple[str, str]]:
    """(account, feature) pairs due now (never scheduled counts as due), each claimed until
    `until` as due_accounts.claim_due_account_ids claims accounts."""
    due = (
        select(AccountFeature.account_id, AccountFeature.feature)
        .where(
            _of_tracked_accounts(),
            gate_open(
                AccountFeature.refresh_status,
                AccountFeature.refresh_next_available_at,
                int(now.timestamp()),
            ),
            or_(AccountFeature.next_due_at.is_(None), AccountFeature.next_due_at <= now),
        )
        .order_by(AccountFeature.next_due_at.asc().nulls_first(), AccountFeature.account_id)
        .limit(limit)
    )
    pairs = [(a, f) for a, f in session.execute(due)]
    for account_id, feature in pairs:
        session.execute(
            update(AccountFeature)
            .where(AccountFeature.account_id == account_id, AccountFeature.feature == feature)
            .values(next_due_at=until)
            .execution_options(synchronize_session="fetch")
        )
    return pairs


def stale_pending_features(
    session: Session, *, now: datetime, older_than_s: int, limit: int
) -> list[tuple[str, str]]:
    """Feature refreshes pending for longer than `older_than_s` with no due time left to wait
    for: the stale-refresh sweep polls them, as it does transaction refreshes."""
    cutoff = int(now.timestamp()) - older_than_s
    rows = session.execute(
        select(AccountFeature.account_id, AccountFeature.feature)
        .where(
            _of_tracked_accounts(),
            AccountFeature.refresh_status == "pending",
            AccountFeature.refresh_last_attempted_at <= cutoff,
            or_(AccountFeature.next_due_at.is_(None), AccountFeature.next_due_at <= now),
        )
        .order_by(AccountFeature.refresh_last_attempted_at)
        .limit(limit)
    )
    return [(a, f) for a, f in rows]
