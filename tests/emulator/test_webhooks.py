"""Webhooks: Stripe's signature (stripe.Webhook.construct_event accepts it), retries of failed
deliveries, and the webhook faults (drop, duplicate, reorder, delay in emulator time)."""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest
import stripe

from emulator import Emulator
from tests.emulator.conftest import API_KEY, Received, Receiver, Schemas, eventually

SECRET = "whsec_emulator_test"
DAY_S = 86_400


def event_ids(received: list[Received]) -> list[str]:
    return [json.loads(r.body)["id"] for r in received]


def test_events_are_signed_as_stripe_signs_them(
    emulator: Emulator, receiver: Receiver, schemas: Schemas
) -> None:
    emulator.control.add_webhook_endpoint(receiver.url, SECRET)
    account = emulator.control.create_account(transactions=3)
    (delivery,) = receiver.wait_for(1)
    header = delivery.headers["Stripe-Signature"]
    event = stripe.Webhook.construct_event(delivery.body.decode(), header, SECRET)
    assert event.type == "financial_connections.account.created"
    assert event.data.object.id == account["id"]
    schemas.event(json.loads(delivery.body))
    assert delivery.headers["Content-Type"].startswith("application/json")

    tampered = delivery.body.replace(account["id"].encode(), b"fca_1forged")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(tampered.decode(), header, SECRET)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(delivery.body.decode(), header, "whsec_other")


def test_failed_deliveries_are_retried(emulator: Emulator, receiver: Receiver) -> None:
    receiver.fail_first = 2
    emulator.control.add_webhook_endpoint(receiver.url, SECRET)
    emulator.control.create_account(transactions=1)
    (delivery,) = receiver.wait_for(1)
    assert receiver.attempts == 3
    stripe.Webhook.construct_event(
        delivery.body.decode(), delivery.headers["Stripe-Signature"], SECRET
    )
    counts = emulator.control.stats()["webhooks"]
    assert (counts["sent"], counts["failed"], counts["dropped"]) == (1, 2, 0)
    assert (counts["queued"], counts["waiting"]) == (0, 0)
    event_id = json.loads(delivery.body)["id"]
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": emulator.base_url})
    assert client.v1.events.retrieve(event_id).pending_webhooks == 0
    assert client.v1.events.list({"delivery_success": True}).data[0].id == event_id


def test_delivery_happens_off_the_request_thread(emulator: Emulator, receiver: Receiver) -> None:
    receiver.delay_s = 1.0
    emulator.control.add_webhook_endpoint(receiver.url, SECRET)
    started = time.monotonic()
    emulator.control.create_account(transactions=1)
    assert time.monotonic() - started < 0.5
    assert len(receiver.wait_for(1)) == 1


def test_duplicated_and_dropped_webhooks(emulator: Emulator, receiver: Receiver) -> None:
    emulator.control.add_webhook_endpoint(receiver.url, SECRET)
    emulator.control.set_faults(webhook_duplicate_rate=1.0)
    emulator.control.create_account(transactions=1)
    received = receiver.wait_for(2)
    assert len(received) == 2 and len(set(event_ids(received))) == 1

    emulator.control.set_faults(webhook_duplicate_copies=3)
    emulator.control.create_account(transactions=1)
    received = receiver.wait_for(5)
    time.sleep(0.2)
    assert len(receiver.received) == 5 and len(set(event_ids(received[2:]))) == 1
    assert emulator.control.stats()["webhooks"]["duplicated"] == 1 + 2

    emulator.control.set_faults(webhook_duplicate_rate=0.0, webhook_drop_rate=1.0)
    emulator.control.create_account(transactions=1)
    time.sleep(0.3)
    assert len(receiver.received) == 5
    assert emulator.control.stats()["webhooks"]["dropped"] == 1


def test_reordered_and_delayed_webhooks(emulator: Emulator, receiver: Receiver) -> None:
    control = emulator.control
    control.add_webhook_endpoint(receiver.url, SECRET)
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": emulator.base_url})
    session = client.v1.financial_connections.sessions.create(
        {
            "account_holder": {"type": "customer", "customer": "cus_R"},
            "permissions": ["transactions"],
        }
    )
    control.set_faults(webhook_reorder=True)
    control.complete_session(session.id, accounts=5)
    created = [e.id for e in reversed(client.v1.events.list().data)]
    received = event_ids(receiver.wait_for(5))
    assert sorted(received) == sorted(created) and received != created
    assert control.stats()["webhooks"]["reordered"] > 0

    # The delay is in emulator seconds: on this frozen clock only advancing it delivers.
    control.set_faults(webhook_reorder=False, webhook_delay_s=600)
    control.create_account(transactions=1)
    time.sleep(0.3)
    assert len(receiver.received) == 5
    counts = control.stats()["webhooks"]
    assert (counts["delayed"], counts["waiting"]) == (1, 1)
    control.advance(599)
    time.sleep(0.3)
    assert len(receiver.received) == 5
    control.advance(1)
    assert len(receiver.wait_for(6)) == 6
    assert control.stats()["webhooks"]["waiting"] == 0


def test_only_the_delay_rate_of_deliveries_is_delayed(
    emulator: Emulator, receiver: Receiver
) -> None:
    control = emulator.control
    control.add_webhook_endpoint(receiver.url, SECRET)
    control.set_faults(webhook_delay_s=60, webhook_delay_rate=0.5)
    for _ in range(20):
        control.create_account(transactions=1)
    delayed = control.stats()["webhooks"]["delayed"]
    assert 0 < delayed < 20
    assert len(receiver.wait_for(20 - delayed)) == 20 - delayed
    control.advance(60)
    assert len(receiver.wait_for(20)) == 20


def test_an_event_delayed_a_day_arrives_after_the_next_refresh(
    emulator: Emulator, receiver: Receiver
) -> None:
    control = emulator.control
    control.add_webhook_endpoint(receiver.url, SECRET)
    client = stripe.StripeClient(API_KEY, base_addresses={"api": emulator.base_url})
    account_id = control.create_account(transactions=5)["id"]
    client.v1.financial_connections.accounts.subscribe(account_id, {"features": ["transactions"]})
    control.set_faults(webhook_delay_s=DAY_S)
    control.advance(5)  # the first refresh ends; its event waits a day
    control.set_faults(webhook_delay_s=0)
    control.advance(DAY_S)  # Stripe's daily refresh runs and ends: its event goes out at once
    received = [json.loads(r.body) for r in receiver.wait_for(3)]
    refreshes = [
        e["data"]["object"]["transaction_refresh"]
        for e in received
        if e["type"] == "financial_connections.account.refreshed_transactions"
    ]
    # In arrival order: the daily refresh's event, then the first refresh's, a day late.
    now = control.now()
    assert [r["last_attempted_at"] for r in refreshes] == [now - 5, now - DAY_S - 5]
    assert refreshes[0]["id"] == control.account(account_id)["transaction_refresh"]["id"]


def test_failed_deliveries_are_logged_one_line_each_with_endpoint_event_and_reason(
    emulator: Emulator, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="emulator.webhooks")
    receiver.fail_first = 1
    emulator.control.add_webhook_endpoint(receiver.url, SECRET)
    with socket.socket() as closed:  # a port nobody listens on: the connection is refused
        closed.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{closed.getsockname()[1]}/webhooks"
    emulator.control.add_webhook_endpoint(nobody, SECRET)
    emulator.control.create_account(transactions=1)
    (delivery,) = receiver.wait_for(1)
    event_id = json.loads(delivery.body)["id"]
    attempts = emulator.bank.config.webhook_attempts

    def failures() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "emulator.webhooks"]

    assert eventually(lambda: len(failures()) == 1 + attempts), failures()
    lines = failures()
    assert all("\n" not in line for line in lines)
    assert (
        f"webhook delivery failed: endpoint={receiver.url} event={event_id} attempt=1/{attempts} "
        "reason=HTTP 500; retrying in 0.1s"
    ) in lines
    refused = [line for line in lines if f"endpoint={nobody} event={event_id} " in line]
    assert len(refused) == attempts
    assert all("reason=connection failed" in line for line in refused)
    assert refused[-1].endswith("giving up")
