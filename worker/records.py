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


@dataclass(frozen=True)
class Sweep:
    """What a periodic sweep found to do, as intents for after the commit."""

    intents: tuple[Intent, ...] = ()
