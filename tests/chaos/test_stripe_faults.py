"""Scenario 3, Stripe faults: 500s, 429s, latency spikes and dropped connections (the reply
lost after Stripe acted, so a retried refresh POST is replayed through its idempotency key)
while ten accounts backfill and live two days, three of them refreshed through fcsync's gate."""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.chaos.conftest import NewOptions
from tests.chaos.scenario import Run, Scenario, matrix, run_scenario

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.redis, pytest.mark.postgres]

REFRESH_POST = "POST /v1/financial_connections/accounts/{account}/refresh"
BEAT_REFRESHED = {7, 8, 9}


def accounts(rng: random.Random) -> list[dict[str, Any]]:
    return [
        {"transactions": rng.randrange(20, 400), **({"failure_rate": 0.3} if i < 2 else {})}
        for i in range(10)
    ]


def script(run: Run) -> None:
    run.stack.track_all(unsubscribed=BEAT_REFRESHED)
    run.stack.converge("backfill", timeout_s=90)
    run.stack.run_days(2, timeout_s=60)
    if run.faulty:
        requests = run.stack.ctl.stats()["requests"]
        # The beat-refreshed accounts were refreshed each day under the storm.
        assert requests.get(REFRESH_POST, 0) >= 2 * len(BEAT_REFRESHED), requests


STRIPE_FAULTS = Scenario(
    name="stripe_faults",
    accounts=accounts,
    script=script,
    faults={
        "server_error_rate": 0.2,
        "rate_limit_rate": 0.1,
        "drop_connection_rate": 0.1,
    },
    # Dropped webhooks are not this scenario's: beat reads each account once its day is up.
    env={"FCSYNC_SUBSCRIPTION_GRACE_S": "0"},
    # 40% of requests fail once: retries cost about 1/(1-0.4) = 1.7x, plus polls while backing off.
    factor=2.5,
)


@pytest.mark.parametrize(("broker", "seed"), matrix([2], ("redis", "rabbitmq")))
def test_chaos_stripe_faults_end_equal_to_truth(
    new_options: NewOptions, broker: str, seed: int
) -> None:
    outcome = run_scenario(STRIPE_FAULTS, new_options, seed, broker=broker)
    assert not outcome.failures(), "\n".join(outcome.failures())
    assert outcome.faults_by_kind.get("server_errors", 0) > 0
    assert outcome.faults_by_kind.get("dropped_connections", 0) > 0
