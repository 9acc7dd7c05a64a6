"""What a service wants to happen next, after its commit, in the domain's words: the edge maps
each intent to a task, its arguments and its timing (worker/dispatch.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class TrackAccount:
    """An account Stripe told us about that fcsync should start tracking (auto-track), in the
    Stripe account context the event came from (None = the platform), with the key whose
    webhook secret verified it (None = `default`)."""

    account_id: str
    stripe_account: str | None = None
    stripe_key: str | None = None


@dataclass(frozen=True)
class RefreshDue:
    """Beat found the account's `feature` (transactions, balances, ownership) due: ask for a
    refresh of it, through its gate."""

    account_id: str
    feature: str = "transactions"


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
    feature: str = "transactions"


@dataclass(frozen=True)
class PollStaleRefresh:
    """A refresh pending for too long without a webhook: read it again now."""

    account_id: str
    feature: str = "transactions"


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
class ReconcileDue:
    """The account's reconciliation slot came: re-read its recent window and heal it."""

    account_id: str


@dataclass(frozen=True)
class NotifyAccount:
    """Something happened to the account that its user may have to act on (relink it before
    `expected_deactivation_date`, say): tell whoever asked (FCSYNC_ON_ACCOUNT_TASK). `kind`:
    relink_required, deactivated, reactivated, disconnected, account_numbers_updated or
    upcoming_account_number_expiry; dates are Unix seconds, as Stripe gives them."""

    account_id: str
    kind: str
    status: str
    action: str | None
    cause: str | None
    expected_deactivation_date: int | None
    expected_expiry_date: int | None = None
    event_id: str | None = None
    stripe_account: str | None = None


@dataclass(frozen=True)
class HandleEvent:
    """A stored webhook event still waits for its handling."""

    event_id: str


# Ids in one HandleEvents (one task message): a receiver batch of more is split. Its events are
# handled one after another within the task's time limit; 100 status events, each re-read from
# Stripe at the default 20 requests/s, take ~5 s of it.
EVENT_IDS_MAX = 100


@dataclass(frozen=True)
class HandleEvents:
    """Stored webhook events (at most EVENT_IDS_MAX) that wait for their handling, each on its
    own: the receiver's group commit sends one message for its batch instead of one per event."""

    event_ids: tuple[str, ...]


Intent = (
    TrackAccount
    | RefreshDue
    | RetryRefreshAt
    | PollRefresh
    | PollStaleRefresh
    | SyncDue
    | NotifySynced
    | NotifyAccount
    | HandleEvent
    | ReconcileDue
    | HandleEvents
)
