"""The control API's account listing (every account the emulator holds, as Stripe renders it),
its reset (a fresh emulator, Idempotency-Keys included), and its use of the bank's facade."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import stripe

from emulator import Emulator, control_accounts, control_api, control_requests
from emulator.bank import Bank
from tests.emulator.conftest import START, Schemas


def test_control_lists_every_account_oldest_first_without_counting_api_requests(
    emulator: Emulator, schemas: Schemas
) -> None:
    control = emulator.control
    assert control.accounts() == []
    created = [
        control.create_account(transactions=2)["id"],
        control.create_account(transactions=0, status="inactive")["id"],
        control.create_account(transactions=1, permissions=["balances"])["id"],
    ]
    before = control.stats()["requests"]

    listed = control.accounts()

    assert [a["id"] for a in listed] == created
    assert listed == [control.account(account_id) for account_id in created]
    assert [a["status"] for a in listed] == ["active", "inactive", "active"]
    for account in listed:
        schemas.account(account)
    assert control.stats()["requests"] == before


def test_reset_forgets_objects_stats_clock_and_idempotency_keys(
    emulator: Emulator, client: stripe.StripeClient
) -> None:
    control = emulator.control
    accounts = client.v1.financial_connections.accounts
    options: Any = {"idempotency_key": "before-reset"}
    account_id = control.create_account(transactions=3)["id"]
    accounts.refresh(account_id, {"features": ["transactions"]}, options)
    control.advance(10)

    control.reset()

    assert control.accounts() == []
    assert control.now() == START
    assert control.stats()["requests"] == {}
    assert client.v1.events.list().data == []
    # The same seed mints the same account id, so the same call under the same key would be a
    # replay if the key had survived the reset.
    assert control.create_account(transactions=3)["id"] == account_id
    again = accounts.refresh(account_id, {"features": ["transactions"]}, options)
    assert "Idempotent-Replayed" not in again.last_response.headers
    assert control.stats()["requests"] == {
        "GET /v1/events": 1,
        "POST /v1/financial_connections/accounts/{account}/refresh": 1,
    }


def test_control_api_reaches_the_bank_through_its_methods_only() -> None:
    """Bank is a facade: the control API calls its methods (under its lock), never reaches
    into the objects behind it."""
    modules = (control_api, control_accounts, control_requests)
    trees = [ast.parse(Path(str(module.__file__)).read_text()) for module in modules]
    reached = {
        node.attr
        for tree in trees
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "bank"
    }
    assert {"create_account", "find_account", "update_faults", "reset"} <= reached
    assert {name for name in reached if not inspect.isfunction(getattr(Bank, name, None))} == {
        "lock"
    }
