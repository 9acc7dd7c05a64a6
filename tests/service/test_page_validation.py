"""Malformed Stripe answers, served over HTTP by a stand-in between the gateway and the emulator:
each aborts the sync (or the tracking) with a recorded permanent error, stores no row of another
account and never moves the cursor; the next good answer syncs everything."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Account, Refresh
from tasks.tracking import track_account_task
from tests.rows import account_row
from tests.service.conftest import TaskRig
from tests.service.harness import EmulatedFC
from tests.service.standin import Rewrite, StandIn
from worker import reports, repository
from worker.db import session_scope
from worker.stripe_payloads import InvalidStripeResponse
from worker.sync_run import run_sync

HISTORY = 154


def empty_page_with_more(page: Any) -> Any:
    return {**page, "data": [], "has_more": True}


def without_has_more(page: Any) -> Any:
    return {k: v for k, v in page.items() if k != "has_more"}


def bare_array(page: Any) -> Any:
    return []


def float_amount(page: Any) -> Any:
    rows = [dict(row) for row in page["data"]]
    rows[0]["amount"] = -41.01
    return {**page, "data": rows}


@dataclass
class Case:
    rewrite: Rewrite
    names: str  # what the recorded error must mention


CASES = {
    "empty_page_with_has_more": Case(empty_page_with_more, "has_more"),
    "full_page_without_has_more": Case(without_has_more, "`has_more` must be true or false"),
    "array_body": Case(bare_array, "must be a JSON object"),
    "float_amount": Case(float_amount, "`amount` must be an integer, got number -41.01"),
}


def refreshed_account(fc: EmulatedFC, rig: TaskRig, *others: str) -> str:
    account_id = fc.create_account(transactions=HISTORY)
    with session_scope(rig.engine) as session:
        fc.track(session, account_id)
        for other in others:
            fc.track(session, other)
        assert fc.refresh(session, account_id).outcome == "succeeded"
    return account_id


def assert_aborted(rig: TaskRig, account_id: str, names: str) -> None:
    """Recorded where `fcsync status` shows it, lease released, cursor unmoved."""
    with session_scope(rig.engine) as session:
        [status] = reports.account_status(session, account_id, now=rig.runtime.clock.now())
        assert status["last_error"].startswith("[invalid_stripe_response] invalid Stripe answer")
        assert names in status["last_error"]
        assert status["cursor"] is None
        account = account_row(session, account_id)
        assert account.sync_lease_owner is None
        assert account.sync_target_refresh_id is not None  # the sweep resumes it


def assert_recovers(fc: EmulatedFC, standin: StandIn, rig: TaskRig, account_id: str) -> None:
    standin.rewrite_list = None
    assert run_sync(rig.runtime, account_id, full=False, owner="next")["outcome"] == "done"
    with session_scope(rig.engine) as session:
        assert fc.mismatches(session, account_id) == []
        assert account_row(session, account_id).last_error_code is None


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_page_validation_malformed_page_aborts_the_sync_and_keeps_the_cursor(
    case: Case, fc: EmulatedFC, standin: StandIn, rig: TaskRig
) -> None:
    account_id = refreshed_account(fc, rig)
    standin.rewrite_list = case.rewrite

    with pytest.raises(InvalidStripeResponse) as raised:
        run_sync(rig.runtime, account_id, full=False, owner="o")
    assert case.names in str(raised.value)
    assert standin.list_requests == 1
    with session_scope(rig.engine) as session:
        assert repository.count_transactions(session, account_id) == 0
    assert_aborted(rig, account_id, case.names)
    assert_recovers(fc, standin, rig, account_id)


def test_page_validation_rows_of_another_account_are_never_stored(
    fc: EmulatedFC, standin: StandIn, rig: TaskRig
) -> None:
    other_id = fc.create_account(transactions=3)
    account_id = refreshed_account(fc, rig, other_id)

    def misfiled(page: Any) -> Any:
        return {**page, "data": [{**row, "account": other_id} for row in page["data"]]}

    standin.rewrite_list = misfiled
    with pytest.raises(InvalidStripeResponse, match=f"of account {other_id} in the list of"):
        run_sync(rig.runtime, account_id, full=False, owner="o")
    with session_scope(rig.engine) as session:
        assert repository.count_transactions(session, other_id) == 0
        assert repository.count_transactions(session, account_id) == 0
    assert_aborted(rig, account_id, other_id)
    assert_recovers(fc, standin, rig, account_id)
    with session_scope(rig.engine) as session:
        assert repository.count_transactions(session, other_id) == 0


def test_page_validation_a_repeated_page_stops_after_two_requests(
    fc: EmulatedFC, standin: StandIn, rig: TaskRig
) -> None:
    account_id = refreshed_account(fc, rig)
    first: list[Any] = []

    def same_page_forever(page: Any) -> Any:
        first[:] = first or [page]
        return {**first[0], "has_more": True}

    standin.rewrite_list = same_page_forever
    with pytest.raises(InvalidStripeResponse, match="does not advance"):
        run_sync(rig.runtime, account_id, full=False, owner="o")
    assert standin.list_requests == 2
    with session_scope(rig.engine) as session:
        # The first page is the account's own rows, stored once; the repeat wrote nothing.
        assert repository.count_transactions(session, account_id) == 100
    assert_aborted(rig, account_id, "does not advance")
    assert_recovers(fc, standin, rig, account_id)


def test_page_validation_a_cycle_of_pages_stops_within_one_run(
    fc: EmulatedFC, standin: StandIn, rig: TaskRig
) -> None:
    """Two pages answered in turn, each pointing past the other: caught when one comes back."""
    account_id = refreshed_account(fc, rig)
    pages: list[Any] = []

    def two_pages_in_turn(page: Any) -> Any:
        if len(pages) < 2:
            pages.append({**page, "has_more": True})
        return pages[(standin.list_requests - 1) % 2]

    standin.rewrite_list = two_pages_in_turn
    with pytest.raises(InvalidStripeResponse, match="does not advance"):
        run_sync(rig.runtime, account_id, full=False, owner="o")
    assert standin.list_requests == 3
    assert_aborted(rig, account_id, "does not advance")


def test_page_validation_an_answer_about_another_account_is_not_stored(
    fc: EmulatedFC, standin: StandIn, rig: TaskRig
) -> None:
    account_id = fc.create_account(transactions=3)
    other = fc.control.account(fc.create_account(transactions=3))
    standin.rewrite_account = lambda _: other

    result = track_account_task.apply(kwargs={"account_id": account_id})
    assert result.state == "FAILURE"
    assert isinstance(result.result, InvalidStripeResponse)
    assert f"asked about account {account_id}, got account {other['id']}" in str(result.result)
    assert_only_the_failure_is_recorded(rig, account_id)


def test_page_validation_an_account_with_a_malformed_refresh_is_not_stored(
    fc: EmulatedFC, standin: StandIn, rig: TaskRig
) -> None:
    account_id = fc.create_account(transactions=3)

    def stringly_timestamps(account: Any) -> Any:
        refresh = {"id": "fctxnref_x", "status": "succeeded", "last_attempted_at": "yesterday"}
        return {**account, "transaction_refresh": refresh}

    standin.rewrite_account = stringly_timestamps
    result = track_account_task.apply(kwargs={"account_id": account_id})
    assert isinstance(result.result, InvalidStripeResponse)
    assert "transaction_refresh: `last_attempted_at` must be an integer" in str(result.result)
    assert_only_the_failure_is_recorded(rig, account_id)


def assert_only_the_failure_is_recorded(rig: TaskRig, account_id: str) -> None:
    """A failed track leaves one untracked row saying why (so `fcsync status` can show it) and
    nothing of the refused answer: no other account, no mirrored field, no refresh."""
    with Session(rig.engine) as session:
        [account] = session.scalars(select(Account)).all()
        assert (account.id, account.tracked, account.status) == (account_id, False, "unknown")
        assert account.last_error_code == "invalid_stripe_response"
        assert not account.institution_name and account.refresh_id is None
        assert session.scalar(select(func.count()).select_from(Refresh)) == 0
