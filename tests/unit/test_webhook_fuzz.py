"""Property tests of the webhook receiver over a real database (SQLite and PostgreSQL): whatever
arrives — any signature, any body, any shape of well-signed JSON, any event type, account or
mode, the same event many times at once — the answer is never a 5xx, and the inbox and the
queue gain exactly what the event deserves: one stored row and one enqueue, or nothing."""

from __future__ import annotations

import itertools
import json
import math
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from emulator import signature_header
from models import WebhookEvent
from tests.unit.conftest import MAX_BODY, OLD_SECRET, SECRET, inbox_session
from worker import db, event_handlers
from worker.http import create_app
from worker.records import Followup
from worker.runtime import Runtime
from worker.settings import Settings

FC = "financial_connections.account."
HANDLED = sorted(event_handlers.HANDLERS)
TOLERANCE_S = 300

# Function-scoped fixtures are set up once per test, not per example: every property below is
# stated as a difference in the inbox and the queue, so examples cannot disturb each other.
_BASE = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def fuzz(examples: int) -> settings:
    return settings(_BASE, max_examples=examples)


_serial = itertools.count()


def fresh_id() -> str:
    return f"evt_fuzz{next(_serial)}x{time.monotonic_ns()}"


def valid_event(
    event_id: str,
    *,
    type_: str = FC + "refreshed_transactions",
    account: str = "fca_fuzz",
    livemode: bool = False,
) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2026-06-24.dahlia",
        "created": 1_700_000_000,
        "livemode": livemode,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type_,
        "data": {
            "object": {
                "id": account,
                "object": "financial_connections.account",
                "livemode": livemode,
                "status": "active",
                "permissions": ["transactions"],
                "subscriptions": [],
            }
        },
    }


# -- the contract, stated from Stripe's documentation of the event object ------------------

_EVENT_ID = re.compile(r"evt_[A-Za-z0-9_]+")
_ACCOUNT_ID = re.compile(r"fca_[A-Za-z0-9_]+")
_TYPE = re.compile(r"[A-Za-z0-9_.:\-]+")


def finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list):
        return all(finite(v) for v in value)
    return True


def storable_envelope(event: Any) -> bool:
    """What any receiver may store: Stripe's envelope, with every keyed field fitting its column."""
    if not isinstance(event, dict) or not finite(event):
        return False
    event_id, type_, created = event.get("id"), event.get("type"), event.get("created")
    body = event.get("data")
    obj = body.get("object") if isinstance(body, dict) else None
    if not (
        isinstance(event_id, str)
        and len(event_id) <= 255
        and _EVENT_ID.fullmatch(event_id)
        and event.get("object") == "event"
        and isinstance(type_, str)
        and len(type_) <= 255
        and _TYPE.fullmatch(type_)
        and type(created) is int
        and 0 <= created < 2**63
        and isinstance(event.get("livemode"), bool)
        and isinstance(obj, dict)
    ):
        return False
    if not type_.startswith(FC):
        return True
    account = obj.get("id")
    return (
        obj.get("object") == "financial_connections.account"
        and isinstance(account, str)
        and len(account) <= 64
        and _ACCOUNT_ID.fullmatch(account) is not None
    )


# -- strategies -----------------------------------------------------------------------------

odd_text = st.text(
    alphabet=st.characters(codec="utf-8")
    | st.characters(categories=["Cs"])  # lone surrogates, as JSON's \ud800 escapes give them
    | st.sampled_from("\x00\n\r\t\ufeff\u2028"),
    max_size=30,
)
near_valid_text = st.one_of(
    st.from_regex(r"evt_[A-Za-z0-9_]{0,12}", fullmatch=True),
    st.from_regex(r"fca_[A-Za-z0-9_]{0,12}", fullmatch=True),
    st.sampled_from(["evt_" + "a" * 251, "evt_" + "a" * 252, "fca_" + "b" * 60, "fca_" + "b" * 61]),
    st.sampled_from(["event", "financial_connections.account", *HANDLED, FC + "x" * 250]),
    st.builds(lambda s: "evt_" + s, odd_text),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 2**63 - 1, 2**63, -1]),
    st.floats(),  # NaN and infinities included: json.dumps writes NaN / Infinity for them
    odd_text,
    near_valid_text,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3),
    max_leaves=8,
)
PATHS = [
    ("id",),
    ("object",),
    ("type",),
    ("created",),
    ("livemode",),
    ("data",),
    ("data", "object"),
    ("data", "object", "object"),
    ("data", "object", "id"),
    # The account's own fields: account_from_dict decides, so only "never a 5xx" is asserted.
    ("data", "object", "status"),
    ("data", "object", "permissions"),
    ("data", "object", "transaction_refresh"),
]
ACCOUNT_FIELDS = PATHS[-3:]


def mutated(event: dict[str, Any], path: tuple[str, ...], value: Any, delete: bool) -> Any:
    target = event
    for key in path[:-1]:
        target = target[key]
    if delete:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return event


# -- the receiver as the properties see it --------------------------------------------------


def inbox(client: FlaskClient) -> dict[str, WebhookEvent]:
    with inbox_session(client) as session:
        return {row.id: row for row in session.scalars(select(WebhookEvent))}


def post(client: FlaskClient, body: bytes, header: str | None) -> Any:
    headers = {} if header is None else {"Stripe-Signature": header}
    return client.post("/webhooks/stripe", data=body, headers=headers)


def deliver_signed(
    receiver: tuple[FlaskClient, list[Followup]], event: Any, *, raw: bytes | None = None
) -> tuple[int, dict[str, Any], list[WebhookEvent], list[Followup]]:
    """POST one well-signed body; the answer, and what the inbox and the queue gained."""
    client, sent = receiver
    body = raw if raw is not None else json.dumps(event).encode()
    before, queued = inbox(client), len(sent)
    response = post(client, body, signature_header(body, SECRET))
    assert response.status_code < 500, response.get_data(as_text=True)
    after = inbox(client)
    added = [row for key, row in after.items() if key not in before]
    return response.status_code, response.get_json() or {}, added, sent[queued:]


def assert_deserved(
    event: dict[str, Any],
    status: int,
    answer: dict[str, Any],
    added: list[WebhookEvent],
    enqueued: list[Followup],
) -> None:
    """A valid event of this endpoint's mode: stored once, enqueued once when handled."""
    if answer.get("duplicate"):
        assert (status, added, enqueued) == (200, [], [])
        return
    if event["livemode"] or not event["type"].startswith(FC):
        assert status == 200 and answer["ignored"] and (added, enqueued) == ([], [])
        return
    assert status == 200
    (row,) = added
    assert (row.id, row.type, row.account_id) == (
        event["id"],
        event["type"],
        event["data"]["object"]["id"],
    )
    if event["type"] in HANDLED:
        assert enqueued == [Followup("fcsync.handle_events", {"event_ids": [event["id"]]})]
        assert row.processed_at is None
    else:
        assert enqueued == [] and row.outcome == "ignored"


# -- properties -----------------------------------------------------------------------------


@fuzz(150)
@given(
    path=st.sampled_from(PATHS),
    value=json_values,
    delete=st.booleans(),
)
def test_fuzz_signed_event_of_any_shape_is_stored_only_when_valid(
    receiver: tuple[FlaskClient, list[Followup]], path: tuple[str, ...], value: Any, delete: bool
) -> None:
    event = mutated(valid_event(fresh_id()), path, value, delete)
    status, answer, added, enqueued = deliver_signed(receiver, event)
    if not storable_envelope(event):
        assert status == 400 and answer["error"]
        assert (added, enqueued) == ([], [])
    elif path in ACCOUNT_FIELDS and status == 400:
        assert (added, enqueued) == ([], [])
    else:
        assert_deserved(event, status, answer, added, enqueued)


@fuzz(60)
@given(value=json_values)
def test_fuzz_signed_json_that_is_not_an_event_is_400(
    receiver: tuple[FlaskClient, list[Followup]], value: Any
) -> None:
    status, answer, added, enqueued = deliver_signed(receiver, value)
    assert storable_envelope(value) is False
    assert status == 400 and answer["error"] and (added, enqueued) == ([], [])


@fuzz(40)
@given(body=st.binary(max_size=300), depth=st.integers(min_value=0, max_value=3_000))
def test_fuzz_signed_bytes_and_deep_nesting_never_5xx(
    receiver: tuple[FlaskClient, list[Followup]], body: bytes, depth: int
) -> None:
    status, _, added, enqueued = deliver_signed(receiver, None, raw=body)
    assert status == 400 and (added, enqueued) == ([], [])
    event = valid_event(fresh_id())
    event["data"]["object"]["nested"] = []
    nested = b'"nested": ' + b"[" * depth + b"]" * depth
    raw = json.dumps(event).encode().replace(b'"nested": []', nested)
    status, _, added, enqueued = deliver_signed(receiver, None, raw=raw)
    # Near the recursion limit either answer is right; never a 5xx, never half a store.
    assert status in (200, 400) and len(added) == len(enqueued) == (status == 200)


signatures = st.fixed_dictionaries(
    {
        "secret": st.sampled_from([SECRET, OLD_SECRET, "whsec_someone_else", "", SECRET + "x"]),
        "age": st.sampled_from([-10_000, -60, 0, 100, 250, 400, 100_000]),
        "same_body": st.booleans(),
        "extra": st.sampled_from(["", ",v1=deadbeef", ",v0=abc", ",t=1", ",v1=\u00e9", ",,="]),
    }
)


@fuzz(120)
@given(
    valid=st.booleans(),
    body=st.binary(max_size=200),
    signature=signatures | st.none() | st.text(st.characters(min_codepoint=32, max_codepoint=255)),
)
def test_fuzz_signatures_only_a_configured_fresh_one_stores(
    receiver: tuple[FlaskClient, list[Followup]],
    valid: bool,
    body: bytes,
    signature: dict[str, Any] | str | None,
) -> None:
    client, sent = receiver
    event = valid_event(fresh_id())
    payload = json.dumps(event).encode() if valid else body
    header: str | None
    if isinstance(signature, dict):
        signed = payload if signature["same_body"] else payload + b" "
        header = signature_header(
            signed, signature["secret"], timestamp=int(time.time()) - signature["age"]
        )
        header += signature["extra"]
        verifies = (
            signature["secret"] in (SECRET, OLD_SECRET)
            and signature["same_body"]
            and signature["age"] <= TOLERANCE_S - 50
            and "\u00e9" not in signature["extra"]
        )
    else:
        header, verifies = signature, False
    before, queued = inbox(client), len(sent)
    response = post(client, payload, header)
    assert response.status_code < 500
    added = [key for key in inbox(client) if key not in before]
    if valid and verifies:
        assert response.status_code == 200 and added == [event["id"]] and len(sent) == queued + 1
    else:
        assert response.status_code == 400 and added == [] and len(sent) == queued


@fuzz(12)
@given(size=st.integers(min_value=MAX_BODY - 40, max_value=MAX_BODY + 40))
def test_fuzz_body_over_the_limit_is_413_and_nothing_stored(
    receiver: tuple[FlaskClient, list[Followup]], size: int
) -> None:
    event = valid_event(fresh_id())
    event["padding"] = ""
    event["padding"] = "x" * (size - len(json.dumps(event).encode()))
    status, _, added, enqueued = deliver_signed(receiver, event)
    if size > MAX_BODY:
        assert status == 413 and (added, enqueued) == ([], [])
    else:
        assert_deserved(event, status, {}, added, enqueued)


@fuzz(60)
@given(
    type_=st.sampled_from(HANDLED)
    | st.from_regex(r"financial_connections\.account\.[a-z_]{1,20}", fullmatch=True)
    | st.from_regex(r"[a-z]{1,10}\.[a-z_.]{1,20}", fullmatch=True),
    account=st.from_regex(r"fca_[A-Za-z0-9]{1,30}", fullmatch=True),
    livemode=st.booleans(),
    repeat=st.booleans(),
)
def test_fuzz_types_accounts_and_modes_get_what_they_deserve(
    receiver: tuple[FlaskClient, list[Followup]],
    type_: str,
    account: str,
    livemode: bool,
    repeat: bool,
) -> None:
    """Unknown accounts are stored for the handler to judge; unknown types and the other mode's
    events are acknowledged without work; a repeat is a duplicate."""
    event = valid_event(fresh_id(), type_=type_, account=account, livemode=livemode)
    if not type_.startswith(FC):
        event["data"]["object"] = {"id": "cus_1", "object": "customer"}
    for _ in range(2 if repeat else 1):
        status, answer, added, enqueued = deliver_signed(receiver, event)
        assert_deserved(event, status, answer, added, enqueued)


# -- concurrent duplicates against a real server --------------------------------------------


@pytest.fixture
def served(
    committed_engine: Engine, receiver_settings: Settings
) -> Iterator[tuple[str, list[Followup]]]:
    """The receiver on a threaded server on a free port, in this process so that its sends are
    seen here (`fcsync webhooks` serves the same app with granian, in processes of its own)."""
    from werkzeug.serving import make_server

    sent: list[Followup] = []
    lock = threading.Lock()

    def dispatch(followup: Followup) -> None:
        with lock:
            sent.append(followup)

    app = create_app(Runtime(receiver_settings, send=dispatch, engine=committed_engine))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/webhooks/stripe", sent
    server.shutdown()
    thread.join(timeout=10)


def test_fuzz_concurrent_duplicates_store_and_enqueue_once(
    served: tuple[str, list[Followup]], committed_engine: Engine
) -> None:
    url, sent = served
    events = [json.dumps(valid_event(fresh_id())).encode() for _ in range(3)]
    deliveries = [body for body in events for _ in range(6)]
    barrier = threading.Barrier(len(deliveries))
    statuses: list[int] = []

    def deliver(body: bytes) -> None:
        header = signature_header(body, SECRET)
        barrier.wait(timeout=10)
        response = requests.post(url, data=body, headers={"Stripe-Signature": header}, timeout=30)
        statuses.append(response.status_code)

    threads = [threading.Thread(target=deliver, args=(body,)) for body in deliveries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert statuses == [200] * len(deliveries)
    ids = sorted(json.loads(body)["id"] for body in events)
    with db.session_scope(committed_engine) as session:
        assert int(session.scalar(select(func.count()).select_from(WebhookEvent)) or 0) == 3
    assert sorted(event_id for f in sent for event_id in f.kwargs["event_ids"]) == ids


def test_fuzz_chunked_body_over_the_limit_is_413(
    served: tuple[str, list[Followup]], committed_engine: Engine
) -> None:
    """Without a Content-Length the limit still holds: the body is never read past it."""
    url, sent = served
    body = json.dumps(valid_event(fresh_id(), account="fca_" + "a" * 60)).encode()
    body = body[:-1] + b', "padding": "' + b"x" * (MAX_BODY + 1_000) + b'"}'

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1_000):
            yield body[start : start + 1_000]

    response = requests.post(
        url, data=chunks(), headers={"Stripe-Signature": signature_header(body, SECRET)}, timeout=30
    )
    assert response.status_code == 413
    with db.session_scope(committed_engine) as session:
        assert list(session.scalars(select(WebhookEvent))) == [] and sent == []
