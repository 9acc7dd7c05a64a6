"""The one table from intents to Celery work: task name, arguments and timing (the poll
backoff, the cooldown wait) for each thing a service wants done after its commit."""

from __future__ import annotations

from datetime import UTC, datetime

from celery.utils.time import get_exponential_backoff_interval

from worker import contract
from worker.intents import (
    HandleEvent,
    HandleEvents,
    Intent,
    NotifyAccount,
    NotifySynced,
    PollRefresh,
    PollStaleRefresh,
    ReconcileDue,
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


def _feature(feature: str) -> dict[str, str]:
    """The `feature` argument: left out for transactions, as before features existed."""
    return {} if feature == "transactions" else {"feature": feature}


def _iso(ts: int | None) -> str | None:
    """A Stripe timestamp as task arguments carry times: ISO 8601, UTC."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat() if ts is not None else None


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
        case PollRefresh(account_id, 0, feature):
            return Followup(
                contract.POLL_REFRESH,
                {"account_id": account_id, **_feature(feature)},
                countdown=settings.fcsync_poll_initial_s,
            )
        case PollRefresh(account_id, attempt, feature):
            # Never past the bound: the next poll must not fail as a bad argument.
            attempt = min(attempt, MAX_POLL_ATTEMPT)
            return Followup(
                contract.POLL_REFRESH,
                {"account_id": account_id, "attempt": attempt, **_feature(feature)},
                countdown=poll_countdown(attempt - 1, settings),
            )
        case PollStaleRefresh(account_id, feature):
            return Followup(contract.POLL_REFRESH, {"account_id": account_id, **_feature(feature)})
        case RefreshDue(account_id, feature):
            return Followup(
                contract.REFRESH_ACCOUNT,
                {"account_id": account_id, "source": "beat", **_feature(feature)},
            )
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
        case NotifyAccount() as notice:
            if not settings.fcsync_on_account_task:
                return None
            return Followup(
                settings.fcsync_on_account_task,
                {
                    "account": notice.account_id,
                    "kind": notice.kind,
                    "status": notice.status,
                    "action": notice.action,
                    "cause": notice.cause,
                    "expected_deactivation_date": _iso(notice.expected_deactivation_date),
                    "expected_expiry_date": _iso(notice.expected_expiry_date),
                    "event": notice.event_id,
                    "stripe_account": notice.stripe_account,
                },
                queue=settings.fcsync_on_account_queue,
            )
        case HandleEvent(event_id):
            return Followup(contract.HANDLE_EVENT, {"event_id": event_id})
        case ReconcileDue(account_id):
            # The window is the task's default (FCSYNC_RECONCILE_DAYS, read where it runs).
            return Followup(contract.RECONCILE_ACCOUNT, {"account_id": account_id})
        case HandleEvents(event_ids):
            return Followup(contract.HANDLE_EVENTS, {"event_ids": list(event_ids)})
        case TrackAccount(account_id, stripe_account, stripe_key):
            track: dict[str, object] = {"account_id": account_id}
            if stripe_account is not None:
                track["stripe_account"] = stripe_account
            if stripe_key is not None:
                track["stripe_key"] = stripe_key
            return Followup(contract.TRACK_ACCOUNT, track)
