"""Acceptance of the sync engine: real `celery worker` and `celery beat` processes on Redis (the
first test on RabbitMQ too) and PostgreSQL, driven by the emulator's clock through three days of
Stripe's daily refreshes, keep every account's `transactions` equal to Stripe's truth without
ever refreshing too early or moving a cursor to a failed refresh — with webhooks, without them,
and with duplicated and reordered webhooks — at about one Stripe request per account per day
once backfilled."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from typing import Any

import pytest

from models import Refresh
from tests.brokers import on_brokers
from worker.playground.measures import PAGE, WITHOUT_RECONCILE, requests_between
from worker.playground.stack import Phase, Stack, StackOptions

pytestmark = [pytest.mark.integration, pytest.mark.redis, pytest.mark.postgres]

ACCOUNTS = 50
DAYS = 3
BACKFILL_TIMEOUT_S = 90.0
DAY_TIMEOUT_S = 60.0
TRANSACTIONS_LIST = "GET /v1/financial_connections/transactions"


# Five accounts fail half their refreshes (scenarios 1-3), and five others are tracked without
# Stripe's subscription, so beat refreshes them daily through fcsync's gate.
FLAKY = frozenset(range(3, ACCOUNTS, 10))
UNSUBSCRIBED = frozenset(range(7, ACCOUNTS, 10))
REFRESH_POST = "POST /v1/financial_connections/accounts/{account}/refresh"


def bank(*, flaky: bool) -> list[dict[str, Any]]:
    """50 small accounts: 1 to 300 rows (100 and 200 sit on page boundaries)."""
    sizes = [100, 200, 1, 300] + [20 + (i * 53) % 281 for i in range(ACCOUNTS - 4)]
    return [
        {"transactions": n, **({"failure_rate": 0.5} if flaky and i in FLAKY else {})}
        for i, n in enumerate(sizes)
    ]


@pytest.fixture
def options(stack_options: StackOptions) -> StackOptions:
    return stack_options


def run_scenario(stack: Stack, *, unsubscribed: frozenset[int] = UNSUBSCRIBED) -> None:
    stack.track_all(unsubscribed=unsubscribed)
    stack.converge("backfill", timeout_s=BACKFILL_TIMEOUT_S)
    stack.run_days(DAYS, timeout_s=DAY_TIMEOUT_S)
    print(", ".join(f"{p.name} {p.elapsed_s:.1f}s" for p in stack.phases))


def assert_db_equals_truth(stack: Stack) -> None:
    problems = stack.problems()
    assert not problems, "\n".join(problems[:40])


def assert_gate_exercised(stack: Stack) -> None:
    """fcsync itself asked for refreshes (beat, for the unsubscribed accounts), every one of
    them allowed: `problems()` already holds Stripe to 0 gating violations."""
    posts = stack.ctl.stats()["requests"].get(REFRESH_POST, 0)
    assert posts >= len(UNSUBSCRIBED) * (DAYS + 1), posts


def failed_refreshes(stack: Stack) -> int:
    return sum(
        status == "failed"
        for account_id in stack.accounts
        for status in stack.emulator_refreshes(account_id).values()
    )


# On RabbitMQ under `make chaos`; `make test` runs the rate-limit scenario there.
@pytest.mark.parametrize("broker", on_brokers(long=("rabbitmq",)))
def test_end_to_end_with_webhooks_keeps_50_accounts_equal_to_stripe(
    options: StackOptions,
) -> None:
    with Stack(options, bank(flaky=True)) as stack:
        run_scenario(stack)
        assert_db_equals_truth(stack)
        assert_gate_exercised(stack)
        # The cursor rule was exercised: some refreshes failed, none became a cursor.
        assert failed_refreshes(stack) > 0
        stats = stack.ctl.stats()
        assert stats["webhooks"]["sent"] > 0
        # The emulator enforces Stripe's 25 requests/s: the workers' shared budget in Redis
        # kept the whole fleet under it, through the 50-account backfill.
        assert stats["rate_limited"] == 0


# `make test` covers lost webhooks with the webhook-faults scenario (half of them dropped).
@pytest.mark.long
def test_end_to_end_poll_only_reaches_the_same_state(options: StackOptions) -> None:
    poll_only = replace(
        options,
        webhooks=False,
        # No webhook announces Stripe's daily refresh, so beat reads the account as soon as
        # the day is up (the default grace waits two hours for a webhook that never comes).
        env={"FCSYNC_SUBSCRIPTION_GRACE_S": "0"},
    )
    with Stack(poll_only, bank(flaky=True)) as stack:
        run_scenario(stack)
        assert_db_equals_truth(stack)
        assert_gate_exercised(stack)
        assert failed_refreshes(stack) > 0
        stats = stack.ctl.stats()
        assert not any(stats["webhooks"].values()), stats["webhooks"]


# `make test` covers this with the webhook-faults scenario (copies x3, reordered, late).
@pytest.mark.long
def test_end_to_end_duplicated_reordered_webhooks_sync_each_refresh_once(
    options: StackOptions,
) -> None:
    noisy = replace(
        options,
        faults={"webhook_duplicate_rate": 0.5, "webhook_reorder": True},
        # Each sync's listings and counts are exact: no reconciliation lists or repairs beside.
        env={**options.env, **WITHOUT_RECONCILE},
    )
    with Stack(noisy, bank(flaky=True)) as stack:
        run_scenario(stack)
        assert_db_equals_truth(stack)
        problems, pages = once_per_refresh(stack)
        assert not problems, "\n".join(problems[:40])
        # Every sync after the backfill costs exactly the pages its refresh changed: a
        # duplicate or reordered webhook never triggered a second listing.
        listed = requests_between(stack.phase("backfill"), stack.phases[-1], TRANSACTIONS_LIST)
        assert listed == pages
        assert_gate_exercised(stack)
        stats = stack.ctl.stats()
        emitted = sum(
            e["type"].endswith("refreshed_transactions") for e in stack.emulator.bank.events
        )
        # Duplicates really were delivered: more deliveries than events.
        assert stats["webhooks"]["sent"] > emitted


def once_per_refresh(stack: Stack) -> tuple[list[str], int]:
    """Each succeeded refresh was synced, and its counts are exactly the rows it created and
    changed (a second sync would have re-counted or re-listed). Returns the problems and how
    many list pages the syncs after the backfill needed."""
    start = Phase(
        "start",
        stats={"requests": {}},
        truth={a: {} for a in stack.accounts},
        refresh=dict.fromkeys(stack.accounts),
        elapsed_s=0.0,
    )
    window = [start, *stack.phases]
    problems: list[str] = []
    pages = 0
    with stack.session() as session:
        for before, after in itertools.pairwise(window):
            for account_id in stack.accounts:
                new = after.refresh[account_id]
                old = before.refresh[account_id]
                if new is None or new["status"] != "succeeded":
                    continue
                if old is not None and old["id"] == new["id"]:
                    continue
                was, now = before.truth[account_id], after.truth[account_id]
                inserted = sum(1 for i in now if i not in was)
                updated = sum(1 for i, u in now.items() if i in was and was[i] != u)
                if after.name != "backfill":
                    pages += max(1, math.ceil((inserted + updated) / PAGE))
                row = session.get(Refresh, new["id"])
                if row is None or row.synced_at is None:
                    problems.append(f"{after.name} {account_id}: {new['id']} never synced")
                elif (row.inserted, row.updated) != (inserted, updated):
                    problems.append(
                        f"{after.name} {account_id}: {new['id']} counted "
                        f"{row.inserted}/{row.updated}, Stripe changed {inserted}/{updated}"
                    )
    return problems, pages


# A minute of three emulated days; `bench steady_state` measures the same bound.
@pytest.mark.long
def test_steady_state_costs_one_request_per_account_per_day(options: StackOptions) -> None:
    with Stack(options, bank(flaky=False)) as stack:
        run_scenario(stack, unsubscribed=frozenset())
        assert_db_equals_truth(stack)
        report = stack.steady_state("day 1", f"day {DAYS}")
        print(f"steady state: {report}")
        # Stripe's daily refresh arrives by webhook: one listing per account and day, plus a
        # page per 100 changed rows, and nothing else.
        assert report["requests"] <= report["bound_requests"], report
        assert report["requests_per_account_day"] <= report["bound"], report
