"""Scenario 6, account lifecycle: a refresh that fails then succeeds, accounts deactivated,
reactivated and disconnected mid-run, and a cooldown of hours. While Stripe refuses an
account's refreshes, fcsync's own status report never calls it fresh and its cursor stays put;
a disconnected account is never asked for anything again and keeps the rows it had."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from models import Account
from tests.chaos.conftest import NewOptions
from tests.chaos.scenario import Run, Scenario, matrix, run_scenario
from worker.errors import ErrorCode
from worker.playground.convergence import wait_for
from worker.playground.emulator_env import DAY_S
from worker.playground.stack import Stack
from worker.reports import account_status

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.redis, pytest.mark.postgres]

HOUR_S = 3_600
# Account positions and what happens to each in the faulty run; the fifth only lives its days.
FLAKY, PAUSED, DISCONNECTED, COOLING = 0, 1, 2, 3
BEAT_REFRESHED = {COOLING}  # the cooldown gates fcsync's refreshes, not Stripe's daily ones
# Past the playground's hour of cooldown after a failure, so beat retries the failed refresh.
RETRY_AFTER_S = 2 * HOUR_S
# Longer than a day plus RETRY_AFTER_S: on day 2 the cooling account is stale and still refused.
LONG_COOLDOWN_S = 36 * HOUR_S
# How long (wall time) each refused window is watched: several beat ticks (1 s apart).
WATCH_S = 2.0


def accounts(rng: random.Random) -> list[dict[str, Any]]:
    return [{"transactions": rng.randrange(20, 150)} for _ in range(5)]


def cursors(stack: Stack, ids: list[str]) -> dict[str, str | None]:
    with stack.session() as session:
        return dict(
            session.execute(
                select(Account.id, Account.cursor_refresh_id).where(Account.id.in_(ids))
            ).all()
        )


def fcsync_sees(stack: Stack, account_id: str, **expected: Any) -> bool:
    with stack.session() as session:
        row = session.get(Account, account_id)
        return row is not None and all(getattr(row, k) == v for k, v in expected.items())


def synced_after_failure(stack: Stack, account_id: str) -> bool:
    """Stripe's latest refresh of the account succeeded after a failed one, and fcsync's
    cursor is on it."""
    refreshes = stack.emulator_refreshes(account_id)
    latest = list(refreshes)[-1]
    failed_before = "failed" in list(refreshes.values())[:-1]
    if not failed_before or refreshes[latest] != "succeeded":
        return False
    return cursors(stack, [account_id]).get(account_id) == latest


def watch_refused(stack: Stack, refused: Mapping[str, str]) -> None:
    """While Stripe refuses the `refused` accounts' refreshes (id -> the word fcsync's reason
    must name): sample fcsync's status report at Stripe's now and the cursors; none of them may
    be reported fresh, none of their cursors may move."""
    ids = list(refused)
    before = cursors(stack, ids)
    deadline = time.monotonic() + WATCH_S
    while True:
        now = datetime.fromtimestamp(stack.ctl.now(), tz=UTC)
        with stack.session() as session:
            report = {r["id"]: r for r in account_status(session, now=now) if r["id"] in refused}
        for account_id, cause in refused.items():
            row = report[account_id]
            reason = row["stale_reason"]
            assert reason is not None, f"{account_id} ({cause}) reported fresh: {row}"
            assert cause in reason, f"{account_id} ({cause}) reported stale for {reason!r}"
            assert row["cursor"] == before[account_id], (
                f"{account_id} ({cause}): cursor moved from {before[account_id]} to "
                f"{row['cursor']} while its refreshes were refused"
            )
        if time.monotonic() > deadline:
            return
        time.sleep(0.25)


def script(run: Run) -> None:
    stack, ctl = run.stack, run.stack.ctl
    flaky, paused, gone, cooling = (
        stack.accounts[i] for i in (FLAKY, PAUSED, DISCONNECTED, COOLING)
    )
    stack.track_all(unsubscribed=BEAT_REFRESHED)
    stack.converge("backfill", timeout_s=60)

    if run.faulty:
        # A few 429s on top (after the backfill, where they would only cost time): a refused
        # request never counts as a refresh, let alone a synced one.
        ctl.set_faults(rate_limit_rate=0.1, seed=run.seed)
        ctl.update_account(flaky, fail_next_refreshes=1)
        ctl.update_account(cooling, refresh_cooldown_s=LONG_COOLDOWN_S)
        ctl.set_account_status(paused, "inactive")
        ctl.set_account_status(gone, "disconnected")
        run.injected.update(["refresh_failed", "cooldown_hours", "deactivated", "disconnected"])
        # The events reach fcsync as webhooks; from then on it must leave `gone` alone.
        inactive = {"last_error_code": ErrorCode.ACCOUNT_INACTIVE}
        wait_for(
            lambda: (
                fcsync_sees(stack, paused, status="inactive", **inactive)
                and fcsync_sees(stack, gone, status="disconnected", **inactive)
            ),
            timeout=20,
            what="fcsync to park the deactivated and the disconnected account",
        )
    asked_gone = ctl.stats()["requests_by_account_route"].get(gone, {})
    # Stripe still lists a disconnected account's transactions and no refresh changes them any
    # more: the judge's comparison with the final truth is one with the truth at the disconnect.
    rows_at_disconnect = ctl.transactions(gone)

    # Day 1: the flaky account's refresh fails and is retried once its cooldown is over.
    stack.advance_day()
    if run.faulty:
        wait_for(
            lambda: fcsync_sees(
                stack,
                flaky,
                refresh_status="failed",
                refresh_id=ctl.account(flaky)["transaction_refresh"]["id"],
            ),
            timeout=20,
            what="fcsync to see the flaky account's refresh fail",
        )
        watch_refused(stack, {flaky: "failed", paused: "inactive", gone: "disconnected"})
    ctl.advance(RETRY_AFTER_S)
    if run.faulty:
        wait_for(
            lambda: synced_after_failure(stack, flaky),
            timeout=30,
            what="fcsync to retry the failed refresh and sync the one that succeeded",
        )
    stack.converge("day 1", timeout_s=40)

    # Day 2: the cooling account is a day old and refused for hours; the paused one comes back
    # (the day converges only once it has had a refresh again).
    stack.advance_day()
    if run.faulty:
        watch_refused(stack, {cooling: "cooling down", paused: "inactive", gone: "disconnected"})
        ctl.set_account_status(paused, "active")
        run.injected["reactivated"] += 1
    # A minute past the cooling account's cooldown, which began a few seconds into day 1.
    ctl.advance(LONG_COOLDOWN_S - DAY_S - RETRY_AFTER_S + 60)
    stack.converge("day 2", timeout_s=40)

    if run.faulty:
        stats = ctl.stats()
        assert stats["inactive_refreshes"] == 0, (
            f"{stats['inactive_refreshes']} refreshes asked of an inactive or disconnected account"
        )
        asked = Counter(stats["requests_by_account_route"].get(gone, {})) - Counter(asked_gone)
        assert not asked, f"Stripe requests for {gone} after fcsync saw it disconnected: {asked}"
        assert ctl.transactions(gone) == rows_at_disconnect


LIFECYCLE = Scenario(
    name="lifecycle",
    accounts=accounts,
    script=script,
    # The 429s' retries, the retry of the failed refresh, the reactivated account's refresh and
    # the webhook handlers' reads, against the refreshes the disconnected and the paused account
    # never ask for: measured 1.15x without 429s.
    factor=2.0,
)


@pytest.mark.parametrize(("broker", "seed"), matrix([3]))
def test_chaos_lifecycle_never_fresh_while_refused(
    new_options: NewOptions, broker: str, seed: int
) -> None:
    outcome = run_scenario(LIFECYCLE, new_options, seed, broker=broker)
    assert not outcome.failures(), "\n".join(outcome.failures())
    lifecycle = {k: n for k, n in outcome.faults_by_kind.items() if k != "rate_limited"}
    assert lifecycle == {
        "refresh_failed": 1,
        "cooldown_hours": 1,
        "deactivated": 1,
        "reactivated": 1,
        "disconnected": 1,
    }
