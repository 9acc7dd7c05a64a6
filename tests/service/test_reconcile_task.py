"""The reconciliation task and its beat sweep, run in this process: the sweep gives every tracked,
synced account its own slot in FCSYNC_RECONCILE_INTERVAL_S (spread over the period by a hash of
its id), sends each once when its slot comes, and nothing at all when switched off."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from models import Account, Transaction
from tasks.reconcile import reconcile_account_task, reconcile_due_accounts_task
from tests.service.conftest import TaskRig
from tests.service.harness import EmulatedFC, FixedClock
from worker import contract
from worker.db import session_scope
from worker.errors import ErrorCode, PermanentError
from worker.reconcile import next_slot

WEEK_S = 7 * 86_400


def sweep(rig: TaskRig) -> list[str]:
    """One beat sweep: the accounts it sent a reconciliation for."""
    enqueued = reconcile_due_accounts_task()["enqueued"]
    sent = rig.take(contract.RECONCILE_ACCOUNT)
    assert all(set(f.kwargs) == {"account_id"} and f.countdown is None for f in sent)
    assert len(sent) == enqueued
    return [f.kwargs["account_id"] for f in sent]


def add_accounts(rig: TaskRig, count: int, now: datetime) -> list[str]:
    """`count` tracked, synced accounts, plus one of each kind the sweep leaves alone."""
    ids = [f"fca_sweep{i:05d}" for i in range(count)]
    with session_scope(rig.engine) as session:
        for account_id in ids:
            session.add(row(account_id, now))
        session.add(row("fca_untracked", now, tracked=False))
        session.add(row("fca_gone", now, gone_at=now))
        session.add(row("fca_neversynced", now, cursor_refresh_id=None))
    return ids


def row(account_id: str, now: datetime, **values: object) -> Account:
    fields: dict[str, object] = {
        "tracked": True,
        "cursor_refresh_id": "fctxnref_1",
        "created_at": now,
        "updated_at": now,
    }
    fields.update(values)
    return Account(id=account_id, **fields)


def slots(rig: TaskRig) -> dict[str, datetime | None]:
    with Session(rig.engine) as session:
        return dict(session.execute(select(Account.id, Account.next_reconcile_at)).all())


def test_reconcile_sweep_spreads_accounts_over_the_week_and_sends_each_once_in_its_slot(
    fc: EmulatedFC, rig: TaskRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FixedClock(fc.now())
    monkeypatch.setattr(rig.runtime, "clock", clock)
    settings = rig.runtime.settings.model_copy(
        update={"fcsync_reconcile_interval_s": WEEK_S, "fcsync_sweep_batch": 5_000}
    )
    monkeypatch.setattr(rig.runtime, "settings", settings)
    t0 = clock.current
    accounts = add_accounts(rig, 1_400, t0)

    # The first sweep runs nothing: it gives each account its slot in the coming week.
    assert sweep(rig) == []
    given = slots(rig)
    assert {given[a] for a in ("fca_untracked", "fca_gone", "fca_neversynced")} == {None}
    assert all(t0 < given[a] <= t0 + timedelta(seconds=WEEK_S) for a in accounts)
    assert all(given[a] == next_slot(a, after=t0, interval_s=WEEK_S) for a in accounts)
    # Spread: each day of the week holds about a seventh of the accounts (200 expected).
    days = Counter(int((given[a] - t0).total_seconds()) // 86_400 for a in accounts)
    assert sorted(days) == list(range(7))
    assert all(150 <= n <= 250 for n in days.values()), days

    # A day on: the accounts whose slot came, each sent once, their slot a week further on.
    clock.current = t0 + timedelta(days=1)
    first_day = [a for a in accounts if given[a] <= clock.current]
    assert sorted(sweep(rig)) == sorted(first_day)
    assert sweep(rig) == []
    moved = slots(rig)
    assert all(moved[a] == given[a] + timedelta(seconds=WEEK_S) for a in first_day)

    # A week on: every account once (those of the first day had their slot moved past it).
    clock.current = t0 + timedelta(seconds=WEEK_S)
    week = sweep(rig)
    assert sorted(week) == sorted(set(accounts) - set(first_day))
    assert Counter(week).most_common(1)[0][1] == 1


def test_reconcile_sweep_that_could_not_send_leaves_the_accounts_due_at_the_next_sweep(
    fc: EmulatedFC, rig: TaskRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FixedClock(fc.now())
    monkeypatch.setattr(rig.runtime, "clock", clock)
    settings = rig.runtime.settings.model_copy(update={"fcsync_reconcile_interval_s": WEEK_S})
    monkeypatch.setattr(rig.runtime, "settings", settings)
    t0 = clock.current
    accounts = add_accounts(rig, 20, t0)
    assert sweep(rig) == []
    given = slots(rig)
    clock.current = t0 + timedelta(seconds=WEEK_S)

    def broker_down(followup: object) -> None:
        raise ConnectionError("broker unreachable")

    with monkeypatch.context() as down:
        down.setattr(rig.runtime, "send", broker_down)
        with pytest.raises(ConnectionError):
            reconcile_due_accounts_task()
    # Not a week on: held only until a later sweep may try again.
    held = slots(rig)
    assert all(held[a] < clock.current + timedelta(days=1) for a in accounts)

    # The broker is back: the next sweep after the hold sends every one of them, once, and
    # only then are their slots a period on.
    clock.current += timedelta(hours=1)
    assert sorted(sweep(rig)) == sorted(accounts)
    assert sweep(rig) == []
    moved = slots(rig)
    assert all(moved[a] == given[a] + timedelta(seconds=WEEK_S) for a in accounts)


def test_reconcile_sweep_off_at_zero_sends_and_schedules_nothing(
    fc: EmulatedFC, rig: TaskRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = rig.runtime.settings.model_copy(update={"fcsync_reconcile_interval_s": 0})
    monkeypatch.setattr(rig.runtime, "settings", settings)
    accounts = add_accounts(rig, 5, fc.now())
    assert sweep(rig) == []
    assert {slots(rig)[a] for a in accounts} == {None}


def test_reconcile_task_repairs_with_the_default_window_and_refuses_another_context(
    fc: EmulatedFC, rig: TaskRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rig.runtime, "clock", fc)
    account_id = fc.create_account(transactions=120)
    with session_scope(rig.engine) as session:
        fc.track(session, account_id)
        fc.refresh(session, account_id)
        fc.sync(session, account_id)
        lost = session.scalars(select(Transaction.id).order_by(Transaction.id.desc())).first()
        session.execute(delete(Transaction).where(Transaction.id == lost))

    report = reconcile_account_task(account_id)

    assert report["days"] == rig.runtime.settings.fcsync_reconcile_days == 30
    assert (report["outcome"], report["inserted"], report["updated"]) == ("reconciled", 1, 0)
    assert rig.sent == []
    calls = fc.list_calls()
    with pytest.raises(PermanentError) as other:
        reconcile_account_task(account_id, days=7, stripe_account="acct_other")
    assert other.value.code == ErrorCode.STRIPE_ACCOUNT_MISMATCH
    with pytest.raises(PermanentError) as unknown:
        reconcile_account_task("fca_unknown")
    assert unknown.value.code == ErrorCode.UNKNOWN_ACCOUNT
    assert fc.list_calls() == calls
