"""Tasks that gate and poll transaction refreshes, and the beat sweeps that drive them."""

from __future__ import annotations

from typing import Any

from celery.utils.time import get_exponential_backoff_interval
from sqlalchemy.exc import OperationalError

from tasks.arguments import bounded_int, choice, stripe_id
from tasks.base import TASK_OPTIONS
from worker import contract, refresh
from worker.app import app, uow
from worker.errors import TransientError
from worker.records import Followup
from worker.settings import Settings

TRANSIENT = (TransientError, OperationalError)

# A poll chain ends at FCSYNC_POLL_DEADLINE_S; even at one poll a second for a day it stays
# below this. Past 2**32 times any initial wait the backoff is capped by FCSYNC_POLL_MAX_S
# anyway, so the exponent stops there and never costs more than a small multiplication.
MAX_POLL_ATTEMPT = 100_000
_BACKOFF_EXPONENT_CAP = 32


@app.task(
    name=contract.REFRESH_ACCOUNT,
    autoretry_for=TRANSIENT,
    max_retries=uow.settings.fcsync_max_retries,
    **TASK_OPTIONS,
)
def refresh_account_task(account_id: str, source: str = "task") -> dict[str, Any]:
    account_id = stripe_id(account_id, "fca_")
    source = choice(source, contract.REFRESH_SOURCES, "source")
    decision = uow.run(
        account_id,
        lambda s, gw, now: refresh.request_refresh(
            s, gw, account_id, source=source, now=now, settings=uow.settings
        ),
    )
    return {
        "account": account_id,
        "outcome": decision.outcome,
        "refresh": decision.refresh_id,
        # When Stripe allows the next refresh (outcome "cooldown"), else null.
        "retry_at": decision.retry_at.isoformat() if decision.retry_at else None,
    }


@app.task(
    name=contract.POLL_REFRESH,
    autoretry_for=TRANSIENT,
    max_retries=uow.settings.fcsync_max_retries,
    **TASK_OPTIONS,
)
def poll_refresh_task(account_id: str, attempt: int = 0) -> dict[str, Any]:
    """Still pending -> poll again later with exponential backoff and full jitter, until the
    deadline in FCSYNC_POLL_DEADLINE_S marks the refresh stale (beat re-polls stale ones)."""
    account_id = stripe_id(account_id, "fca_")
    attempt = bounded_int(attempt, "attempt", 0, MAX_POLL_ATTEMPT)
    result = uow.run(
        account_id,
        lambda s, gw, now: refresh.poll_refresh(s, gw, account_id, now=now, settings=uow.settings),
    )
    if result.outcome == "pending":
        uow.dispatch(
            Followup(
                contract.POLL_REFRESH,
                {"account_id": account_id, "attempt": min(attempt + 1, MAX_POLL_ATTEMPT)},
                countdown=poll_countdown(attempt, uow.settings),
            )
        )
    return {"account": account_id, "outcome": result.outcome, "refresh": result.refresh_id}


def poll_countdown(attempt: int, settings: Settings) -> float:
    """Exponential backoff with full jitter, between FCSYNC_POLL_INITIAL_S and _MAX_S."""
    delay = get_exponential_backoff_interval(
        factor=int(max(1, settings.fcsync_poll_initial_s)),
        retries=min(attempt, _BACKOFF_EXPONENT_CAP),
        maximum=int(settings.fcsync_poll_max_s),
        full_jitter=True,
    )
    return max(settings.fcsync_poll_initial_s, float(delay))


@app.task(
    name=contract.REFRESH_DUE_ACCOUNTS, autoretry_for=TRANSIENT, max_retries=3, **TASK_OPTIONS
)
def refresh_due_accounts_task() -> dict[str, Any]:
    result = uow.run(
        None,
        lambda s, gw, now: refresh.due_refreshes(s, now=now, settings=uow.settings),
    )
    return {"enqueued": len(result.followups)}


@app.task(
    name=contract.POLL_STALE_REFRESHES, autoretry_for=TRANSIENT, max_retries=3, **TASK_OPTIONS
)
def poll_stale_refreshes_task() -> dict[str, Any]:
    result = uow.run(
        None,
        lambda s, gw, now: refresh.stale_polls(s, now=now, settings=uow.settings),
    )
    return {"enqueued": len(result.followups)}
