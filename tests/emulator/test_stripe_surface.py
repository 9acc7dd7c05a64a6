"""Every Stripe FC endpoint driven by real stripe-python over HTTP, each answer checked
against Stripe's schemas; the wire format (brackets, auth, ids, errors, idempotency)."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import stripe

from emulator import Emulator
from tests.emulator.conftest import API_KEY, Schemas

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def raw(obj: Any) -> Any:
    """The JSON exactly as the emulator sent it."""
    return obj.last_response.data


def refreshed(client: stripe.StripeClient, emulator: Emulator, account_id: str) -> None:
    client.v1.financial_connections.accounts.refresh(account_id, {"features": ["transactions"]})
    emulator.control.advance(6)


def test_accounts_retrieve_and_list_with_filters_and_cursors(
    emulator: Emulator, client: stripe.StripeClient, schemas: Schemas
) -> None:
    control = emulator.control
    mine = [control.create_account(customer="cus_A", transactions=5) for _ in range(3)]
    control.create_account(customer="cus_B", transactions=5)
    accounts = client.v1.financial_connections.accounts

    fetched = accounts.retrieve(mine[0]["id"])
    schemas.account(raw(fetched))
    assert raw(fetched) == mine[0]

    page = accounts.list({"account_holder": {"customer": "cus_A"}, "limit": 2})
    schemas.page("financial_connections.account", raw(page))
    assert [a.id for a in page.data] == [mine[2]["id"], mine[1]["id"]]
    assert page.has_more is True
    everything = [a.id for a in page.auto_paging_iter()]
    assert everything == [a["id"] for a in reversed(mine)]
    before = accounts.list(
        {"account_holder": {"customer": "cus_A"}, "ending_before": mine[0]["id"]}
    )
    assert [a.id for a in before.data] == [mine[2]["id"], mine[1]["id"]]
    assert len(accounts.list().data) == 4
    with pytest.raises(stripe.InvalidRequestError) as exc:
        accounts.list({"account_holder": {"customer": "cus_A", "account": "acct_1"}})
    assert exc.value.code == "parameters_exclusive"


def test_refresh_subscribe_unsubscribe_disconnect(
    emulator: Emulator, client: stripe.StripeClient, schemas: Schemas
) -> None:
    account_id = emulator.control.create_account(transactions=20)["id"]
    accounts = client.v1.financial_connections.accounts

    pending = accounts.refresh(account_id, {"features": ["transactions"]})
    schemas.account(raw(pending))
    assert pending.transaction_refresh.status == "pending"
    assert pending.transaction_refresh.id.startswith("fctxnref_")
    assert pending.transaction_refresh.next_refresh_available_at is None

    emulator.control.advance(61 + 5)
    subscribed = accounts.subscribe(account_id, {"features": ["transactions"]})
    schemas.account(raw(subscribed))
    assert subscribed.subscriptions == ["transactions"]
    assert subscribed.transaction_refresh.status == "pending"

    unsubscribed = accounts.unsubscribe(account_id, {"features": ["transactions"]})
    schemas.account(raw(unsubscribed))
    assert unsubscribed.subscriptions == []

    disconnected = accounts.disconnect(account_id)
    schemas.account(raw(disconnected))
    assert disconnected.status == "disconnected"


def test_transactions_list_pages_and_retrieve(
    emulator: Emulator, client: stripe.StripeClient, schemas: Schemas
) -> None:
    account_id = emulator.control.create_account(transactions=250)["id"]
    refreshed(client, emulator, account_id)
    truth = emulator.control.transactions(account_id)
    assert len(truth) >= 250

    transactions = client.v1.financial_connections.transactions
    first = transactions.list({"account": account_id})
    schemas.page("financial_connections.transaction", raw(first))
    assert len(first.data) == 10 and first.has_more
    listed = [
        t.to_dict()
        for t in transactions.list({"account": account_id, "limit": 100}).auto_paging_iter()
    ]
    assert listed == truth
    keys = [(t["transacted_at"], t["id"]) for t in listed]
    assert keys == sorted(keys, reverse=True)
    for row in truth[:20]:
        schemas.transaction(row)

    one = transactions.retrieve(truth[37]["id"])
    schemas.transaction(raw(one))
    assert raw(one) == truth[37]

    backwards = transactions.list(
        {"account": account_id, "ending_before": truth[30]["id"], "limit": 5}
    )
    assert [t.id for t in backwards.data] == [t["id"] for t in truth[25:30]]
    assert backwards.has_more is True


def test_sessions_create_retrieve_and_complete(
    emulator: Emulator, client: stripe.StripeClient, schemas: Schemas
) -> None:
    sessions = client.v1.financial_connections.sessions
    created = sessions.create(
        {
            "account_holder": {"type": "customer", "customer": "cus_S"},
            "permissions": ["transactions", "balances"],
            "filters": {"countries": ["US"]},
            "prefetch": ["transactions"],
        }
    )
    schemas.check("financial_connections.session", raw(created))
    assert created.id.startswith("fcsess_") and created.accounts.data == []
    assert created.client_secret.startswith(created.id)

    completed = emulator.control.complete_session(created.id, accounts=2)
    schemas.check("financial_connections.session", completed)
    again = sessions.retrieve(created.id)
    schemas.check("financial_connections.session", raw(again))
    linked = [a.id for a in again.accounts.data]
    assert len(linked) == 2
    listed = client.v1.financial_connections.accounts.list({"session": created.id})
    assert sorted(a.id for a in listed.data) == sorted(linked)
    for account in listed.data:
        assert account.account_holder.customer == "cus_S"
        assert account.permissions == ["transactions", "balances"]
        # prefetch=transactions starts a refresh as soon as the account is linked
        assert account.transaction_refresh.status == "pending"

    with pytest.raises(stripe.InvalidRequestError) as exc:
        sessions.create({"account_holder": {"type": "customer"}, "permissions": ["transactions"]})
    assert exc.value.code == "parameter_missing" and exc.value.param == "account_holder[customer]"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sessions.create({"account_holder": {"type": "customer", "customer": "cus_S"}})
    assert exc.value.param == "permissions"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sessions.create(
            {"account_holder": {"type": "customer", "customer": "c"}, "permissions": ["x"]}
        )
    assert exc.value.param == "permissions[0]"


def test_events_list_filters_and_retrieve(
    emulator: Emulator, client: stripe.StripeClient, schemas: Schemas
) -> None:
    first = emulator.control.create_account(transactions=3)["id"]
    emulator.control.advance(100)
    second = emulator.control.create_account(transactions=3)["id"]
    refreshed(client, emulator, second)

    events = client.v1.events
    page = events.list()
    schemas.page("event", raw(page))
    for event in raw(page)["data"]:
        schemas.event(event)
    assert [e.type for e in page.data] == [
        "financial_connections.account.refreshed_transactions",
        "financial_connections.account.created",
        "financial_connections.account.created",
    ]
    wildcard = events.list({"type": "financial_connections.account.*"})
    assert len(wildcard.data) == 3
    created = events.list({"types": ["financial_connections.account.created"]})
    assert [e.data.object.id for e in created.data] == [second, first]
    early = events.list({"created": {"lt": page.data[1].created}})
    assert [e.data.object.id for e in early.data] == [first]
    paged = [e.id for e in events.list({"limit": 1}).auto_paging_iter()]
    assert paged == [e.id for e in page.data]

    one = events.retrieve(page.data[0].id)
    schemas.event(raw(one))
    assert one.data.object.transaction_refresh.status == "succeeded"
    assert one.api_version == stripe.api_version  # the SDK pins the emulator's default


def test_global_style_resources(emulator: Emulator, global_stripe: None, schemas: Schemas) -> None:
    """Every endpoint again through the global `stripe.*` resources, each answer schema-checked."""
    fc = stripe.financial_connections
    account_id = emulator.control.create_account(transactions=120)["id"]
    account = fc.Account.retrieve(account_id)
    schemas.account(raw(account))
    listed_accounts = fc.Account.list(limit=5)
    schemas.page("financial_connections.account", raw(listed_accounts))
    assert [a.id for a in listed_accounts.data] == [account_id]

    pending = fc.Account.refresh_account(account_id, features=["transactions"])
    schemas.account(raw(pending))
    assert pending.transaction_refresh.status == "pending"
    emulator.control.advance(6)
    refresh_id = fc.Account.retrieve(account_id).transaction_refresh.id
    first = fc.Transaction.list(account=account_id, limit=50)
    schemas.page("financial_connections.transaction", raw(first))
    rows = list(first.auto_paging_iter())
    assert [r.id for r in rows] == [t["id"] for t in emulator.control.transactions(account_id)]
    assert all(r.transaction_refresh == refresh_id for r in rows)
    one = fc.Transaction.retrieve(rows[3].id)
    schemas.transaction(raw(one))
    assert one.amount == rows[3].amount
    assert (
        list(fc.Transaction.list(account=account_id, transaction_refresh={"after": refresh_id}))
        == []
    )

    emulator.control.advance(61)
    subscribed = fc.Account.subscribe(account_id, features=["transactions"])
    schemas.account(raw(subscribed))
    assert subscribed.subscriptions == ["transactions"]
    unsubscribed = fc.Account.unsubscribe(account_id, features=["transactions"])
    schemas.account(raw(unsubscribed))
    assert unsubscribed.subscriptions == []
    disconnected = fc.Account.disconnect(account_id)
    schemas.account(raw(disconnected))
    assert disconnected.status == "disconnected"

    session = fc.Session.create(
        account_holder={"type": "customer", "customer": "cus_G"}, permissions=["transactions"]
    )
    schemas.check("financial_connections.session", raw(session))
    again = fc.Session.retrieve(session.id)
    schemas.check("financial_connections.session", raw(again))
    assert again.permissions == ["transactions"]

    created = stripe.Event.list(type="financial_connections.account.created")
    schemas.check("#/x-derived/list_schemas/event", raw(created))
    assert created.data[0].data.object.id == account_id
    event = stripe.Event.retrieve(created.data[0].id)
    schemas.event(raw(event))
    assert event.type == "financial_connections.account.created"


def test_wire_format_brackets_percent_encoding_and_headers(
    emulator: Emulator, schemas: Schemas
) -> None:
    base = emulator.base_url
    account_id = emulator.control.create_account(transactions=30)["id"]
    url = f"{base}/v1/financial_connections/accounts/{account_id}/refresh"
    started = requests.post(url, data={"features[]": "transactions"}, headers=AUTH)
    assert started.status_code == 200
    assert started.headers["Request-Id"].startswith("req_")
    assert started.json()["transaction_refresh"]["status"] == "pending"
    emulator.control.advance(6)

    query = f"account={account_id}&transacted_at%5Bgte%5D=0&limit=3&expand%5B%5D=data"
    page = requests.get(f"{base}/v1/financial_connections/transactions?{query}", headers=AUTH)
    assert page.status_code == 200, page.text
    schemas.page("financial_connections.transaction", page.json())
    assert len(page.json()["data"]) == 3

    versioned = requests.get(
        f"{base}/v1/financial_connections/accounts/{account_id}",
        headers={**AUTH, "Stripe-Version": "2025-01-27.acacia"},
    )
    assert versioned.headers["Stripe-Version"] == "2025-01-27.acacia"
    basic = requests.get(f"{base}/v1/financial_connections/accounts", auth=(API_KEY, ""))
    assert basic.status_code == 200

    bad = requests.get(f"{base}/v1/financial_connections/nothing", headers=AUTH)
    assert bad.status_code == 404 and bad.headers["Request-Id"].startswith("req_")
    schemas.check("error", bad.json())
    clash = requests.get(
        f"{base}/v1/financial_connections/transactions?account={account_id}&transacted_at=1"
        "&transacted_at%5Bgt%5D=2",
        headers=AUTH,
    )
    assert clash.status_code == 400


@pytest.mark.parametrize(
    ("query", "code", "param"),
    [
        ("limit=0", "parameter_invalid_integer", "limit"),
        ("limit=101", "parameter_invalid_integer", "limit"),
        ("limit=ten", "parameter_invalid_integer", "limit"),
        ("colour=blue", "parameter_unknown", "colour"),
        ("transaction_refresh[before]=x", "parameter_unknown", "transaction_refresh[before]"),
        ("", "parameter_missing", "account"),
    ],
)
def test_bad_parameters_are_400_with_stripe_codes(
    emulator: Emulator, schemas: Schemas, query: str, code: str, param: str
) -> None:
    account_id = emulator.control.create_account(transactions=1)["id"]
    prefix = f"account={account_id}&" if param != "account" else ""
    response = requests.get(
        f"{emulator.base_url}/v1/financial_connections/transactions?{prefix}{query}", headers=AUTH
    )
    assert response.status_code == 400
    schemas.check("error", response.json())
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)


def test_errors_map_to_sdk_exceptions(
    emulator: Emulator, client: stripe.StripeClient, schemas: Schemas
) -> None:
    for key in ("sk_test_", "pk_test_abc", "nonsense"):
        unauthorized = stripe.StripeClient(
            key, base_addresses={"api": emulator.base_url}, max_network_retries=0
        )
        with pytest.raises(stripe.AuthenticationError) as auth:
            unauthorized.v1.financial_connections.accounts.list()
        assert auth.value.http_status == 401
        schemas.check("error", auth.value.json_body)
    missing_key = requests.get(f"{emulator.base_url}/v1/events")
    assert missing_key.status_code == 401

    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.financial_connections.accounts.retrieve("fca_nope")
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"
    assert missing.value.request_id.startswith("req_")
    with pytest.raises(stripe.InvalidRequestError) as missing_txn:
        client.v1.financial_connections.transactions.retrieve("fctxn_1nope")
    assert missing_txn.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.financial_connections.accounts.list({"colour": "blue"})
    assert unknown.value.code == "parameter_unknown" and unknown.value.param == "colour"
    with pytest.raises(stripe.InvalidRequestError) as cursor:
        client.v1.events.list({"starting_after": "evt_nope"})
    assert cursor.value.code == "resource_missing" and cursor.value.param == "starting_after"


def test_idempotency_replays_and_rejects_other_params(
    emulator: Emulator, client: stripe.StripeClient
) -> None:
    account_id = emulator.control.create_account(transactions=5)["id"]
    accounts = client.v1.financial_connections.accounts
    options: Any = {"idempotency_key": "key-1"}
    first = accounts.refresh(account_id, {"features": ["transactions"]}, options)
    emulator.control.advance(6)
    again = accounts.refresh(account_id, {"features": ["transactions"]}, options)
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert raw(again) == raw(first)
    assert emulator.control.stats()["gating_violations"] == 0
    with pytest.raises(stripe.IdempotencyError):
        accounts.refresh(account_id, {"features": ["balance"]}, options)
    with pytest.raises(stripe.IdempotencyError):
        accounts.subscribe(account_id, {"features": ["transactions"]}, options)


def test_livemode_follows_the_key(emulator: Emulator) -> None:
    live = stripe.StripeClient(
        "sk_live_emulator", base_addresses={"api": emulator.base_url}, max_network_retries=0
    )
    test = stripe.StripeClient(
        "rk_test_emulator", base_addresses={"api": emulator.base_url}, max_network_retries=0
    )
    session = live.v1.financial_connections.sessions.create(
        {
            "account_holder": {"type": "account", "account": "acct_1"},
            "permissions": ["transactions"],
        }
    )
    assert session.livemode is True
    account_id = emulator.control.complete_session(session.id, 1)["accounts"]["data"][0]["id"]
    assert live.v1.financial_connections.accounts.retrieve(account_id).livemode is True
    with pytest.raises(stripe.InvalidRequestError):
        test.v1.financial_connections.accounts.retrieve(account_id)
    assert live.v1.events.list().data[0].livemode is True
    assert test.v1.events.list().data == []
