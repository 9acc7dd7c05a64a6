"""Reconciliation on a real stack (worker and beat on Redis and PostgreSQL): beat's sweep gives
each synced account its slot, and when the slot comes (the emulator's clock moved one
FCSYNC_RECONCILE_INTERVAL_S on) it sends the reconciliation, which puts back rows deleted from
the database, rewrites rows corrupted there, marks the pending row Stripe dropped as vanished
(status and /metrics say so), and leaves every account's cursor where the syncs put it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete, select, update

from models import Account, Refresh, Transaction
from worker.playground.convergence import StackFailure
from worker.playground.emulator_env import free_port
from worker.playground.stack import Stack, StackOptions
from worker.reconcile import next_slot
from worker.reports import account_status

pytestmark = [pytest.mark.integration, pytest.mark.redis, pytest.mark.postgres]

# The shortest period the setting takes; the emulator's clock moves it on in one call.
INTERVAL_S = 3_600
# The first account is the one damaged; its last three days hold pending rows (seed 7).
BANK = [{"transactions": 300}, {"transactions": 40}]
# The backfill's wait includes the processes' start: 25 s at a load average of 15 on 2 cores.
BACKFILL_TIMEOUT_S = 90.0
TIMEOUT_S = 30.0
# No slot may come before the rows are damaged: from tracking to then takes at most the waits
# above (the emulator's clock runs with the wall's).
CLEAR_S = 600
REFRESH_POST = "POST /v1/financial_connections/accounts/{account}/refresh"
# Every column that holds or leads to a cursor: a reconciliation moves none of them.
CURSOR = (
    Account.cursor_refresh_id,
    Account.cursor_refresh_at,
    Account.last_synced_at,
    Account.sync_target_refresh_id,
    Account.sync_after_refresh_id,
    Account.sync_starting_after,
    Account.sync_lease_owner,
)


def until(stack: Stack, what: str, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not done():
        stack.check_alive()
        if time.monotonic() > deadline:
            raise StackFailure(f"{what} after {TIMEOUT_S:.0f}s")
        time.sleep(0.2)


def clear_of_slots(stack: Stack) -> None:
    """Move the emulator's clock on until no account's slot comes within CLEAR_S (a slot is a
    hash of the account's id, the clock's start the wall's: about a third of runs need it)."""
    while True:
        now = datetime.fromtimestamp(stack.ctl.now(), tz=UTC)
        soonest = min(next_slot(a, after=now, interval_s=INTERVAL_S) for a in stack.accounts)
        if soonest - now > timedelta(seconds=CLEAR_S):
            return
        stack.ctl.advance(CLEAR_S)


def column(stack: Stack, attribute: Any) -> dict[str, Any]:
    with stack.session() as session:
        return dict(session.execute(select(Account.id, attribute)).all())


def cursors(stack: Stack) -> dict[str, Any]:
    with stack.session() as session:
        accounts = session.execute(select(Account.id, *CURSOR))
        refreshes = session.execute(select(Refresh.id, Refresh.status, Refresh.synced_at))
        return {
            "accounts": {row[0]: tuple(row[1:]) for row in accounts},
            "refreshes": {tuple(row) for row in refreshes},
        }


def reconcile_metrics(port: int) -> dict[tuple[str, str], float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (sample.name, next(iter(sample.labels.values()))): sample.value
        for family in text_string_to_metric_families(text)
        if family.name in ("fcsync_reconcile_rows", "fcsync_reconciles")
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def test_beat_reconciles_each_account_in_its_slot_and_repairs_without_moving_the_cursor(
    stack_options: StackOptions,
) -> None:
    port = free_port()
    options = replace(
        stack_options,
        webhooks=False,
        env={
            "FCSYNC_RECONCILE_INTERVAL_S": str(INTERVAL_S),
            # The sweep every 5 beat periods: every 2 s.
            "FCSYNC_BEAT_INTERVAL_S": "0.4",
            "FCSYNC_EVENTS_SWEEP_S": "0",
            "FCSYNC_METRICS_PORT": str(port),
        },
    )
    with Stack(options, BANK) as stack:
        damaged, intact = stack.accounts
        clear_of_slots(stack)
        stack.track_all()
        stack.converge("backfill", timeout_s=BACKFILL_TIMEOUT_S)
        # A newly synced account gets its slot in the coming period, not a run.
        until(
            stack,
            "no reconciliation slot given",
            lambda: None not in column(stack, Account.next_reconcile_at).values(),
        )
        slots = column(stack, Account.next_reconcile_at)
        assert set(column(stack, Account.reconciled_at).values()) == {None}

        now = stack.ctl.now()
        with stack.session() as session, session.begin():
            recent = session.scalars(
                select(Transaction)
                .where(Transaction.account_id == damaged, Transaction.status == "posted")
                .order_by(Transaction.transacted_at.desc())
                .limit(4)
            ).all()
            # Inside the window the reconciliation re-reads (FCSYNC_RECONCILE_DAYS, 30).
            assert all(t.transacted_at > now - 29 * 86_400 for t in recent)
            lost, corrupted = [t.id for t in recent[:2]], [t.id for t in recent[2:]]
            session.execute(delete(Transaction).where(Transaction.id.in_(lost)))
            session.execute(
                update(Transaction)
                .where(Transaction.id.in_(corrupted))
                .values(amount=Transaction.amount + 1, description="edited by hand")
            )
            dropped = session.scalars(
                select(Transaction.id).where(
                    Transaction.account_id == damaged, Transaction.status == "pending"
                )
            ).first()
        assert len(lost + corrupted) == 4 and dropped is not None, "the bank holds no such rows"
        stack.ctl.drop_transaction(dropped)
        before = cursors(stack)
        refresh_posts = stack.ctl.stats()["requests"].get(REFRESH_POST, 0)

        # One period on, every account's slot has come.
        stack.ctl.advance(INTERVAL_S)
        until(
            stack,
            "beat did not reconcile every account",
            lambda: None not in column(stack, Account.reconciled_at).values(),
        )

        problems = stack.problems()
        # Stripe no longer lists the dropped row; it is kept, marked vanished.
        assert problems == [f"{damaged}: unexpected {dropped}"], problems
        with stack.session() as session:
            row = session.get(Transaction, dropped)
            assert row is not None and row.status == "pending" and row.vanished_at is not None
            status = {s["id"]: s for s in account_status(session, now=row.vanished_at)}
        repaired = {
            a: (s["reconcile_inserted"], s["reconcile_updated"], s["reconcile_vanished"])
            for a, s in status.items()
        }
        assert repaired == {damaged: (2, 2, 1), intact: (0, 0, 0)}
        assert reconcile_metrics(port) == {
            ("fcsync_reconcile_rows_total", "inserted"): 2.0,
            ("fcsync_reconcile_rows_total", "updated"): 2.0,
            ("fcsync_reconcile_rows_total", "vanished"): 1.0,
            ("fcsync_reconciles_total", "reconciled"): 2.0,
        }
        # Each account once, by the sweep, its slot a period on; the cursor never moved.
        moved = column(stack, Account.next_reconcile_at)
        assert all((moved[a] - slots[a]).total_seconds() == INTERVAL_S for a in stack.accounts)
        log = (options.workdir / "logs" / "worker.log").read_text()
        assert log.count("fcsync.reconcile_account[") == 2 * len(stack.accounts), "run twice"
        assert dropped in log
        assert cursors(stack) == before
        assert stack.ctl.stats()["requests"].get(REFRESH_POST, 0) == refresh_posts
