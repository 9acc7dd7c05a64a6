"""One sync run: an account's transaction pages for about FCSYNC_RUN_S seconds, at most
FCSYNC_PAGES_PER_RUN of them, each step its own transaction on the runtime (worker/sync.py
decides what each step does), then the run's continuation sent when pages are left."""

from __future__ import annotations

import time
from typing import TypedDict

from worker import failpoints, log_context, sync
from worker.errors import PermanentError
from worker.runtime import Runtime, Work

# A sync's commit holds at least this many pages when the run has them to read: each
# commit costs round trips, an fsync and their CPU, which a 2-core machine shares with Stripe's
# side; the reading ahead brings the pages meanwhile, so waiting for them costs no time.
PAGES_A_COMMIT_WAITS_FOR = 5


class SyncReport(TypedDict):
    account: str
    outcome: str
    pages: int
    inserted: int
    updated: int


def run_sync(
    runtime: Runtime,
    account_id: str,
    *,
    full: bool,
    owner: str,
    stripe_account: str | None = None,
    stripe_key: str | None = None,
    handoff: str | None = None,
) -> SyncReport:
    """The pages read until FCSYNC_RUN_S has passed, up to FCSYNC_PAGES_PER_RUN, committed one
    at a time or, when the pages read ahead arrive faster than they are written, several at
    once; `on_page` gets the run's report after each commit (pages, inserted and updated so
    far). `stripe_account`, when given, must be the account's stored context (the pages always
    go out in that one).

    The run's time is a turn: what every other account's task queued behind it waits, on any
    network. Its reading ahead decides where it ends, the first page to arrive once the time
    is up being the last, so no page is fetched that the run does not store."""
    settings = runtime.settings
    until = time.monotonic() + settings.fcsync_run_s
    try:
        # The run's pages are read from the start, while it commits and its first are written.
        start = runtime.run(
            account_id,
            lambda s, gw, now: sync.start_sync(
                s,
                account_id,
                full=full,
                owner=owner,
                now=now,
                settings=settings,
                stripe_account=stripe_account,
                handoff=handoff,
                gateway=gw,
                read_ahead=settings.fcsync_pages_per_run,
                read_until=until,
            ),
            stripe_key=stripe_key,
        )
    except BaseException:
        runtime.stop_reading_ahead(account_id)
        raise
    # The refresh this sync stores the rows of.
    log_context.note(refresh_id=start.target_refresh_id)
    report: SyncReport = {
        "account": account_id,
        "outcome": start.outcome,
        "pages": 0,
        "inserted": 0,
        "updated": 0,
    }
    if start.outcome in ("busy", "up_to_date", "untracked"):
        return report
    seen: list[str] = []

    def page_work(remaining: int, first: bool) -> Work[sync.SyncStep]:
        # The run's last page reads nothing ahead: the next run may never come. The run's first
        # page commits alone, as soon as it is written (progress shows at once); after it a
        # commit waits for the pages being read ahead, up to PAGES_A_COMMIT_WAITS_FOR.
        wait = 0 if first else min(remaining, PAGES_A_COMMIT_WAITS_FOR) - 1
        return lambda s, gw, now: sync.sync_page(
            s,
            gw,
            account_id,
            owner=owner,
            now=now,
            settings=settings,
            seen_last_ids=seen,
            read_ahead=remaining - 1,
            read_until=until,
            max_pages=1 if first else remaining,
            wait_pages=wait,
        )

    try:
        # The run's pages share one connection, each step still its own transaction: a
        # pool checkout per page cost a liveness round trip each (pool_pre_ping).
        with runtime.connection() as connection:
            while report["pages"] < settings.fcsync_pages_per_run and not (
                # Time is up and the reading ahead has stopped there: its pages are stored.
                report["pages"] > 0
                and time.monotonic() >= until
                and not runtime.reads_ahead(account_id)
            ):
                remaining = settings.fcsync_pages_per_run - report["pages"]
                work = page_work(remaining, first=report["pages"] == 0)
                step = runtime.run(account_id, work, connection=connection)
                seen.extend(step.last_ids)
                report["pages"] += step.pages
                report["inserted"] += step.inserted
                report["updated"] += step.updated
                if runtime.on_page is not None:
                    runtime.on_page(dict(report))
                if step.outcome != "page":
                    report["outcome"] = step.outcome
                    return report
                failpoints.failpoint("sync.after_page")
    except PermanentError:
        runtime.run(
            account_id,
            lambda s, gw, now: sync.park_failed_run(
                s, account_id, owner, now=now, settings=settings
            ),
        )
        raise
    except BaseException:
        runtime.run(account_id, lambda s, gw, now: sync.abandon_run(s, account_id, owner))
        raise
    finally:
        # Whatever ended the run, its reading ahead makes no further request.
        runtime.stop_reading_ahead(account_id)
    # Bounded work per run: continue in a fresh message at the back of the queue, so one
    # large backfill never hogs a worker slot or outlives the task time limit, and every
    # other account's task queued meanwhile runs first (round-robin across accounts, each a
    # turn of about FCSYNC_RUN_S).
    continuation = runtime.run(
        account_id,
        lambda s, gw, now: sync.continue_run(s, account_id, owner, now=now, settings=settings),
    )
    try:
        runtime.dispatch(continuation)
    except BaseException:
        # The message never left (the broker refused it): the lease it would carry is handed
        # back, so the failed-sync sweep resumes the sync at its next pass, not once the lease
        # expires. A worker that dies right here leaves the lease to expire (README Operations).
        token = continuation.handoff or owner
        runtime.run(account_id, lambda s, gw, now: sync.abandon_run(s, account_id, token))
        raise
    report["outcome"] = "continued"
    return report
