"""The one table from intents to Celery work: task name, arguments and timing (the poll
backoff, the cooldown wait) for each thing a service wants done after its commit."""

from __future__ import annotations

from datetime import datetime

from celery.utils.time import get_exponential_backoff_interval

from worker import contract
from worker.intents import (
    HandleEvent,
    Intent,
    NotifySynced,
    PollRefresh,
    PollStaleRefresh,
    RefreshDue,
    RetryRefreshAt,
    SyncDue,
    TrackAccount,
)
from worker.records import Followup
from worker.settings import Settings

# A poll chain ends at FCSYNC_POLL_DEADLINE_S; even at one poll a second for a day it stays
# below this. Past 2**32 times any initial wait the backoff is capped by FCSYNC_POLL_MAX_S
# anyway, so the exponent stops there and never costs more than a small multiplication.
MAX_POLL_ATTEMPT = 100_000
_BACKOFF_EXPONENT_CAP = 32


def poll_countdown(attempt: int, settings: Settings) -> float:
    """Exponential backoff with full jitter, between FCSYNC_POLL_INITIAL_S and _MAX_S."""
    delay = get_exponential_backoff_interval(
        factor=int(max(1, settings.fcsync_poll_initial_s)),
        retries=min(attempt, _BACKOFF_EXPONENT_CAP),
        maximum=int(settings.fcsync_poll_max_s),
        full_jitter=True,
    )
    return max(settings.fcsync_poll_initial_s, float(delay))


def followup_for(intent: Intent, *, settings: Settings, now: datetime) -> Followup | None:
    """The task that carries out `intent`, or None when nothing should be sent (no on-synced
    task configured; a wait longer than the broker can hold, which beat covers instead)."""
    match intent:
        case SyncDue(account_id, full, handoff):
            kwargs: dict[str, object] = {"account_id": account_id}
            if full:
                kwargs["full"] = True
            if handoff is not None:
                kwargs["handoff"] = handoff
            return Followup(contract.SYNC_TRANSACTIONS, kwargs)
        case PollRefresh(account_id, 0):
            return Followup(
                contract.POLL_REFRESH,
                {"account_id": account_id},
                countdown=settings.fcsync_poll_initial_s,
            )
        case PollRefresh(account_id, attempt):
            # Never past the bound: the next poll must not fail as a bad argument.
            attempt = min(attempt, MAX_POLL_ATTEMPT)
            return Followup(
                contract.POLL_REFRESH,
                {"account_id": account_id, "attempt": attempt},
                countdown=poll_countdown(attempt - 1, settings),
            )
        case PollStaleRefresh(account_id):
            return Followup(contract.POLL_REFRESH, {"account_id": account_id})
        case RefreshDue(account_id):
            return Followup(contract.REFRESH_ACCOUNT, {"account_id": account_id, "source": "beat"})
        case RetryRefreshAt(account_id, source, at):
            # A second past the cooldown, so Stripe never sees the refresh early.
            countdown = (at - now).total_seconds() + 1
            # A countdown longer than the broker can hold (a second run on Redis, a closed
            # channel on RabbitMQ): beat picks the account up at its due time instead.
            if countdown > settings.longest_countdown_s:
                return None
            return Followup(
                contract.REFRESH_ACCOUNT,
                {"account_id": account_id, "source": source},
                countdown=countdown,
            )
        case NotifySynced(account_id, refresh_id, inserted, updated):
            if not settings.fcsync_on_synced_task:
                return None
            return Followup(
                settings.fcsync_on_synced_task,
                {
                    "account": account_id,
                    "refresh": refresh_id,
                    "inserted": inserted,
                    "updated": updated,
                },
            )
        case HandleEvent(event_id):
            return Followup(contract.HANDLE_EVENT, {"event_id": event_id})
        case TrackAccount(account_id, stripe_account):
            track: dict[str, object] = {"account_id": account_id}
            if stripe_account is not None:
                track["stripe_account"] = stripe_account
            return Followup(contract.TRACK_ACCOUNT, track)
