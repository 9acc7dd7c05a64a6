"""Tasks that start and stop tracking an account."""

from __future__ import annotations

from typing import TypedDict

from tasks.arguments import flag, stripe_account_id, stripe_id
from tasks.base import FcsyncTask, fcsync_task
from worker import contract, tracking


class TrackReport(TypedDict):
    account: str
    outcome: str
    subscribed: bool


@fcsync_task(contract.TRACK_ACCOUNT)
def track_account_task(
    self: FcsyncTask,
    account_id: str,
    subscribe: bool = True,
    stripe_account: str | None = None,
) -> TrackReport:
    account_id = stripe_id(account_id, "fca_")
    subscribe = flag(subscribe, "subscribe")
    context = stripe_account_id(stripe_account)
    rt = self.runtime
    result = rt.run(
        account_id,
        lambda s, gw, now: tracking.track_account(
            s,
            gw,
            account_id,
            subscribe=subscribe,
            now=now,
            settings=rt.settings,
            stripe_account=context,
        ),
        record_unknown=True,  # e.g. a mistyped id: `fcsync status` shows Stripe's 404
        stripe_account=context,
    )
    return {"account": account_id, "outcome": result.outcome, "subscribed": result.subscribed}


@fcsync_task(contract.UNTRACK_ACCOUNT)
def untrack_account_task(
    self: FcsyncTask,
    account_id: str,
    unsubscribe: bool = True,
    stripe_account: str | None = None,
) -> TrackReport:
    account_id = stripe_id(account_id, "fca_")
    unsubscribe = flag(unsubscribe, "unsubscribe")
    context = stripe_account_id(stripe_account)
    rt = self.runtime
    result = rt.run(
        account_id,
        lambda s, gw, now: tracking.untrack_account(
            s,
            gw,
            account_id,
            unsubscribe=unsubscribe,
            now=now,
            settings=rt.settings,
            stripe_account=context,
        ),
    )
    return {"account": account_id, "outcome": result.outcome, "subscribed": result.subscribed}
