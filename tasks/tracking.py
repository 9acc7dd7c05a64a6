"""Tasks that start and stop tracking an account."""

from __future__ import annotations

from typing import TypedDict

from tasks.arguments import feature_list, flag, stripe_account_id, stripe_id, stripe_key_name
from tasks.base import FcsyncTask, fcsync_task
from worker import contract, tracking


class TrackReport(TypedDict):
    account: str
    outcome: str
    subscribed: bool


class TrackedReport(TrackReport):
    # The tracked features the account's permissions do not grant (outcome no_permission).
    missing_permissions: list[str]


@fcsync_task(contract.TRACK_ACCOUNT)
def track_account_task(
    self: FcsyncTask,
    account_id: str,
    subscribe: bool = True,
    stripe_account: str | None = None,
    features: list[str] | None = None,
    stripe_key: str | None = None,
) -> TrackedReport:
    account_id = stripe_id(account_id, "fca_")
    subscribe = flag(subscribe, "subscribe")
    wanted = feature_list(features)
    context = stripe_account_id(stripe_account)
    key = stripe_key_name(stripe_key)
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
            features=wanted,
        ),
        record_unknown=True,  # e.g. a mistyped id: `fcsync status` shows Stripe's 404
        stripe_account=context,
        stripe_key=key,
    )
    return {
        "account": account_id,
        "outcome": result.outcome,
        "subscribed": result.subscribed,
        "missing_permissions": list(result.missing_permissions),
    }


@fcsync_task(contract.UNTRACK_ACCOUNT)
def untrack_account_task(
    self: FcsyncTask,
    account_id: str,
    unsubscribe: bool = True,
    stripe_account: str | None = None,
    stripe_key: str | None = None,
) -> TrackReport:
    account_id = stripe_id(account_id, "fca_")
    unsubscribe = flag(unsubscribe, "unsubscribe")
    context = stripe_account_id(stripe_account)
    key = stripe_key_name(stripe_key)
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
        stripe_key=key,
    )
    return {"account": account_id, "outcome": result.outcome, "subscribed": result.subscribed}
