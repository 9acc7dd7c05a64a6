"""Connect and several platforms: objects of a connected account are visible only with its
`Stripe-Account` header, its events carry `account` and go to Connect endpoints only, and a
second platform's key sees its own objects only. Real stripe-python over HTTP throughout."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import stripe

from emulator import ControlError, Emulator
from tests.emulator.conftest import API_KEY, Receiver, Schemas, eventually

ACCT_A = "acct_1ConnectedA"
ACCT_B = "acct_1ConnectedB"
SECRET = "whsec_platform"
CONNECT_SECRET = "whsec_connect"


def stripe_client(emulator: Emulator, key: str = API_KEY, account: str | None = None) -> Any:
    return stripe.StripeClient(
        key,
        base_addresses={"api": emulator.base_url},
        max_network_retries=0,
        stripe_account=account,
    )


def raw(obj: Any) -> Any:
    return obj.last_response.data


def assert_missing(call: Any, param: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as exc:
        call()
    assert (exc.value.http_status, exc.value.code) == (404, "resource_missing")
    assert exc.value.param == param


def test_connected_accounts_objects_need_their_stripe_account_header(
    emulator: Emulator, schemas: Schemas
) -> None:
    control = emulator.control
    theirs = control.create_account(transactions=30, stripe_account=ACCT_A)["id"]
    ours = control.create_account(transactions=5)["id"]
    platform, as_a, as_b = (stripe_client(emulator, account=a) for a in (None, ACCT_A, ACCT_B))

    refreshed = as_a.v1.financial_connections.accounts.refresh(
        theirs, {"features": ["transactions"]}
    )
    schemas.account(raw(refreshed))
    control.advance(6)
    truth = control.transactions(theirs)
    assert len(truth) >= 30
    listed = as_a.v1.financial_connections.transactions.list({"account": theirs, "limit": 100})
    schemas.page("financial_connections.transaction", raw(listed))
    assert [t.to_dict() for t in listed.auto_paging_iter()] == truth
    one = as_a.v1.financial_connections.transactions.retrieve(truth[3]["id"])
    assert raw(one) == truth[3]
    assert [a.id for a in as_a.v1.financial_connections.accounts.list().data] == [theirs]

    for outsider in (platform, as_b):
        accounts = outsider.v1.financial_connections.accounts
        assert_missing(lambda a=accounts: a.retrieve(theirs), "account")
        assert_missing(
            lambda a=accounts: a.refresh(theirs, {"features": ["transactions"]}), "account"
        )
        assert_missing(
            lambda o=outsider: o.v1.financial_connections.transactions.list({"account": theirs}),
            "account",
        )
        assert_missing(
            lambda o=outsider: o.v1.financial_connections.transactions.retrieve(truth[3]["id"]),
            "transaction",
        )
    assert [a.id for a in platform.v1.financial_connections.accounts.list().data] == [ours]
    with pytest.raises(stripe.InvalidRequestError) as cursor:
        platform.v1.financial_connections.accounts.list({"starting_after": theirs})
    assert (cursor.value.code, cursor.value.param) == ("resource_missing", "starting_after")
    assert as_b.v1.financial_connections.accounts.list().data == []
    # The platform's own objects do not exist for a connected account either.
    assert_missing(lambda: as_a.v1.financial_connections.accounts.retrieve(ours), "account")

    assert [a["id"] for a in control.accounts(stripe_account=ACCT_A)] == [theirs]
    assert [a["id"] for a in control.accounts(stripe_account="")] == [ours]
    assert len(control.accounts()) == 2


def test_sessions_and_their_accounts_belong_to_the_requests_connected_account(
    emulator: Emulator,
) -> None:
    platform, as_a = stripe_client(emulator), stripe_client(emulator, account=ACCT_A)
    session = as_a.v1.financial_connections.sessions.create(
        {
            "account_holder": {"type": "customer", "customer": "cus_A"},
            "permissions": ["transactions"],
        }
    )
    assert_missing(
        lambda: platform.v1.financial_connections.sessions.retrieve(session.id), "session"
    )
    linked = emulator.control.complete_session(session.id, 2)["accounts"]["data"]
    assert len(as_a.v1.financial_connections.sessions.retrieve(session.id).accounts.data) == 2
    for account in linked:
        assert as_a.v1.financial_connections.accounts.retrieve(account["id"]).id == account["id"]
        assert_missing(
            lambda a=account: platform.v1.financial_connections.accounts.retrieve(a["id"]),
            "account",
        )


def test_a_malformed_stripe_account_header_is_refused_as_stripe_refuses_it(
    emulator: Emulator, schemas: Schemas
) -> None:
    with pytest.raises(stripe.PermissionError) as exc:
        stripe_client(emulator, account="nonsense").v1.financial_connections.accounts.list()
    # stripe-python keeps a 403's code only in its body.
    assert exc.value.http_status == 403
    assert exc.value.json_body["error"]["code"] == "account_invalid"
    schemas.check("error", exc.value.json_body)
    with pytest.raises(ControlError) as refused:
        emulator.control.create_account(stripe_account="cus_1")
    assert refused.value.status == 400


def test_idempotency_keys_are_kept_per_connected_account(emulator: Emulator) -> None:
    control = emulator.control
    theirs = control.create_account(transactions=3, stripe_account=ACCT_A)["id"]
    ours = control.create_account(transactions=3)["id"]
    options: Any = {"idempotency_key": "same-key"}
    features: Any = {"features": ["transactions"]}
    first = stripe_client(emulator, account=ACCT_A).v1.financial_connections.accounts.refresh(
        theirs, features, options
    )
    second = stripe_client(emulator).v1.financial_connections.accounts.refresh(
        ours, features, options
    )
    assert "Idempotent-Replayed" not in second.last_response.headers
    assert (first.id, second.id) == (theirs, ours)


def test_connected_events_carry_account_and_reach_connect_endpoints_only(
    emulator: Emulator, schemas: Schemas
) -> None:
    ordinary, connect = Receiver(), Receiver()
    with ordinary.serving(), connect.serving():
        control = emulator.control
        control.add_webhook_endpoint(ordinary.url, SECRET)
        control.add_webhook_endpoint(connect.url, CONNECT_SECRET, connect=True)
        ours = control.create_account(transactions=2)["id"]
        theirs = control.create_account(transactions=2, stripe_account=ACCT_A)["id"]
        control.create_account(transactions=2, stripe_account=ACCT_B)

        assert eventually(lambda: len(ordinary.received) == 1 and len(connect.received) == 2)
        (mine,) = [json.loads(r.body) for r in ordinary.received]
        assert mine["data"]["object"]["id"] == ours and "account" not in mine
        for delivery in connect.received:
            event = stripe.Webhook.construct_event(
                delivery.body.decode(), delivery.headers["Stripe-Signature"], CONNECT_SECRET
            )
            schemas.event(json.loads(delivery.body))
            assert event.account in (ACCT_A, ACCT_B)
        assert {json.loads(r.body)["account"] for r in connect.received} == {ACCT_A, ACCT_B}

        as_a = stripe_client(emulator, account=ACCT_A)
        page = as_a.v1.events.list()
        schemas.page("event", raw(page))
        (created,) = page.data
        schemas.event(raw(page)["data"][0])
        assert (created.account, created.data.object.id) == (ACCT_A, theirs)
        assert eventually(lambda: as_a.v1.events.retrieve(created.id).pending_webhooks == 0)
        assert [e.data.object.id for e in stripe_client(emulator).v1.events.list().data] == [ours]
        assert_missing(lambda: stripe_client(emulator).v1.events.retrieve(created.id), "id")
        assert control.resend_event(created.id) == 1
        assert eventually(lambda: len(connect.received) == 3)


def test_a_second_platform_sees_only_its_own_objects_and_events(
    emulator: Emulator, schemas: Schemas
) -> None:
    control = emulator.control
    second = control.register_platform(["sk_test_second", "rk_test_second"])
    assert second.startswith("acct_")
    assert control.platforms() == {second: ["sk_test_second", "rk_test_second"]}
    ordinary, theirs_hook = Receiver(), Receiver()
    with ordinary.serving(), theirs_hook.serving():
        control.add_webhook_endpoint(ordinary.url, SECRET)
        control.add_webhook_endpoint(theirs_hook.url, "whsec_second", platform=second)
        mine = control.create_account(transactions=2)["id"]
        theirs = control.create_account(transactions=2, platform=second)["id"]
        connected = control.create_account(platform=second, stripe_account=ACCT_A)["id"]

        other = stripe_client(emulator, key="rk_test_second")
        assert [a.id for a in other.v1.financial_connections.accounts.list().data] == [theirs]
        assert_missing(lambda: other.v1.financial_connections.accounts.retrieve(mine), "account")
        assert_missing(
            lambda: stripe_client(emulator).v1.financial_connections.accounts.retrieve(theirs),
            "account",
        )
        # The same acct_ id under another platform is another scope.
        as_a_elsewhere = stripe_client(emulator, account=ACCT_A)
        assert_missing(
            lambda: as_a_elsewhere.v1.financial_connections.accounts.retrieve(connected),
            "account",
        )
        as_a = stripe_client(emulator, key="sk_test_second", account=ACCT_A)
        assert as_a.v1.financial_connections.accounts.retrieve(connected).id == connected
        # Its own id in the header is the platform itself.
        itself = stripe_client(emulator, key="sk_test_second", account=second)
        assert itself.v1.financial_connections.accounts.retrieve(theirs).id == theirs

        page = other.v1.events.list()
        schemas.page("event", raw(page))
        assert [e.data.object.id for e in page.data] == [theirs]
        assert eventually(lambda: len(ordinary.received) == 1 and len(theirs_hook.received) == 1)
        assert json.loads(theirs_hook.received[0].body)["data"]["object"]["id"] == theirs
        assert json.loads(ordinary.received[0].body)["data"]["object"]["id"] == mine

    # Which key asked about which account, keys masked as Stripe quotes them.
    by_key = control.stats()["requests_by_key"]
    assert by_key["rk_test_****cond"] == {mine: 1}
    assert by_key["sk_test_****cond"] == {connected: 1, theirs: 1}
    assert by_key["sk_test_****ator"] == {connected: 1, theirs: 1}

    endpoints = control_endpoints(emulator)
    assert [(e["connect"], e["platform"]) for e in endpoints] == [(False, ""), (False, second)]
    for keys, platform_id in (
        (["sk_test_second"], None),
        (["pk_test_nope"], None),
        ([], None),
        (["sk_test_third"], "cus_1"),
    ):
        with pytest.raises(ControlError) as exc:
            control.register_platform(keys, platform_id)
        assert exc.value.status == 400
    with pytest.raises(ControlError) as unknown:
        control.create_account(platform="acct_1Unknown")
    assert unknown.value.status == 404


def control_endpoints(emulator: Emulator) -> list[dict[str, Any]]:
    response = requests.get(f"{emulator.base_url}/_emulator/webhook_endpoints", timeout=5)
    return list(response.json())
