"""The playground's one comparison against Stripe's truth covers every field fcsync stores:
a row that differs from Stripe in any of them is reported, naming the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from models import Transaction
from worker.playground.truth import diff_transactions
from worker.reports import transaction_as_stripe

STORED = transaction_as_stripe(
    Transaction(
        id="fctxn_1",
        account_id="fca_1",
        amount=-1250,
        currency="usd",
        description="COFFEE",
        status="posted",
        posted_at=1_700_000_100,
        void_at=None,
        transacted_at=1_700_000_000,
        transaction_refresh="fctxnref_1",
        updated=1_700_000_100,
        livemode=False,
    )
)
CHANGES: dict[str, Any] = {
    "object": "financial_connections.account",
    "account": "fca_2",
    "amount": -1251,
    "currency": "eur",
    "description": "TEA",
    "livemode": True,
    "status": "void",
    "status_transitions": {"posted_at": 1_700_000_100, "void_at": 1_700_000_200},
    "transacted_at": 1_700_000_001,
    "transaction_refresh": "fctxnref_2",
    "updated": 1_700_000_200,
}


def test_diff_covers_every_field_of_the_stored_shape() -> None:
    assert set(CHANGES) == set(STORED) - {"id"}


def test_diff_of_a_row_equal_to_stripe_is_empty() -> None:
    assert diff_transactions([STORED], [copy.deepcopy(STORED)], limit=0) == []


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_diff_reports_a_difference_in_any_stored_field(name: str) -> None:
    truth = {**copy.deepcopy(STORED), name: CHANGES[name]}
    assert diff_transactions([STORED], [truth], limit=0) == [
        f"fctxn_1.{name}: stored {STORED[name]!r} != {CHANGES[name]!r}"
    ]


def test_diff_reads_a_field_stripe_leaves_out_as_null() -> None:
    truth = copy.deepcopy(STORED)
    truth["status_transitions"] = {"posted_at": 1_700_000_100}
    assert diff_transactions([STORED], [truth], limit=0) == []
    del truth["description"]
    assert diff_transactions([STORED], [truth], limit=0) == [
        "fctxn_1.description: stored 'COFFEE' != None"
    ]


def test_diff_lists_missing_and_unexpected_rows() -> None:
    other = {**copy.deepcopy(STORED), "id": "fctxn_2"}
    assert diff_transactions([STORED], [other], limit=0) == [
        "missing fctxn_2",
        "unexpected fctxn_1",
    ]
