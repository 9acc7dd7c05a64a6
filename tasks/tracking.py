"""Tasks that start and stop tracking an account."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import OperationalError

from tasks.arguments import flag, stripe_id
from tasks.base import TASK_OPTIONS
from worker import contract, tracking
from worker.app import app, uow
from worker.errors import TransientError

TRANSIENT = (TransientError, OperationalError)


@app.task(
    name=contract.TRACK_ACCOUNT,
    autoretry_for=TRANSIENT,
    max_retries=uow.settings.fcsync_max_retries,
    **TASK_OPTIONS,
)
def track_account_task(account_id: str, subscribe: bool = True) -> dict[str, Any]:
    account_id = stripe_id(account_id, "fca_")
    subscribe = flag(subscribe, "subscribe")
    result = uow.run(
        account_id,
        lambda s, gw, now: tracking.track_account(
            s, gw, account_id, subscribe=subscribe, now=now, settings=uow.settings
        ),
        record_unknown=True,  # e.g. a mistyped id: `fcsync status` shows Stripe's 404
    )
    return {"account": account_id, "outcome": result.outcome, "subscribed": result.subscribed}


@app.task(
    name=contract.UNTRACK_ACCOUNT,
    autoretry_for=TRANSIENT,
    max_retries=uow.settings.fcsync_max_retries,
    **TASK_OPTIONS,
)
def untrack_account_task(account_id: str, unsubscribe: bool = True) -> dict[str, Any]:
    account_id = stripe_id(account_id, "fca_")
    unsubscribe = flag(unsubscribe, "unsubscribe")
    result = uow.run(
        account_id,
        lambda s, gw, now: tracking.untrack_account(
            s, gw, account_id, unsubscribe=unsubscribe, now=now, settings=uow.settings
        ),
    )
    return {"account": account_id, "outcome": result.outcome, "subscribed": result.subscribed}
