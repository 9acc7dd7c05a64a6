"""Tasks that gate and poll transaction refreshes, and the beat sweeps that drive them."""

from __future__ import annotations

from typing import Any

from celery.utils.time import get_exponential_backoff_interval
from sqlalchemy.exc import OperationalError

from tasks.arguments import RETRY_POLICY, choice, stripe_id
from worker import contract, refresh
from worker.app import app, uow
from worker.errors import PermanentError, TransientError
from worker.records import Followup

TRANSIENT = (TransientError, OperationalError)


@app.task(
    name=contract.REFRESH_ACCOUNT,
    autoretry_for=TRANSIENT,
    max_retries=uow.settings.fcsync_max_retries,
    **RETRY_POLICY,
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
    **RETRY_POLICY,
)
def poll_refresh_task(account_id: str, attempt: int = 0) -> dict[str, Any]:
    """Still pending -> poll again later with exponential backoff and full jitter, until the
    deadline in FCSYNC_POLL_DEADLINE_S marks the refresh stale (beat re-polls stale ones)."""
    account_id = stripe_id(account_id, "fca_")
    if not isinstance(attempt, int) or attempt < 0:
        raise PermanentError(
            f"attempt must be a non-negative int, got {attempt!r}", code="bad_argument"
        )
    result = uow.run(
        account_id,
        lambda s, gw, now: refresh.poll_refresh(s, gw, account_id, now=now, settings=uow.settings),
    )
    if result.outcome == "pending":
        settings = uow.settings
        delay = get_exponential_backoff_interval(
            factor=int(max(1, settings.fcsync_poll_initial_s)),
            retries=attempt,
            maximum=int(settings.fcsync_poll_max_s),
            full_jitter=True,
        )
        uow.dispatch(
            Followup(
                contract.POLL_REFRESH,
                {"account_id": account_id, "attempt": attempt + 1},
                countdown=max(settings.fcsync_poll_initial_s, float(delay)),
            )
        )
    return {"account": account_id, "outcome": result.outcome, "refresh": result.refresh_id}


@app.task(
    name=contract.REFRESH_DUE_ACCOUNTS, autoretry_for=TRANSIENT, max_retries=3, **RETRY_POLICY
)
def refresh_due_accounts_task() -> dict[str, Any]:
    result = uow.run(
        None,
        lambda s, gw, now: refresh.due_refreshes(s, now=now, settings=uow.settings),
    )
    return {"enqueued": len(result.followups)}


@app.task(
    name=contract.POLL_STALE_REFRESHES, autoretry_for=TRANSIENT, max_retries=3, **RETRY_POLICY
)
def poll_stale_refreshes_task() -> dict[str, Any]:
    result = uow.run(
        None,
        lambda s, gw, now: refresh.stale_polls(s, now=now, settings=uow.settings),
    )
    return {"enqueued": len(result.followups)}
