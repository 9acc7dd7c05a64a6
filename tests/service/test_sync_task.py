"""The sync task run in this process: bounded pages per run, re-enqueued until the account is
complete, with the cursor committed only together with the last page."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from models import Account
from tasks.sync import retry_failed_syncs_task, sync_transactions_task
from tests.service.conftest import TaskRig
from tests.service.harness import EmulatedFC
from worker import contract, repository
from worker.db import session_scope
from worker.records import Followup
from worker.runtime import bound, bound_runtime
from worker.sync_run import run_sync


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
        # Called after each commit: the rows it counts are already stored.
        with session_scope(rig.engine) as session:
            stored = repository.count_transactions(session, account_id)
        seen.append((progress["pages"], progress["inserted"], stored))

    with bound(rig.runtime.watching_pages(on_page)):
        report = sync_transactions_task(account_id=account_id)

    assert report["outcome"] == "done" and report["pages"] == 3
    # The first page commits alone (nothing is read ahead of it); the pages read ahead while
    # it was written may commit together, so the calls that follow are one or two.
    assert seen[0] == (1, 100, 100) and seen[-1] == (3, total, total)
    assert seen in ([seen[0], (2, 200, 200), seen[-1]], [seen[0], seen[-1]])
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


def test_sync_task_reads_pages_ahead_but_never_past_the_run(fc: EmulatedFC, rig: TaskRig) -> None:
    account_id = refreshed_account(fc, rig, transactions=450, pages_per_run=3)
    assert -(-len(fc.truth(account_id)) // 100) == 5
    run_start = [0]
    # After each commit: list requests made so far in the run, pages committed, cursor moved.
    commits: list[tuple[int, int, bool]] = []

    def on_page(progress: dict[str, Any]) -> None:
        # Give the reading ahead time to make every request it would make.
        time.sleep(0.3)
        with session_scope(rig.engine) as session:
            account = session.get(Account, account_id)
            assert account is not None
            commits.append(
                (
                    fc.list_calls() - run_start[0],
                    progress["pages"],
                    account.cursor_refresh_id is not None,
                )
            )

    watched = rig.runtime.watching_pages(on_page)
    outcomes, requests = [], []
    handoff: str | None = None
    for owner in ("run-1", "run-2"):
        run_start[0] = fc.list_calls()
        report = run_sync(watched, account_id, full=False, owner=owner, handoff=handoff)
        outcomes.append(report["outcome"])
        requests.append(fc.list_calls() - run_start[0])
        # The second run is the first's continuation: it carries the lease handed on to it.
        continuation = rig.take(contract.SYNC_TRANSACTIONS)
        handoff = str(continuation[0].kwargs["handoff"]) if continuation else None
    assert outcomes == ["continued", "done"]
    # Each run asked for its own pages once each: nothing past its last page, none twice.
    assert requests == [3, 2]
    # While a run's first page is written, the rest of the run's pages are read ahead.
    first_commits = [c for c in commits if c[1] == 1]
    assert [c[0] for c in first_commits] == [3, 2]
    # The cursor moved with the last page only.
    assert [c[2] for c in commits] == [False] * (len(commits) - 1) + [True]
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
        report = run_sync(rig.runtime, account_id, full=False, owner="one-connection")
    finally:
        event.remove(rig.engine, "checkout", checked_out)
    assert (report["outcome"], report["pages"]) == ("done", 3)
    # One for starting the sync, one for all three pages.
    assert len(checkouts) == 2


def test_a_run_ends_when_its_time_is_up_having_fetched_only_the_pages_it_stored(
    fc: EmulatedFC, rig: TaskRig
) -> None:
    # Every page takes 50 ms: a 0.12 s turn holds a few pages of the account's ten, far fewer
    # than FCSYNC_PAGES_PER_RUN; the turn's reading ahead decides where it ends.
    account_id = refreshed_account(fc, rig, transactions=950, pages_per_run=1_000)
    rig.runtime.settings = rig.runtime.settings.model_copy(update={"fcsync_run_s": 0.12})
    pages = -(-len(fc.truth(account_id)) // 100)
    fc.control.set_faults(latency_ms=50)
    runs: list[tuple[str, int, int]] = []
    handoff: str | None = None
    try:
        while not runs or runs[-1][0] == "continued":
            before = fc.list_calls()
            report = run_sync(rig.runtime, account_id, full=False, owner="turns", handoff=handoff)
            runs.append((report["outcome"], report["pages"], fc.list_calls() - before))
            continuation = rig.take(contract.SYNC_TRANSACTIONS)
            handoff = str(continuation[0].kwargs["handoff"]) if continuation else None
    finally:
        fc.control.set_faults(latency_ms=0)
    # Several turns, each asking Stripe for exactly the pages it stored.
    assert len(runs) > 1 and runs[-1][0] == "done"
    assert all(stored == asked >= 1 for _, stored, asked in runs), runs
    assert sum(stored for _, stored, _ in runs) == pages
    with Session(rig.engine) as session:
        assert fc.mismatches(session, account_id) == []


def test_a_trigger_while_a_sync_is_continued_is_not_a_second_chain(
    fc: EmulatedFC, rig: TaskRig
) -> None:
    # Between two runs of a large sync, its continuation waits in the queue holding the lease
    # handed on to it: a webhook's or a sweep's trigger meanwhile must not resume the sync (and
    # re-enqueue itself: a second chain of runs, the account twice the turns of the others).
    account_id = refreshed_account(fc, rig, transactions=450, pages_per_run=3)
    first = sync_transactions_task.apply(kwargs={"account_id": account_id}).get()
    [continuation] = rig.take(contract.SYNC_TRANSACTIONS)
    assert first["outcome"] == "continued" and "handoff" in continuation.kwargs

    trigger = sync_transactions_task.apply(kwargs={"account_id": account_id}).get()
    assert (trigger["outcome"], trigger["pages"]) == ("busy", 0)
    assert rig.take(contract.SYNC_TRANSACTIONS) == []

    redelivered: list[dict[str, Any]] = []

    def on_page(progress: dict[str, Any]) -> None:
        # The continuation redelivered while it runs: the lease is its run's now, not the token's.
        if progress["pages"] == 1:
            copy = sync_transactions_task.apply(kwargs=continuation.kwargs)
            redelivered.append(copy.get())

    with bound(rig.runtime.watching_pages(on_page)):
        last = sync_transactions_task.apply(kwargs=continuation.kwargs).get()
    assert (last["outcome"], last["pages"]) == ("done", 2)
    assert [(c["outcome"], c["pages"]) for c in redelivered] == [("busy", 0)]
    # The trigger wanted the refresh the chain synced: nothing is left to queue after it.
    assert rig.take(contract.SYNC_TRANSACTIONS) == []
    with Session(rig.engine) as session:
        assert fc.mismatches(session, account_id) == []


def test_a_continuation_that_could_not_be_sent_leaves_the_sync_to_the_next_sweep(
    fc: EmulatedFC, rig: TaskRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lease went on to the continuation's token; the message carrying it never left (the
    # broker was down). The failed-sync sweep resumes the sync at once, not once the handed-on
    # lease expires (FCSYNC_SYNC_LEASE_S).
    account_id = refreshed_account(fc, rig, transactions=450, pages_per_run=3)

    def broker_down(followup: Followup) -> None:
        raise ConnectionError("broker unreachable")

    with monkeypatch.context() as down:
        down.setattr(rig.runtime, "send", broker_down)
        with pytest.raises(ConnectionError):
            sync_transactions_task(account_id=account_id)

    retry_failed_syncs_task()
    [resumed] = rig.take(contract.SYNC_TRANSACTIONS)
    assert "handoff" not in resumed.kwargs
    report = sync_transactions_task.apply(kwargs=resumed.kwargs).get()
    # From the last committed page: the first run's three stay stored.
    assert (report["outcome"], report["pages"]) == ("done", 2)
    with Session(rig.engine) as session:
        assert fc.mismatches(session, account_id) == []
