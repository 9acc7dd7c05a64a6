"""The sync task: bounded pages per run, then re-enqueue; plus the failed-sync sweep."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from celery import Task
from sqlalchemy.exc import OperationalError

from tasks.arguments import flag, stripe_id
from tasks.base import TASK_OPTIONS
from worker import contract, sync, webhooks
from worker.app import app, uow
from worker.errors import PermanentError, TransientError
from worker.records import Followup, Sweep

TRANSIENT = (TransientError, OperationalError)

PageHook = Callable[[dict[str, Any]], None]
# Who watches the pages of the syncs run in this context: the CLI's --inline progress display.
# Unset in a worker. A ContextVar, so a hook set by one thread never sees another's syncs.
page_hook: ContextVar[PageHook | None] = ContextVar("fcsync_sync_page_hook", default=None)


@app.task(
    name=contract.SYNC_TRANSACTIONS,
    bind=True,
    autoretry_for=TRANSIENT,
    max_retries=uow.settings.fcsync_max_retries,
    **TASK_OPTIONS,
)
def sync_transactions_task(
    self: Task[Any, Any], account_id: str, full: bool = False
) -> dict[str, Any]:
    account_id = stripe_id(account_id, "fca_")
    full = flag(full, "full")
    # A retried task keeps its id, so it re-takes its own lease instead of waiting it out.
    owner = self.request.id or f"inline-{uuid.uuid4()}"
    return run_sync(account_id, full=full, owner=owner, on_page=page_hook.get())


def run_sync(
    account_id: str, *, full: bool, owner: str, on_page: PageHook | None = None
) -> dict[str, Any]:
    """Up to FCSYNC_PAGES_PER_RUN pages; `on_page` gets the run's report after each committed
    page (pages, inserted and updated so far)."""
    settings = uow.settings
    start = uow.run(
        account_id,
        lambda s, gw, now: sync.start_sync(
            s, account_id, full=full, owner=owner, now=now, settings=settings
        ),
    )
    report: dict[str, Any] = {
        "account": account_id,
        "outcome": start.outcome,
        "pages": 0,
        "inserted": 0,
        "updated": 0,
    }
    if start.outcome in ("busy", "up_to_date"):
        return report
    seen: list[str] = []
    try:
        for _ in range(settings.fcsync_pages_per_run):
            step = uow.run(
                account_id,
                lambda s, gw, now: sync.sync_page(
                    s, gw, account_id, owner=owner, now=now, settings=settings, seen_last_ids=seen
                ),
            )
            if step.last_id is not None:
                seen.append(step.last_id)
            report["pages"] += 1
            report["inserted"] += step.inserted
            report["updated"] += step.updated
            if on_page is not None:
                on_page(dict(report))
            if step.outcome != "page":
                report["outcome"] = step.outcome
                return report
    except PermanentError:
        uow.run(
            account_id,
            lambda s, gw, now: sync.park_failed_run(
                s, account_id, owner, now=now, settings=settings
            ),
        )
        raise
    except BaseException:
        uow.run(account_id, lambda s, gw, now: sync.abandon_run(s, account_id, owner))
        raise
    # Bounded work per run: hand the lease back and continue in a fresh message, so one large
    # backfill never hogs a worker slot or outlives the task time limit.
    uow.run(account_id, lambda s, gw, now: sync.abandon_run(s, account_id, owner))
    uow.dispatch(Followup(contract.SYNC_TRANSACTIONS, {"account_id": account_id}))
    report["outcome"] = "continued"
    return report


@app.task(name=contract.RETRY_FAILED_SYNCS, autoretry_for=TRANSIENT, max_retries=3, **TASK_OPTIONS)
def retry_failed_syncs_task() -> dict[str, Any]:
    def sweep(s: Any, gw: Any, now: Any) -> Sweep:
        syncs = sync.resync_candidates(s, now=now, settings=uow.settings)
        events = webhooks.unhandled_events(s, now=now, settings=uow.settings)
        return Sweep(syncs.followups + events.followups)

    result = uow.run(None, sweep)
    return {"enqueued": len(result.followups)}
