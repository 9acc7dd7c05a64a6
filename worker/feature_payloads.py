"""Stripe's balance, refresh-state and owner objects checked before fcsync reads them (the
balance and ownership features), in the way stripe_payloads checks transactions."""

from __future__ import annotations

from typing import Any

from worker.records import FCBalance, FCOwner, FeatureRefreshState, OwnerPage
from worker.stripe_payloads import CURRENCY_WIDTH, ENUM_WIDTH, ID_WIDTH, INT64
from worker.stripe_payloads import _check_listed_ids as check_listed_ids
from worker.stripe_payloads import _Fields as Fields
from worker.stripe_payloads import _list_answer as list_answer
from worker.stripe_payloads import _shown as shown


def feature_fields(obj: object, name: str) -> dict[str, Any]:
    """The account's `balance_refresh`, `ownership_refresh`, `balance` and `ownership` (an id,
    or the expanded object's id), each left out when absent or null: FCAccount's fields."""
    data = Fields(obj, f"account {name}")
    fields: dict[str, Any] = {}
    for key in ("balance_refresh", "ownership_refresh"):
        state = data.obj.get(key)
        if state is not None:
            fields[key] = _refresh_state(Fields(state, f"account {name} {key}"))
    balance = data.obj.get("balance")
    if balance is not None:
        fields["balance"] = _balance(Fields(balance, f"account {name} balance"))
    ownership = data.obj.get("ownership")
    if isinstance(ownership, dict):
        fields["ownership"] = Fields(ownership, f"account {name} ownership").text(
            "id", width=ID_WIDTH, prefix="fcaowns_"
        )
    elif ownership is not None:
        fields["ownership"] = data.text("ownership", width=ID_WIDTH, prefix="fcaowns_")
    return fields


def _refresh_state(state: Fields) -> FeatureRefreshState:
    return FeatureRefreshState(
        status=state.text("status", width=ENUM_WIDTH),
        last_attempted_at=state.integer("last_attempted_at"),
        next_refresh_available_at=state.optional_integer("next_refresh_available_at"),
    )


def _amounts(part: Fields, key: str) -> dict[str, int] | None:
    """A currency-keyed map of integer minor units (None when null)."""
    value = part.obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        part.fail(key, f"must be an object of currency amounts, got {shown(value)}")
    for currency, amount in value.items():
        if not isinstance(currency, str) or len(currency) > CURRENCY_WIDTH:
            part.fail(key, f"has a key that is no currency code: {shown(currency)}")
        if type(amount) is not int or amount not in INT64:
            part.fail(key, f"{currency} must be an integer amount, got {shown(amount)}")
    return dict(value)


def _balance(balance: Fields) -> FCBalance:
    current = _amounts(balance, "current")
    if current is None:
        balance.fail("current", "is required")
    cash, credit = balance.obj.get("cash"), balance.obj.get("credit")
    return FCBalance(
        as_of=balance.integer("as_of"),
        type=balance.text("type", width=ENUM_WIDTH),
        current=current,
        cash_available=None if cash is None else _amounts(Fields(cash, "cash"), "available"),
        credit_used=None if credit is None else _amounts(Fields(credit, "credit"), "used"),
    )


def parse_owners_page(body: object, ownership: str) -> OwnerPage:
    """One answer of GET .../accounts/{id}/owners: owners of exactly `ownership`."""
    page, data, has_more = list_answer(body, "owners list")
    owners = tuple(_owner(Fields(item, f"owner {i}"), ownership) for i, item in enumerate(data))
    check_listed_ids(page, [o.id for o in owners], has_more, "owner", "owners")
    return OwnerPage(owners, has_more)


def _owner(owner: Fields, ownership: str) -> FCOwner:
    owner.literal("object", "financial_connections.account_owner", required=False)
    if owner.text("ownership", width=ID_WIDTH) != ownership:
        owner.fail("ownership", f"is not the ownership asked for ({ownership})")
    return FCOwner(
        id=owner.text("id", width=ID_WIDTH, prefix="fcaown_"),
        ownership=ownership,
        name=owner.text("name"),
        email=owner.optional_text("email"),
        phone=owner.optional_text("phone"),
        raw_address=owner.optional_text("raw_address"),
        refreshed_at=owner.optional_integer("refreshed_at"),
    )
