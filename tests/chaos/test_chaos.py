"""Seeded, bounded chaos on the real stack (Redis broker, PostgreSQL, worker, beat, webhook
receiver): a worker killed with SIGKILL in the middle of a backfill, and storms of 429s, 500s,
lost replies and dropped webhooks. Whatever happens, the database ends equal to Stripe's truth
and no refresh is ever requested too early.

By default a small subset runs (one seed per test, well under 90 s together);
FCSYNC_CHAOS_SEEDS=N runs every test with seeds 1..N."""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import func, select

from models import Account, Transaction
from worker.playground.measures import PAGE, changed
from worker.playground.stack import Stack, StackFailure, StackOptions

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.redis, pytest.mark.postgres]

TRANSACTIONS_LIST = "GET /v1/financial_connections/transactions"
REFRESH_POST = "POST /v1/financial_connections/accounts/{account}/refresh"


def chaos_seeds(default: list[int]) -> list[int]:
    wanted = os.environ.get("FCSYNC_CHAOS_SEEDS", "").strip()
    return list(range(1, int(wanted) + 1)) if wanted else default


@pytest.fixture
def options(stack_options: StackOptions) -> StackOptions:
    # Small leases and sweeps in emulator seconds, so recovery fits in a test.
    return replace(
        stack_options,
        env={
            "FCSYNC_SYNC_LEASE_S": "5",
            "FCSYNC_STALE_PENDING_S": "5",
            "FCSYNC_PAGES_PER_RUN": "2",
        },
    )


def assert_db_equals_truth(stack: Stack) -> None:
    problems = stack.problems()
    assert not problems, "\n".join(problems[:40])


def _stored_rows(stack: Stack, account_id: str) -> tuple[int, bool]:
    with stack.session() as session:
        n = session.scalar(
            select(func.count())
            .select_from(Transaction)
            .where(Transaction.account_id == account_id)
        )
        row = session.get(Account, account_id)
        in_progress = row is not None and row.sync_target_refresh_id is not None
    return int(n or 0), in_progress


@pytest.mark.parametrize("seed", chaos_seeds([1]))
def test_chaos_worker_killed_mid_backfill_resumes_from_last_page(
    options: StackOptions, seed: int
) -> None:
    rng = random.Random(seed)
    large = rng.randrange(4_000, 6_000)
    specs: list[dict[str, Any]] = [{"transactions": large}]
    specs += [{"transactions": rng.randrange(20, 300)} for _ in range(4)]
    kill_at = rng.randrange(large // 10, large // 2)
    with Stack(replace(options, seed=seed), specs) as stack:
        big = stack.accounts[0]
        stack.track_all()
        deadline = time.monotonic() + 60
        while True:
            stack.check_alive()
            stored, in_progress = _stored_rows(stack, big)
            if stored >= kill_at and in_progress:
                break
            if time.monotonic() > deadline:
                raise StackFailure(f"backfill of {big} never reached {kill_at} rows ({stored})")
            time.sleep(0.02)
        stack.procs.kill("worker")
        at_kill, _ = _stored_rows(stack, big)
        assert at_kill < large, "the backfill finished before the kill; nothing was tested"
        # The killed worker's lease and its unacknowledged messages are gone with it: the new
        # worker must pick the sync up through lease expiry and the retry_failed_syncs sweep.
        stack.start_worker("worker-2")
        stack.converge("backfill", timeout_s=90)
        stack.run_days(1, timeout_s=60)
        assert_db_equals_truth(stack)
        # Resumed from its last committed page, not restarted: the listing cost is the pages
        # the data needs plus at most the pages in flight when the worker died.
        needed = sum(math.ceil(s["transactions"] / PAGE) for s in specs)
        day = stack.phase("day 1")
        needed += sum(
            max(1, math.ceil(changed(stack.phase("backfill"), day, a) / PAGE))
            for a in stack.accounts
        )
        listed = day.stats["requests"].get(TRANSACTIONS_LIST, 0)
        print(f"seed {seed}: killed at {at_kill}/{large} rows; listed {listed}, needed {needed}")
        assert needed <= listed <= needed + options.concurrency, (listed, needed)
