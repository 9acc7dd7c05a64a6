"""Property tests of page validation: hypothesis builds Stripe-shaped transaction pages and
accounts, and malformed variants of them. The pure checks accept every well-formed answer and
refuse every malformed one; driven through the real gateway (a canned `stripe.HTTPClient`
serving the generated body), `sync_page` and a real database, a malformed page never moves the
cursor and never writes a row, of this account or another."""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from models import Account, Transaction
from tests.emulator.conftest import API_KEY
from tests.service.conftest import make_settings
from tests.stripe_http import Answer, CannedHTTPClient
from worker import repository
from worker.db import session_scope
from worker.stripe_gateway import StripeGateway
from worker.stripe_payloads import (
    InvalidStripeResponse,
    check_page_for_sync,
    parse_account,
    parse_transactions_page,
)
from worker.sync import sync_page

ACCOUNT = "fca_synced"
OTHER = "fca_other"
# Outside the alphabet of generated ids, so no generated row is the page's own predecessor.
BEFORE = "fctxn_previous-page"
CURSOR = "fctxnref_cursor"
TARGET = "fctxnref_target"
NOW = datetime(2026, 11, 1, tzinfo=UTC)
SETTINGS = make_settings("http://127.0.0.1:9")
LIST_URL = "/v1/financial_connections/transactions"
TRANSACTION = "financial_connections.transaction"

# -- well-formed answers -------------------------------------------------------------------

ID_TAIL = st.text(string.ascii_letters + string.digits, min_size=1, max_size=24)
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30)
INT64 = st.integers(-(2**63), 2**63 - 1)
TIMESTAMP = st.integers(0, 2**40)
# Stripe's values and values it may add: unknown enum values are tolerated.
STATUS = st.sampled_from(["pending", "posted", "void"]) | st.text(
    string.ascii_lowercase + "_", min_size=1, max_size=16
)
JSON_SCALAR = st.none() | st.booleans() | st.integers() | TEXT
TRANSACTION_FIELDS = (
    "id",
    "object",
    "account",
    "amount",
    "currency",
    "description",
    "livemode",
    "status",
    "status_transitions",
    "transacted_at",
    "transaction_refresh",
    "updated",
)
UNKNOWN_FIELDS = st.dictionaries(
    st.text(string.ascii_lowercase, min_size=1, max_size=8).filter(
        lambda k: k not in TRANSACTION_FIELDS
    ),
    JSON_SCALAR,
    max_size=2,
)


def transactions(account: str = ACCOUNT) -> st.SearchStrategy[dict[str, Any]]:
    known = st.fixed_dictionaries(
        {
            "id": ID_TAIL.map("fctxn_".__add__),
            "object": st.just(TRANSACTION),
            "account": st.just(account),
            "amount": INT64,
            "currency": st.sampled_from(["usd", "eur", "cad"]),
            "description": TEXT,
            "livemode": st.booleans(),
            "status": STATUS,
            "status_transitions": st.fixed_dictionaries(
                {},
                optional={"posted_at": st.none() | TIMESTAMP, "void_at": st.none() | TIMESTAMP},
            ),
            "transacted_at": TIMESTAMP,
            "transaction_refresh": ID_TAIL.map("fctxnref_".__add__),
            "updated": TIMESTAMP,
        }
    )
    return st.builds(lambda row, extra: {**extra, **row}, known, UNKNOWN_FIELDS)


@st.composite
def pages(draw: st.DrawFn, min_rows: int = 0) -> dict[str, Any]:
    rows = draw(
        st.lists(transactions(), min_size=min_rows, max_size=5, unique_by=lambda r: r["id"])
    )
    return {
        "object": "list",
        "data": rows,
        "has_more": draw(st.booleans()) if rows else False,
        "url": LIST_URL,
    }


# -- malformed answers ---------------------------------------------------------------------

NOT_INT = (
    st.floats()
    | st.booleans()
    | TEXT
    | st.none()
    | st.integers(min_value=2**63)
    | st.integers(max_value=-(2**63) - 1)
    | st.lists(st.integers(), max_size=1)
)
NOT_TEXT = (
    st.integers()
    | st.floats()
    | st.booleans()
    | st.none()
    | st.lists(TEXT, max_size=1)
    | st.sampled_from(["nul\x00inside", "lone \ud800 surrogate"])
)
NOT_BOOL = st.integers() | st.floats() | TEXT | st.none()
NOT_OBJECT = st.integers() | TEXT | st.none() | st.lists(JSON_SCALAR, max_size=2)
TOO_LONG = st.integers(65, 300).map(lambda n: "x" * n)
WRONG: dict[str, st.SearchStrategy[Any]] = {
    "id": NOT_TEXT | ID_TAIL | st.just("fctxn_") | TOO_LONG.map("fctxn_".__add__),
    "object": NOT_TEXT | st.sampled_from(["list", "financial_connections.account"]),
    "account": NOT_TEXT | ID_TAIL | TOO_LONG.map("fca_".__add__),
    "amount": NOT_INT,
    "currency": NOT_TEXT | st.text(string.ascii_lowercase, min_size=9, max_size=20),
    "description": NOT_TEXT,
    "livemode": NOT_BOOL,
    "status": NOT_TEXT | st.text(string.ascii_lowercase, min_size=17, max_size=40),
    "status_transitions": NOT_OBJECT
    | st.fixed_dictionaries({"posted_at": NOT_INT.filter(lambda v: v is not None)})
    | st.fixed_dictionaries({"void_at": NOT_INT.filter(lambda v: v is not None)}),
    "transacted_at": NOT_INT,
    "transaction_refresh": NOT_TEXT | TOO_LONG,
    "updated": NOT_INT,
}


def _without(obj: Mapping[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != key}


@st.composite
def broken_row(draw: st.DrawFn, page: dict[str, Any]) -> dict[str, Any]:
    rows = list(page["data"])
    i = draw(st.integers(0, len(rows) - 1))
    field = draw(st.sampled_from(TRANSACTION_FIELDS))
    if draw(st.booleans()):
        rows[i] = _without(rows[i], field)
    else:
        rows[i] = {**rows[i], field: draw(WRONG[field])}
    return {**page, "data": rows}


Break = Callable[[st.DrawFn, dict[str, Any]], Any]
PAGE_BREAKS: dict[str, Break] = {
    "body_not_an_object": lambda draw, page: draw(
        st.lists(JSON_SCALAR, max_size=3) | JSON_SCALAR | st.floats()
    ),
    "object_missing": lambda draw, page: _without(page, "object"),
    "object_wrong": lambda draw, page: {**page, "object": draw(NOT_TEXT | st.just("event"))},
    "data_missing": lambda draw, page: _without(page, "data"),
    "data_not_an_array": lambda draw, page: {**page, "data": draw(NOT_OBJECT.filter(_not_list))},
    "has_more_missing": lambda draw, page: _without(page, "has_more"),
    "has_more_not_a_bool": lambda draw, page: {**page, "has_more": draw(NOT_BOOL)},
    "more_promised_on_an_empty_page": lambda draw, page: {**page, "data": [], "has_more": True},
    "row_not_an_object": lambda draw, page: {
        **page,
        "data": [*page["data"], draw(NOT_OBJECT | st.floats())],
    },
    "row_broken": lambda draw, page: draw(broken_row(page)),
    "row_twice": lambda draw, page: {**page, "data": [*page["data"], page["data"][0]]},
}


def _not_list(value: object) -> bool:
    return not isinstance(value, list)


@st.composite
def malformed_pages(draw: st.DrawFn) -> tuple[str, Any]:
    kind = draw(st.sampled_from(sorted(PAGE_BREAKS)))
    return kind, PAGE_BREAKS[kind](draw, draw(pages(min_rows=1)))


@st.composite
def pages_the_sync_must_refuse(draw: st.DrawFn) -> tuple[str, Any, str | None]:
    """(kind, body, where the sync stands): malformed pages, and well-formed ones that hold a
    row of another account or end where the sync already stands."""
    kind = draw(st.sampled_from([*sorted(PAGE_BREAKS), "another_account", "no_progress"]))
    page = draw(pages(min_rows=1))
    starting_after = draw(st.sampled_from([None, BEFORE]))
    if kind == "another_account":
        rows = list(page["data"])
        i = draw(st.integers(0, len(rows) - 1))
        rows[i] = {**rows[i], "account": OTHER}
        return kind, {**page, "data": rows}, starting_after
    if kind == "no_progress":
        return kind, {**page, "has_more": True}, page["data"][-1]["id"]
    return kind, PAGE_BREAKS[kind](draw, page), starting_after


# -- the pure checks -----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(page=pages())
def test_page_properties_every_well_formed_page_is_accepted_whole(page: dict[str, Any]) -> None:
    parsed = parse_transactions_page(page)
    assert [t.id for t in parsed.transactions] == [row["id"] for row in page["data"]]
    assert [t.amount for t in parsed.transactions] == [row["amount"] for row in page["data"]]
    assert parsed.has_more is page["has_more"]
    check_page_for_sync(parsed, ACCOUNT, starting_after=BEFORE)


@settings(max_examples=400, deadline=None)
@given(case=malformed_pages())
def test_page_properties_every_malformed_page_is_refused(case: tuple[str, Any]) -> None:
    _, body = case
    with pytest.raises(InvalidStripeResponse) as raised:
        parse_transactions_page(body)
    assert raised.value.code == "invalid_stripe_response"
    # The message is recorded on the account: it must be storable text of bounded size.
    assert "\x00" not in str(raised.value) and len(str(raised.value)) < 400
    str(raised.value).encode("utf-8")


ACCOUNT_STATUS = st.sampled_from(["active", "inactive", "disconnected"]) | st.text(
    string.ascii_lowercase, min_size=1, max_size=16
)
REFRESH = st.fixed_dictionaries(
    {
        "id": ID_TAIL.map("fctxnref_".__add__),
        "status": st.sampled_from(["pending", "succeeded", "failed"]),
        "last_attempted_at": TIMESTAMP,
    },
    optional={"next_refresh_available_at": st.none() | TIMESTAMP},
)
FEATURES = st.none() | st.lists(st.sampled_from(["balances", "ownership", "transactions"]))


def accounts() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "id": ID_TAIL.map("fca_".__add__),
            "object": st.just("financial_connections.account"),
            "status": ACCOUNT_STATUS,
            "livemode": st.booleans(),
            "permissions": FEATURES,
            "subscriptions": FEATURES,
            "transaction_refresh": st.none() | REFRESH,
        },
        optional={"created": TIMESTAMP, "display_name": st.none() | TEXT, "extra": JSON_SCALAR},
    )


ACCOUNT_WRONG: dict[str, st.SearchStrategy[Any]] = {
    "id": NOT_TEXT | ID_TAIL | TOO_LONG.map("fca_".__add__),
    "status": NOT_TEXT | st.text(string.ascii_lowercase, min_size=17, max_size=40),
    "livemode": NOT_BOOL.filter(lambda v: v is not None),
    "permissions": st.integers()
    | TEXT
    | st.lists(NOT_TEXT.filter(lambda v: v is not None), min_size=1, max_size=2),
    "subscriptions": st.dictionaries(TEXT, st.integers(), min_size=1),
    "transaction_refresh": NOT_OBJECT.filter(lambda v: v is not None)
    | st.builds(lambda r, v: {**r, "last_attempted_at": v}, REFRESH, NOT_INT)
    | st.builds(lambda r, v: {**r, "id": v}, REFRESH, NOT_TEXT)
    | st.builds(
        lambda r, v: {**r, "next_refresh_available_at": v},
        REFRESH,
        NOT_INT.filter(lambda v: v is not None),
    ),
}


@st.composite
def malformed_accounts(draw: st.DrawFn) -> Any:
    account = draw(accounts())
    field = draw(st.sampled_from(sorted(ACCOUNT_WRONG)))
    if field in ("id", "status") and draw(st.booleans()):
        return _without(account, field)
    return {**account, field: draw(ACCOUNT_WRONG[field])}


@settings(max_examples=200, deadline=None)
@given(account=accounts())
def test_page_properties_every_well_formed_account_is_accepted(account: dict[str, Any]) -> None:
    parsed = parse_account(account)
    assert (parsed.id, parsed.status) == (account["id"], account["status"])
    assert parsed.permissions == tuple(account["permissions"] or ())


@settings(max_examples=300, deadline=None)
@given(account=malformed_accounts() | NOT_OBJECT)
def test_page_properties_every_malformed_account_is_refused(account: Any) -> None:
    with pytest.raises(InvalidStripeResponse):
        parse_account(account)


# -- through the real gateway, sync_page and a database ------------------------------------


def stand_at(engine: Engine, starting_after: str | None) -> None:
    """A sync of ACCOUNT in progress (lease held, cursor at CURSOR), and no transactions."""
    with session_scope(engine) as session:
        session.execute(delete(Transaction))
        for account_id in (ACCOUNT, OTHER):
            repository.save_account(
                session, parse_account({"id": account_id, "status": "active"}), now=NOW
            )
        account = session.get(Account, ACCOUNT)
        assert account is not None
        account.cursor_refresh_id, account.cursor_refresh_at = CURSOR, 100
        account.sync_lease_owner = "o"
        account.sync_lease_expires_at = NOW + timedelta(hours=1)
        account.sync_target_refresh_id, account.sync_target_refresh_at = TARGET, 200
        account.sync_after_refresh_id = CURSOR
        account.sync_starting_after = starting_after
        account.sync_inserted = account.sync_updated = 0


def sync_one_page(engine: Engine, http: CannedHTTPClient, body: Any) -> None:
    http.script = [Answer(200, json.dumps(body))]
    gateway = StripeGateway(API_KEY, max_network_retries=0, http_client=http)
    with session_scope(engine) as session:
        sync_page(session, gateway, ACCOUNT, owner="o", now=NOW, settings=SETTINGS)


def where_it_stands(engine: Engine) -> tuple[str | None, str | None, list[tuple[str, str]]]:
    with Session(engine) as session:
        account = session.get(Account, ACCOUNT)
        assert account is not None
        rows = session.execute(select(Transaction.id, Transaction.account_id)).all()
        return account.cursor_refresh_id, account.sync_starting_after, [tuple(r) for r in rows]


DB_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    # No explain phase: on a failure it replays each example part by part against the
    # database, minutes for a note; the shrunk example is what a reader needs.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    report_multiple_bugs=False,
    # One database per test run (both backends), reset by stand_at for every example.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@DB_SETTINGS
@given(case=pages_the_sync_must_refuse())
def test_page_properties_a_refused_page_never_moves_the_cursor_nor_writes_a_row(
    committed_engine: Engine, case: tuple[str, Any, str | None]
) -> None:
    _, body, starting_after = case
    stand_at(committed_engine, starting_after)
    http = CannedHTTPClient()
    with pytest.raises(InvalidStripeResponse):
        sync_one_page(committed_engine, http, body)
    assert len(http.calls) == 1
    assert where_it_stands(committed_engine) == (CURSOR, starting_after, [])


@DB_SETTINGS
@given(page=pages(), starting_after=st.sampled_from([None, BEFORE]))
def test_page_properties_a_well_formed_page_is_stored_under_its_account(
    committed_engine: Engine, page: dict[str, Any], starting_after: str | None
) -> None:
    stand_at(committed_engine, starting_after)
    sync_one_page(committed_engine, CannedHTTPClient(), page)
    cursor, now_after, rows = where_it_stands(committed_engine)
    assert sorted(rows) == sorted((row["id"], ACCOUNT) for row in page["data"])
    if page["has_more"]:
        assert (cursor, now_after) == (CURSOR, page["data"][-1]["id"])
    else:
        assert (cursor, now_after) == (TARGET, None)
