"""An account's lifecycle as the emulator plays it: `status_details` with an expected
deactivation date, deactivation, relink (same id, same history), disconnection, account number
events; `Stripe-Version` checked as Stripe checks it; events at the endpoint's version."""

from __future__ import annotations

import json

import pytest
import requests
import stripe

from emulator import ControlError, Emulator
from tests.emulator.conftest import API_KEY, START, Receiver, Schemas

AUTH = {"Authorization": f"Bearer {API_KEY}"}
SECRET = "whsec_lifecycle"
DAY_S = 86_400
FC = "financial_connections.account."


def test_relink_required_then_inactive_then_relinked_keeps_id_and_history(
    emulator: Emulator, client: stripe.StripeClient, schemas: Schemas
) -> None:
    control = emulator.control
    accounts = client.v1.financial_connections.accounts
    account_id = control.create_account(transactions=30)["id"]
    accounts.refresh(account_id, {"features": ["transactions"]})
    control.advance(6)
    before = [t["id"] for t in control.transactions(account_id)]
    fetched = accounts.retrieve(account_id)
    schemas.account(fetched.last_response.data)
    assert fetched.last_response.data["status_details"] == {}

    deadline = START + 10 * DAY_S
    control.expect_deactivation(
        account_id, cause="access_expired", expected_deactivation_date=deadline
    )
    marked = accounts.retrieve(account_id).last_response.data
    schemas.account(marked)
    assert marked["status"] == "active"
    assert marked["status_details"] == {
        "active": {
            "action": "relink_required",
            "cause": "access_expired",
            "expected_deactivation_date": deadline,
        }
    }

    control.deactivate(account_id)
    inactive = accounts.retrieve(account_id).last_response.data
    schemas.account(inactive)
    assert (inactive["status"], inactive["status_details"]) == ("inactive", {})

    control.relink(account_id)
    relinked = accounts.retrieve(account_id).last_response.data
    schemas.account(relinked)
    assert (relinked["id"], relinked["status"], relinked["status_details"]) == (
        account_id,
        "active",
        {},
    )
    control.advance(61)
    accounts.refresh(account_id, {"features": ["transactions"]})
    control.advance(6)
    after = [t["id"] for t in control.transactions(account_id)]
    assert set(before) <= set(after) and len(after) > len(before)

    events = client.v1.events.list({"type": FC + "*"})
    for event in events.last_response.data["data"]:
        schemas.event(event)
    types = [e.type.removeprefix(FC) for e in events.data]
    assert types[:3] == ["refreshed_transactions", "reactivated", "deactivated"]


def test_an_account_not_relinked_in_time_is_deactivated_at_the_date(
    emulator: Emulator, client: stripe.StripeClient
) -> None:
    control = emulator.control
    account_id = control.create_account(transactions=1)["id"]
    control.expect_deactivation(account_id, expected_deactivation_date=START + DAY_S)
    control.advance(DAY_S - 1)
    assert client.v1.financial_connections.accounts.retrieve(account_id).status == "active"
    control.advance(1)
    assert client.v1.financial_connections.accounts.retrieve(account_id).status == "inactive"

    relinked_in_time = control.create_account(transactions=1)["id"]
    control.expect_deactivation(relinked_in_time, expected_deactivation_date=START + 3 * DAY_S)
    control.relink(relinked_in_time)
    control.advance(2 * DAY_S)
    assert control.account(relinked_in_time)["status"] == "active"


def test_lifecycle_control_refusals(emulator: Emulator) -> None:
    control = emulator.control
    account_id = control.create_account(transactions=1)["id"]
    with pytest.raises(ControlError, match="in the future"):
        control.expect_deactivation(account_id, expected_deactivation_date=START - 1)
    control.disconnect(account_id)
    with pytest.raises(ControlError, match="stays disconnected"):
        control.relink(account_id)
    with pytest.raises(ControlError, match="only an active one"):
        control.expect_deactivation(account_id)
    with pytest.raises(ControlError, match="type must be one of"):
        control.account_numbers_changed(account_id, FC + "created")


def test_account_number_events_carry_the_expiry(
    emulator: Emulator, client: stripe.StripeClient, schemas: Schemas
) -> None:
    account_id = emulator.control.create_account(transactions=1)["id"]
    expiry = START + 20 * DAY_S
    event = emulator.control.account_numbers_changed(
        account_id, FC + "upcoming_account_number_expiry", expiry
    )
    schemas.event(event)
    assert event["data"]["object"]["account_numbers"][0]["expected_expiry_date"] == expiry
    updated = emulator.control.account_numbers_changed(account_id, FC + "account_numbers_updated")
    schemas.event(updated)
    listed = client.v1.events.retrieve(updated["id"])
    assert listed.type == FC + "account_numbers_updated"


@pytest.mark.parametrize("version", ["2019-2-19", "2026-06-24", "2026-06-24.clover", "nonsense"])
def test_an_unknown_stripe_version_is_400_as_stripe_answers(
    emulator: Emulator, schemas: Schemas, version: str
) -> None:
    account_id = emulator.control.create_account(transactions=1)["id"]
    url = f"{emulator.base_url}/v1/financial_connections/accounts/{account_id}"
    answer = requests.get(url, headers={**AUTH, "Stripe-Version": version})
    assert answer.status_code == 400
    schemas.check("error", answer.json())
    assert answer.json() == {
        "error": {
            "message": f"Invalid Stripe API version: {version}",
            "type": "invalid_request_error",
        }
    }
    assert answer.headers["Stripe-Version"] == emulator.config.api_version
    client = stripe.StripeClient(
        API_KEY, base_addresses={"api": emulator.base_url}, stripe_version=version
    )
    with pytest.raises(stripe.InvalidRequestError, match="Invalid Stripe API version"):
        client.v1.financial_connections.accounts.retrieve(account_id)


@pytest.mark.parametrize("version", ["2024-06-20", "2025-03-31.basil", "2026-07-29.dahlia"])
def test_a_known_stripe_version_is_served_and_echoed(emulator: Emulator, version: str) -> None:
    account_id = emulator.control.create_account(transactions=1)["id"]
    url = f"{emulator.base_url}/v1/financial_connections/accounts/{account_id}"
    answer = requests.get(url, headers={**AUTH, "Stripe-Version": version})
    assert answer.status_code == 200
    assert answer.headers["Stripe-Version"] == version


def test_an_event_is_at_the_endpoint_version_or_the_account_default_never_the_request_one(
    emulator: Emulator, receiver: Receiver, schemas: Schemas
) -> None:
    control = emulator.control
    control.add_webhook_endpoint(receiver.url, SECRET)
    control.add_webhook_endpoint(receiver.url, SECRET, api_version="2026-07-29.dahlia")
    with pytest.raises(ControlError, match="Invalid Stripe API version"):
        control.add_webhook_endpoint(receiver.url, SECRET, api_version="2026-13-01.dahlia")
    account_id = control.create_account(transactions=1)["id"]
    receiver.wait_for(2)
    url = f"{emulator.base_url}/v1/financial_connections/accounts/{account_id}/disconnect"
    answer = requests.post(url, headers={**AUTH, "Stripe-Version": "2025-03-31.basil"})
    assert answer.status_code == 200
    received = [json.loads(r.body) for r in receiver.wait_for(4)]
    disconnected = [e for e in received if e["type"] == FC + "disconnected"]
    for event in disconnected:
        schemas.event(event)
    default = emulator.config.api_version
    assert sorted(e["api_version"] for e in disconnected) == sorted([default, "2026-07-29.dahlia"])
    stored = requests.get(f"{emulator.base_url}/v1/events/{disconnected[0]['id']}", headers=AUTH)
    assert stored.json()["api_version"] == default
    assert stored.json()["request"]["id"] == answer.headers["Request-Id"]
