"""The sync service against the emulator and a real database (SQLite and PostgreSQL): full
history first, then only what later refreshes changed, rows updated in place, and a cursor
that moves only to a succeeded refresh."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from models import Refresh, Transaction
from tests.rows import account_row
from tests.service.harness import EmulatedFC
from worker import repository, sync
from worker.intents import SyncDue

HISTORY = 250


def tracked_account(fc: EmulatedFC, session: Session, transactions: int = HISTORY) -> str:
    account_id = fc.create_account(transactions=transactions)
    fc.track(session, account_id)
    return account_id


def test_sync_first_sync_reads_the_full_history(fc: EmulatedFC, session: Session) -> None:
    account_id = tracked_account(fc, session)
    polled = fc.refresh(session, account_id)
    assert polled.outcome == "succeeded"
    assert list(polled.intents) == [SyncDue(account_id)]
    truth = fc.truth(account_id)
    assert len(truth) >= HISTORY

    start = sync.start_sync(
        session, account_id, full=False, owner="o", now=fc.now(), settings=fc.settings
    )
    assert (start.outcome, start.target_refresh_id) == ("started", polled.refresh_id)
    assert account_row(session, account_id).sync_after_refresh_id is None
    steps = fc.finish_sync(session, account_id, owner="o")

    assert len(steps) == fc.list_calls() == math.ceil(len(truth) / 100)
    assert sum(s.inserted for s in steps) == len(truth)
    assert fc.mismatches(session, account_id) == []
    account = account_row(session, account_id)
    assert account.cursor_refresh_id == polled.refresh_id
    assert account.cursor_refresh_at == account.refresh_last_attempted_at
    assert account.sync_lease_owner is None and account.sync_target_refresh_id is None
    refresh_row = session.get(Refresh, polled.refresh_id)
    assert refresh_row is not None and refresh_row.synced_at is not None
    assert refresh_row.inserted == len(truth)


def test_sync_later_syncs_read_only_rows_changed_after_the_cursor(
    fc: EmulatedFC, session: Session
) -> None:
    account_id = tracked_account(fc, session)
    first = fc.refresh(session, account_id)
    fc.sync(session, account_id)
    second = fc.refresh(session, account_id)
    changed = [t for t in fc.truth(account_id) if t["transaction_refresh"] == second.refresh_id]
    assert 0 < len(changed) < 100
    calls_before = fc.list_calls()

    start, steps = fc.sync(session, account_id)
    assert start.outcome == "started"
    # One page: only what the second refresh changed, asked for with transaction_refresh[after].
    assert fc.list_calls() - calls_before == len(steps) == 1
    assert steps[0].inserted + steps[0].updated == len(changed)
    assert fc.mismatches(session, account_id) == []
    account = account_row(session, account_id)
    assert account.cursor_refresh_id == second.refresh_id != first.refresh_id


@pytest.mark.parametrize("history", [50, 1_000])
@pytest.mark.parametrize("changes", [1, 150])
def test_sync_incremental_requests_grow_with_what_changed_never_with_the_history(
    fc: EmulatedFC, session: Session, history: int, changes: int
) -> None:
    account_id = tracked_account(fc, session, transactions=history)
    fc.refresh(session, account_id)
    fc.sync(session, account_id)
    fc.control.update_account(account_id, next_refresh_changes=changes)
    fc.refresh(session, account_id)
    calls_before = fc.list_calls()

    _, steps = fc.sync(session, account_id)
    assert fc.list_calls() - calls_before == len(steps) == math.ceil(changes / 100)
    assert sum(s.inserted + s.updated for s in steps) == changes
    assert fc.mismatches(session, account_id) == []


def test_sync_records_the_cursor_as_the_after_parameter(fc: EmulatedFC, session: Session) -> None:
    account_id = tracked_account(fc, session, transactions=30)
    first = fc.refresh(session, account_id)
    fc.sync(session, account_id)
    fc.refresh(session, account_id)
    sync.start_sync(session, account_id, full=False, owner="o", now=fc.now(), settings=fc.settings)
    assert account_row(session, account_id).sync_after_refresh_id == first.refresh_id


def test_sync_pending_rows_settle_in_place(fc: EmulatedFC, session: Session) -> None:
    account_id = tracked_account(fc, session)
    fc.refresh(session, account_id)
    fc.sync(session, account_id)
    pending = set(
        session.scalars(
            select(Transaction.id).where(
                Transaction.account_id == account_id, Transaction.status == "pending"
            )
        )
    )
    assert pending, "the seeded history should end with pending rows"

    fc.refresh(session, account_id)
    fc.sync(session, account_id)
    truth = {t["id"]: t for t in fc.truth(account_id)}
    settled = {i for i in pending if truth[i]["status"] != "pending"}
    assert settled, "the next refresh should settle some pending rows"
    for txn_id in settled:
        row = session.get(Transaction, txn_id)
        assert row is not None
        session.refresh(row)
        assert row.status == truth[txn_id]["status"] in ("posted", "void")
        assert (row.posted_at or row.void_at) is not None
        assert row.updated == truth[txn_id]["updated"]
    assert repository.count_transactions(session, account_id) == len(truth)
    assert fc.mismatches(session, account_id) == []


def test_sync_failed_refresh_never_advances_the_cursor(fc: EmulatedFC, session: Session) -> None:
    account_id = tracked_account(fc, session, transactions=30)
    good = fc.refresh(session, account_id)
    fc.sync(session, account_id)

    fc.control.update_account(account_id, failure_rate=1.0)
    failed = fc.refresh(session, account_id)
    assert failed.outcome == "failed"
    assert failed.intents == ()
    start, steps = fc.sync(session, account_id)
    assert (start.outcome, steps) == ("up_to_date", [])
    account = account_row(session, account_id)
    assert account.cursor_refresh_id == good.refresh_id
    assert account.refresh_id == failed.refresh_id and account.refresh_status == "failed"
    assert account.last_error_code == "refresh_failed"

    fc.control.update_account(account_id, failure_rate=0.0)
    recovered = fc.refresh(session, account_id)
    start, _ = fc.sync(session, account_id)
    assert start.outcome == "started"
    assert account_row(session, account_id).cursor_refresh_id == recovered.refresh_id
    assert fc.mismatches(session, account_id) == []


def test_sync_failed_first_refresh_leaves_no_cursor(fc: EmulatedFC, session: Session) -> None:
    account_id = fc.create_account(transactions=30, failure_rate=1.0)
    fc.track(session, account_id)
    assert fc.refresh(session, account_id).outcome == "failed"
    start, _ = fc.sync(session, account_id)
    assert start.outcome == "up_to_date"
    assert account_row(session, account_id).cursor_refresh_id is None
    assert repository.count_transactions(session, account_id) == 0


def test_sync_full_rereads_every_row(fc: EmulatedFC, session: Session) -> None:
    account_id = tracked_account(fc, session)
    polled = fc.refresh(session, account_id)
    fc.sync(session, account_id)
    # Rows lost on our side: an incremental sync has nothing to fetch, a full one restores them.
    lost = fc.truth(account_id)[100:105]
    session.execute(delete(Transaction).where(Transaction.id.in_([t["id"] for t in lost])))
    session.commit()
    assert fc.sync(session, account_id)[0].outcome == "up_to_date"
    calls_before = fc.list_calls()

    start, steps = fc.sync(session, account_id, full=True)
    assert (start.outcome, start.target_refresh_id) == ("started", polled.refresh_id)
    assert (
        fc.list_calls() - calls_before == len(steps) == math.ceil(len(fc.truth(account_id)) / 100)
    )
    assert sum(s.inserted for s in steps) == len(lost)
    assert fc.mismatches(session, account_id) == []
    assert account_row(session, account_id).cursor_refresh_id == polled.refresh_id


def test_sync_cursor_unknown_to_stripe_falls_back_to_full_history(
    fc: EmulatedFC, session: Session
) -> None:
    account_id = tracked_account(fc, session)
    fc.refresh(session, account_id)
    fc.sync(session, account_id)
    # A cursor Stripe answers 400 resource_missing for: another account's refresh.
    other_id = tracked_account(fc, session, transactions=5)
    foreign = fc.refresh(session, other_id)
    account = account_row(session, account_id)
    account.cursor_refresh_id = foreign.refresh_id
    lost = fc.truth(account_id)[:3]
    session.execute(delete(Transaction).where(Transaction.id.in_([t["id"] for t in lost])))
    session.commit()

    latest = fc.refresh(session, account_id)
    start, steps = fc.sync(session, account_id)
    assert start.outcome == "started"
    assert steps[-1].outcome == "done"
    # The rejected page, then the whole history again.
    assert len(steps) == 1 + math.ceil(len(fc.truth(account_id)) / 100)
    assert fc.mismatches(session, account_id) == []
    assert account_row(session, account_id).cursor_refresh_id == latest.refresh_id
