"""Failed refreshes of every feature back off through the one policy (worker/refresh_backoff.py),
service level, against the emulator over HTTP on SQLite and PostgreSQL: the wait grows with each
failure in a row, a success resets it, and it never ends before Stripe allows a refresh."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy.orm import Session

from tests.rows import account_row
from tests.service.harness import REFRESH_COOLDOWN_S, REFRESH_DELAY_S, EmulatedFC, at
from tests.service.test_features import ask, poll
from tests.service.test_features import row as feature_row
from worker.errors import ErrorCode
from worker.refresh_backoff import JITTER
from worker.settings import Settings

DAY_S = 86_400


def waited(due: datetime | None, attempted_at: int | None) -> float:
    """How long after the failed refresh started its retry is due."""
    assert due is not None and attempted_at is not None
    return due.timestamp() - attempted_at


def fail_feature(
    fc: EmulatedFC, session: Session, account_id: str, feature: str, settings: Settings
) -> str:
    """Start a refresh of `feature` that the institution fails (the account goes inactive
    while it runs), then learn its outcome by poll."""
    started = ask(fc, session, account_id, feature, settings=settings)
    assert started.outcome == "started", started
    fc.control.set_account_status(account_id, "inactive")
    fc.advance(REFRESH_DELAY_S)
    fc.control.set_account_status(account_id, "active")
    return poll(fc, session, account_id, feature, settings=settings)


@pytest.mark.parametrize("feature", ["balances", "ownership"])
def test_failed_feature_refreshes_back_off_per_failure_in_a_row_and_reset_on_success(
    fc: EmulatedFC, session: Session, feature: str
) -> None:
    base = fc.settings.fcsync_failed_refresh_retry_s
    account_id = fc.create_account(permissions=["transactions", feature])
    fc.track(session, account_id, features=[feature])
    waits = []
    for failures in (1, 2, 3):
        assert fail_feature(fc, session, account_id, feature, fc.settings) == "failed"
        row = feature_row(session, account_id, feature)
        assert row.refresh_failures == failures
        assert row.last_error_code == ErrorCode.REFRESH_FAILED
        waits.append(waited(row.next_due_at, row.refresh_last_attempted_at))
        unjittered = base * 2 ** (failures - 1)
        assert unjittered <= waits[-1] < unjittered * (1 + JITTER), waits
        # Seen again (a second poll, a late webhook): counted once, due at the same time.
        assert poll(fc, session, account_id, feature) == "failed"
        again = feature_row(session, account_id, feature)
        assert again.refresh_failures == failures and again.next_due_at == row.next_due_at
        assert row.next_due_at is not None
        fc.advance(row.next_due_at.timestamp() - fc.now().timestamp())

    # A success resets the run: due a refresh interval later, the next failure waits the base.
    started = ask(fc, session, account_id, feature, source="beat")
    assert started.outcome == "started"
    fc.advance(REFRESH_DELAY_S)
    assert poll(fc, session, account_id, feature) == "succeeded"
    row = feature_row(session, account_id, feature)
    assert row.refresh_failures == 0 and row.last_error_code is None
    assert waited(row.next_due_at, row.refresh_last_attempted_at) == DAY_S
    fc.advance(DAY_S)
    assert fail_feature(fc, session, account_id, feature, fc.settings) == "failed"
    row = feature_row(session, account_id, feature)
    assert row.refresh_failures == 1
    assert base <= waited(row.next_due_at, row.refresh_last_attempted_at) < base * (1 + JITTER)


def test_failed_feature_refresh_never_due_before_next_refresh_available_at(
    fc: EmulatedFC, session: Session
) -> None:
    # A base shorter than Stripe's cooldown: the cooldown wins.
    quick = fc.settings.model_copy(update={"fcsync_failed_refresh_retry_s": 10})
    account_id = fc.create_account(permissions=["balances"])
    fc.track(session, account_id, features=["balances"])
    assert fail_feature(fc, session, account_id, "balances", quick) == "failed"
    row = feature_row(session, account_id, "balances")
    assert row.refresh_next_available_at is not None
    assert row.next_due_at == at(row.refresh_next_available_at)
    assert waited(row.next_due_at, row.refresh_last_attempted_at) >= REFRESH_COOLDOWN_S


def test_failed_transaction_refreshes_back_off_through_the_same_policy(
    fc: EmulatedFC, session: Session
) -> None:
    base = fc.settings.fcsync_failed_refresh_retry_s
    account_id = fc.create_account(transactions=5)
    fc.track(session, account_id)
    fc.control.update_account(account_id, fail_next_refreshes=2)
    for failures in (1, 2):
        polled = fc.refresh(session, account_id)
        assert polled.outcome == "failed"
        account = account_row(session, account_id)
        session.refresh(account)
        unjittered = base * 2 ** (failures - 1)
        wait = waited(account.next_due_at, account.refresh_last_attempted_at)
        assert unjittered <= wait < unjittered * (1 + JITTER), (failures, wait)
        assert account.next_due_at is not None
        fc.advance(account.next_due_at.timestamp() - fc.now().timestamp())
    assert fc.gating_violations() == 0
