"""Frozen records fcsync passes between layers: Stripe objects as plain data, and follow-up work."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from worker.intents import Intent


@dataclass(frozen=True)
class TransactionRefreshState:
    id: str
    status: str  # open enum: pending | succeeded | failed (+ values Stripe may add)
    last_attempted_at: int
    next_refresh_available_at: int | None


@dataclass(frozen=True)
class FeatureRefreshState:
    """A `balance_refresh` or `ownership_refresh`: like a transaction refresh, without an id."""

    status: str  # open enum: pending | succeeded | failed
    last_attempted_at: int
    next_refresh_available_at: int | None


@dataclass(frozen=True)
class FCBalance:
    """The account's `balance`, in Stripe's shape: currency-keyed integer minor units."""

    as_of: int
    type: str  # open enum: cash | credit
    current: dict[str, int]
    cash_available: dict[str, int] | None
    credit_used: dict[str, int] | None


@dataclass(frozen=True)
class FCOwner:
    """A financial_connections.account_owner."""

    id: str
    ownership: str
    name: str
    email: str | None
    phone: str | None
    raw_address: str | None
    refreshed_at: int | None


@dataclass(frozen=True)
class OwnerPage:
    owners: tuple[FCOwner, ...]
    has_more: bool


@dataclass(frozen=True)
class ActiveStatusDetails:
    """Stripe's `status_details.active`: what it expects of an active account. Open values:
    action none | relink_required, cause access_expired | institution_requirement | unspecified
    (+ values Stripe may add)."""

    action: str
    cause: str | None
    expected_deactivation_date: int | None


@dataclass(frozen=True)
class FCAccount:
    id: str
    livemode: bool
    institution_name: str
    display_name: str | None
    last4: str | None
    category: str
    subcategory: str
    status: str
    permissions: tuple[str, ...]
    subscriptions: tuple[str, ...]
    customer: str | None
    created: int | None
    transaction_refresh: TransactionRefreshState | None
    # The Stripe account context it was read in (a connected `acct_...`; None = the platform):
    # the gateway stamps what it asked with, an event what its `account` says.
    stripe_account: str | None = None
    balance_refresh: FeatureRefreshState | None = None
    ownership_refresh: FeatureRefreshState | None = None
    balance: FCBalance | None = None
    # The latest ownership's id (`fcaowns_...`), expanded or not.
    ownership: str | None = None
    # None: nothing expected of the account (or a payload older than status_details).
    status_details_active: ActiveStatusDetails | None = None
    # The earliest `account_numbers[].expected_expiry_date`, if any number expires.
    account_number_expiry: int | None = None
    # The name of the configured key it was read with (None = `default`), stamped the same way.
    stripe_key: str | None = None


class FCTransaction(NamedTuple):
    """A transaction as a row: its fields in the order of the columns a page writes, so the
    record is the row (built and stored per row a sync reads: a tuple costs a tenth of a frozen
    dataclass's construction)."""

    id: str
    account: str
    amount: int
    currency: str
    description: str
    status: str
    posted_at: int | None
    void_at: int | None
    transacted_at: int
    transaction_refresh: str
    updated: int
    livemode: bool


@dataclass(frozen=True)
class TransactionPage:
    transactions: tuple[FCTransaction, ...]
    has_more: bool

    @property
    def last_id(self) -> str | None:
        return self.transactions[-1].id if self.transactions else None


@dataclass(frozen=True)
class FCEvent:
    id: str
    type: str
    created: int
    livemode: bool
    account: FCAccount | None
    # The event's `account`: set for a Connect event of a connected account, else None.
    stripe_account: str | None = None


@dataclass(frozen=True)
class EventPage:
    """One page of GET /v1/events, newest first: each event's JSON text, as a webhook body."""

    bodies: tuple[str, ...]
    last_id: str | None
    has_more: bool


@dataclass(frozen=True)
class Followup:
    """A task to send once the current unit of work has committed (never inside it)."""

    task: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    countdown: float | None = None
    # The queue of a user's task other than the on-synced one (None: as worker/app.py decides).
    queue: str | None = None


@dataclass(frozen=True)
class Sweep:
    """What a periodic sweep found to do, as intents for after the commit."""

    intents: tuple[Intent, ...] = ()
