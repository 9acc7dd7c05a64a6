"""What a service wants to happen next, after its commit, in the domain's words: the edge maps
each intent to a task, its arguments and its timing (worker/dispatch.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class TrackAccount:
    """An account Stripe told us about that fcsync should start tracking (auto-track), in the
    Stripe account context the event came from (None = the platform)."""

    account_id: str
    stripe_account: str | None = None


@dataclass(frozen=True)
class RefreshDue:
    """Beat found the account due: ask for a refresh, through the gate."""

    account_id: str


@dataclass(frozen=True)
class RetryRefreshAt:
    """Stripe refuses a new refresh until `at`: ask again then (if that is near enough)."""

    account_id: str
    source: str
    at: datetime


@dataclass(frozen=True)
class PollRefresh:
    """A refresh is pending: read it again once it has had time to end. `attempt` counts the
    polls of this refresh so far (the wait grows with it)."""

    account_id: str
    attempt: int = 0


@dataclass(frozen=True)
class PollStaleRefresh:
    """A refresh pending for too long without a webhook: read it again now."""

    account_id: str


@dataclass(frozen=True)
class SyncDue:
    """The account has a succeeded refresh its transactions do not reflect (or a merged
    request): sync it, from the cursor or, `full`, from the start. `handoff`: the lease token
    a run that stopped at FCSYNC_PAGES_PER_RUN handed its lease on to (its continuation)."""

    account_id: str
    full: bool = False
    handoff: str | None = None


@dataclass(frozen=True)
class NotifySynced:
    """A sync ended: tell whoever asked to be told (FCSYNC_ON_SYNCED_TASK)."""

    account_id: str
    refresh_id: str
    inserted: int
    updated: int


@dataclass(frozen=True)
class HandleEvent:
    """A stored webhook event still waits for its handling."""

    event_id: str


Intent = (
    TrackAccount
    | RefreshDue
    | RetryRefreshAt
    | PollRefresh
    | PollStaleRefresh
    | SyncDue
    | NotifySynced
    | HandleEvent
)
