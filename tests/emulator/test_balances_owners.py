"""Balance and ownership refreshes, the owners endpoint and `expand[]=ownership`, through real
stripe-python (both styles), every answer checked against Stripe's schemas."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from emulator import ControlError, Emulator
from tests.emulator.conftest import Schemas

OWNERS = [
    {"name": "Jenny Rosen", "email": "jenny@example.com", "phone": None, "raw_address": None},
    {"name": "Ada Lovelace", "email": None, "phone": "+15550001111", "raw_address": "1 Way"},
    {"name": "Grace Hopper", "email": None, "phone": None, "raw_address": None},
]


def raw(obj: Any) -> Any:
    return obj.last_response.data


def test_balance_refresh_reports_stripes_cash_and_credit_shapes(
    emulator: Emulator, client: stripe.StripeClient, schemas: Schemas
) -> None:
    control = emulator.control
    account_id = control.create_account(permissions=["balances", "transactions"])["id"]
    accounts = client.v1.financial_connections.accounts

    pending = accounts.refresh(account_id, {"features": ["balance"]})
    schemas.account(raw(pending))
    assert pending.balance_refresh.status == "pending"
    assert pending.balance_refresh.next_refresh_available_at is None
    done_at = control.advance(6)
    cash = accounts.retrieve(account_id)
    schemas.account(raw(cash))
    assert cash.balance_refresh.status == "succeeded"
    balance = raw(cash)["balance"]
    assert balance["type"] == "cash" and balance["as_of"] <= done_at
    assert balance["current"] == balance["cash"]["available"]

    credit = {"type": "credit", "current": {"usd": -1234}, "credit": {"used": {"usd": 1234}}}
    control.update_account(account_id, balance=credit)
    control.advance(61)
    accounts.refresh(account_id, {"features": ["balance"]})
    control.advance(6)
    again = raw(accounts.retrieve(account_id))
    schemas.account(again)
    as_of = again["balance_refresh"]["last_attempted_at"] + 5
    assert again["balance"] == {**credit, "as_of": as_of}
    types = [e["type"] for e in emulator.bank.events if e["data"]["object"]["id"] == account_id]
    assert types.count("financial_connections.account.refreshed_balance") == 2


def test_ownership_refresh_owners_list_pages_and_expand(
    emulator: Emulator, client: stripe.StripeClient, schemas: Schemas
) -> None:
    control = emulator.control
    account_id = control.create_account(permissions=["ownership"])["id"]
    control.update_account(account_id, owners=OWNERS)
    accounts = client.v1.financial_connections.accounts

    pending = accounts.refresh(account_id, {"features": ["ownership"], "expand": ["ownership"]})
    schemas.account(raw(pending))
    assert pending.ownership is None and pending.ownership_refresh.status == "pending"
    control.advance(6)
    expanded = accounts.retrieve(account_id, {"expand": ["ownership"]})
    schemas.account(raw(expanded))
    ownership = raw(expanded)["ownership"]
    schemas.check("financial_connections.account_ownership", ownership)
    assert ownership["id"].startswith("fcaowns_")
    assert [o["name"] for o in ownership["owners"]["data"]] == [o["name"] for o in OWNERS]
    plain = accounts.retrieve(account_id)
    assert plain.ownership == ownership["id"]

    owners = accounts.owners
    first = owners.list(account_id, {"ownership": ownership["id"], "limit": 2})
    schemas.page("financial_connections.account_owner", raw(first))
    assert first.has_more is True
    listed = list(first.auto_paging_iter())
    assert [raw_owner(o) for o in listed] == ownership["owners"]["data"]
    assert control.owners(account_id) == ownership["owners"]["data"]
    for owner in listed:
        schemas.check("financial_connections.account_owner", raw_owner(owner))
        assert owner.ownership == ownership["id"] and owner.id.startswith("fcaown_")
    before = owners.list(account_id, {"ownership": ownership["id"], "ending_before": listed[2].id})
    assert [o.id for o in before.data] == [listed[0].id, listed[1].id]

    control.update_account(account_id, owners=OWNERS[:1])
    control.advance(61)
    accounts.refresh(account_id, {"features": ["ownership"]})
    control.advance(6)
    newer = accounts.retrieve(account_id).ownership
    assert newer != ownership["id"]
    assert [o.name for o in owners.list(account_id, {"ownership": newer}).data] == ["Jenny Rosen"]
    # The older snapshot stays readable, as Stripe's ownership objects do.
    assert len(owners.list(account_id, {"ownership": ownership["id"]}).data) == 3
    with pytest.raises(stripe.InvalidRequestError) as exc:
        owners.list(account_id, {"ownership": "fcaowns_nope"})
    assert exc.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        owners.list(account_id, {})  # type: ignore[typeddict-item]
    assert missing.value.code == "parameter_missing"


def raw_owner(owner: Any) -> dict[str, Any]:
    return dict(owner.to_dict())


def test_global_style_list_owners_and_refresh_account(
    emulator: Emulator, global_stripe: None, schemas: Schemas
) -> None:
    fc = stripe.financial_connections
    account_id = emulator.control.create_account(permissions=["balances", "ownership"])["id"]
    pending = fc.Account.refresh_account(account_id, features=["balance", "ownership"])
    schemas.account(raw(pending))
    emulator.control.advance(6)
    account = fc.Account.retrieve(account_id)
    assert account.balance is not None and account.balance.type == "cash"
    owners = fc.Account.list_owners(account_id, ownership=account.ownership)
    schemas.page("financial_connections.account_owner", raw(owners))
    assert [o.name for o in owners.auto_paging_iter()] == [
        o["name"] for o in emulator.control.owners(account_id)
    ]


def test_control_rejects_malformed_balance_and_owners(emulator: Emulator) -> None:
    control = emulator.control
    account_id = control.create_account()["id"]
    for change in (
        {"balance": {"type": "savings"}},
        {"balance": {"type": "cash", "current": {"usd": "1"}}},
        {"owners": [{"email": "no-name@example.com"}]},
        {"owners": [{"name": "A", "age": "3"}]},
    ):
        with pytest.raises(ControlError):
            control.update_account(account_id, **change)
