"""The refresh gate every feature shares (transactions, balances, ownership): Stripe starts no
refresh while one is pending, nor before its `next_refresh_available_at`."""

from __future__ import annotations

from typing import Literal, Protocol

Gate = Literal["pending", "cooldown", "open"]

# fcsync's feature names (`permissions` names) and what Stripe's refresh endpoint calls them.
STRIPE_REFRESH_FEATURE = {
    "transactions": "transactions",
    "balances": "balance",
    "ownership": "ownership",
}
FEATURES = tuple(STRIPE_REFRESH_FEATURE)
OPTIONAL_FEATURES = ("balances", "ownership")


class RefreshState(Protocol):
    @property
    def status(self) -> str: ...

    @property
    def next_refresh_available_at(self) -> int | None: ...


def gate(state: RefreshState | None, now_ts: int) -> Gate:
    """Whether a refresh of this state may start now (no state yet: it may)."""
    if state is None:
        return "open"
    if state.status == "pending":
        return "pending"
    if (state.next_refresh_available_at or 0) > now_ts:
        return "cooldown"
    return "open"
