"""The webhook receiver over a real database: signed, tampered, stale, duplicate, oversized,
and well-signed bodies that are not an event fcsync can store."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from emulator import signature_header
from models import WebhookEvent
from tests.unit.conftest import OLD_SECRET, SECRET, inbox_session
from worker.freshness import State
from worker.records import Followup


def event(event_id: str = "evt_1", *, livemode: bool = False, **extra: Any) -> bytes:
    body = {
        "id": event_id,
        "object": "event",
        "api_version": "2026-06-24.dahlia",
        "created": 1,
        "livemode": livemode,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "financial_connections.account.refreshed_transactions",
        "data": {
            "object": {
                "id": "fca_1",
                "object": "financial_connections.account",
                "status": "active",
                "livemode": livemode,
            }
        },
        **extra,
    }
    return json.dumps(body).encode()


def stored_count(client: FlaskClient) -> int:
    with inbox_session(client) as session:
        return int(session.scalar(select(func.count()).select_from(WebhookEvent)) or 0)


def post(client: FlaskClient, body: bytes, header: str | None) -> Any:
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Stripe-Signature"] = header
    return client.post("/webhooks/stripe", data=body, headers=headers)


def test_http_signed_event_is_stored_and_enqueued_once(receiver) -> None:  # type: ignore[no-untyped-def]
    client, sent = receiver
    body = event()
    assert post(client, body, signature_header(body, SECRET)).status_code == 200
    again = post(client, body, signature_header(body, SECRET))
    assert again.status_code == 200 and again.get_json()["duplicate"] is True
    assert stored_count(client) == 1
    assert sent == [Followup("fcsync.handle_events", {"event_ids": ["evt_1"]})]


def test_http_rotated_secret_still_accepted(receiver) -> None:  # type: ignore[no-untyped-def]
    client, _ = receiver
    body = event("evt_old")
    assert post(client, body, signature_header(body, OLD_SECRET)).status_code == 200


@pytest.mark.parametrize(
    "case",
    ["tampered", "wrong_secret", "stale", "missing_header", "not_json"],
)
def test_http_bad_webhook_is_400_and_nothing_stored(receiver, case: str) -> None:  # type: ignore[no-untyped-def]
    client, sent = receiver
    body = event()
    header: str | None = signature_header(body, SECRET)
    if case == "tampered":
        body = body.replace(b'"created": 1', b'"created": 2')
    elif case == "wrong_secret":
        header = signature_header(body, "whsec_other")
    elif case == "stale":
        header = signature_header(body, SECRET, timestamp=int(time.time()) - 3600)
    elif case == "missing_header":
        header = None
    elif case == "not_json":
        body = b"this is not json"
        header = signature_header(body, SECRET)
    response = post(client, body, header)
    assert response.status_code == 400, response.get_json()
    assert stored_count(client) == 0
    assert sent == []


def test_http_oversized_body_is_413_and_nothing_stored(receiver) -> None:  # type: ignore[no-untyped-def]
    client, sent = receiver
    body = event(padding="x" * 10_000)
    assert post(client, body, signature_header(body, SECRET)).status_code == 413
    assert stored_count(client) == 0 and sent == []


def test_http_webhook_path_answers_only_post(receiver) -> None:  # type: ignore[no-untyped-def]
    client, sent = receiver
    answer = client.get("/webhooks/stripe")
    assert answer.status_code == 405 and answer.headers["Allow"] == "POST"
    assert stored_count(client) == 0 and sent == []


def test_http_healthz(receiver) -> None:  # type: ignore[no-untyped-def]
    client, _ = receiver
    assert client.get("/healthz").get_json() == {"status": "ok"}


def _metrics(client: FlaskClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.content_type.startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(answer.get_data(as_text=True))
        for s in family.samples
    }


def test_http_metrics_count_each_delivery_by_type_and_outcome(receiver) -> None:  # type: ignore[no-untyped-def]
    client, _ = receiver
    refreshed = ("type", "financial_connections.account.refreshed_transactions")
    name = "fcsync_webhook_events_received_total"
    keys = {
        outcome: (name, frozenset({refreshed, ("outcome", outcome)}))
        for outcome in ("stored", "duplicate")
    }
    keys["rejected"] = (name, frozenset({("type", "unknown"), ("outcome", "rejected")}))
    before = _metrics(client)
    body = event("evt_metrics")
    for _ in range(2):
        post(client, body, signature_header(body, SECRET))
    post(client, body, "t=1,v1=forged")
    after = _metrics(client)
    counted = {outcome: after[key] - before.get(key, 0.0) for outcome, key in keys.items()}
    assert counted == {"stored": 1, "duplicate": 1, "rejected": 1}
    states = {dict(labels)["state"] for n, labels in after if n == "fcsync_accounts"}
    assert states == {str(state) for state in State}
