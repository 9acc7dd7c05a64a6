"""Tasks that gate and poll refreshes (transactions, balances, ownership), and the beat sweeps
that drive them."""

from __future__ import annotations

from functools import partial
from typing import TypedDict

from tasks.arguments import bounded_int, choice, stripe_account_id, stripe_id, stripe_key_name
from tasks.base import FcsyncTask, fcsync_task
from worker import contract, features, refresh
from worker.dispatch import MAX_POLL_ATTEMPT
from worker.refresh_gate import FEATURES

FEATURE_CHOICES = frozenset(FEATURES)


class RefreshReport(TypedDict):
    account: str
    outcome: str
    refresh: str | None
    # When Stripe allows the next refresh (outcome "cooldown"), else null.
    retry_at: str | None


class PollReport(TypedDict):
    account: str
    outcome: str
    refresh: str | None


class SweepReport(TypedDict):
    enqueued: int


@fcsync_task(contract.REFRESH_ACCOUNT)
def refresh_account_task(
    self: FcsyncTask,
    account_id: str,
    source: str = "task",
    stripe_account: str | None = None,
    feature: str = "transactions",
    stripe_key: str | None = None,
) -> RefreshReport:
    account_id = stripe_id(account_id, "fca_")
    source = choice(source, contract.REFRESH_SOURCES, "source")
    context = stripe_account_id(stripe_account)
    feature = choice(feature, FEATURE_CHOICES, "feature")
    key = stripe_key_name(stripe_key)
    rt = self.runtime
    # Balances and ownership go through their own gate (worker/features.py).
    request = (
        refresh.request_refresh
        if feature == "transactions"
        else partial(features.request_feature_refresh, feature=feature)
    )
    decision = rt.run(
        account_id,
        lambda s, gw, now: request(
            s,
            gw,
            account_id,
            source=source,
            now=now,
            settings=rt.settings,
            stripe_account=context,
        ),
        stripe_account=context,
        stripe_key=key,
    )
    return {
        "account": account_id,
        "outcome": decision.outcome,
        "refresh": decision.refresh_id,
        "retry_at": decision.retry_at.isoformat() if decision.retry_at else None,
    }


@fcsync_task(contract.POLL_REFRESH)
def poll_refresh_task(
    self: FcsyncTask,
    account_id: str,
    attempt: int = 0,
    stripe_account: str | None = None,
    feature: str = "transactions",
    stripe_key: str | None = None,
) -> PollReport:
    """Still pending -> poll again later, waiting longer each time (worker/dispatch.py), until
    the deadline in FCSYNC_POLL_DEADLINE_S marks the refresh stale (beat re-polls stale ones)."""
    account_id = stripe_id(account_id, "fca_")
    attempt = bounded_int(attempt, "attempt", 0, MAX_POLL_ATTEMPT)
    context = stripe_account_id(stripe_account)
    feature = choice(feature, FEATURE_CHOICES, "feature")
    key = stripe_key_name(stripe_key)
    rt = self.runtime
    poll = (
        refresh.poll_refresh
        if feature == "transactions"
        else partial(features.poll_feature, feature=feature)
    )
    result = rt.run(
        account_id,
        lambda s, gw, now: poll(
            s,
            gw,
            account_id,
            now=now,
            settings=rt.settings,
            attempt=attempt,
            stripe_account=context,
        ),
        stripe_key=key,
    )
    return {"account": account_id, "outcome": result.outcome, "refresh": result.refresh_id}


@fcsync_task(contract.REFRESH_DUE_ACCOUNTS, max_retries=3)
def refresh_due_accounts_task(self: FcsyncTask) -> SweepReport:
    rt = self.runtime
    result = rt.run(
        None, lambda s, gw, now: refresh.due_refreshes(s, now=now, settings=rt.settings)
    )
    return {"enqueued": len(result.intents)}


@fcsync_task(contract.POLL_STALE_REFRESHES, max_retries=3)
def poll_stale_refreshes_task(self: FcsyncTask) -> SweepReport:
    rt = self.runtime
    result = rt.run(None, lambda s, gw, now: refresh.stale_polls(s, now=now, settings=rt.settings))
    return {"enqueued": len(result.intents)}
