"""The sync task run in this process: bounded pages per run, re-enqueued until the account is
complete, with the cursor committed only together with the last page."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from models import Account
from tasks.sync import sync_transactions_task
from tests.service.conftest import TaskRig
from tests.service.harness import EmulatedFC
from worker import contract, repository
from worker.db import session_scope
from worker.records import Followup
from worker.runtime import bound, bound_runtime


def test_sync_task_account_with_more_pages_than_one_run_completes_across_reenqueued_runs(
    fc: EmulatedFC, rig: TaskRig
) -> None:
    rig.runtime.settings = fc.settings.model_copy(update={"fcsync_pages_per_run": 1})
    account_id = fc.create_account(transactions=250)
    with session_scope(rig.engine) as session:
        fc.track(session, account_id)
        polled = fc.refresh(session, account_id)
    assert polled.outcome == "succeeded"
    total = len(fc.truth(account_id))

    runs: list[dict[str, Any]] = []
    for intent in polled.intents:
        rig.runtime.dispatch(intent)
    queue: deque[Followup] = deque(rig.take(contract.SYNC_TRANSACTIONS))
    while queue:
        followup = queue.popleft()
        assert followup.task == contract.SYNC_TRANSACTIONS
        report = sync_transactions_task(**followup.kwargs)
        with session_scope(rig.engine) as session:
            account = session.get(Account, account_id)
            assert account is not None
            report["cursor"] = account.cursor_refresh_id
            report["stored"] = repository.count_transactions(session, account_id)
        runs.append(report)
        queue.extend(rig.take(contract.SYNC_TRANSACTIONS))
        assert len(runs) <= 10, runs

    assert len(runs) >= 3
    assert [r["pages"] for r in runs] == [1] * len(runs)
    assert [r["outcome"] for r in runs] == ["continued"] * (len(runs) - 1) + ["done"]
    # Each run committed its page; the cursor moved only with the last one.
    assert [r["stored"] for r in runs] == [min(100 * (i + 1), total) for i in range(len(runs))]
    assert [r["cursor"] for r in runs] == [None] * (len(runs) - 1) + [polled.refresh_id]
    assert rig.sent == []
    with Session(rig.engine) as session:
        assert fc.mismatches(session, account_id) == []


def refreshed_account(
    fc: EmulatedFC, rig: TaskRig, *, transactions: int = 250, pages_per_run: int = 5
) -> str:
    """A tracked account (by default of three pages) whose refresh succeeded, synced
    `pages_per_run` pages a run."""
    rig.runtime.settings = fc.settings.model_copy(update={"fcsync_pages_per_run": pages_per_run})
    account_id = fc.create_account(transactions=transactions)
    with session_scope(rig.engine) as session:
        fc.track(session, account_id)
        assert fc.refresh(session, account_id).outcome == "succeeded"
    return account_id


def test_sync_task_reports_each_committed_page_to_the_page_hook(
    fc: EmulatedFC, rig: TaskRig
) -> None:
    account_id = refreshed_account(fc, rig)
    total = len(fc.truth(account_id))
    seen: list[tuple[int, int, int]] = []

    def on_page(progress: dict[str, Any]) -> None:
        # Called after the page's commit: the rows it counts are already stored.
        with session_scope(rig.engine) as session:
            stored = repository.count_transactions(session, account_id)
        seen.append((progress["pages"], progress["inserted"], stored))

    with bound(rig.runtime.watching_pages(on_page)):
        report = sync_transactions_task(account_id=account_id)

    assert report["outcome"] == "done" and report["pages"] == 3
    assert seen == [(1, 100, 100), (2, 200, 200), (3, total, total)]
    # Unset, nothing is called (a worker's syncs have no watcher).
    assert bound_runtime() is rig.runtime and rig.runtime.on_page is None


def test_sync_task_redelivered_copy_never_shares_the_running_copy_s_lease(
    fc: EmulatedFC, rig: TaskRig
) -> None:
    # A broker redelivers a message with its task id while the first copy still runs (Redis's
    # visibility timeout passed): the copy must find the sync busy, not page beside it.
    account_id = refreshed_account(fc, rig)
    copies: list[dict[str, Any]] = []

    def on_page(progress: dict[str, Any]) -> None:
        if progress["pages"] == 1:
            copy = sync_transactions_task.apply(kwargs={"account_id": account_id}, task_id="t-1")
            copies.append(copy.get())

    with bound(rig.runtime.watching_pages(on_page)):
        first = sync_transactions_task.apply(kwargs={"account_id": account_id}, task_id="t-1")

    assert first.get()["outcome"] == "done"
    assert [(c["outcome"], c["pages"]) for c in copies] == [("busy", 0)]
    with Session(rig.engine) as session:
        assert fc.mismatches(session, account_id) == []


def test_sync_task_reads_the_next_page_ahead_but_never_past_the_run(
    fc: EmulatedFC, rig: TaskRig
) -> None:
    account_id = refreshed_account(fc, rig, transactions=450, pages_per_run=3)
    assert -(-len(fc.truth(account_id)) // 100) == 5
    # List requests made when each page has committed, counted from its run's start: page n
    # and the read-ahead of page n+1, except after a run's last page and the account's last.
    expected = [2, 3, 3, 2, 2]
    run_start = [0]
    listed: list[tuple[int, bool]] = []

    def on_page(progress: dict[str, Any]) -> None:
        # The read-ahead runs in the background: give its request time to arrive.
        deadline = time.monotonic() + 2
        while fc.list_calls() - run_start[0] < expected[len(listed)]:
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        with session_scope(rig.engine) as session:
            account = session.get(Account, account_id)
            assert account is not None
            listed.append((fc.list_calls() - run_start[0], account.cursor_refresh_id is None))

    watched = rig.runtime.watching_pages(on_page)
    outcomes = []
    for owner in ("run-1", "run-2"):
        run_start[0] = fc.list_calls()
        outcomes.append(watched.run_sync(account_id, full=False, owner=owner)["outcome"])
    assert outcomes == ["continued", "done"]
    # The cursor moved with the last page only.
    assert listed == [(2, True), (3, True), (3, True), (2, True), (2, False)]
    with Session(rig.engine) as session:
        assert fc.mismatches(session, account_id) == []


def test_sync_task_pages_of_a_run_share_one_database_connection(
    fc: EmulatedFC, rig: TaskRig
) -> None:
    # A pool checkout per page cost a liveness round trip per page (pool_pre_ping).
    account_id = refreshed_account(fc, rig)
    checkouts: list[object] = []

    def checked_out(dbapi_connection: object, *_: object) -> None:
        checkouts.append(dbapi_connection)

    event.listen(rig.engine, "checkout", checked_out)
    try:
        report = rig.runtime.run_sync(account_id, full=False, owner="one-connection")
    finally:
        event.remove(rig.engine, "checkout", checked_out)
    assert (report["outcome"], report["pages"]) == ("done", 3)
    # One for starting the sync, one for all three pages.
    assert len(checkouts) == 2
