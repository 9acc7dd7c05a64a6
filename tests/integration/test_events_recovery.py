"""No event missed, on a real stack (worker, beat, receiver on Redis and PostgreSQL): with the
receiver down for a stretch of emulated hours while Stripe's daily refreshes happen, the events
sweep reads every refresh's event back and the rows equal Stripe's, with no refresh requested;
with every webhook and every event lost (no endpoint, no sweep), beat's reconciliation of
account state still converges, and the test states how long that takes in emulated time."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import func, select

from models import Account, WebhookEvent
from worker.inbox import REFRESHED_TRANSACTIONS
from worker.playground.emulator_env import DAY_S
from worker.playground.stack import Stack, StackFailure, StackOptions

pytestmark = [pytest.mark.integration, pytest.mark.redis, pytest.mark.postgres]

# Small subscribed accounts: Stripe refreshes them daily on its own, and only an event (or
# beat's reconciliation) tells fcsync a refresh happened.
BANK = [{"transactions": n} for n in (1, 40, 120, 250)]
REFRESH_POST = "POST /v1/financial_connections/accounts/{account}/refresh"
HOUR_S = 3_600
TIMEOUT_S = 30.0


def refresh_posts(stack: Stack) -> int:
    return int(stack.ctl.stats()["requests"].get(REFRESH_POST, 0))


def assert_db_equals_truth(stack: Stack) -> None:
    problems = stack.problems()
    assert not problems, "\n".join(problems[:40])


def test_events_sweep_recovers_every_refresh_of_a_receiver_outage(
    stack_options: StackOptions,
) -> None:
    options = replace(
        stack_options,
        env={
            "FCSYNC_EVENTS_SWEEP_S": "2",
            # Beat's reconciliation of subscribed accounts would step in only days later: the
            # events sweep is the only way fcsync can learn of the outage's refreshes.
            "FCSYNC_SUBSCRIPTION_GRACE_S": str(2 * DAY_S),
        },
    )
    with Stack(options, BANK) as stack:
        stack.track_all()
        stack.converge("backfill", timeout_s=TIMEOUT_S)
        posts = refresh_posts(stack)
        failed_before = stack.ctl.stats()["webhooks"]["failed"]
        outage_start = stack.ctl.now()
        stack.procs.kill("webhooks")  # the receiver is down: every delivery fails
        for _ in range(5):  # 30 emulated hours, Stripe's daily refreshes among them
            stack.ctl.advance(6 * HOUR_S)
        stack.converge("outage", timeout_s=TIMEOUT_S)

        assert_db_equals_truth(stack)
        assert refresh_posts(stack) == posts, "fcsync asked for a refresh"
        webhooks = stack.ctl.stats()["webhooks"]
        assert webhooks["failed"] > failed_before, webhooks
        outage = stack.phase("outage").refresh
        with stack.session() as session:
            refreshed = set(
                session.scalars(
                    select(WebhookEvent.account_id).where(
                        WebhookEvent.type == REFRESHED_TRANSACTIONS,
                        WebhookEvent.created > outage_start,
                        WebhookEvent.processed_at.is_not(None),
                    )
                )
            )
            cursors = dict(session.execute(select(Account.id, Account.cursor_refresh_id)).all())
        # Every account's outage refresh reached the inbox (only the sweep could store it) and
        # became its cursor.
        assert refreshed == set(stack.accounts)
        assert cursors == {a: r["id"] for a, r in outage.items() if r is not None}


STEP_S = 20 * 60


# Half a minute of emulated hours: `make chaos` runs it; in `make test` the outage test above
# covers the sweep, and the chaos webhook-faults scenario beat's recovery of lost webhooks.
@pytest.mark.long
def test_beat_reconciles_when_every_webhook_and_event_is_lost(
    stack_options: StackOptions,
) -> None:
    """No endpoint and no events sweep: only beat's reading of overdue subscribed accounts
    (FCSYNC_SUBSCRIPTION_GRACE_S after the daily refresh was due, default two hours) learns of
    Stripe's refreshes. The clock moves in 20-minute steps, each given a few seconds of beat."""
    options = replace(stack_options, webhooks=False, env={"FCSYNC_EVENTS_SWEEP_S": "0"})
    with Stack(options, BANK) as stack:
        stack.track_all()
        stack.converge("backfill", timeout_s=TIMEOUT_S)
        stack.advance_day()
        waited_s = 0
        while True:
            try:
                stack.converge("reconciled", timeout_s=4)
                break
            except StackFailure:
                assert waited_s < 6 * HOUR_S, "beat never reconciled"
                stack.ctl.advance(STEP_S)
                waited_s += STEP_S
        assert_db_equals_truth(stack)
        assert not any(stack.ctl.stats()["webhooks"].values())
        assert stack.ctl.stats()["requests"].get("GET /v1/events", 0) == 0
        with stack.session() as session:
            lags = [
                int(synced.timestamp()) - int(attempted)
                for synced, attempted in session.execute(
                    select(Account.last_synced_at, Account.cursor_refresh_at)
                )
            ]
            inbox = session.scalar(select(func.count()).select_from(WebhookEvent))
        assert inbox == 0
        # From each Stripe refresh to its rows stored, in emulated time: the grace, then at
        # most one 20-minute step (the step in which beat found the account overdue).
        print(f"reconciled after {waited_s} s of emulated waiting; per-account lag {lags}")
        assert all(2 * HOUR_S <= lag <= 2 * HOUR_S + STEP_S + 60 for lag in lags), lags
