"""Events made on request through the control API: a triggered event for an account as it is
now (delivered like any event), and a stored event resent as first emitted, outside the faults."""

from __future__ import annotations

import json
import time

import pytest
import stripe

from emulator import ControlError, Emulator
from tests.emulator.conftest import Receiver, Schemas

SECRET = "whsec_emulator_test"
REFRESHED = "financial_connections.account.refreshed_transactions"


def test_a_triggered_event_renders_the_account_as_it_is_now(
    emulator: Emulator, receiver: Receiver, schemas: Schemas, client: stripe.StripeClient
) -> None:
    control = emulator.control
    control.add_webhook_endpoint(receiver.url, SECRET)
    account = control.create_account(transactions=3)
    event = control.trigger_event(REFRESHED, account["id"])
    assert event["type"] == REFRESHED
    assert event["data"]["object"] == control.account(account["id"])
    schemas.event(event)
    _created, triggered = receiver.wait_for(2)
    stripe.Webhook.construct_event(
        triggered.body.decode(), triggered.headers["Stripe-Signature"], SECRET
    )
    assert json.loads(triggered.body)["id"] == event["id"]
    assert client.v1.events.retrieve(event["id"]).type == REFRESHED
    # Nothing else changed: no refresh ran for the account.
    assert control.account(account["id"])["transaction_refresh"] is None


def test_triggered_events_are_refused_for_unknown_types_and_accounts(emulator: Emulator) -> None:
    control = emulator.control
    account_id = control.create_account(transactions=1)["id"]
    for type_, target, status in (
        ("financial_connections.account.exploded", account_id, 400),
        ("customer.created", account_id, 400),
        (REFRESHED, "fca_1nobodyhasthis", 404),
    ):
        with pytest.raises(ControlError) as exc:
            control.trigger_event(type_, target)
        assert exc.value.status == status, (type_, target)
    control.delete_account(account_id)
    with pytest.raises(ControlError) as exc:
        control.trigger_event(REFRESHED, account_id)
    assert exc.value.status == 404


def test_triggered_events_go_through_the_webhook_faults(
    emulator: Emulator, receiver: Receiver
) -> None:
    control = emulator.control
    control.add_webhook_endpoint(receiver.url, SECRET)
    control.set_faults(webhook_drop_rate=1.0)
    control.trigger_event(REFRESHED, control.create_account(transactions=1)["id"])
    time.sleep(0.3)
    assert receiver.received == []
    assert control.stats()["webhooks"]["dropped"] == 2


def test_a_resent_event_goes_out_as_first_emitted_whatever_the_faults(
    emulator: Emulator, receiver: Receiver, client: stripe.StripeClient
) -> None:
    control = emulator.control
    control.add_webhook_endpoint(receiver.url, SECRET)
    account_id = control.create_account(transactions=1)["id"]
    (first,) = receiver.wait_for(1)
    event_id = json.loads(first.body)["id"]
    control.set_account_status(account_id, "inactive")
    assert len(receiver.wait_for(2)) == 2
    control.delete_account(account_id)  # resending needs only the event, not the account
    control.set_faults(webhook_drop_rate=1.0, webhook_delay_s=3600)
    assert control.resend_event(event_id) == 1
    resent = receiver.wait_for(3)[-1]
    body = json.loads(resent.body)
    assert body["id"] == event_id and body["data"]["object"]["status"] == "active"
    stripe.Webhook.construct_event(resent.body.decode(), resent.headers["Stripe-Signature"], SECRET)
    counts = control.stats()["webhooks"]
    assert (counts["resent"], counts["dropped"], counts["delayed"]) == (1, 0, 0)
    assert client.v1.events.retrieve(event_id).pending_webhooks == 0

    with pytest.raises(ControlError) as exc:
        control.resend_event("evt_1nosuchevent")
    assert exc.value.status == 404
