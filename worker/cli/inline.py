"""`--inline`: a task and the follow-ups a command accepts, run in this process (no broker, no
worker), with their countdowns honoured and transient errors retried with backoff."""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import click

from worker import log_context
from worker.cli.guards import publish
from worker.cli.progress import progress_report
from worker.errors import ErrorCode, PermanentError, TransientError
from worker.records import Followup

# Inline mode retries a transient failure this many times (FCSYNC_INLINE_RETRY_S doubling:
# 1, 2, 4, 8 s by default, about as long as a 429 storm lasts) before exit 4.
INLINE_RETRIES = 4
# Outcomes the services record on the account instead of raising: permanent conditions that
# retrying cannot change, so --inline exits 3 with the recorded error code.
PERMANENT_OUTCOMES = {
    "inactive": (
        ErrorCode.ACCOUNT_INACTIVE,
        "the account is not active at Stripe (inactive or disconnected); Stripe refuses refreshes",
    ),
    "no_permission": (
        ErrorCode.MISSING_PERMISSION,
        "the account lacks the transactions permission; relink it with "
        "permissions=['transactions']",
    ),
    "gone": (
        ErrorCode.ACCOUNT_GONE,
        "Stripe no longer knows the account (404); fcsync stopped refreshing it",
    ),
}


def run_inline(first: Followup, *, follow: Callable[[Followup], bool]) -> list[dict[str, Any]]:
    """Run a task and the follow-ups `follow` accepts in this process (no broker, no worker),
    honouring their countdowns and retrying transient errors with backoff."""
    from worker.app import app
    from worker.db import require_schema
    from worker.runtime import Runtime, bound
    from worker.settings import get_settings

    settings = get_settings()
    require_schema()  # before the first Stripe call: its answer could not be stored anyway
    # A permanent failure ends the command with its own one-line error: the runtime's log
    # line for the same failure would only repeat it.
    logging.getLogger("worker.runtime").setLevel(logging.CRITICAL)
    app.loader.import_default_modules()  # the task modules named in celeryconfig.imports
    queue: deque[Followup] = deque([first])
    results: list[dict[str, Any]] = []
    first_wait = settings.fcsync_inline_retry_s
    with progress_report() as report:
        # Follow-ups land in this queue instead of the broker; pages are shown as they commit.
        inline = Runtime(settings, send=queue.append, on_page=report.page)
        with bound(inline):
            while queue:
                item = queue.popleft()
                if item is not first and (not item.task.startswith("fcsync.") or not follow(item)):
                    continue
                if item.countdown:
                    report.waiting(item)
                    time.sleep(item.countdown)
                report.running(item)
                for attempt in range(INLINE_RETRIES + 1):
                    try:
                        # Each task a unit of work of its own, as in a worker.
                        with log_context.bound(task_name=item.task):
                            result = app.tasks[item.task].run(**item.kwargs)
                        break
                    except TransientError as exc:
                        if attempt == INLINE_RETRIES:
                            raise
                        report.retrying(item, exc)
                        time.sleep(first_wait * 2**attempt)
                results.append(result)
                report.finished(item, result)
        report.done()
    for result in results:
        if result.get("outcome") in PERMANENT_OUTCOMES:
            code, why = PERMANENT_OUTCOMES[result["outcome"]]
            if result.get("missing_permissions"):
                from worker.tracking import missing_permissions_text

                # A track names the features it cannot keep fresh.
                why = missing_permissions_text(result["missing_permissions"])
            raise PermanentError(f"{result['account']}: {why}", code=code)
    return results


inline_option = click.option(
    "--inline", is_flag=True, help="Run in this process instead of enqueueing for a worker."
)


def only(*names: str) -> Callable[[Followup], bool]:
    """The follow-ups a command runs with --inline: those of these tasks."""
    return lambda f: f.task in names


def dispatch_or_inline(
    task: str, inline: bool, follow: Callable[[Followup], bool], **kwargs: Any
) -> list[dict[str, Any]]:
    """Enqueue `task` for a worker, or with --inline run it (and what `follow` accepts) here."""
    if inline:
        return run_inline(Followup(task, kwargs), follow=follow)
    publish(Followup(task, kwargs))
    click.echo(f"enqueued {task} {json.dumps(kwargs, sort_keys=True)}")
    return []
