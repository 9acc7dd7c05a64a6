"""The emulated Stripe account's state: FC accounts, refreshes, sessions, events, the clock and
the schedule of what becomes due. Callers hold `Bank.lock` around every call."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from emulator.accounts import (
    Account,
    AccountBook,
)
from emulator.clock import Clock
from emulator.config import EmulatorConfig
from emulator.events import Events, Origin
from emulator.faults import FaultInjector
from emulator.identifiers import IdSource
from emulator.refreshes import Refreshes
from emulator.sessions import Session, Sessions
from emulator.webhooks import WebhookDispatcher


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    # API requests naming an account (in the path or as `account=`), deleted ones included.
    requests_by_account: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    server_errors: int = 0
    dropped_connections: int = 0
    gating_violations: int = 0


class Bank:
    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.clock = Clock(start_time=config.start_time, frozen=config.frozen_clock)
        self.faults = FaultInjector(config.initial_faults())
        self.webhooks = WebhookDispatcher(
            attempts=config.webhook_attempts,
            backoff_s=config.webhook_backoff_s,
            seed=config.initial_faults().seed,
            on_delivered=self._delivered,
        )
        self._reset_listeners: list[Callable[[], None]] = []
        self._clear()

    def _clear(self) -> None:
        seed = self.config.seed
        self.ids = IdSource(seed, "objects")
        self._accounts = AccountBook(self.config, self.ids)
        self._events = Events(
            self.ids,
            api_version=self.config.api_version,
            webhooks=self.webhooks,
            faults=self.faults,
        )
        self.stats = Stats()
        self._sessions = Sessions(self.ids, self._accounts)
        self._refreshes = Refreshes(
            seed=self.config.seed, clock=self.clock, accounts=self._accounts, events=self._events
        )

    def reset(self) -> None:
        """Back to a fresh emulator: no objects, clock offset 0, default faults, zero stats."""
        self._clear()
        self.clock.reset()
        self.faults.replace(self.config.initial_faults())
        self.webhooks.reset(self.config.initial_faults().seed)
        for listener in self._reset_listeners:
            listener()

    def on_reset(self, listener: Callable[[], None]) -> None:
        """Call `listener` (under the lock) on every reset: state kept outside the bank, such
        as the HTTP layer's Idempotency-Keys, goes with it."""
        self._reset_listeners.append(listener)

    # -- time ---------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.now()

    def tick(self) -> None:
        """Run everything due by now, in time order (the background ticker and each request)."""
        self.process_due(self.clock.now())

    def advance(self, seconds: float) -> int:
        self.clock.advance(seconds)
        now = self.clock.now()
        self.process_due(now)
        return int(now)

    def process_due(self, now: float) -> None:
        self._refreshes.process_due(now)

    # -- accounts -----------------------------------------------------------------------

    def create_account(
        self,
        *,
        transactions: int | None = None,
        status: str = "active",
        permissions: list[str] | None = None,
        refresh_delay_s: float | None = None,
        refresh_cooldown_s: float | None = None,
        failure_rate: float | None = None,
        customer: str | None = None,
        holder: dict[str, str] | None = None,
        livemode: bool = False,
        session: str | None = None,
    ) -> Account:
        now = int(self.clock.now())
        account = self._accounts.create(
            transactions=transactions,
            status=status,
            permissions=permissions,
            refresh_delay_s=refresh_delay_s,
            refresh_cooldown_s=refresh_cooldown_s,
            failure_rate=failure_rate,
            customer=customer,
            holder=holder,
            livemode=livemode,
            session=session,
            now=now,
        )
        self._events.emit("financial_connections.account.created", account, now)
        return account

    def delete_account(self, account: Account) -> None:
        """Forget the account as Stripe forgets one it no longer knows (another key's object,
        purged test data): every call naming it answers 404 `resource_missing`, and no event
        says so. Its past events stay listed."""
        self._accounts.delete(account)

    @property
    def accounts(self) -> Mapping[str, Account]:
        """Every account of both modes by id: for in-process checks, not the API."""
        return self._accounts.by_id()

    def account(self, account_id: str, livemode: bool, *, param: str) -> Account:
        """The account as a key of this mode sees it: other modes' objects do not exist."""
        return self._accounts.find(account_id, livemode, param=param)

    def list_accounts(self, params: dict[str, Any], livemode: bool) -> dict[str, Any]:
        return self._accounts.list_accounts(params, livemode)

    # -- refreshes ----------------------------------------------------------------------

    def refresh(self, account: Account, features: list[str]) -> None:
        """Start what may start; a refresh asked too early starts nothing (a gating violation)."""
        self.stats.gating_violations += self._refreshes.refresh(account, features)

    def subscribe(self, account: Account) -> None:
        self._refreshes.subscribe(account)

    def unsubscribe(self, account: Account) -> None:
        self._refreshes.unsubscribe(account)

    def set_status(self, account: Account, status: str, origin: Origin | None = None) -> None:
        self._refreshes.set_status(account, status, origin)

    # -- transactions -------------------------------------------------------------------

    def list_transactions(self, params: dict[str, Any], livemode: bool) -> dict[str, Any]:
        return self._accounts.list_transactions(params, livemode)

    def transaction(self, transaction_id: str, livemode: bool) -> dict[str, Any]:
        return self._accounts.transaction(transaction_id, livemode)

    def ground_truth(self, account: Account) -> list[dict[str, Any]]:
        """Every transaction the API shows for the account right now, newest first."""
        return self._accounts.ground_truth(account)

    # -- sessions -----------------------------------------------------------------------

    def create_session(self, params: dict[str, Any], livemode: bool) -> Session:
        return self._sessions.create(params, livemode)

    def session(self, session_id: str, livemode: bool) -> Session:
        return self._sessions.get(session_id, livemode)

    def find_session(self, session_id: str) -> Session | None:
        """The session of either mode, as the control API sees it."""
        return self._sessions.find(session_id)

    def complete_session(self, session: Session, count: int) -> None:
        """What the user finishing the authentication flow does: link `count` new accounts."""
        for _ in range(count):
            account = self.create_account(
                holder=dict(session.account_holder),
                permissions=list(session.permissions),
                livemode=session.livemode,
                session=session.id,
            )
            session.accounts.append(account.id)
            if "transactions" in session.prefetch and "transactions" in account.permissions:
                self._refreshes.start_transactions(account, self.clock.now())

    def render_session(self, session: Session) -> dict[str, Any]:
        return self._sessions.render(session)

    # -- events -------------------------------------------------------------------------

    @property
    def events(self) -> Sequence[dict[str, Any]]:
        """Every event of both modes, oldest first: for in-process checks, not the API."""
        return self._events.all()

    def _delivered(self, event_id: str) -> None:
        with self.lock:
            self._events.delivered(event_id)

    def list_events(self, params: dict[str, Any], livemode: bool) -> dict[str, Any]:
        return self._events.page(params, livemode, now=self.clock.now())

    def event(self, event_id: str, livemode: bool) -> dict[str, Any]:
        return self._events.get(event_id, livemode)

    def stats_json(self) -> dict[str, Any]:
        return {
            "requests": dict(sorted(self.stats.requests.items())),
            "requests_by_account": dict(sorted(self.stats.requests_by_account.items())),
            "rate_limited": self.stats.rate_limited,
            "server_errors": self.stats.server_errors,
            "dropped_connections": self.stats.dropped_connections,
            "gating_violations": self.stats.gating_violations,
            "webhooks": self.webhooks.counts(),
        }
