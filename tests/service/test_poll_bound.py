"""A poll at the attempt bound (a long-pending refresh) keeps polling with a valid attempt and a
capped countdown, at the cost of a normal poll."""

from __future__ import annotations

import time

from freezegun import freeze_time

from tasks.refresh import MAX_POLL_ATTEMPT, poll_refresh_task, refresh_account_task
from tests.service.conftest import TaskRig
from tests.service.harness import EmulatedFC
from worker import contract


def test_poll_refresh_at_the_attempt_bound_schedules_a_valid_next_poll(
    fc: EmulatedFC, rig: TaskRig
) -> None:
    account_id = fc.create_account(transactions=3)
    with freeze_time(fc.now()):
        assert refresh_account_task(account_id, source="manual")["outcome"] == "started"
        rig.take(contract.POLL_REFRESH)

        started = time.thread_time()
        assert poll_refresh_task(account_id, attempt=MAX_POLL_ATTEMPT)["outcome"] == "pending"
        assert time.thread_time() - started < 1.0

    [poll] = rig.take(contract.POLL_REFRESH)
    # Never past the bound: the next poll must not fail as a bad argument.
    assert poll.kwargs == {"account_id": account_id, "attempt": MAX_POLL_ATTEMPT}
    settings = rig.runtime.settings
    assert poll.countdown is not None
    assert settings.fcsync_poll_initial_s <= poll.countdown <= settings.fcsync_poll_max_s
