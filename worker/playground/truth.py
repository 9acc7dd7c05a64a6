"""The one comparison of fcsync's database against the emulator's ground truth: every stored
transaction field, the cursor (only ever a synced, succeeded refresh) and Stripe's gating rule."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from emulator import EmulatorControl
from models import Account, Refresh
from worker.reports import stored_transactions


@dataclass(frozen=True)
class TransactionDiff:
    """How stored rows differ from Stripe's: ids missing, ids Stripe does not hold for the
    account, and per shared id the fields that differ."""

    missing: list[str]
    unexpected: list[str]
    differing: dict[str, list[str]]

    def lines(self, limit: int = 5) -> list[str]:
        """One line per difference; `limit=0` lists them all."""
        found = [f"missing {i}" for i in self.missing]
        found += [f"unexpected {i}" for i in self.unexpected]
        found += [line for lines in self.differing.values() for line in lines]
        return found[:limit] if limit else found


def compare_transactions(
    stored: list[dict[str, Any]], truth: list[dict[str, Any]]
) -> TransactionDiff:
    """Stored rows against Stripe's, both in Stripe's shape, in every field fcsync stores (a
    field Stripe leaves out counts as null)."""
    mine = {t["id"]: t for t in stored}
    theirs = {t["id"]: t for t in truth}
    differing: dict[str, list[str]] = {}
    for txn_id in sorted(mine.keys() & theirs.keys()):
        a, b = mine[txn_id], theirs[txn_id]
        for name in sorted(a.keys() - {"id"}):
            expected = b.get(name)
            if name == "status_transitions":
                expected = {k: (expected or {}).get(k) for k in ("posted_at", "void_at")}
            if a[name] != expected:
                differing.setdefault(txn_id, []).append(
                    f"{txn_id}.{name}: stored {a[name]!r} != {expected!r}"
                )
    return TransactionDiff(
        missing=sorted(theirs.keys() - mine.keys()),
        unexpected=sorted(mine.keys() - theirs.keys()),
        differing=differing,
    )


def diff_transactions(
    stored: list[dict[str, Any]], truth: list[dict[str, Any]], *, limit: int = 5
) -> list[str]:
    """Differences between stored rows and Stripe's as lines; `limit=0` lists them all."""
    return compare_transactions(stored, truth).lines(limit)


def row_problems(
    session: Session, control: EmulatorControl, account_id: str, *, limit: int = 3
) -> list[str]:
    """How the account's stored transactions differ from Stripe's, prefixed with its id."""
    diffs = diff_transactions(
        stored_transactions(session, account_id), control.transactions(account_id), limit=limit
    )
    return [f"{account_id}: {d}" for d in diffs]


def cursor_problems(
    session: Session,
    account_id: str,
    *,
    at_stripe: Mapping[str, str],
    cursors_seen: Set[str],
    stored_refreshes: Mapping[str, Refresh],
) -> list[str]:
    """The cursor is Stripe's latest succeeded refresh, synced; no failed refresh was ever a
    cursor (`cursors_seen`) or stored as anything but failed. `at_stripe`: id -> final status."""
    problems: list[str] = []
    succeeded = [i for i, status in at_stripe.items() if status == "succeeded"]
    failed = {i for i, status in at_stripe.items() if status == "failed"}
    row = session.get(Account, account_id)
    cursor = row.cursor_refresh_id if row else None
    expected = succeeded[-1] if succeeded else None
    if cursor != expected:
        problems.append(f"{account_id}: cursor {cursor} != latest succeeded {expected}")
    if cursor is not None:
        ours = stored_refreshes.get(cursor)
        if ours is None or ours.status != "succeeded" or ours.synced_at is None:
            problems.append(f"{account_id}: cursor {cursor} is not a synced succeeded refresh")
    for bad in sorted(cursors_seen & failed):
        problems.append(f"{account_id}: failed refresh {bad} was a cursor")
    for refresh_id in sorted(failed):
        ours = stored_refreshes.get(refresh_id)
        if ours is not None and (ours.status != "failed" or ours.synced_at is not None):
            problems.append(
                f"{account_id}: failed refresh {refresh_id} stored as {ours.status}, "
                f"synced_at={ours.synced_at}"
            )
    return problems


def problems_of_cursors(
    session: Session,
    accounts: Iterable[str],
    *,
    refreshes_at_stripe: Mapping[str, Mapping[str, str]],
    cursors_seen: Mapping[str, Set[str]],
) -> list[str]:
    """`cursor_problems` for every account."""
    stored_refreshes = {r.id: r for r in session.scalars(select(Refresh))}
    found: list[str] = []
    for account_id in accounts:
        found += cursor_problems(
            session,
            account_id,
            at_stripe=refreshes_at_stripe[account_id],
            cursors_seen=cursors_seen.get(account_id, frozenset()),
            stored_refreshes=stored_refreshes,
        )
    return found


def problems(
    session: Session,
    control: EmulatorControl,
    accounts: Iterable[str],
    *,
    refreshes_at_stripe: Mapping[str, Mapping[str, str]],
    cursors_seen: Mapping[str, Set[str]],
) -> list[str]:
    """Everything that differs from "the database equals Stripe and no rule was broken"."""
    accounts = list(accounts)
    found: list[str] = []
    violations = control.stats()["gating_violations"]
    if violations:
        found.append(f"{violations} refreshes were requested too early")
    for account_id in accounts:
        found += row_problems(session, control, account_id)
    return found + problems_of_cursors(
        session, accounts, refreshes_at_stripe=refreshes_at_stripe, cursors_seen=cursors_seen
    )
