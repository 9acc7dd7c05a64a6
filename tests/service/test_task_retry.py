"""A task that runs out of the shared Stripe request budget retries no sooner than the budget
says it refills, not after the short first backoff."""

from __future__ import annotations

from typing import Any

from celery.exceptions import Retry
from celery.signals import task_retry

from tasks.tracking import track_account_task
from tests.service.conftest import TaskRig
from tests.service.harness import EmulatedFC
from worker.ratelimit import LocalTokenBucket
from worker.runtime import Runtime, bound
from worker.stripe_gateway import gateway_from_settings

# One request, then the next token is 1 / rate seconds away: far past the first backoff (2 s).
RATE = 0.01


def test_task_retry_waits_as_long_as_the_rate_limit_says(fc: EmulatedFC, rig: TaskRig) -> None:
    account_id = fc.create_account(transactions=3)
    budget = LocalTokenBucket(rate=RATE, burst=1, max_wait_s=0)
    limited = gateway_from_settings(fc.settings, limiter=budget)
    runtime = Runtime(fc.settings, send=rig.sent.append, engine=rig.engine, gateway=lambda: limited)

    waits: list[float] = []

    def on_retry(reason: Any = None, **_: Any) -> None:
        assert isinstance(reason, Retry)
        waits.append(float(reason.when))

    task_retry.connect(on_retry)
    try:
        with bound(runtime):
            # Retrieving the account takes the one token; subscribing finds the budget spent.
            result = track_account_task.apply(kwargs={"account_id": account_id})
    finally:
        task_retry.disconnect(on_retry)

    # Eagerly applied, the retries run at once and fail the same way until they are spent.
    assert result.state == "FAILURE"
    assert len(waits) == track_account_task.max_retries
    assert all(wait >= 0.9 / RATE for wait in waits), waits
