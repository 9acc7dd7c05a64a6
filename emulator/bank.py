"""The emulated Stripe, as one facade over the objects that hold its state: the platforms and
their scopes, the AccountBook, the Refreshes state machine with its due heap, the Events log
with webhook delivery, Sessions and Stats, on one clock. Callers hold `Bank.lock` around every
call."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from emulator.accounts import Account, AccountBook
from emulator.api_versions import invalid_message, is_known
from emulator.clock import Clock
from emulator.config import EmulatorConfig, FaultSettings
from emulator.events import ACCOUNT_EVENT_TYPES, ACCOUNT_NUMBER_EVENT_TYPES, Events, Origin
from emulator.faults import FaultInjector, Outcome
from emulator.identifiers import IdSource
from emulator.refreshes import Refreshes
from emulator.scopes import DEFAULT_PLATFORM, Platforms, Scope
from emulator.sessions import Session, Sessions
from emulator.stats import Stats
from emulator.webhooks import Endpoint, WebhookDispatcher


class Bank:
    """`faults` is public: the HTTP layer rolls them before the bank sees a request."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.faults = FaultInjector(config.initial_faults())
        self._clock = Clock(start_time=config.start_time, frozen=config.frozen_clock)
        self._webhooks = WebhookDispatcher(
            attempts=config.webhook_attempts,
            backoff_s=config.webhook_backoff_s,
            seed=config.initial_faults().seed,
            on_delivered=self._delivered,
        )
        self._reset_listeners: list[Callable[[], None]] = []
        self._clear()

    def _clear(self) -> None:
        # One id stream for every object, so the same calls mint the same ids after a reset.
        ids = IdSource(self.config.seed, "objects")
        self._platforms = Platforms(ids)
        self._accounts = AccountBook(self.config, ids)
        self._events = Events(
            ids,
            api_version=self.config.api_version,
            webhooks=self._webhooks,
            faults=self.faults,
        )
        self._stats = Stats()
        self._sessions = Sessions(ids, self._accounts)
        self._refreshes = Refreshes(
            seed=self.config.seed, clock=self._clock, accounts=self._accounts, events=self._events
        )

    def reset(self) -> None:
        """Back to a fresh emulator: no objects, no registered platforms, clock offset 0,
        default faults, zero stats."""
        self._clear()
        self._clock.reset()
        self.faults.replace(self.config.initial_faults())
        self._webhooks.reset(self.config.initial_faults().seed)
        for listener in self._reset_listeners:
            listener()

    def on_reset(self, listener: Callable[[], None]) -> None:
        """Call `listener` (under the lock) on every reset: state kept outside the bank, such
        as the HTTP layer's Idempotency-Keys, goes with it."""
        self._reset_listeners.append(listener)

    # -- time ---------------------------------------------------------------------------

    def now(self) -> float:
        return self._clock.now()

    def tick(self) -> None:
        """Run everything due by now, in time order (the background ticker and each request)."""
        self.process_due(self._clock.now())

    def advance(self, seconds: float) -> int:
        self._clock.advance(seconds)
        now = self._clock.now()
        self.process_due(now)
        return int(now)

    def process_due(self, now: float) -> None:
        self._refreshes.process_due(now)
        # After the refreshes: a delivery delayed until a refresh's end goes out after its event.
        self._webhooks.release_due(now)

    # -- platforms and scopes -----------------------------------------------------------

    def register_platform(self, keys: list[str], platform_id: str | None = None) -> str:
        """Another Stripe account beside the emulator's own, reached by `keys` (ValueError for
        a malformed key or id, or a key taken); its objects are its own."""
        return self._platforms.register(keys, platform_id)

    def platforms(self) -> dict[str, list[str]]:
        return self._platforms.all()

    def known_platform(self, platform_id: str) -> bool:
        return self._platforms.known(platform_id)

    def scope(self, key: str, stripe_account: str | None) -> Scope:
        """Whose objects a request with this key and `Stripe-Account` header sees."""
        return self._platforms.scope(key, stripe_account)

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
        scope: Scope | None = None,
        session: str | None = None,
    ) -> Account:
        """A new FC account of `scope` (default: the emulator's platform, test mode)."""
        now = int(self._clock.now())
        account = self._accounts.create(
            transactions=transactions,
            status=status,
            permissions=permissions,
            refresh_delay_s=refresh_delay_s,
            refresh_cooldown_s=refresh_cooldown_s,
            failure_rate=failure_rate,
            customer=customer,
            holder=holder,
            scope=scope or Scope(),
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
        """Every account of every scope by id: for in-process checks, not the API."""
        return self._accounts.by_id()

    def account(self, account_id: str, scope: Scope, *, param: str) -> Account:
        """The account as a request in `scope` sees it: other scopes' objects do not exist."""
        return self._accounts.find(account_id, scope, param=param)

    def list_accounts(self, params: dict[str, Any], scope: Scope) -> dict[str, Any]:
        return self._accounts.list_accounts(params, scope)

    def find_account(self, account_id: str) -> Account | None:
        """The account of any scope, as the control API sees it."""
        return self._accounts.get(account_id)

    def all_accounts(self) -> list[Account]:
        """Every account of every scope, oldest first."""
        return self._accounts.all()

    def tune_account(
        self,
        account: Account,
        *,
        refresh_delay_s: float | None = None,
        refresh_cooldown_s: float | None = None,
        failure_rate: float | None = None,
        fail_next_refreshes: int | None = None,
        next_refresh_changes: int | None = None,
    ) -> None:
        """Change how the account's refreshes behave from now on (not an API change)."""
        if fail_next_refreshes is not None:
            account.fail_next_refreshes = fail_next_refreshes
        if next_refresh_changes is not None:
            account.next_refresh_changes = next_refresh_changes
        if refresh_delay_s is not None:
            account.refresh_delay_s = refresh_delay_s
        if refresh_cooldown_s is not None:
            account.refresh_cooldown_s = refresh_cooldown_s
        if failure_rate is not None:
            account.failure_rate = failure_rate

    # -- refreshes ----------------------------------------------------------------------

    def refresh(self, account: Account, features: list[str]) -> None:
        """Start what may start; a refresh asked too early starts nothing (a gating violation),
        one asked of an account that is not active is refused (counted too)."""
        if account.status != "active":
            self._stats.inactive_refreshes += 1
        self._stats.gating_violations += self._refreshes.refresh(account, features)

    def subscribe(self, account: Account) -> None:
        self._refreshes.subscribe(account)

    def unsubscribe(self, account: Account) -> None:
        self._refreshes.unsubscribe(account)

    def set_status(self, account: Account, status: str, origin: Origin | None = None) -> None:
        self._refreshes.set_status(account, status, origin)

    def expect_deactivation(
        self, account: Account, *, action: str, cause: str, expected_deactivation_date: int
    ) -> None:
        """`status_details.active` on the active account; deactivated at that date unless
        relinked first (ValueError if it is not active)."""
        self._refreshes.expect_deactivation(
            account,
            action=action,
            cause=cause,
            expected_deactivation_date=expected_deactivation_date,
        )

    def relink(self, account: Account) -> None:
        """Active again with the same id and history (ValueError if disconnected)."""
        self._refreshes.relink(account)

    def account_numbers_changed(
        self, account: Account, type_: str, expected_expiry_date: int | None
    ) -> dict[str, Any]:
        """The account's tokenized account number as Stripe reports it after a change, and
        the `account_numbers_updated` or `upcoming_account_number_expiry` event saying so."""
        if type_ not in ACCOUNT_NUMBER_EVENT_TYPES:
            raise ValueError(f"type must be one of {', '.join(sorted(ACCOUNT_NUMBER_EVENT_TYPES))}")
        account.account_numbers = [
            {
                "expected_expiry_date": expected_expiry_date,
                "identifier_type": "tokenized_account_number",
                "status": "transactable",
                "supported_networks": ["ach"],
            }
        ]
        return self._events.emit(type_, account, self._clock.now())

    # -- transactions -------------------------------------------------------------------

    def list_transactions(self, params: dict[str, Any], scope: Scope) -> dict[str, Any]:
        return self._accounts.list_transactions(params, scope)

    def transaction(self, transaction_id: str, scope: Scope) -> dict[str, Any]:
        return self._accounts.transaction(transaction_id, scope)

    def drop_transaction(self, transaction_id: str) -> Account | None:
        """Drop a pending transaction as Stripe drops one that never posts (see AccountBook)."""
        return self._accounts.drop_transaction(transaction_id)

    def ground_truth(self, account: Account) -> list[dict[str, Any]]:
        """Every transaction the API shows for the account right now, newest first."""
        return self._accounts.ground_truth(account)

    # -- sessions -----------------------------------------------------------------------

    def create_session(self, params: dict[str, Any], scope: Scope) -> Session:
        return self._sessions.create(params, scope)

    def session(self, session_id: str, scope: Scope) -> Session:
        return self._sessions.get(session_id, scope)

    def find_session(self, session_id: str) -> Session | None:
        """The session of any scope, as the control API sees it."""
        return self._sessions.find(session_id)

    def complete_session(self, session: Session, count: int) -> None:
        """What the user finishing the authentication flow does: link `count` new accounts."""
        for _ in range(count):
            account = self.create_account(
                holder=dict(session.account_holder),
                permissions=list(session.permissions),
                scope=session.scope,
                session=session.id,
            )
            session.accounts.append(account.id)
            if "transactions" in session.prefetch and "transactions" in account.permissions:
                self._refreshes.start_transactions(account, self._clock.now())

    def render_session(self, session: Session) -> dict[str, Any]:
        return self._sessions.render(session)

    # -- events and webhooks ------------------------------------------------------------

    @property
    def events(self) -> Sequence[dict[str, Any]]:
        """Every event of every scope, oldest first: for in-process checks, not the API."""
        return self._events.all()

    def _delivered(self, event_id: str) -> None:
        with self.lock:
            self._events.delivered(event_id)

    def list_events(self, params: dict[str, Any], scope: Scope) -> dict[str, Any]:
        return self._events.page(params, scope, now=self._clock.now())

    def event(self, event_id: str, scope: Scope) -> dict[str, Any]:
        return self._events.get(event_id, scope, now=self._clock.now())

    def trigger_event(self, type_: str, account: Account) -> dict[str, Any]:
        """Emit `type_` for the account as it is now, changing nothing else (like `stripe
        trigger`): delivered as any event, webhook faults included. ValueError for a type the
        emulator never emits."""
        if type_ not in ACCOUNT_EVENT_TYPES:
            raise ValueError(f"type must be one of {', '.join(sorted(ACCOUNT_EVENT_TYPES))}")
        return self._events.emit(type_, account, self._clock.now())

    def resend_event(self, event_id: str) -> int | None:
        """Send a stored event (of any scope) again to every endpoint that receives its scope,
        outside the webhook faults; how many endpoints it is due to reach, None for an unknown
        event."""
        return self._events.resend(event_id)

    def start_webhooks(self) -> None:
        """Start the background sender; events emitted before are delivered once it runs."""
        self._webhooks.start()

    def stop_webhooks(self) -> None:
        self._webhooks.stop()

    def add_webhook_endpoint(
        self,
        url: str,
        secret: str,
        *,
        connect: bool = False,
        platform: str = DEFAULT_PLATFORM,
        api_version: str | None = None,
    ) -> Endpoint:
        """An account endpoint of `platform` (its own events), or with `connect` a Connect
        endpoint (its connected accounts' events); events reach it at `api_version` (None:
        the account's default version; ValueError for one Stripe does not know)."""
        if api_version is not None and not is_known(api_version, self.config.api_version):
            raise ValueError(invalid_message(api_version))
        return self._webhooks.add_endpoint(
            url, secret, connect=connect, platform=platform, api_version=api_version
        )

    def webhook_endpoints(self) -> list[Endpoint]:
        return self._webhooks.endpoints()

    # -- faults and stats ---------------------------------------------------------------

    def update_faults(self, updates: dict[str, Any]) -> FaultSettings:
        """Merge `updates` into the fault settings (ValueError if invalid); a new seed restarts
        the webhook faults' stream too."""
        settings = self.faults.update(updates)
        if "seed" in updates:
            self._webhooks.reseed(settings.seed)
        return settings

    def fault_settings(self) -> FaultSettings:
        return self.faults.settings

    def count_request(
        self, template: str, account_id: str | None, api_key: str | None = None
    ) -> None:
        """`api_key`: masked, as Stripe quotes a key."""
        self._stats.count_request(template, account_id, api_key)

    def count_fault(self, outcome: Outcome) -> None:
        self._stats.count_fault(outcome)

    def count_latency_spike(self) -> None:
        self._stats.count_latency_spike()

    def count_replay(self, template: str, *, lost: bool) -> None:
        self._stats.count_replay(template, lost=lost)

    def stats_json(self) -> dict[str, Any]:
        return self._stats.as_json(self._webhooks.counts())
