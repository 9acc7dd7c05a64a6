"""The refresh state machine: starting, gating and completing transaction, balance and
ownership refreshes, Stripe's daily refresh of subscribed accounts, status changes, and the
heap of what falls due in emulator time."""

from __future__ import annotations

import heapq
import itertools
import math
import random

from emulator import errors
from emulator.accounts import (
    ACCOUNT_STATUSES,
    Account,
    AccountBook,
    RefreshState,
    TransactionRefresh,
)
from emulator.clock import Clock
from emulator.events import Events, Origin
from emulator.identifiers import ALPHABET
from emulator.ledger import DAY_S
from emulator.ownership import balance_at

FEATURE_PERMISSION = {
    "balance": "balances",
    "ownership": "ownership",
    "transactions": "transactions",
}


class Refreshes:
    """What happens to accounts over time. Due work names its account by id, so a deleted
    account's work is skipped, and carries a token: the refresh's number, or the subscription
    generation that scheduled a daily refresh (an unsubscribe makes that one a no-op)."""

    def __init__(self, *, seed: int, clock: Clock, accounts: AccountBook, events: Events) -> None:
        self._seed = seed
        self._clock = clock
        self._accounts = accounts
        self._events = events
        self._due: list[tuple[float, int, str, str, int]] = []
        self._order = itertools.count()

    def process_due(self, now: float) -> None:
        while self._due and self._due[0][0] <= now:
            at, _, kind, account_id, token = heapq.heappop(self._due)
            account = self._accounts.get(account_id)
            if account is None:
                continue  # deleted: nothing of it runs any more
            if kind == "transactions":
                self._complete_transactions(account, token, at)
            elif kind == "daily":
                self._daily_refresh(account, token, at)
            elif kind == "deactivation":
                self._expected_deactivation(account, token)
            else:
                self._complete_feature(account, kind, at)

    def _schedule(self, at: float, kind: str, account: Account, token: int = 0) -> None:
        heapq.heappush(self._due, (at, next(self._order), kind, account.id, token))

    def refresh(self, account: Account, features: list[str]) -> int:
        """Start what may start; a refresh asked too early starts nothing (a gating violation).
        Returns how many of `features` were asked too early."""
        self._require_active(account, "refreshed")
        for feature in features:
            self._require_permission(account, feature)
        now = self._clock.now()
        violations = 0
        for feature in dict.fromkeys(features):
            if feature == "transactions":
                current = account.refreshes[-1] if account.refreshes else None
                if current is None or current.may_start(now):
                    self.start_transactions(account, now)
                else:
                    violations += 1
            else:
                state = self._feature_state(account, feature)
                if state is None or state.may_start(now):
                    self._set_feature_state(account, feature, RefreshState("pending", int(now)))
                    self._schedule(now + account.refresh_delay_s, feature, account)
                else:
                    violations += 1
        return violations

    def subscribe(self, account: Account) -> None:
        self._require_active(account, "subscribed to")
        self._require_permission(account, "transactions")
        if "transactions" in account.subscriptions:
            return
        account.subscriptions.append("transactions")
        account.subscription_generation += 1
        now = self._clock.now()
        current = account.refreshes[-1] if account.refreshes else None
        if current is None or current.may_start(now):
            self.start_transactions(account, now)
        self._schedule(now + DAY_S, "daily", account, account.subscription_generation)

    def unsubscribe(self, account: Account) -> None:
        if "transactions" in account.subscriptions:
            account.subscriptions.remove("transactions")
            account.subscription_generation += 1

    def set_status(self, account: Account, status: str, origin: Origin | None = None) -> None:
        if status not in ACCOUNT_STATUSES:
            raise ValueError(f"status must be one of {', '.join(ACCOUNT_STATUSES)}")
        previous = account.status
        if status == previous:
            return
        if previous == "disconnected":
            raise ValueError("a disconnected account stays disconnected; link a new one")
        account.status = status
        # Whatever was expected of the active account has happened, or a relink ended it.
        account.active_details = None
        if status == "disconnected":
            account.subscriptions.clear()
            account.subscription_generation += 1
            kind = "disconnected"
        else:
            kind = "deactivated" if status == "inactive" else "reactivated"
        self._events.emit(
            f"financial_connections.account.{kind}",
            account,
            self._clock.now(),
            origin,
            previous={"status": previous},
        )

    def expect_deactivation(
        self, account: Account, *, action: str, cause: str, expected_deactivation_date: int
    ) -> None:
        """Stripe expects the active account to become inactive at that date (`status_details.
        active`); unless it is relinked first, it is deactivated then. Stripe emits no event for
        this at 2026-06-24 (its `upcoming_deactivation` event is newer): readers see it on the
        account."""
        if account.status != "active":
            raise ValueError(f"the account is {account.status}; only an active one is expected to")
        account.active_details = {
            "action": action,
            "cause": cause,
            "expected_deactivation_date": expected_deactivation_date,
        }
        self._schedule(
            expected_deactivation_date, "deactivation", account, expected_deactivation_date
        )

    def _expected_deactivation(self, account: Account, date: int) -> None:
        details = account.active_details
        if details is not None and details["expected_deactivation_date"] == date:
            self.set_status(account, "inactive")

    def relink(self, account: Account) -> None:
        """The user linked the account again: active with the same id, nothing expected of it
        any more (`reactivated` if it was inactive); its refreshes and transactions go on."""
        if account.status == "disconnected":
            raise ValueError("a disconnected account stays disconnected; link a new one")
        account.active_details = None
        self.set_status(account, "active")

    def _require_active(self, account: Account, verb: str) -> None:
        if account.status != "active":
            raise errors.StripeError(
                400,
                f"The Financial Connections account {account.id} is {account.status} and cannot "
                f"be {verb}.",
                code="financial_connections_account_inactive",
            )

    def _require_permission(self, account: Account, feature: str) -> None:
        permission = FEATURE_PERMISSION[feature]
        if permission not in account.permissions:
            raise errors.StripeError(
                400,
                f"The Financial Connections account {account.id} does not have the "
                f"`{permission}` permission, which {feature} refreshes need. Collect it with "
                f"permissions[]={permission} in a new Financial Connections Session.",
                param="features",
            )

    def start_transactions(self, account: Account, now: float) -> None:
        seq = len(account.refreshes) + 1
        rng = random.Random(f"{self._seed}/{account.id}/refresh/{seq}/id")
        refresh_id = "fctxnref_1" + "".join(rng.choices(ALPHABET, k=23))
        account.refreshes.append(TransactionRefresh("pending", int(now), None, refresh_id))
        self._accounts.own_refresh(refresh_id, account, seq)
        self._schedule(now + account.refresh_delay_s, "transactions", account, seq)

    def _complete_transactions(self, account: Account, seq: int, at: float) -> None:
        refresh = account.refreshes[seq - 1]
        seed = self._seed
        outcome = random.Random(f"{seed}/{account.id}/refresh/{seq}/outcome").random()
        forced = account.fail_next_refreshes > 0
        if forced:
            account.fail_next_refreshes -= 1
        if account.status != "active" or forced or outcome < account.failure_rate:
            refresh.status = "failed"
        else:
            refresh.status = "succeeded"
            if account.discovery_seq is None:
                account.discovery_seq = seq
                account.discovered_at = int(at)
            data = random.Random(f"{seed}/{account.id}/refresh/{seq}/data")
            changes, account.next_refresh_changes = account.next_refresh_changes, None
            account.ledger.apply_refresh(data, seq, int(at), changes=changes)
        refresh.next_refresh_available_at = math.ceil(at + account.refresh_cooldown_s)
        self._events.emit("financial_connections.account.refreshed_transactions", account, at)

    def _daily_refresh(self, account: Account, generation: int, at: float) -> None:
        """Stripe's own refresh of a subscribed account; it is not subject to gating."""
        if generation != account.subscription_generation:
            return
        current = account.refreshes[-1] if account.refreshes else None
        if account.status == "active" and (current is None or current.status != "pending"):
            self.start_transactions(account, at)
        self._schedule(at + DAY_S, "daily", account, generation)

    def _feature_state(self, account: Account, feature: str) -> RefreshState | None:
        return account.balance_refresh if feature == "balance" else account.ownership_refresh

    def _set_feature_state(self, account: Account, feature: str, state: RefreshState) -> None:
        if feature == "balance":
            account.balance_refresh = state
        else:
            account.ownership_refresh = state

    def _complete_feature(self, account: Account, feature: str, at: float) -> None:
        state = self._feature_state(account, feature)
        assert state is not None
        state.status = "succeeded" if account.status == "active" else "failed"
        state.next_refresh_available_at = math.ceil(at + account.refresh_cooldown_s)
        if state.status == "succeeded" and feature == "balance":
            amount = account.opening_balance + account.ledger.posted_total
            account.balance = balance_at(int(at), account.balance_shape, amount)
        elif state.status == "succeeded" and account.ownerships is not None:
            account.ownership = account.ownerships.take(int(at)).id
        self._events.emit(f"financial_connections.account.refreshed_{feature}", account, at)
