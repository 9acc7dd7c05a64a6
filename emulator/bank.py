"""The emulated Stripe account's state: FC accounts, refreshes, sessions, events, the clock and
the schedule of what becomes due. Callers hold `Bank.lock` around every call."""

from __future__ import annotations

import heapq
import itertools
import math
import random
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from emulator import errors
from emulator.clock import Clock
from emulator.config import EmulatorConfig
from emulator.events import Events, Origin
from emulator.faults import FaultInjector
from emulator.identifiers import ALPHABET, IdSource, TransactionIds, base62, transaction_tag
from emulator.ledger import DAY_S, Ledger
from emulator.paging import exclusive_cursors, list_object, page, page_by_id
from emulator.webhooks import WebhookDispatcher

FEATURE_PERMISSION = {
    "balance": "balances",
    "ownership": "ownership",
    "transactions": "transactions",
}
INSTITUTIONS = ("StripeBank", "Emulated Credit Union", "First Test Bank", "Sandbox Savings & Loan")
ACCOUNT_STATUSES = ("active", "inactive", "disconnected")
MAX_TRANSACTIONS = 1_000_000


@dataclass
class RefreshState:
    status: str
    last_attempted_at: int
    next_refresh_available_at: int | None = None

    def may_start(self, now: float) -> bool:
        if self.status == "pending":
            return False
        return self.next_refresh_available_at is None or now >= self.next_refresh_available_at

    def render(self) -> dict[str, Any]:
        return {
            "last_attempted_at": self.last_attempted_at,
            "next_refresh_available_at": self.next_refresh_available_at,
            "status": self.status,
        }


@dataclass
class TransactionRefresh(RefreshState):
    id: str = ""

    def render(self) -> dict[str, Any]:
        return {"id": self.id, **super().render()}


@dataclass
class Account:
    id: str
    created: int
    livemode: bool
    holder: dict[str, str]
    permissions: list[str]
    status: str
    session: str | None
    institution_name: str
    display_name: str
    last4: str
    subcategory: str
    refresh_delay_s: float
    refresh_cooldown_s: float
    failure_rate: float
    opening_balance: int
    ledger: Ledger
    subscriptions: list[str] = field(default_factory=list)
    refreshes: list[TransactionRefresh] = field(default_factory=list)
    discovery_seq: int | None = None
    discovered_at: int = 0
    subscription_generation: int = 0
    balance: dict[str, Any] | None = None
    balance_refresh: RefreshState | None = None
    ownership: str | None = None
    ownership_refresh: RefreshState | None = None

    def refresh_id(self, seq: int) -> str:
        resolved = seq or self.discovery_seq
        assert resolved is not None
        return self.refreshes[resolved - 1].id

    def render(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "financial_connections.account",
            "account_holder": dict(self.holder),
            "account_numbers": None,
            "balance": self.balance,
            "balance_refresh": self.balance_refresh.render() if self.balance_refresh else None,
            "category": "cash",
            "created": self.created,
            "display_name": self.display_name,
            "institution_name": self.institution_name,
            "last4": self.last4,
            "livemode": self.livemode,
            "ownership": self.ownership,
            "ownership_refresh": (
                self.ownership_refresh.render() if self.ownership_refresh else None
            ),
            "permissions": list(self.permissions),
            "status": self.status,
            "subcategory": self.subcategory,
            "subscriptions": list(self.subscriptions),
            "supported_payment_method_types": ["link", "us_bank_account"],
            "transaction_refresh": self.refreshes[-1].render() if self.refreshes else None,
        }


@dataclass
class Session:
    id: str
    livemode: bool
    client_secret: str
    account_holder: dict[str, str]
    permissions: list[str]
    filters: dict[str, Any]
    prefetch: list[str]
    limits: dict[str, Any] | None
    manual_entry: dict[str, Any] | None
    return_url: str | None
    accounts: list[str] = field(default_factory=list)


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    # API requests naming an account (in the path or as `account=`), deleted ones included.
    requests_by_account: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    server_errors: int = 0
    dropped_connections: int = 0
    gating_violations: int = 0


@dataclass(frozen=True)
class StoredResponse:
    """A POST's outcome kept under its Idempotency-Key, replayed for the same parameters."""

    fingerprint: str
    status: int
    body: bytes
    request_id: str


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
        self._clear()

    def _clear(self) -> None:
        seed = self.config.seed
        self.ids = IdSource(seed, "objects")
        self.accounts: dict[str, Account] = {}
        self.account_order: list[Account] = []
        self.accounts_by_tag: dict[str, Account] = {}
        self.refresh_owner: dict[str, tuple[Account, int]] = {}
        self.sessions: dict[str, Session] = {}
        self._events = Events(
            self.ids,
            api_version=self.config.api_version,
            webhooks=self.webhooks,
            faults=self.faults,
        )
        self.idempotency: dict[tuple[bool, str], StoredResponse] = {}
        self.stats = Stats()
        self._due: list[tuple[float, int, str, str, int]] = []
        self._due_order = itertools.count()

    def reset(self) -> None:
        """Back to a fresh emulator: no objects, clock offset 0, default faults, zero stats."""
        self._clear()
        self.clock.reset()
        self.faults.replace(self.config.initial_faults())
        self.webhooks.reset(self.config.initial_faults().seed)

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
        while self._due and self._due[0][0] <= now:
            at, _, kind, account_id, token = heapq.heappop(self._due)
            account = self.accounts.get(account_id)
            if account is None:
                continue  # deleted: nothing of it runs any more
            if kind == "transactions":
                self._complete_transactions(account, token, at)
            elif kind == "daily":
                self._daily_refresh(account, token, at)
            else:
                self._complete_feature(account, kind, at)

    def _schedule(self, at: float, kind: str, account: Account, token: int = 0) -> None:
        heapq.heappush(self._due, (at, next(self._due_order), kind, account.id, token))

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
        cfg = self.config
        count = cfg.transactions if transactions is None else transactions
        if not 0 <= count <= MAX_TRANSACTIONS:
            raise ValueError(f"transactions must be between 0 and {MAX_TRANSACTIONS}")
        if status not in ACCOUNT_STATUSES:
            raise ValueError(f"status must be one of {', '.join(ACCOUNT_STATUSES)}")
        now = int(self.clock.now())
        index = len(self.account_order)
        account_id = self.ids.make("fca_")
        if holder is None:
            holder = {"customer": customer or self.ids.make("cus_", 14), "type": "customer"}
        profile = random.Random(f"{cfg.seed}/{account_id}/profile")
        subcategory = "savings" if profile.random() < 0.2 else "checking"
        # A multiplier coprime with 62**6 keeps tags unique per index while looking random.
        tag = base62((index * 1_000_003 + cfg.seed) % 62**6, 6)
        ledger = Ledger(TransactionIds(cfg.seed, tag))
        ledger.seed_history(random.Random(f"{cfg.seed}/{account_id}/history"), count, now)
        account = Account(
            id=account_id,
            created=now,
            livemode=livemode,
            holder=holder,
            permissions=list(cfg.permissions if permissions is None else permissions),
            status=status,
            session=session,
            institution_name=profile.choice(INSTITUTIONS),
            display_name=f"{subcategory.title()} Account",
            last4=f"{profile.randrange(10_000):04d}",
            subcategory=subcategory,
            refresh_delay_s=cfg.refresh_delay_s if refresh_delay_s is None else refresh_delay_s,
            refresh_cooldown_s=(
                cfg.refresh_cooldown_s if refresh_cooldown_s is None else refresh_cooldown_s
            ),
            failure_rate=cfg.failure_rate if failure_rate is None else failure_rate,
            opening_balance=profile.randrange(50_000, 2_500_000),
            ledger=ledger,
        )
        self.accounts[account_id] = account
        self.account_order.append(account)
        self.accounts_by_tag[tag] = account
        self._emit("financial_connections.account.created", account, now, None)
        return account

    def delete_account(self, account: Account) -> None:
        """Forget the account as Stripe forgets one it no longer knows (another key's object,
        purged test data): every call naming it answers 404 `resource_missing`, and no event
        says so. Its past events stay listed."""
        del self.accounts[account.id]
        self.account_order.remove(account)
        self.accounts_by_tag = {t: a for t, a in self.accounts_by_tag.items() if a is not account}
        self.refresh_owner = {r: o for r, o in self.refresh_owner.items() if o[0] is not account}

    def account(self, account_id: str, livemode: bool, *, param: str) -> Account:
        """The account as a key of this mode sees it: other modes' objects do not exist."""
        account = self.accounts.get(account_id)
        if account is None or account.livemode != livemode:
            raise errors.no_such("financial connections account", account_id, param=param)
        return account

    def list_accounts(self, params: dict[str, Any], livemode: bool) -> dict[str, Any]:
        holder = params.get("account_holder", {})
        if "account" in holder and "customer" in holder:
            raise errors.StripeError(
                400,
                "You may only specify one of these parameters: account_holder[account], "
                "account_holder[customer].",
                code="parameters_exclusive",
                param="account_holder",
            )
        keys = [
            i
            for i, a in enumerate(self.account_order)
            if a.livemode == livemode
            and all(a.holder.get(k) == v for k, v in holder.items())
            and params.get("session", a.session) == a.session
        ]
        position = {a.id: i for i, a in enumerate(self.account_order)}
        chosen, has_more = page_by_id(keys, params, position, "financial connections account")
        return list_object(
            [self.account_order[i].render() for i in chosen],
            has_more,
            "/v1/financial_connections/accounts",
        )

    # -- refreshes ----------------------------------------------------------------------

    def refresh(self, account: Account, features: list[str]) -> None:
        """Start what may start; a refresh asked too early starts nothing (a gating violation)."""
        self._require_active(account, "refreshed")
        for feature in features:
            self._require_permission(account, feature)
        now = self.clock.now()
        for feature in dict.fromkeys(features):
            if feature == "transactions":
                current = account.refreshes[-1] if account.refreshes else None
                if current is None or current.may_start(now):
                    self._start_transactions(account, now)
                else:
                    self.stats.gating_violations += 1
            else:
                state = self._feature_state(account, feature)
                if state is None or state.may_start(now):
                    self._set_feature_state(account, feature, RefreshState("pending", int(now)))
                    self._schedule(now + account.refresh_delay_s, feature, account)
                else:
                    self.stats.gating_violations += 1

    def subscribe(self, account: Account) -> None:
        self._require_active(account, "subscribed to")
        self._require_permission(account, "transactions")
        if "transactions" in account.subscriptions:
            return
        account.subscriptions.append("transactions")
        account.subscription_generation += 1
        now = self.clock.now()
        current = account.refreshes[-1] if account.refreshes else None
        if current is None or current.may_start(now):
            self._start_transactions(account, now)
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
        if status == "disconnected":
            account.subscriptions.clear()
            account.subscription_generation += 1
            kind = "disconnected"
        else:
            kind = "deactivated" if status == "inactive" else "reactivated"
        self._emit(
            f"financial_connections.account.{kind}",
            account,
            self.clock.now(),
            origin,
            previous={"status": previous},
        )

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

    def _start_transactions(self, account: Account, now: float) -> None:
        seq = len(account.refreshes) + 1
        rng = random.Random(f"{self.config.seed}/{account.id}/refresh/{seq}/id")
        refresh_id = "fctxnref_1" + "".join(rng.choices(ALPHABET, k=23))
        account.refreshes.append(TransactionRefresh("pending", int(now), None, refresh_id))
        self.refresh_owner[refresh_id] = (account, seq)
        self._schedule(now + account.refresh_delay_s, "transactions", account, seq)

    def _complete_transactions(self, account: Account, seq: int, at: float) -> None:
        refresh = account.refreshes[seq - 1]
        seed = self.config.seed
        outcome = random.Random(f"{seed}/{account.id}/refresh/{seq}/outcome").random()
        if account.status != "active" or outcome < account.failure_rate:
            refresh.status = "failed"
        else:
            refresh.status = "succeeded"
            if account.discovery_seq is None:
                account.discovery_seq = seq
                account.discovered_at = int(at)
            data = random.Random(f"{seed}/{account.id}/refresh/{seq}/data")
            account.ledger.apply_refresh(data, seq, int(at))
        refresh.next_refresh_available_at = math.ceil(at + account.refresh_cooldown_s)
        self._emit("financial_connections.account.refreshed_transactions", account, at, None)

    def _daily_refresh(self, account: Account, generation: int, at: float) -> None:
        """Stripe's own refresh of a subscribed account; it is not subject to gating."""
        if generation != account.subscription_generation:
            return
        current = account.refreshes[-1] if account.refreshes else None
        if account.status == "active" and (current is None or current.status != "pending"):
            self._start_transactions(account, at)
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
            account.balance = {
                "as_of": int(at),
                "cash": {"available": {"usd": amount}},
                "current": {"usd": amount},
                "type": "cash",
            }
        elif state.status == "succeeded":
            account.ownership = "fcaowns_1" + account.id[len("fca_1") :]
        self._emit(f"financial_connections.account.refreshed_{feature}", account, at, None)

    # -- transactions -------------------------------------------------------------------

    def list_transactions(self, params: dict[str, Any], livemode: bool) -> dict[str, Any]:
        account = self.account(params["account"], livemode, param="account")
        ledger = account.ledger
        after_seq: int | None = None
        if "transaction_refresh" in params:
            after = params["transaction_refresh"]["after"]
            owner = self.refresh_owner.get(after)
            if owner is None or owner[0] is not account:
                raise errors.no_such(
                    "transaction refresh", after, param="transaction_refresh[after]", status=400
                )
            after_seq = owner[1]
        keys: range | list[int] = range(0)
        if account.discovery_seq is not None:
            keys = ledger.window(params.get("transacted_at"))
            # Rows discovered by the first successful refresh all count as changed by it.
            if after_seq is not None and after_seq >= account.discovery_seq:
                keys = ledger.changed_after(after_seq, keys)
        exclusive_cursors(params)
        cursors: dict[str, int] = {}
        for name in ("starting_after", "ending_before"):
            if name in params:
                found = ledger.ids.position(params[name])
                if found is None or found >= len(ledger) or account.discovery_seq is None:
                    raise errors.no_such(
                        "financial connections transaction", params[name], param=name, status=400
                    )
                cursors[name] = found
        chosen, has_more = page(keys, limit=params.get("limit", 10), **cursors)
        return list_object(
            [self._render_transaction(account, p) for p in chosen],
            has_more,
            "/v1/financial_connections/transactions",
        )

    def transaction(self, transaction_id: str, livemode: bool) -> dict[str, Any]:
        tag = transaction_tag(transaction_id)
        account = self.accounts_by_tag.get(tag) if tag else None
        if account is not None and account.livemode == livemode:
            position = account.ledger.ids.position(transaction_id)
            visible = account.discovery_seq is not None
            if visible and position is not None and position < len(account.ledger):
                return self._render_transaction(account, position)
        raise errors.no_such(
            "financial connections transaction", transaction_id, param="transaction"
        )

    def ground_truth(self, account: Account) -> list[dict[str, Any]]:
        """Every transaction the API shows for the account right now, newest first."""
        if account.discovery_seq is None:
            return []
        return [self._render_transaction(account, p) for p in reversed(range(len(account.ledger)))]

    def _render_transaction(self, account: Account, position: int) -> dict[str, Any]:
        return account.ledger.render(
            position,
            account_id=account.id,
            livemode=account.livemode,
            refresh_id=account.refresh_id,
            discovered_at=account.discovered_at,
        )

    # -- sessions -----------------------------------------------------------------------

    def create_session(self, params: dict[str, Any], livemode: bool) -> Session:
        holder = params["account_holder"]
        kind = holder["type"]
        other = "account" if kind == "customer" else "customer"
        if kind not in holder:
            raise errors.missing(f"account_holder[{kind}]")
        if other in holder:
            raise errors.invalid(
                f"account_holder[{other}]",
                f"account_holder[{other}] cannot be set when account_holder[type] is {kind}.",
            )
        if not params["permissions"]:
            raise errors.missing("permissions")
        session_id = self.ids.make("fcsess_")
        session = Session(
            id=session_id,
            livemode=livemode,
            client_secret=f"{session_id}_secret_{self.ids.make('', 24)}",
            account_holder=dict(holder),
            permissions=list(dict.fromkeys(params["permissions"])),
            filters=params.get("filters", {"countries": ["US"]}),
            prefetch=list(dict.fromkeys(params.get("prefetch", []))),
            limits=params.get("limits"),
            manual_entry=params.get("manual_entry"),
            return_url=params.get("return_url"),
        )
        self.sessions[session_id] = session
        return session

    def session(self, session_id: str, livemode: bool) -> Session:
        session = self.sessions.get(session_id)
        if session is None or session.livemode != livemode:
            raise errors.no_such("financial connections session", session_id, param="session")
        return session

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
                self._start_transactions(account, self.clock.now())

    def render_session(self, session: Session) -> dict[str, Any]:
        rendered: dict[str, Any] = {
            "id": session.id,
            "object": "financial_connections.session",
            "account_holder": dict(session.account_holder),
            "accounts": list_object(
                [self.accounts[a].render() for a in session.accounts if a in self.accounts],
                False,
                "/v1/financial_connections/accounts",
            ),
            "client_secret": session.client_secret,
            "filters": session.filters,
            "livemode": session.livemode,
            "permissions": list(session.permissions),
            "prefetch": list(session.prefetch),
        }
        if session.limits is not None:
            rendered["limits"] = session.limits
        if session.manual_entry is not None:
            rendered["manual_entry"] = session.manual_entry
        if session.return_url is not None:
            rendered["return_url"] = session.return_url
        return rendered

    # -- events -------------------------------------------------------------------------

    @property
    def events(self) -> Sequence[dict[str, Any]]:
        """Every event of both modes, oldest first: for in-process checks, not the API."""
        return self._events.all()

    def _emit(
        self,
        type_: str,
        account: Account,
        at: float,
        origin: Origin | None,
        previous: dict[str, Any] | None = None,
    ) -> None:
        self._events.emit(
            type_,
            account.render(),
            livemode=account.livemode,
            at=at,
            origin=origin,
            previous=previous,
        )

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
