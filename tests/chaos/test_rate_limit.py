"""Scenario 5, rate limit: a hundred small accounts tracked at once (8 in `make test`), so all
of them are due together, on two workers of two processes each. fcsync's one budget in Redis,
kept under Stripe's limit, holds Stripe's 429s under 1% of its requests."""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.chaos.conftest import NewOptions
from tests.chaos.scenario import Run, Scenario, full_load, matrix, run_scenario

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.redis, pytest.mark.postgres]

# `make chaos`: what the issue names, a hundred accounts due at once against Stripe's test-mode
# limit of 25/s with fcsync's budget at 20/s (four requests an account: about 20 s a run).
# `make test`: eight accounts with both scaled down by five (the same 80% margin), because pool
# processes on a busy two-core machine do not outrun 25/s: there, with the budget raised to
# 50/s, no 429 came, so only the scaled run can fail when the budget does not hold.
ACCOUNTS, STRIPE_RPS, FCSYNC_RPS = (100, 25, 20) if full_load() else (8, 5, 4)
# Stripe's 429s as a share of every request fcsync sent: a budget below Stripe's limit leaves
# only the odd request that reached Stripe late enough to bunch with the next second's.
MAX_RATE_LIMITED = 0.01


def accounts(rng: random.Random) -> list[dict[str, Any]]:
    # A few rows each: one page per account, so the run measures pacing, not paging.
    return [{"transactions": rng.randrange(1, 12)} for _ in range(ACCOUNTS)]


def script(run: Run) -> None:
    stack = run.stack
    # Stripe's limit, in both runs: it is no fault, the load against it is.
    stack.ctl.set_faults(requests_per_second=STRIPE_RPS)
    # A second worker beside the stack's own: four pool processes share one budget.
    stack.start_worker("second")
    stack.track_all()
    if run.faulty:
        run.injected["accounts_due_at_once"] = ACCOUNTS
    stack.converge("backfill", timeout_s=60 + ACCOUNTS * 4 / FCSYNC_RPS)
    stats = stack.ctl.stats()
    sent = sum(stats["requests"].values())
    assert stats["rate_limited"] < MAX_RATE_LIMITED * sent, (
        f"{stats['rate_limited']} of {sent} requests were answered 429 "
        f"(bound {MAX_RATE_LIMITED:.0%})"
    )


RATE_LIMIT = Scenario(
    name="rate_limit",
    accounts=accounts,
    script=script,
    env={"FCSYNC_REQUESTS_PER_SECOND": str(FCSYNC_RPS)},
    # Nothing fails on purpose, so the faulty run repeats the baseline's requests; the odd 429
    # or a poll more while requests queue for the budget is all that may differ.
    factor=1.2,
    concurrency=2,
)


# RabbitMQ in `make test` (the budget is in Redis either way); both brokers in `make chaos`.
@pytest.mark.parametrize(("broker", "seed"), matrix([1], ("rabbitmq",)))
def test_chaos_rate_limit_keeps_429s_rare(new_options: NewOptions, broker: str, seed: int) -> None:
    outcome = run_scenario(RATE_LIMIT, new_options, seed, broker=broker)
    assert not outcome.failures(), "\n".join(outcome.failures())
