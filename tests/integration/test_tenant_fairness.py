"""Fairness between tenants: while one connected account (tenant A) backfills a large FC account,
another tenant's daily refresh is synced within a bound the design gives, on one worker slot.

Why the bound holds: a sync task's turn ends once FCSYNC_RUN_S has passed (the page being fetched
then is its last), then it re-enqueues itself at the back of the FIFO queue, so every other task
waits for at most the rest of A's current turn plus one whole turn per hop. A turn lasts
FCSYNC_RUN_S plus the page in flight at its end (fetched and written: two pages' time at A's
rate, to be safe). Tenant B's refresh takes two hops (the webhook's `handle_events` task, then
B's sync task), so B waits for at most HOPS_BOUND turns of A, plus the webhook's delivery and
B's own short sync (SLACK_S). The test measures A's page rate and asserts that B's lag in wall
seconds is within that bound, and that A stored no more pages meanwhile than those turns hold
at twice that rate; then that A's backfill still finished equal to Stripe's truth."""

from __future__ import annotations

import time

import pytest

from models import Account
from worker import contract, repository
from worker.playground.convergence import StackFailure, lag, wait_for
from worker.playground.stack import Stack, StackOptions

pytestmark = [pytest.mark.integration, pytest.mark.redis, pytest.mark.postgres]

TENANT_A = "acct_1FairBackfill"
TENANT_B = "acct_1FairRefresh"
PAGE = 100
# A turn short enough that A's backfill takes many of them (FCSYNC_RUN_S; 5 s by default).
RUN_S = 0.5
# Hops behind A: the rest of A's current turn (<= 1 turn), the webhook's task, B's sync task.
HOPS_BOUND = 3
# The webhook's delivery and receipt, the worker picking up the next message, B's own 2 pages.
SLACK_S = 5.0
B_ROWS = 150
STARTED_PAGES = 2
TIMEOUT_S = 240.0


def rows_of(stack: Stack, account_id: str) -> int:
    with stack.session() as session:
        return repository.count_transactions(session, account_id)


def cursor_of(stack: Stack, account_id: str) -> str | None:
    with stack.session() as session:
        row = session.get(Account, account_id)
        return None if row is None else row.cursor_refresh_id


def track(stack: Stack, account_id: str, tenant: str) -> None:
    """Track one account, subscribed to Stripe's daily refreshes, in its tenant's context."""
    stack.send(contract.TRACK_ACCOUNT, account_id=account_id, subscribe=True, stripe_account=tenant)


def in_sync(stack: Stack, account_id: str, previous: str | None = None) -> bool:
    with stack.session() as session:
        return lag(session, stack.ctl, account_id, previous) is None


@pytest.mark.parametrize(
    "a_rows", [20_000, pytest.param(100_000, marks=pytest.mark.long)], ids=["20k", "100k"]
)
def test_a_tenant_refresh_is_synced_within_a_bound_while_another_backfills(
    stack_options: StackOptions, a_rows: int
) -> None:
    # One slot: the worst case, where nothing but the queue's order lets B in.
    stack_options.concurrency = 1
    stack_options.env = {**stack_options.env, "FCSYNC_RUN_S": str(RUN_S)}
    specs = [
        {"transactions": a_rows, "stripe_account": TENANT_A},
        {"transactions": B_ROWS, "stripe_account": TENANT_B},
    ]
    with Stack(stack_options, specs) as stack:
        a, b = stack.accounts
        # B is an established tenant (backfilled); then A onboards, and its backfill gets under
        # way (some of its pages stored).
        track(stack, b, TENANT_B)
        wait_for(lambda: in_sync(stack, b), timeout=TIMEOUT_S, what="B's backfill")
        backfill_started = time.monotonic()
        track(stack, a, TENANT_A)
        wait_for(
            lambda: rows_of(stack, a) >= STARTED_PAGES * PAGE,
            timeout=TIMEOUT_S,
            what="A's backfill under way",
        )
        before = stack.ctl.account(b)["transaction_refresh"]["id"]
        # Stripe's daily refresh of B (and A, merged into its running sync).
        stack.advance_day()

        def b_succeeded() -> str | None:
            refresh = stack.ctl.account(b)["transaction_refresh"]
            ok = refresh["id"] != before and refresh["status"] == "succeeded"
            return refresh["id"] if ok else None

        refresh_id = wait_for(b_succeeded, timeout=TIMEOUT_S, interval=0.05, what="B's refresh")
        succeeded_at, a_rows_then = time.monotonic(), rows_of(stack, a)
        wait_for(
            lambda: cursor_of(stack, b) == refresh_id,
            timeout=TIMEOUT_S,
            interval=0.05,
            what="B's refresh synced",
        )
        stored_at, a_rows_after = time.monotonic(), rows_of(stack, a)
        b_lag_s = stored_at - succeeded_at
        a_pages_meanwhile = (a_rows_after - a_rows_then) / PAGE

        def a_done() -> bool:
            stack.check_alive()
            return rows_of(stack, a) >= a_rows and in_sync(stack, a)

        wait_for(a_done, timeout=TIMEOUT_S, interval=0.3, what="A's backfill")
        a_elapsed_s = time.monotonic() - backfill_started
        problems = stack.problems()
    assert not problems, "\n".join(problems[:40])
    # A's page rate over its whole backfill (conservative: includes start-up and B's turns).
    page_rate = a_rows / PAGE / a_elapsed_s
    turn_s = RUN_S + 2 / page_rate
    bound_s = HOPS_BOUND * turn_s + SLACK_S
    pages_bound = HOPS_BOUND * 2 * page_rate * turn_s
    print(
        f"\nfairness: A {a_rows} rows in {a_elapsed_s:.1f}s ({page_rate:.1f} pages/s, "
        f"a turn ~{turn_s:.2f}s); B's lag {b_lag_s:.2f}s (bound {bound_s:.2f}s), A's pages "
        f"stored meanwhile {a_pages_meanwhile:.0f} (bound {pages_bound:.0f})"
    )
    if a_pages_meanwhile > pages_bound or b_lag_s > bound_s:
        raise StackFailure(
            f"B waited {b_lag_s:.2f}s (bound {bound_s:.2f}s) while A stored "
            f"{a_pages_meanwhile:.0f} pages (bound {pages_bound:.0f})"
        )
    # Otherwise B's refresh came after A's backfill and the figures say nothing of fairness.
    assert a_rows_after < a_rows, "A's backfill ended before B's refresh was stored"
