"""Refreshes in emulator time: pending then succeeded/failed (forced failures too), gating,
settlement in place, transaction_refresh[after], daily subscription refreshes, inactive and
disconnected accounts."""

from __future__ import annotations

import time
from typing import Any

import pytest
import stripe

from emulator import ControlError, Emulator
from tests.emulator.conftest import API_KEY, START, Schemas, eventually, make_emulator

TRANSACTIONS = ["transactions"]


def refresh(client: stripe.StripeClient, account_id: str) -> Any:
    return client.v1.financial_connections.accounts.refresh(account_id, {"features": TRANSACTIONS})


def current_refresh(client: stripe.StripeClient, account_id: str) -> Any:
    return client.v1.financial_connections.accounts.retrieve(account_id).transaction_refresh


def list_all(client: stripe.StripeClient, params: dict[str, Any]) -> list[dict[str, Any]]:
    pages = client.v1.financial_connections.transactions.list({"limit": 100, **params})
    return [t.to_dict() for t in pages.auto_paging_iter()]


def refreshed_events(client: stripe.StripeClient) -> list[Any]:
    types = {"type": "financial_connections.account.refreshed_transactions", "limit": 100}
    return list(client.v1.events.list(types).auto_paging_iter())


def test_refresh_is_pending_then_succeeds_after_the_delay(
    emulator: Emulator, client: stripe.StripeClient, schemas: Schemas
) -> None:
    account = emulator.control.create_account(transactions=40)
    assert account["transaction_refresh"] is None
    assert emulator.control.transactions(account["id"]) == []
    assert list_all(client, {"account": account["id"]}) == []

    started = refresh(client, account["id"]).transaction_refresh
    assert (started.status, started.last_attempted_at) == ("pending", START)
    emulator.control.advance(4)
    assert current_refresh(client, account["id"]).status == "pending"
    emulator.control.advance(1)
    done = current_refresh(client, account["id"])
    assert (done.id, done.status) == (started.id, "succeeded")
    assert done.next_refresh_available_at == START + 5 + 60

    truth = emulator.control.transactions(account["id"])
    assert len(truth) >= 40
    assert list_all(client, {"account": account["id"]}) == truth
    assert {t["transaction_refresh"] for t in truth} == {started.id}
    event = refreshed_events(client)[0]
    assert event.created == START + 5
    assert event.data.object.transaction_refresh.status == "succeeded"
    schemas.event(event.last_response.data if event.last_response else event.to_dict())


def test_refresh_while_pending_or_cooling_down_is_not_initiated(
    emulator: Emulator, client: stripe.StripeClient
) -> None:
    account_id = emulator.control.create_account(transactions=10)["id"]
    first = refresh(client, account_id).transaction_refresh
    emulator.control.advance(1)
    during = refresh(client, account_id).transaction_refresh
    assert during.to_dict() == first.to_dict()
    emulator.control.advance(4 + 30)
    cooling = refresh(client, account_id).transaction_refresh
    assert (cooling.id, cooling.status) == (first.id, "succeeded")
    assert emulator.control.stats()["gating_violations"] == 2

    emulator.control.advance(30)
    later = refresh(client, account_id).transaction_refresh
    assert later.id != first.id and later.status == "pending"
    assert emulator.control.stats()["gating_violations"] == 2


def test_a_failed_refresh_changes_no_transaction(
    emulator: Emulator, client: stripe.StripeClient
) -> None:
    control = emulator.control
    account_id = control.create_account(transactions=60, refresh_cooldown_s=0)["id"]
    refresh(client, account_id)
    control.advance(5)
    before = control.transactions(account_id)
    control.update_account(account_id, failure_rate=1.0)
    second = refresh(client, account_id).transaction_refresh
    control.advance(5)
    failed = current_refresh(client, account_id)
    assert (failed.id, failed.status) == (second.id, "failed")
    assert failed.next_refresh_available_at == START + 10
    assert control.transactions(account_id) == before
    assert (
        list_all(client, {"account": account_id, "transaction_refresh": {"after": second.id}}) == []
    )


def test_pending_rows_settle_in_place_and_new_rows_arrive(
    emulator: Emulator, client: stripe.StripeClient
) -> None:
    control = emulator.control
    account_id = control.create_account(transactions=400, refresh_cooldown_s=0)["id"]
    refresh(client, account_id)
    control.advance(5)
    before = {t["id"]: t for t in control.transactions(account_id)}
    pending = [t for t in before.values() if t["status"] == "pending"]
    assert pending, "a fresh history has some pending rows"

    control.advance(3600)
    second = refresh(client, account_id).transaction_refresh.id
    control.advance(5)
    after = {t["id"]: t for t in control.transactions(account_id)}
    settled = [after[t["id"]] for t in pending if after[t["id"]]["status"] != "pending"]
    assert len(settled) >= len(pending) // 2
    for row in settled:
        assert row["status"] in ("posted", "void")
        assert row["updated"] > before[row["id"]]["updated"]
        assert row["transaction_refresh"] == second
        moment = row["status_transitions"]["posted_at" if row["status"] == "posted" else "void_at"]
        assert moment is not None and row["transacted_at"] <= moment <= row["updated"]
    assert set(before) <= set(after)
    for row_id in set(after) - set(before):
        assert after[row_id]["transaction_refresh"] == second
    unchanged = [i for i in before if after[i]["transaction_refresh"] != second]
    assert all(after[i] == before[i] for i in unchanged)


def test_transaction_refresh_after_returns_exactly_rows_changed_later(
    emulator: Emulator, client: stripe.StripeClient
) -> None:
    control = emulator.control
    account_id = control.create_account(transactions=300, refresh_cooldown_s=0)["id"]
    ids = []
    for _ in range(4):
        ids.append(refresh(client, account_id).transaction_refresh.id)
        control.advance(3 * 3600)
    truth = control.transactions(account_id)
    for index, after in enumerate(ids):
        later = set(ids[index + 1 :])
        expected = [t for t in truth if t["transaction_refresh"] in later]
        assert (
            list_all(client, {"account": account_id, "transaction_refresh": {"after": after}})
            == expected
        )
    assert (
        list_all(client, {"account": account_id, "transaction_refresh": {"after": ids[-1]}}) == []
    )

    other = control.create_account(transactions=5)["id"]
    for bad in ("fctxnref_unknown", refresh(client, other).transaction_refresh.id):
        with pytest.raises(stripe.InvalidRequestError) as exc:
            client.v1.financial_connections.transactions.list(
                {"account": account_id, "transaction_refresh": {"after": bad}}
            )
        assert exc.value.http_status == 400
        assert (exc.value.code, exc.value.param) == (
            "resource_missing",
            "transaction_refresh[after]",
        )


def test_transacted_at_filters_match_the_ground_truth(
    emulator: Emulator, client: stripe.StripeClient
) -> None:
    control = emulator.control
    account_id = control.create_account(transactions=500)["id"]
    refresh(client, account_id)
    control.advance(5)
    truth = control.transactions(account_id)
    mid = truth[len(truth) // 2]["transacted_at"]
    cases: list[tuple[Any, Any]] = [
        ({"gte": mid}, lambda t: t >= mid),
        ({"gt": mid}, lambda t: t > mid),
        ({"lt": mid}, lambda t: t < mid),
        ({"lte": mid, "gt": mid - 5 * 86_400}, lambda t: mid - 5 * 86_400 < t <= mid),
        (mid, lambda t: t == mid),
    ]
    for spec, keep in cases:
        expected = [t for t in truth if keep(t["transacted_at"])]
        assert expected
        assert list_all(client, {"account": account_id, "transacted_at": spec}) == expected


def test_subscription_refreshes_daily_in_emulator_time(
    emulator: Emulator, client: stripe.StripeClient
) -> None:
    control = emulator.control
    account_id = control.create_account(transactions=20)["id"]
    subscribed = client.v1.financial_connections.accounts.subscribe(
        account_id, {"features": TRANSACTIONS}
    )
    assert subscribed.transaction_refresh.status == "pending"
    control.advance(5)
    assert len(refreshed_events(client)) == 1

    control.advance(3 * 86_400)
    events = refreshed_events(client)
    assert len(events) == 4
    daily = sorted(e.created for e in events[:3])
    assert daily == [START + d * 86_400 + 5 for d in (1, 2, 3)]
    assert len({e.data.object.transaction_refresh.id for e in events}) == 4
    assert control.stats()["gating_violations"] == 0

    client.v1.financial_connections.accounts.unsubscribe(account_id, {"features": TRANSACTIONS})
    control.advance(2 * 86_400)
    assert len(refreshed_events(client)) == 4


def test_inactive_and_disconnected_accounts_refuse_refreshes(
    emulator: Emulator, client: stripe.StripeClient
) -> None:
    control = emulator.control
    accounts = client.v1.financial_connections.accounts
    account_id = control.create_account(transactions=15)["id"]
    refresh(client, account_id)
    control.advance(5)
    readable = control.transactions(account_id)

    control.set_account_status(account_id, "inactive")
    for call in (
        lambda: refresh(client, account_id),
        lambda: accounts.subscribe(account_id, {"features": TRANSACTIONS}),
    ):
        with pytest.raises(stripe.InvalidRequestError) as exc:
            call()
        assert exc.value.http_status == 400
        assert exc.value.code == "financial_connections_account_inactive"
    assert list_all(client, {"account": account_id}) == readable

    control.set_account_status(account_id, "active")
    accounts.disconnect(account_id)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        refresh(client, account_id)
    assert exc.value.code == "financial_connections_account_inactive"
    assert "disconnected" in str(exc.value.user_message)

    types = [e.type.rsplit(".", 1)[1] for e in client.v1.events.list().data]
    assert types[:3] == ["disconnected", "reactivated", "deactivated"]
    deactivated = client.v1.events.list().data[2]
    assert deactivated.data.previous_attributes.status == "active"
    assert deactivated.data.object.status == "inactive"


def test_refresh_without_the_transactions_permission_is_refused(
    emulator: Emulator, client: stripe.StripeClient
) -> None:
    account_id = emulator.control.create_account(permissions=["balances"])["id"]
    with pytest.raises(stripe.InvalidRequestError) as exc:
        refresh(client, account_id)
    assert exc.value.http_status == 400 and exc.value.param == "features"
    assert "transactions" in str(exc.value.user_message)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.financial_connections.accounts.subscribe(account_id, {"features": TRANSACTIONS})

    balance = client.v1.financial_connections.accounts.refresh(
        account_id, {"features": ["balance"]}
    )
    assert balance.balance_refresh.status == "pending"
    emulator.control.advance(5)
    account = client.v1.financial_connections.accounts.retrieve(account_id)
    assert account.balance_refresh.status == "succeeded"
    assert account.balance.current["usd"] == account.balance.cash.available["usd"]
    assert account.transaction_refresh is None


def test_refreshes_complete_as_wall_time_passes() -> None:
    with make_emulator(frozen_clock=False, start_time=None, refresh_delay_s=0.2) as emu:
        client = stripe.StripeClient(API_KEY, base_addresses={"api": emu.base_url})
        account_id = emu.control.create_account(transactions=10)["id"]
        refresh(client, account_id)
        started = time.monotonic()
        assert eventually(lambda: current_refresh(client, account_id).status == "succeeded")
        assert time.monotonic() - started >= 0.15
        assert emu.control.transactions(account_id)


def test_rows_discovered_after_a_failed_refresh_count_as_changed_after_it(
    emulator: Emulator, client: stripe.StripeClient
) -> None:
    control = emulator.control
    account_id = control.create_account(transactions=80, failure_rate=1.0, refresh_cooldown_s=0)[
        "id"
    ]
    failed = refresh(client, account_id).transaction_refresh.id
    control.advance(5)
    assert current_refresh(client, account_id).status == "failed"
    assert list_all(client, {"account": account_id, "transaction_refresh": {"after": failed}}) == []
    control.update_account(account_id, failure_rate=0.0)
    refresh(client, account_id)
    control.advance(5)
    truth = control.transactions(account_id)
    assert len(truth) >= 80
    assert (
        list_all(client, {"account": account_id, "transaction_refresh": {"after": failed}}) == truth
    )


def test_fail_next_refreshes_fails_that_many_then_the_failure_rate_rules(
    emulator: Emulator, client: stripe.StripeClient
) -> None:
    control = emulator.control
    account_id = control.create_account(transactions=20, refresh_cooldown_s=0)["id"]
    control.update_account(account_id, fail_next_refreshes=2)
    outcomes = []
    for _ in range(3):
        refresh(client, account_id)
        control.advance(5)
        outcomes.append(current_refresh(client, account_id).status)
    assert outcomes == ["failed", "failed", "succeeded"]
    assert len(control.transactions(account_id)) >= 20

    with pytest.raises(ControlError) as exc:
        control.update_account(account_id, fail_next_refreshes=-1)
    assert exc.value.status == 400


def test_refreshes_asked_of_accounts_that_are_not_active_are_counted(
    emulator: Emulator, client: stripe.StripeClient
) -> None:
    control = emulator.control
    inactive = control.create_account(transactions=5, status="inactive")["id"]
    active = control.create_account(transactions=5)["id"]
    with pytest.raises(stripe.InvalidRequestError):
        refresh(client, inactive)
    refresh(client, active)
    control.set_account_status(active, "disconnected")
    with pytest.raises(stripe.InvalidRequestError):
        refresh(client, active)
    assert control.stats()["inactive_refreshes"] == 2


def test_a_cooldown_of_hours_set_on_one_account_gates_from_its_next_refresh_on(
    emulator: Emulator, client: stripe.StripeClient
) -> None:
    control = emulator.control
    account_id = control.create_account(transactions=10)["id"]
    other = control.create_account(transactions=10)["id"]
    refresh(client, account_id)
    control.advance(5)
    control.update_account(account_id, refresh_cooldown_s=36 * 3_600)
    assert current_refresh(client, account_id).next_refresh_available_at == START + 5 + 60

    control.advance(60)
    second = refresh(client, account_id).transaction_refresh
    refresh(client, other)
    control.advance(5)
    done = current_refresh(client, account_id)
    assert (done.id, done.status) == (second.id, "succeeded")
    assert done.next_refresh_available_at == START + 70 + 36 * 3_600
    assert current_refresh(client, other).next_refresh_available_at == START + 70 + 60

    control.advance(35 * 3_600)
    assert refresh(client, account_id).transaction_refresh.id == second.id
    assert control.stats()["gating_violations"] == 1
    control.advance(3_600)
    assert refresh(client, account_id).transaction_refresh.id != second.id


@pytest.mark.parametrize("changes", [3, 150])
def test_next_refresh_changes_changes_exactly_that_many_rows_once(
    emulator: Emulator, client: stripe.StripeClient, changes: int
) -> None:
    control = emulator.control
    account_id = control.create_account(transactions=300, refresh_cooldown_s=0)["id"]
    refresh(client, account_id)
    control.advance(5)
    cursor = current_refresh(client, account_id).id
    before = {t["id"]: t for t in control.transactions(account_id)}
    control.update_account(account_id, next_refresh_changes=changes)
    refresh(client, account_id)
    control.advance(5)
    after = current_refresh(client, account_id).id
    changed = list_all(client, {"account": account_id, "transaction_refresh": {"after": cursor}})
    assert len(changed) == changes
    truth = control.transactions(account_id)
    assert {t["id"] for t in truth if before.get(t["id"]) != t} == {t["id"] for t in changed}
    # Only the next one: the refresh after it changes what refreshes usually do (0-10 rows
    # arriving besides the pending ones settling), which is never 150.
    refresh(client, account_id)
    control.advance(5)
    later = list_all(client, {"account": account_id, "transaction_refresh": {"after": after}})
    assert len(later) != 150

    with pytest.raises(ControlError) as exc:
        control.update_account(account_id, next_refresh_changes=-1)
    assert exc.value.status == 400


def test_a_dropped_pending_transaction_leaves_lists_and_retrieve_and_nothing_else(
    emulator: Emulator, client: stripe.StripeClient, schemas: Schemas
) -> None:
    """Stripe drops a pending transaction that never posts: it is listed no more (whatever the
    filter), retrieve answers 404, and no event says so; posted rows cannot be dropped."""
    control = emulator.control
    account_id = control.create_account(transactions=300)["id"]
    refresh(client, account_id)
    control.advance(5)
    truth = control.transactions(account_id)
    pending = [t for t in truth if t["status"] == "pending"]
    posted = next(t for t in truth if t["status"] == "posted")
    assert pending, "the seeded history has recent pending rows"
    dropped = pending[0]
    events_before = len(client.v1.events.list({"limit": 100}).data)

    control.drop_transaction(dropped["id"])

    expected = [t for t in truth if t["id"] != dropped["id"]]
    assert control.transactions(account_id) == expected
    assert list_all(client, {"account": account_id}) == expected
    since = dropped["transacted_at"] - 86_400
    window = list_all(client, {"account": account_id, "transacted_at": {"gte": since}})
    assert window == [t for t in expected if t["transacted_at"] >= since]
    listed = client.v1.financial_connections.transactions.list(
        {"account": account_id, "transacted_at": {"gte": since}, "limit": 100}
    )
    schemas.page("financial_connections.transaction", listed.last_response.data)
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.financial_connections.transactions.retrieve(dropped["id"])
    assert missing.value.http_status == 404
    assert len(client.v1.events.list({"limit": 100}).data) == events_before
    for refused, status in ((posted["id"], 400), (dropped["id"], 404), ("fctxn_nope", 404)):
        with pytest.raises(ControlError) as exc:
            control.drop_transaction(refused)
        assert exc.value.status == status
