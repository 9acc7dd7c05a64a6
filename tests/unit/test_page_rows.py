"""A page's rows: the one-pass checks of the common case refuse exactly what the field-by-field
parser refuses, and the error still names the field."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest

from worker.stripe_payloads import InvalidStripeResponse, parse_transaction, parse_transactions_page


def row(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "fctxn_1",
        "object": "financial_connections.transaction",
        "account": "fca_1",
        "amount": -1250,
        "currency": "usd",
        "description": "Coffee",
        "livemode": False,
        "status": "posted",
        "status_transitions": {"posted_at": 1_700_000_000, "void_at": None},
        "transacted_at": 1_699_999_000,
        "transaction_refresh": "fctxnref_1",
        "updated": 1_700_000_100,
    }
    return {**base, **changes}


def page(*rows: dict[str, Any]) -> dict[str, Any]:
    return {"object": "list", "data": list(rows), "has_more": False, "url": "/v1/x"}


BROKEN = [
    ("id", {"id": "txn_1"}),
    ("id", {"id": "fctxn_"}),
    ("id", {"id": "fctxn_" + "x" * 64}),
    ("object", {"object": "financial_connections.account"}),
    ("account", {"account": "acct_1"}),
    ("amount", {"amount": 2**63}),
    ("amount", {"amount": -(2**63) - 1}),
    ("amount", {"amount": 12.5}),
    ("amount", {"amount": True}),
    ("currency", {"currency": "u" * 9}),
    ("description", {"description": None}),
    ("description", {"description": "nul \x00 inside"}),
    ("description", {"description": "lone \ud800 surrogate"}),
    ("status", {"status": "s" * 17}),
    ("posted_at", {"status_transitions": {"posted_at": "soon", "void_at": None}}),
    ("void_at", {"status_transitions": {"posted_at": None, "void_at": 2**63}}),
    ("status_transitions", {"status_transitions": None}),
    ("transacted_at", {"transacted_at": None}),
    ("transaction_refresh", {"transaction_refresh": 7}),
    ("updated", {"updated": "1700000100"}),
    ("livemode", {"livemode": 0}),
]


@pytest.mark.parametrize(("field", "changes"), BROKEN)
def test_page_rows_a_broken_field_refuses_the_page_and_is_named(
    field: str, changes: dict[str, Any]
) -> None:
    named = rf"`{field}`|{field} must be"
    with pytest.raises(InvalidStripeResponse, match=named):
        parse_transactions_page(page(row(id="fctxn_0"), row(**changes)))
    # The same verdict as the field-by-field parser's.
    with pytest.raises(InvalidStripeResponse, match=named):
        parse_transaction(row(**changes))


def test_page_rows_valid_rows_read_as_the_field_by_field_parser_reads_them() -> None:
    rows = [
        row(id=f"fctxn_{i}", status_transitions={"posted_at": None, "void_at": 5}) for i in range(3)
    ]
    # stripe-python hands JSON objects over as OrderedDicts; they are read alike.
    body = page(*(OrderedDict(r) for r in rows), row(id="fctxn_9", description="café ☕"))
    parsed = parse_transactions_page(body)
    assert list(parsed.transactions) == [parse_transaction(r) for r in body["data"]]
    assert parsed.transactions[0].void_at == 5 and parsed.last_id == "fctxn_9"
