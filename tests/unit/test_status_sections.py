"""Status rows grouped as `fcsync status` and the status page show them, over a real database
(SQLite and PostgreSQL): key by key (`default` first), within a key context by context (the
platform first), each key's platform section there even when empty."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from models import Account
from worker import reports
from worker.stripe_keys import unknown_key_name

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
# (id, stored stripe_key: None = `default`, context): stored out of every order on purpose.
ACCOUNTS = (
    ("fca_a_eu_conn", "eu", "acct_1First"),
    ("fca_b_default", None, None),
    ("fca_c_eu", "eu", None),
    ("fca_d_default_conn", None, "acct_1First"),
    ("fca_e_apac", "apac", None),
    ("fca_f_default", None, None),
)


def store(session: Session) -> None:
    for account, key, context in ACCOUNTS:
        session.add(
            Account(
                id=account,
                stripe_key=key,
                stripe_account=context,
                permissions=["transactions"],
                subscriptions=[],
                created_at=NOW,
                updated_at=NOW,
            )
        )
    session.flush()


def test_status_rows_come_key_by_key_then_context_by_context(session: Session) -> None:
    store(session)

    rows = reports.account_status(session, now=NOW)

    assert [(r["id"], r["stripe_key"]) for r in rows] == [
        ("fca_b_default", "default"),
        ("fca_f_default", "default"),
        ("fca_d_default_conn", "default"),
        ("fca_e_apac", "apac"),
        ("fca_c_eu", "eu"),
        ("fca_a_eu_conn", "eu"),
    ]
    assert reports.stored_keys(session) == ["default", "apac", "eu"]


def test_status_sections_are_one_per_key_and_context_with_each_keys_platform(
    session: Session,
) -> None:
    store(session)
    rows = reports.account_status(session, now=NOW)
    # `us` is configured and reaches no stored account yet.
    keys = reports.known_keys(["default", "us", "eu"], reports.stored_keys(session))

    found = reports.sections(rows, keys=keys)

    assert keys == ["default", "apac", "eu", "us"]
    assert [(s.stripe_key, s.stripe_account, [r["id"] for r in s.rows]) for s in found] == [
        ("default", None, ["fca_b_default", "fca_f_default"]),
        ("default", "acct_1First", ["fca_d_default_conn"]),
        ("apac", None, ["fca_e_apac"]),
        ("eu", None, ["fca_c_eu"]),
        ("eu", "acct_1First", ["fca_a_eu_conn"]),
        ("us", None, []),
    ]
    # Without keys to keep, only the sections that hold rows.
    assert [(s.stripe_key, s.stripe_account) for s in reports.sections(rows[3:])] == [
        ("apac", None),
        ("eu", None),
        ("eu", "acct_1First"),
    ]


def test_status_keys_of_a_single_key_setup_are_default_alone(session: Session) -> None:
    session.add(
        Account(id="fca_only", permissions=[], subscriptions=[], created_at=NOW, updated_at=NOW)
    )
    session.flush()

    assert reports.known_keys(["default"], reports.stored_keys(session)) == ["default"]
    # A process that configures none (a receiver of webhooks alone) is single-key too.
    assert reports.known_keys([], []) == ["default"]


def test_status_filter_on_a_key_names_the_known_ones() -> None:
    assert unknown_key_name("eu", ["default", "eu"]) is None
    why = unknown_key_name("us", ["eu", "default"])
    assert why == "no configured or stored Stripe key is named 'us'; keys: default, eu"
