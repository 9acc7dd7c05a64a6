"""Well-signed bodies that are not an event fcsync can store: each is a 400 with a reason,
nothing stored, nothing enqueued; events fcsync has no work for are acknowledged with 200."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.exc import DataError

from emulator import signature_header
from models import WebhookEvent
from tests.unit.conftest import MAX_BODY, SECRET, inbox_session
from worker import db, inbox
from worker.records import Followup
from worker.runtime import Runtime

REFRESHED = "financial_connections.account.refreshed_transactions"


def event_dict(event_id: str = "evt_1", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": event_id,
        "object": "event",
        "api_version": "2026-06-24.dahlia",
        "created": 1_700_000_000,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": REFRESHED,
        "data": {
            "object": {
                "id": "fca_1",
                "object": "financial_connections.account",
                "livemode": False,
                "status": "active",
            }
        },
    }
    body.update(overrides)
    return body


def encoded(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def with_account(**fields: Any) -> bytes:
    body = event_dict()
    body["data"]["object"].update(fields)
    return encoded(body)


def without(*path: str) -> bytes:
    body = event_dict()
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return encoded(body)


def replaced(old: bytes, new: bytes) -> bytes:
    """The valid event's bytes with one fragment swapped for text json.dumps never writes."""
    body = encoded(event_dict())
    assert old in body
    return body.replace(old, new)


def deeply_nested(depth: int) -> bytes:
    head = encoded(event_dict(data={"object": {}}, type="customer.created"))
    # Replace the empty data.object with `depth` nested arrays.
    return head.replace(b'"object":{}', b'"object":{"x":' + b"[" * depth + b"]" * depth + b"}")


# Each of these answered 500, or 200 and then failed in handle_event on every sweep.
BAD_BODIES: dict[str, Callable[[], bytes]] = {
    "array": lambda: b"[]",
    "number": lambda: b"42",
    "null": lambda: b"null",
    "string": lambda: b'"evt_1"',
    "utf8_bom": lambda: b"\xef\xbb\xbf" + encoded(event_dict()),
    "not_utf8": lambda: replaced(b"evt_1", b"evt_\xff"),
    "float_overflow": lambda: replaced(b'webhooks":1', b'webhooks":1e400'),
    "infinity": lambda: replaced(b'webhooks":1', b'webhooks":Infinity'),
    "nan": lambda: replaced(b'webhooks":1', b'webhooks":NaN'),
    "deeply_nested": lambda: deeply_nested(1_500),
    "duplicate_key": lambda: replaced(b'"id":"evt_1"', b'"id":"evt_1","id":"evt_2"'),
    "id_null": lambda: encoded(event_dict(event_id=None)),  # type: ignore[arg-type]
    "id_number": lambda: encoded(event_dict(event_id=42)),  # type: ignore[arg-type]
    "id_missing": lambda: without("id"),
    "id_not_evt": lambda: encoded(event_dict(event_id="ch_123")),
    "id_empty_suffix": lambda: encoded(event_dict(event_id="evt_")),
    "id_longer_than_column": lambda: encoded(event_dict(event_id="evt_" + "a" * 300)),
    "id_nul": lambda: encoded(event_dict(event_id="evt_a\x00b")),
    "id_lone_surrogate": lambda: encoded(event_dict(event_id="evt_a\ud800")),
    "id_newline": lambda: encoded(event_dict(event_id="evt_a\nb")),
    "object_not_event": lambda: encoded(event_dict(object="list")),
    "type_number": lambda: encoded(event_dict(type=42)),
    "type_missing": lambda: without("type"),
    "type_longer_than_column": lambda: encoded(event_dict(type=REFRESHED + "x" * 300)),
    "type_nul": lambda: encoded(event_dict(type=REFRESHED + "\x00")),
    "created_beyond_64_bits": lambda: encoded(event_dict(created=2**64)),
    "created_negative": lambda: encoded(event_dict(created=-1)),
    "created_string": lambda: encoded(event_dict(created="1700000000")),
    "created_float": lambda: encoded(event_dict(created=1.5)),
    "created_bool": lambda: encoded(event_dict(created=True)),
    "created_huge_digits": lambda: replaced(b"1700000000", b"9" * 5000),
    "livemode_string": lambda: encoded(event_dict(livemode="false")),
    "livemode_missing": lambda: without("livemode"),
    # A Connect event's `account` is the connected account's id, or absent/null.
    "connect_account_not_acct": lambda: encoded(event_dict(account="fca_1")),
    "connect_account_number": lambda: encoded(event_dict(account=42)),
    "connect_account_empty": lambda: encoded(event_dict(account="")),
    "connect_account_longer_than_column": lambda: encoded(event_dict(account="acct_" + "a" * 80)),
    "connect_account_newline": lambda: encoded(event_dict(account="acct_1\n")),
    "data_missing": lambda: without("data"),
    "data_array": lambda: encoded(event_dict(data=[])),
    "data_object_missing": lambda: without("data", "object"),
    "data_object_string": lambda: encoded(event_dict(data={"object": "fca_1"})),
    "fc_object_not_account": lambda: encoded(event_dict(data={"object": {"object": "customer"}})),
    "fc_account_id_missing": lambda: without("data", "object", "id"),
    "fc_account_id_not_fca": lambda: with_account(id="acct_1"),
    "fc_account_id_longer_than_column": lambda: with_account(id="fca_" + "a" * 80),
    "fc_account_refresh_no_id": lambda: with_account(transaction_refresh={"status": "pending"}),
    "fc_account_permissions_number": lambda: with_account(permissions=5),
}


def stored(client: FlaskClient) -> list[WebhookEvent]:
    with inbox_session(client) as session:
        return list(session.scalars(select(WebhookEvent)))


def post(client: FlaskClient, body: bytes, header: str | None) -> Any:
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Stripe-Signature"] = header
    return client.post("/webhooks/stripe", data=body, headers=headers)


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_envelope_signed_bad_body_is_400_with_a_reason_and_nothing_stored(
    receiver: tuple[FlaskClient, list[Followup]], case: str
) -> None:
    client, sent = receiver
    body = BAD_BODIES[case]()
    assert len(body) < MAX_BODY, "the body limit would answer 413 first"
    response = post(client, body, signature_header(body, SECRET))
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["error"]
    assert stored(client) == [] and sent == []


def test_envelope_non_ascii_signature_header_is_400(
    receiver: tuple[FlaskClient, list[Followup]],
) -> None:
    client, sent = receiver
    body = encoded(event_dict())
    response = post(client, body, signature_header(body, SECRET) + ",v1=\u00e9")
    assert response.status_code == 400
    assert response.get_json()["code"] == "signature_invalid"
    assert stored(client) == [] and sent == []


@pytest.mark.parametrize(
    ("case", "body"),
    [
        ("other_mode", event_dict(livemode=True)),
        ("not_fc", event_dict(type="customer.created", data={"object": {"object": "customer"}})),
    ],
)
def test_envelope_event_without_work_is_acknowledged_and_not_stored(
    receiver: tuple[FlaskClient, list[Followup]], case: str, body: dict[str, Any]
) -> None:
    client, sent = receiver
    payload = encoded(body)
    response = post(client, payload, signature_header(payload, SECRET))
    assert response.status_code == 200
    assert response.get_json()["ignored"]
    assert stored(client) == [] and sent == []


def test_envelope_fc_type_without_handler_is_stored_as_ignored_and_not_enqueued(
    receiver: tuple[FlaskClient, list[Followup]],
) -> None:
    client, sent = receiver
    payload = encoded(event_dict(type="financial_connections.account.upcoming_deactivation"))
    response = post(client, payload, signature_header(payload, SECRET))
    assert response.status_code == 200 and response.get_json()["ignored"]
    (row,) = stored(client)
    assert (row.id, row.outcome) == ("evt_1", "ignored") and row.processed_at is not None
    assert sent == []


def test_envelope_unknown_account_is_stored_and_enqueued_once(
    receiver: tuple[FlaskClient, list[Followup]],
) -> None:
    """The handler decides (ignore, or track with FCSYNC_AUTO_TRACK), not the receiver."""
    client, sent = receiver
    payload = with_account(id="fca_neverseen")
    assert post(client, payload, signature_header(payload, SECRET)).status_code == 200
    (row,) = stored(client)
    assert (row.account_id, row.processed_at) == ("fca_neverseen", None)
    assert sent == [Followup("fcsync.handle_events", {"event_ids": ["evt_1"]})]


def test_envelope_database_down_is_503_so_stripe_redelivers(
    receiver: tuple[FlaskClient, list[Followup]],
    receiver_runtime: Runtime,
    tmp_path: Path,
) -> None:
    client, sent = receiver
    receiver_runtime.engine = db.make_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")
    payload = encoded(event_dict())
    response = post(client, payload, signature_header(payload, SECRET))
    assert response.status_code == 503
    assert sent == []


def test_envelope_value_the_database_refuses_is_400(
    receiver: tuple[FlaskClient, list[Followup]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last resort for a value the envelope checks would let through."""

    def refuse(*_: Any, **__: Any) -> set[str]:
        raise DataError("INSERT", {}, Exception("value too long for type character varying"))

    client, sent = receiver
    monkeypatch.setattr(inbox, "insert_webhook_events", refuse)
    payload = encoded(event_dict())
    response = post(client, payload, signature_header(payload, SECRET))
    assert response.status_code == 400
    assert stored(client) == [] and sent == []
