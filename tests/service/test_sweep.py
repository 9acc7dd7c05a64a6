"""Beat's due sweep through its task: a backlog goes out in batches of FCSYNC_SWEEP_BATCH, every
due account sent once while its claim holds (its task in flight), and again once the claim runs
out (the message was lost)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from tasks.refresh import refresh_due_accounts_task
from tasks.tracking import track_account_task
from tests.service.conftest import TaskRig
from tests.service.harness import EmulatedFC, FixedClock
from worker import contract


def sweep(rig: TaskRig) -> list[str]:
    """One beat sweep: the accounts it sent a refresh for."""
    enqueued = refresh_due_accounts_task()["enqueued"]
    sent = rig.take(contract.REFRESH_ACCOUNT)
    assert all(f.kwargs["source"] == "beat" and f.countdown is None for f in sent)
    assert len(sent) == enqueued
    return [f.kwargs["account_id"] for f in sent]


def test_sweep_sends_a_backlog_once_each_until_its_claims_run_out(
    fc: EmulatedFC, rig: TaskRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FixedClock(fc.now())
    monkeypatch.setattr(rig.runtime, "clock", clock)
    accounts = [fc.create_account(transactions=1) for _ in range(7)]
    for account_id in accounts:
        assert track_account_task(account_id, subscribe=False)["outcome"] == "tracked"
    rig.sent.clear()
    settings = rig.runtime.settings.model_copy(update={"fcsync_sweep_batch": 3})
    monkeypatch.setattr(rig.runtime, "settings", settings)
    claim_s = max(settings.fcsync_failed_refresh_retry_s, settings.fcsync_beat_interval_s)

    # The backlog in batches: every account sent, none twice, while the tasks are in flight.
    batches = [sweep(rig) for _ in range(4)]
    assert [len(b) for b in batches] == [3, 3, 1, 0]
    sent = Counter(a for b in batches for a in b)
    assert sent == Counter(accounts)

    # No task reported back (lost): nothing is sent again before the claim runs out...
    clock.current += timedelta(seconds=claim_s - 1)
    assert sweep(rig) == []
    # ...and every account once more when it has.
    clock.current += timedelta(seconds=1)
    again = Counter(a for _ in range(3) for a in sweep(rig))
    assert again == Counter(accounts)
    assert fc.refresh_posts() == 0  # the sweep itself asks Stripe nothing
