"""GET /v1/events as Stripe documents it: `type` (with `*`), `types[]`, `created` ranges,
cursors and `limit`, newest first with `has_more`, the 30-day window (for GET /v1/events/{id}
too), scoped by `Stripe-Account`; every page and event checked against Stripe's schemas."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from emulator import Emulator
from tests.emulator.conftest import API_KEY, START, Schemas

ACCT = "acct_1EventsScope"
CREATED = "financial_connections.account.created"
DEACTIVATED = "financial_connections.account.deactivated"
BALANCE = "financial_connections.account.refreshed_balance"
DAY_S = 86_400


def ids(page: Any) -> list[str]:
    return [e.id for e in page.data]


def checked(schemas: Schemas, page: Any) -> Any:
    body = page.last_response.data
    schemas.page("event", body)
    for event in body["data"]:
        schemas.event(event)
    return page


@pytest.fixture
def history(emulator: Emulator) -> list[str]:
    """Four platform events ten seconds apart (created, deactivated, refreshed_balance,
    created) and one of a connected account; their ids, oldest first."""
    control, bank = emulator.control, emulator.bank
    first = control.create_account(transactions=1)["id"]
    for type_ in (DEACTIVATED, BALANCE):
        control.advance(10)
        control.trigger_event(type_, first)
    control.advance(10)
    control.create_account(transactions=1)
    control.create_account(transactions=1, stripe_account=ACCT)
    with bank.lock:
        return [event["id"] for event in bank.events]


def test_events_filter_by_type_and_types(
    emulator: Emulator, client: stripe.StripeClient, schemas: Schemas, history: list[str]
) -> None:
    e1, e2, e3, e4, _ = history
    events = client.v1.events
    everything = checked(schemas, events.list())
    assert ids(everything) == [e4, e3, e2, e1] and everything.has_more is False
    assert ids(events.list({"type": CREATED})) == [e4, e1]
    assert ids(events.list({"type": "financial_connections.account.refreshed_*"})) == [e3]
    assert ids(events.list({"type": "*.deactivated"})) == [e2]
    assert ids(checked(schemas, events.list({"types": [CREATED, DEACTIVATED]}))) == [e4, e2, e1]
    assert events.list({"types": ["charge.succeeded"]}).data == []
    with pytest.raises(stripe.InvalidRequestError) as both:
        events.list({"type": CREATED, "types": [CREATED]})
    assert both.value.code == "parameters_exclusive"
    with pytest.raises(stripe.InvalidRequestError) as many:
        events.list({"types": [CREATED] * 21})
    assert many.value.param == "types"


def test_events_filter_by_created(
    emulator: Emulator, client: stripe.StripeClient, schemas: Schemas, history: list[str]
) -> None:
    e1, e2, e3, e4, _ = history
    t = START
    cases: list[tuple[Any, list[str]]] = [
        ({"gt": t + 10}, [e4, e3]),
        ({"gte": t + 10}, [e4, e3, e2]),
        ({"lt": t + 20}, [e2, e1]),
        ({"lte": t + 20}, [e3, e2, e1]),
        ({"gt": t, "lt": t + 30}, [e3, e2]),
        (t + 10, [e2]),
    ]
    for created, expected in cases:
        page = checked(schemas, client.v1.events.list({"created": created}))
        assert ids(page) == expected, created
    with pytest.raises(stripe.InvalidRequestError) as bad:
        client.v1.events.list({"created": {"after": t}})
    assert bad.value.code == "parameter_unknown"


def test_events_page_newest_first_with_cursors(
    emulator: Emulator, client: stripe.StripeClient, schemas: Schemas, history: list[str]
) -> None:
    e1, e2, e3, e4, connected = history
    events = client.v1.events
    first = checked(schemas, events.list({"limit": 2}))
    assert ids(first) == [e4, e3] and first.has_more is True
    rest = checked(schemas, events.list({"limit": 2, "starting_after": e3}))
    assert ids(rest) == [e2, e1] and rest.has_more is False
    before = events.list({"limit": 1, "ending_before": e2})
    assert ids(before) == [e3] and before.has_more is True
    assert [e.id for e in events.list({"limit": 1}).auto_paging_iter()] == [e4, e3, e2, e1]
    for limit in (0, 101):
        with pytest.raises(stripe.InvalidRequestError) as bad:
            events.list({"limit": limit})
        assert bad.value.param == "limit"
    # A connected account's event is no cursor for the platform (nor the reverse).
    with pytest.raises(stripe.InvalidRequestError) as foreign:
        events.list({"starting_after": connected})
    assert (foreign.value.code, foreign.value.param) == ("resource_missing", "starting_after")
    as_connected = stripe.StripeClient(
        API_KEY, base_addresses={"api": emulator.base_url}, stripe_account=ACCT
    )
    with pytest.raises(stripe.InvalidRequestError):
        as_connected.v1.events.list({"ending_before": e4})
    page = checked(schemas, as_connected.v1.events.list({"type": CREATED}))
    assert ids(page) == [connected] and page.data[0].account == ACCT


def test_events_older_than_30_days_are_neither_listed_nor_retrieved(
    emulator: Emulator, client: stripe.StripeClient, schemas: Schemas, history: list[str]
) -> None:
    e1, e2, e3, e4, _ = history
    # Now START + 30 s; 30 days and 15 s later only events of START + 15 s and after remain.
    emulator.control.advance(30 * DAY_S - 15)
    assert ids(checked(schemas, client.v1.events.list())) == [e4, e3]
    assert ids(client.v1.events.list({"created": {"lt": START + 25}})) == [e3]
    for gone in (e1, e2):
        with pytest.raises(stripe.InvalidRequestError) as missing:
            client.v1.events.retrieve(gone)
        assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")
    kept = client.v1.events.retrieve(e3)
    schemas.event(kept.last_response.data)
    assert kept.type == BALANCE
    emulator.control.advance(10)
    assert ids(client.v1.events.list()) == [e4]
