"""A million-row account: created quickly, and paged by cursor and by date at any depth."""

from __future__ import annotations

import time

import stripe

from emulator import Emulator

MILLION = 1_000_000


def test_a_million_transactions_are_created_fast_and_page_anywhere(
    emulator: Emulator, client: stripe.StripeClient
) -> None:
    started = time.monotonic()
    account_id = emulator.control.create_account(transactions=MILLION)["id"]
    assert time.monotonic() - started < 10
    client.v1.financial_connections.accounts.refresh(account_id, {"features": ["transactions"]})
    emulator.control.advance(5)
    transactions = client.v1.financial_connections.transactions

    newest = transactions.list({"account": account_id, "limit": 100})
    second = transactions.list(
        {"account": account_id, "limit": 100, "starting_after": newest.data[-1].id}
    )
    back = transactions.list(
        {"account": account_id, "limit": 100, "ending_before": second.data[0].id}
    )
    assert [t.id for t in back.data] == [t.id for t in newest.data]

    oldest_day = newest.data[-1].transacted_at - 180 * 86_400
    old = transactions.list(
        {"account": account_id, "limit": 100, "transacted_at": {"lt": oldest_day + 86_400}}
    )
    assert old.has_more and len(old.data) == 100
    deeper = transactions.list(
        {
            "account": account_id,
            "limit": 100,
            "transacted_at": {"lt": oldest_day + 86_400},
            "starting_after": old.data[-1].id,
        }
    )
    rows = [*newest.data, *second.data, *old.data, *deeper.data]
    keys = [(t.transacted_at, t.id) for t in rows]
    assert keys == sorted(keys, reverse=True) and len(set(keys)) == 400
    assert all(t.transacted_at < oldest_day + 86_400 for t in [*old.data, *deeper.data])
    assert transactions.retrieve(deeper.data[-1].id).id == deeper.data[-1].id
