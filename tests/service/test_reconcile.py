"""Reconciliation against the emulator over HTTP and a real database (SQLite and PostgreSQL):
stored rows deleted and corrupted at random (seeded) are repaired from Stripe's listing of the
window, a pending row Stripe dropped is reported and kept, and the cursor and the sync lease
are left as they were."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from models import Transaction
from tests.rows import account_row
from tests.service.connect import CONNECTED, create_account_in
from tests.service.harness import EmulatedFC
from worker import reconcile, reports, sync
from worker.reconcile import (
    DAY_S,
    finish_reconcile,
    reconcile_page,
    run_reconcile,
    start_reconcile,
)
from worker.stripe_gateway import StripeGateway

R = TypeVar("R")
HISTORY = 400
DAYS = 30
SEED = 15


class SessionRunner:
    """The runtime's `run` at service level: one committed transaction per unit of work, at the
    emulator's time."""

    def __init__(self, session: Session, fc: EmulatedFC) -> None:
        self.session = session
        self.fc = fc

    def run(
        self,
        account_id: str | None,
        work: Callable[[Session, StripeGateway, datetime], R],
        *,
        stripe_key: str | None = None,
    ) -> R:
        # One key at service level: the fixture's gateway is the default key's.
        assert stripe_key is None
        try:
            result = work(self.session, self.fc.gateway, self.fc.now())
        except BaseException:
            self.session.rollback()
            raise
        self.session.commit()
        return result


def synced_account(fc: EmulatedFC, session: Session) -> str:
    account_id = fc.create_account(transactions=HISTORY)
    fc.track(session, account_id)
    fc.refresh(session, account_id)
    fc.sync(session, account_id)
    assert fc.mismatches(session, account_id) == []
    return account_id


def stored(session: Session, account_id: str) -> dict[str, dict[str, Any]]:
    session.expire_all()
    return {t["id"]: t for t in reports.stored_transactions(session, account_id)}


def rows_reconciled(operation: str) -> float:
    return REGISTRY.get_sample_value("fcsync_reconcile_rows_total", {"operation": operation}) or 0


# Each a different way a stored row can go wrong at the same `updated` as Stripe's (a lost or
# corrupted write), or be an older version of it (a missed update).
CORRUPTIONS: list[dict[str, Any]] = [
    {"amount": Transaction.amount + 1},
    {"description": "corrupted"},
    {"currency": "eur"},
    {"status": "void"},
    {"posted_at": None, "void_at": 1},
    {"transaction_refresh": "fctxnref_stale"},
    {"livemode": True},
    {"updated": Transaction.updated - 1, "amount": 0},
]


def test_reconcile_repairs_deleted_and_corrupted_rows_reports_a_dropped_pending_row_and_leaves_the_cursor(  # noqa: E501
    fc: EmulatedFC, session: Session
) -> None:
    account_id = synced_account(fc, session)
    before = account_row(session, account_id)
    cursor = (before.cursor_refresh_id, before.cursor_refresh_at)
    assert cursor[0] is not None
    fc.advance(3_600)
    since = int(fc.now().timestamp()) - DAYS * DAY_S
    truth = {t["id"]: t for t in fc.truth(account_id)}
    window = sorted(i for i, t in truth.items() if t["transacted_at"] >= since)
    outside = sorted(i for i, t in truth.items() if t["transacted_at"] < since)
    pending = [i for i in window if truth[i]["status"] == "pending"]
    assert len(window) > 40 and outside and pending

    # Stripe drops a pending row that never posts.
    dropped = pending[0]
    fc.control.drop_transaction(dropped)
    rng = random.Random(SEED)
    chosen = rng.sample([i for i in window if i != dropped], 4 + len(CORRUPTIONS) + 1)
    deleted, corrupted, newer = chosen[:4], chosen[4:-1], chosen[-1]
    session.execute(delete(Transaction).where(Transaction.id.in_(deleted)))
    for row_id, change in zip(corrupted, CORRUPTIONS, strict=True):
        session.execute(update(Transaction).where(Transaction.id == row_id).values(**change))
    # Newest `updated` wins, as always: a stored row newer than Stripe's is not rewritten, nor
    # is a row outside the window.
    session.execute(
        update(Transaction)
        .where(Transaction.id == newer)
        .values(updated=Transaction.updated + 10, amount=7)
    )
    session.execute(update(Transaction).where(Transaction.id == outside[0]).values(amount=7))
    session.commit()
    counted = {op: rows_reconciled(op) for op in ("inserted", "updated", "vanished")}

    report = run_reconcile(SessionRunner(session, fc), account_id, days=DAYS)

    assert report["outcome"] == "reconciled"
    assert (report["since"], report["days"]) == (since, DAYS)
    assert report["listed"] == len(window) - 1
    assert (report["inserted"], report["updated"]) == (len(deleted), len(corrupted))
    assert (report["vanished"], report["vanished_ids"]) == (1, [dropped])
    rows = stored(session, account_id)
    for row_id in window:
        if row_id not in (dropped, newer):
            assert rows[row_id] == truth[row_id], row_id
    assert rows[newer]["amount"] == 7 and rows[outside[0]]["amount"] == 7
    # The dropped row is kept, still pending, marked vanished.
    vanished = session.scalars(
        select(Transaction).where(Transaction.vanished_at.is_not(None))
    ).all()
    assert [(t.id, t.status) for t in vanished] == [(dropped, "pending")]
    assert rows[dropped] == truth[dropped]
    after = account_row(session, account_id)
    assert (after.cursor_refresh_id, after.cursor_refresh_at) == cursor
    assert after.sync_lease_owner is None and after.sync_target_refresh_id is None
    assert (after.reconcile_inserted, after.reconcile_updated, after.reconcile_vanished) == (
        len(deleted),
        len(corrupted),
        1,
    )
    assert after.reconciled_at == fc.now()
    status = reports.account_status(session, account_id, now=fc.now())[0]
    assert (status["reconcile_inserted"], status["reconcile_vanished"]) == (len(deleted), 1)
    assert status["reconciled_at"] == int(fc.now().timestamp())
    assert {op: rows_reconciled(op) - n for op, n in counted.items()} == {
        "inserted": len(deleted),
        "updated": len(corrupted),
        "vanished": 1,
    }

    # Healed: a second run finds nothing to do (an equal row is never rewritten) and reports
    # the vanished row once.
    again = run_reconcile(SessionRunner(session, fc), account_id, days=DAYS)
    assert (again["inserted"], again["updated"], again["vanished"]) == (0, 0, 0)
    assert again["listed"] == report["listed"]


def test_reconcile_while_a_sync_holds_the_lease_leaves_the_lease_and_both_land(
    fc: EmulatedFC, session: Session
) -> None:
    """No lease is taken or broken: the sync's run goes on with its own lease and progress, and
    both write through the same guarded upsert, so the rows end as Stripe's."""
    account_id = synced_account(fc, session)
    fc.refresh(session, account_id)
    start = sync.start_sync(
        session, account_id, full=True, owner="sync-1", now=fc.now(), settings=fc.settings
    )
    session.commit()
    assert start.outcome == "started"
    rows = stored(session, account_id)
    # The rows the sync has yet to store (the second refresh's), and one it stored, lost.
    unsynced = len(fc.truth(account_id)) - len(rows)
    session.execute(delete(Transaction).where(Transaction.id == sorted(rows)[-1]))
    session.commit()

    report = run_reconcile(SessionRunner(session, fc), account_id, days=DAYS)

    assert report["outcome"] == "reconciled" and report["inserted"] == unsynced + 1
    account = account_row(session, account_id)
    assert account.sync_lease_owner == "sync-1"
    assert account.sync_target_refresh_id == start.target_refresh_id
    steps = fc.finish_sync(session, account_id, owner="sync-1")
    assert steps[-1].outcome == "done"
    assert fc.mismatches(session, account_id) == []
    assert account_row(session, account_id).cursor_refresh_id == start.target_refresh_id


@pytest.mark.parametrize("days", [1, 180])
def test_reconcile_lists_only_the_window_with_transacted_at_gte(
    fc: EmulatedFC, session: Session, days: int
) -> None:
    account_id = synced_account(fc, session)
    since = int(fc.now().timestamp()) - days * DAY_S
    in_window = [t for t in fc.truth(account_id) if t["transacted_at"] >= since]
    calls = fc.list_calls()

    report = run_reconcile(SessionRunner(session, fc), account_id, days=days)

    assert report["listed"] == len(in_window)
    assert fc.list_calls() - calls == report["pages"] == max(1, -(-len(in_window) // 100))
    assert (report["inserted"], report["updated"], report["vanished"]) == (0, 0, 0)


def test_reconcile_never_takes_a_row_stored_after_its_listing_began_for_vanished(
    fc: EmulatedFC, session: Session
) -> None:
    """A sync that stores new pending rows while a reconciliation lists the window: those rows
    are missing from its listing, but they are newer than it, not gone from Stripe."""
    account_id = synced_account(fc, session)
    fc.advance(60)
    runner = SessionRunner(session, fc)
    start = runner.run(
        account_id,
        lambda s, gw, now: start_reconcile(s, account_id, days=DAYS, now=now, stripe_account=None),
    )
    listed: set[str] = set()
    after: str | None = None
    while True:
        page = runner.run(
            account_id,
            lambda s, gw, now, after=after: reconcile_page(  # type: ignore[misc]
                s, gw, account_id, start=start, starting_after=after, seen_last_ids=[], now=now
            ),
        )
        listed.update(page.ids)
        if page.next_after is None:
            break
        after = page.next_after
    # Meanwhile Stripe adds rows (pending among them) and a sync stores them.
    fc.control.update_account(account_id, next_refresh_changes=40)
    fc.advance(1)
    fc.refresh(session, account_id)
    fc.sync(session, account_id)
    new_pending = [
        t["id"] for t in fc.truth(account_id) if t["status"] == "pending" and t["id"] not in listed
    ]
    assert new_pending

    result = runner.run(
        account_id,
        lambda s, gw, now: finish_reconcile(
            s, account_id, start=start, listed=listed, inserted=0, updated=0, now=now
        ),
    )

    assert result.vanished_ids == ()
    assert fc.mismatches(session, account_id) == []


def test_reconcile_of_a_window_longer_than_its_page_bound_marks_nothing_vanished(
    fc: EmulatedFC, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    account_id = synced_account(fc, session)
    truth = fc.truth(account_id)
    pending = next(t["id"] for t in truth if t["status"] == "pending")
    fc.control.drop_transaction(pending)
    session.execute(delete(Transaction).where(Transaction.id == truth[-1]["id"]))
    session.commit()
    monkeypatch.setattr(reconcile, "MAX_PAGES", 2)

    report = run_reconcile(SessionRunner(session, fc), account_id, days=180)

    # Two pages read and repaired as read (the oldest row is on neither), nothing marked: the
    # window was not seen whole.
    assert (report["outcome"], report["pages"], report["listed"]) == ("truncated", 2, 200)
    assert (report["inserted"], report["vanished"]) == (0, 0)
    assert account_row(session, account_id).reconcile_vanished == 0


def test_reconcile_of_a_connected_accounts_fc_account_lists_in_its_context(
    fc: EmulatedFC, session: Session
) -> None:
    """The window is listed under the stored `Stripe-Account` (the emulator answers 404 for the
    account without it), and the rows it inserts carry that context."""
    account_id = create_account_in(fc, CONNECTED, transactions=120)
    fc.track(session, account_id, stripe_account=CONNECTED)
    fc.refresh(session, account_id)
    fc.sync(session, account_id)
    lost = sorted(stored(session, account_id))[-1]
    session.execute(delete(Transaction).where(Transaction.id == lost))
    session.commit()

    report = run_reconcile(SessionRunner(session, fc), account_id, days=DAYS)

    assert (report["outcome"], report["inserted"]) == ("reconciled", 1)
    assert session.get(Transaction, lost).stripe_account == CONNECTED  # type: ignore[union-attr]
    assert fc.mismatches(session, account_id) == []


def test_reconcile_of_an_account_stripe_forgot_marks_it_gone_and_marks_no_row(
    fc: EmulatedFC, session: Session
) -> None:
    account_id = synced_account(fc, session)
    fc.control.delete_account(account_id)

    report = run_reconcile(SessionRunner(session, fc), account_id, days=DAYS)

    assert (report["outcome"], report["pages"], report["vanished"]) == ("gone", 0, 0)
    account = account_row(session, account_id)
    assert account.gone_at is not None and account.reconciled_at is None
    assert (
        session.scalars(select(Transaction).where(Transaction.vanished_at.is_not(None))).all() == []
    )


def test_reconcile_clears_vanished_from_a_row_stripe_lists_again(
    fc: EmulatedFC, session: Session
) -> None:
    account_id = synced_account(fc, session)
    listed_again = sorted(stored(session, account_id))[-1]
    session.execute(
        update(Transaction).where(Transaction.id == listed_again).values(vanished_at=fc.now())
    )
    session.commit()

    report = run_reconcile(SessionRunner(session, fc), account_id, days=DAYS)

    assert (report["inserted"], report["updated"], report["vanished"]) == (0, 1, 0)
    row = session.get(Transaction, listed_again)
    assert row is not None and row.vanished_at is None
