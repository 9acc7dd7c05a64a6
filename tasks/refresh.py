"""Tasks that gate and poll transaction refreshes, and the beat sweeps that drive them."""

from __future__ import annotations

from typing import TypedDict

from celery.utils.time import get_exponential_backoff_interval

from tasks.arguments import bounded_int, choice, stripe_id
from tasks.base import FcsyncTask, fcsync_task
from worker import contract, refresh
from worker.records import Followup
from worker.settings import Settings

# A poll chain ends at FCSYNC_POLL_DEADLINE_S; even at one poll a second for a day it stays
# below this. Past 2**32 times any initial wait the backoff is capped by FCSYNC_POLL_MAX_S
# anyway, so the exponent stops there and never costs more than a small multiplication.
MAX_POLL_ATTEMPT = 100_000
_BACKOFF_EXPONENT_CAP = 32


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
def refresh_account_task(self: FcsyncTask, account_id: str, source: str = "task") -> RefreshReport:
    account_id = stripe_id(account_id, "fca_")
    source = choice(source, contract.REFRESH_SOURCES, "source")
    rt = self.runtime
    decision = rt.run(
        account_id,
        lambda s, gw, now: refresh.request_refresh(
            s, gw, account_id, source=source, now=now, settings=rt.settings
        ),
    )
    return {
        "account": account_id,
        "outcome": decision.outcome,
        "refresh": decision.refresh_id,
        "retry_at": decision.retry_at.isoformat() if decision.retry_at else None,
    }


@fcsync_task(contract.POLL_REFRESH)
def poll_refresh_task(self: FcsyncTask, account_id: str, attempt: int = 0) -> PollReport:
    """Still pending -> poll again later with exponential backoff and full jitter, until the
    deadline in FCSYNC_POLL_DEADLINE_S marks the refresh stale (beat re-polls stale ones)."""
    account_id = stripe_id(account_id, "fca_")
    attempt = bounded_int(attempt, "attempt", 0, MAX_POLL_ATTEMPT)
    rt = self.runtime
    result = rt.run(
        account_id,
        lambda s, gw, now: refresh.poll_refresh(s, gw, account_id, now=now, settings=rt.settings),
    )
    if result.outcome == "pending":
        rt.dispatch(
            Followup(
                contract.POLL_REFRESH,
                {"account_id": account_id, "attempt": min(attempt + 1, MAX_POLL_ATTEMPT)},
                countdown=poll_countdown(attempt, rt.settings),
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


@fcsync_task(contract.REFRESH_DUE_ACCOUNTS, max_retries=3)
def refresh_due_accounts_task(self: FcsyncTask) -> SweepReport:
    rt = self.runtime
    result = rt.run(
        None, lambda s, gw, now: refresh.due_refreshes(s, now=now, settings=rt.settings)
    )
    return {"enqueued": len(result.followups)}


@fcsync_task(contract.POLL_STALE_REFRESHES, max_retries=3)
def poll_stale_refreshes_task(self: FcsyncTask) -> SweepReport:
    rt = self.runtime
    result = rt.run(None, lambda s, gw, now: refresh.stale_polls(s, now=now, settings=rt.settings))
    return {"enqueued": len(result.followups)}
