"""Tracking through the real task code: a redelivered track is idempotent and still learns the
outcome of the refresh its first delivery started."""

from __future__ import annotations

from tasks.tracking import track_account_task
from tests.service.conftest import TaskRig
from tests.service.harness import EmulatedFC
from worker import contract


def test_tracking_redelivered_track_polls_the_pending_refresh(fc: EmulatedFC, rig: TaskRig) -> None:
    account_id = fc.create_account(transactions=20)
    first = track_account_task(account_id, subscribe=True)
    assert first["outcome"] == "subscribed"
    assert len(rig.take(contract.POLL_REFRESH)) == 1

    # The same message again (the worker died before acking): Stripe already subscribed it
    # and its refresh is still pending, so nothing is POSTed, but a poll is scheduled.
    again = track_account_task(account_id, subscribe=True)
    assert again == {
        "account": account_id,
        "outcome": "tracked",
        "subscribed": True,
        "missing_permissions": [],
    }
    (poll,) = rig.take(contract.POLL_REFRESH)
    assert poll.kwargs == {"account_id": account_id}
    assert fc.requests("POST /v1/financial_connections/accounts/{account}/subscribe") == 1
