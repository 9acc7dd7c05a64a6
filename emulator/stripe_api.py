"""The Stripe v1 surface the emulator serves: each route's parameter spec and handler.

Handlers run under the bank's lock and return the JSON object Stripe would."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emulator.bank import Bank
from emulator.events import Origin
from emulator.params import (
    PAGINATION,
    Array,
    Boolean,
    Enum,
    Integer,
    IntegerOrRange,
    Object,
    String,
    endpoint,
)
from emulator.scopes import Scope


@dataclass(frozen=True)
class Call:
    scope: Scope
    origin: Origin


Handler = Callable[[Bank, Call, dict[str, Any], dict[str, str]], dict[str, Any]]


@dataclass(frozen=True, eq=False)
class Operation:
    method: str
    path: str
    spec: Object
    handler: Handler

    @property
    def template(self) -> str:
        """How the stats name this route: `POST /v1/.../accounts/{account}/refresh`."""
        return f"{self.method} {self.path.replace('<', '{').replace('>', '}')}"


ACCOUNTS = "/v1/financial_connections/accounts"
PERMISSIONS = Enum(("balances", "ownership", "payment_method", "transactions"))
TRANSACTIONS_FEATURE = endpoint({"features": Array(Enum(("transactions",)))}, ["features"])


def _expanded(params: dict[str, Any]) -> tuple[str, ...]:
    return tuple(params.get("expand", ()))


def _retrieve_account(bank: Bank, call: Call, params: dict[str, Any], args: dict[str, str]) -> Any:
    return bank.account(args["account"], call.scope, param="account").render(_expanded(params))


def _list_accounts(bank: Bank, call: Call, params: dict[str, Any], _: dict[str, str]) -> Any:
    return bank.list_accounts(params, call.scope)


def _refresh(bank: Bank, call: Call, params: dict[str, Any], args: dict[str, str]) -> Any:
    account = bank.account(args["account"], call.scope, param="account")
    bank.refresh(account, params["features"])
    return account.render(_expanded(params))


def _list_owners(bank: Bank, call: Call, params: dict[str, Any], args: dict[str, str]) -> Any:
    account = bank.account(args["account"], call.scope, param="account")
    assert account.ownerships is not None
    return account.ownerships.list_owners(params)


def _subscribe(bank: Bank, call: Call, _: dict[str, Any], args: dict[str, str]) -> Any:
    account = bank.account(args["account"], call.scope, param="account")
    bank.subscribe(account)
    return account.render()


def _unsubscribe(bank: Bank, call: Call, _: dict[str, Any], args: dict[str, str]) -> Any:
    account = bank.account(args["account"], call.scope, param="account")
    bank.unsubscribe(account)
    return account.render()


def _disconnect(bank: Bank, call: Call, _: dict[str, Any], args: dict[str, str]) -> Any:
    account = bank.account(args["account"], call.scope, param="account")
    bank.set_status(account, "disconnected", call.origin)
    return account.render()


def _list_transactions(bank: Bank, call: Call, params: dict[str, Any], _: dict[str, str]) -> Any:
    return bank.list_transactions(params, call.scope)


def _retrieve_transaction(bank: Bank, call: Call, _: dict[str, Any], args: dict[str, str]) -> Any:
    return bank.transaction(args["transaction"], call.scope)


def _create_session(bank: Bank, call: Call, params: dict[str, Any], _: dict[str, str]) -> Any:
    return bank.render_session(bank.create_session(params, call.scope))


def _retrieve_session(bank: Bank, call: Call, _: dict[str, Any], args: dict[str, str]) -> Any:
    return bank.render_session(bank.session(args["session"], call.scope))


def _list_events(bank: Bank, call: Call, params: dict[str, Any], _: dict[str, str]) -> Any:
    return bank.list_events(params, call.scope)


def _retrieve_event(bank: Bank, call: Call, _: dict[str, Any], args: dict[str, str]) -> Any:
    return bank.event(args["id"], call.scope)


OPERATIONS = (
    Operation("GET", f"{ACCOUNTS}/<account>", endpoint({}), _retrieve_account),
    Operation(
        "GET",
        ACCOUNTS,
        endpoint(
            {
                "account_holder": Object(
                    {"account": String(), "customer": String(), "customer_account": String()}
                ),
                "session": String(),
                **PAGINATION,
            }
        ),
        _list_accounts,
    ),
    Operation(
        "POST",
        f"{ACCOUNTS}/<account>/refresh",
        endpoint({"features": Array(Enum(("balance", "ownership", "transactions")))}, ["features"]),
        _refresh,
    ),
    Operation(
        "GET",
        f"{ACCOUNTS}/<account>/owners",
        endpoint({"ownership": String(), **PAGINATION}, ["ownership"]),
        _list_owners,
    ),
    Operation("POST", f"{ACCOUNTS}/<account>/subscribe", TRANSACTIONS_FEATURE, _subscribe),
    Operation("POST", f"{ACCOUNTS}/<account>/unsubscribe", TRANSACTIONS_FEATURE, _unsubscribe),
    Operation("POST", f"{ACCOUNTS}/<account>/disconnect", endpoint({}), _disconnect),
    Operation(
        "GET",
        "/v1/financial_connections/transactions",
        endpoint(
            {
                "account": String(),
                "transacted_at": IntegerOrRange(),
                "transaction_refresh": Object({"after": String()}, frozenset({"after"})),
                **PAGINATION,
            },
            ["account"],
        ),
        _list_transactions,
    ),
    Operation(
        "GET",
        "/v1/financial_connections/transactions/<transaction>",
        endpoint({}),
        _retrieve_transaction,
    ),
    Operation(
        "POST",
        "/v1/financial_connections/sessions",
        endpoint(
            {
                "account_holder": Object(
                    {
                        "type": Enum(("account", "customer")),
                        "account": String(),
                        "customer": String(),
                        "customer_account": String(),
                    },
                    frozenset({"type"}),
                ),
                "permissions": Array(PERMISSIONS),
                "filters": Object(
                    {
                        "account_subcategories": Array(
                            Enum(
                                ("checking", "credit_card", "line_of_credit", "mortgage", "savings")
                            )
                        ),
                        "countries": Array(String()),
                        "require_payment_method_support": Enum(("all", "at_least_one", "none")),
                    }
                ),
                "limits": Object({"accounts": Integer(1, 100)}, frozenset({"accounts"})),
                "manual_entry": Object({"mode": Enum(("automatic", "disabled"))}),
                "prefetch": Array(Enum(("balances", "ownership", "transactions"))),
                "return_url": String(),
            },
            ["account_holder", "permissions"],
        ),
        _create_session,
    ),
    Operation(
        "GET", "/v1/financial_connections/sessions/<session>", endpoint({}), _retrieve_session
    ),
    Operation(
        "GET",
        "/v1/events",
        endpoint(
            {
                "type": String(),
                "types": Array(String(), max_items=20),
                "created": IntegerOrRange(),
                "delivery_success": Boolean(),
                **PAGINATION,
            }
        ),
        _list_events,
    ),
    Operation("GET", "/v1/events/<id>", endpoint({}), _retrieve_event),
)
