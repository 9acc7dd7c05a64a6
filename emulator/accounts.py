"""FC accounts: their state and refresh records, and the book that creates, finds, deletes and
lists them and pages their transactions as the API shows them."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from emulator import errors
from emulator.config import EmulatorConfig
from emulator.identifiers import IdSource, TransactionIds, base62, transaction_tag
from emulator.ledger import Ledger
from emulator.ownership import Ownerships, default_owners
from emulator.paging import exclusive_cursors, list_object, page, page_by_id
from emulator.scopes import Scope

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
    scope: Scope
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
    # The next this many transaction refreshes to complete fail, whatever `failure_rate` says.
    fail_next_refreshes: int = 0
    # The next succeeded transaction refresh changes exactly this many rows (None: as usual).
    next_refresh_changes: int | None = None
    balance: dict[str, Any] | None = None
    balance_refresh: RefreshState | None = None
    ownership: str | None = None
    ownership_refresh: RefreshState | None = None
    # The balance shape the next balance refresh reports (set through the control API).
    balance_shape: dict[str, Any] | None = None
    ownerships: Ownerships | None = None
    # `status_details.active` (action, cause, expected_deactivation_date) while active: when
    # and why Stripe expects the account to become inactive. None: nothing expected.
    active_details: dict[str, Any] | None = None
    account_numbers: list[dict[str, Any]] | None = None

    @property
    def livemode(self) -> bool:
        return self.scope.livemode

    def refresh_id(self, seq: int) -> str:
        resolved = seq or self.discovery_seq
        assert resolved is not None
        return self.refreshes[resolved - 1].id

    def status_details(self) -> dict[str, Any]:
        """Stripe's schema (2026-06-24 on) details only the `active` status; an inactive or
        disconnected account's details are empty."""
        if self.status == "active" and self.active_details is not None:
            return {"active": dict(self.active_details)}
        return {}

    def render(self, expand: tuple[str, ...] = ()) -> dict[str, Any]:
        ownership: str | dict[str, Any] | None = self.ownership
        if "ownership" in expand and self.ownership is not None and self.ownerships is not None:
            ownership = self.ownerships.snapshots[self.ownership].render(self.id)
        return {
            "id": self.id,
            "object": "financial_connections.account",
            "account_holder": dict(self.holder),
            "account_numbers": self.account_numbers,
            "balance": self.balance,
            "balance_refresh": self.balance_refresh.render() if self.balance_refresh else None,
            "category": "cash",
            "created": self.created,
            "display_name": self.display_name,
            "institution_name": self.institution_name,
            "last4": self.last4,
            "livemode": self.livemode,
            "ownership": ownership,
            "ownership_refresh": (
                self.ownership_refresh.render() if self.ownership_refresh else None
            ),
            "permissions": list(self.permissions),
            "status": self.status,
            "status_details": self.status_details(),
            "subcategory": self.subcategory,
            "subscriptions": list(self.subscriptions),
            "supported_payment_method_types": ["link", "us_bank_account"],
            "transaction_refresh": self.refreshes[-1].render() if self.refreshes else None,
        }


class AccountBook:
    """Every account of every scope in creation order, found by id, by the tag its transaction
    ids carry and by the refreshes it owns."""

    def __init__(self, config: EmulatorConfig, ids: IdSource) -> None:
        self._config = config
        self._ids = ids
        self._accounts: dict[str, Account] = {}
        self._order: list[Account] = []
        self._by_tag: dict[str, Account] = {}
        self._refresh_owner: dict[str, tuple[Account, int]] = {}

    def create(
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
        scope: Scope,
        session: str | None = None,
        now: int,
    ) -> Account:
        cfg = self._config
        count = cfg.transactions if transactions is None else transactions
        if not 0 <= count <= MAX_TRANSACTIONS:
            raise ValueError(f"transactions must be between 0 and {MAX_TRANSACTIONS}")
        if status not in ACCOUNT_STATUSES:
            raise ValueError(f"status must be one of {', '.join(ACCOUNT_STATUSES)}")
        index = len(self._order)
        account_id = self._ids.make("fca_")
        if holder is None:
            holder = {"customer": customer or self._ids.make("cus_", 14), "type": "customer"}
        profile = random.Random(f"{cfg.seed}/{account_id}/profile")
        subcategory = "savings" if profile.random() < 0.2 else "checking"
        # A multiplier coprime with 62**6 keeps tags unique per index while looking random.
        tag = base62((index * 1_000_003 + cfg.seed) % 62**6, 6)
        ledger = Ledger(TransactionIds(cfg.seed, tag))
        ledger.seed_history(random.Random(f"{cfg.seed}/{account_id}/history"), count, now)
        account = Account(
            id=account_id,
            created=now,
            scope=scope,
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
            ownerships=Ownerships(cfg.seed, account_id, default_owners(cfg.seed, account_id)),
        )
        self._accounts[account_id] = account
        self._order.append(account)
        self._by_tag[tag] = account
        return account

    def delete(self, account: Account) -> None:
        """Forget the account as Stripe forgets one it no longer knows (another key's object,
        purged test data): every call naming it answers 404 `resource_missing`, and no event
        says so. Its past events stay listed."""
        del self._accounts[account.id]
        self._order.remove(account)
        self._by_tag = {t: a for t, a in self._by_tag.items() if a is not account}
        self._refresh_owner = {r: o for r, o in self._refresh_owner.items() if o[0] is not account}

    def get(self, account_id: str) -> Account | None:
        """The account of any scope, as the control API sees it."""
        return self._accounts.get(account_id)

    def all(self) -> list[Account]:
        """Every account of every scope, oldest first."""
        return list(self._order)

    def by_id(self) -> Mapping[str, Account]:
        return MappingProxyType(self._accounts)

    def own_refresh(self, refresh_id: str, account: Account, seq: int) -> None:
        """Record whose refresh `refresh_id` is, for `transaction_refresh[after]`."""
        self._refresh_owner[refresh_id] = (account, seq)

    def find(self, account_id: str, scope: Scope, *, param: str) -> Account:
        """The account as a request in `scope` sees it: other scopes' objects do not exist."""
        account = self._accounts.get(account_id)
        if account is None or account.scope != scope:
            raise errors.no_such("financial connections account", account_id, param=param)
        return account

    def list_accounts(self, params: dict[str, Any], scope: Scope) -> dict[str, Any]:
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
            for i, a in enumerate(self._order)
            if a.scope == scope
            and all(a.holder.get(k) == v for k, v in holder.items())
            and params.get("session", a.session) == a.session
        ]
        position = {a.id: i for i, a in enumerate(self._order)}
        chosen, has_more = page_by_id(
            keys,
            params,
            position,
            "financial connections account",
            lambda p: self._order[p].scope == scope,
        )
        return list_object(
            [self._order[i].render() for i in chosen],
            has_more,
            "/v1/financial_connections/accounts",
        )

    # -- transactions -------------------------------------------------------------------

    def list_transactions(self, params: dict[str, Any], scope: Scope) -> dict[str, Any]:
        account = self.find(params["account"], scope, param="account")
        ledger = account.ledger
        after_seq: int | None = None
        if "transaction_refresh" in params:
            after = params["transaction_refresh"]["after"]
            owner = self._refresh_owner.get(after)
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
            keys = ledger.listed(keys)
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

    def transaction(self, transaction_id: str, scope: Scope) -> dict[str, Any]:
        tag = transaction_tag(transaction_id)
        account = self._by_tag.get(tag) if tag else None
        if account is not None and account.scope == scope:
            position = account.ledger.ids.position(transaction_id)
            visible = account.discovery_seq is not None
            if (
                visible
                and position is not None
                and position < len(account.ledger)
                and position not in account.ledger.dropped
            ):
                return self._render_transaction(account, position)
        raise errors.no_such(
            "financial connections transaction", transaction_id, param="transaction"
        )

    def ground_truth(self, account: Account) -> list[dict[str, Any]]:
        """Every transaction the API shows for the account right now, newest first."""
        if account.discovery_seq is None:
            return []
        rows = account.ledger.listed(range(len(account.ledger)))
        return [self._render_transaction(account, p) for p in reversed(rows)]

    def drop_transaction(self, transaction_id: str) -> Account | None:
        """Drop a pending transaction, as Stripe drops one that never posts (no event says
        so); the account it was on, None for an unknown id. ValueError: it is not pending."""
        tag = transaction_tag(transaction_id)
        account = self._by_tag.get(tag) if tag else None
        if account is None or account.discovery_seq is None:
            return None
        position = account.ledger.ids.position(transaction_id)
        if position is None or position >= len(account.ledger):
            return None
        if position in account.ledger.dropped:
            return None
        account.ledger.drop(position)
        return account

    def _render_transaction(self, account: Account, position: int) -> dict[str, Any]:
        return account.ledger.render(
            position,
            account_id=account.id,
            livemode=account.livemode,
            refresh_id=account.refresh_id,
            discovered_at=account.discovered_at,
        )
