"""The lifecycle's pure parts: status_details and account numbers read from Stripe's account
(open values kept, malformed ones refused), the account notice as a task, its gauge and text."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client.core import Metric

from worker.dispatch import followup_for
from worker.fleet_gauges import ACCOUNTS_NEEDING_RELINK, FleetCollector, FleetSnapshot
from worker.intents import NotifyAccount
from worker.records import ActiveStatusDetails, Followup
from worker.reports import relink_text
from worker.settings import Settings
from worker.stripe_payloads import InvalidStripeResponse, parse_account

NOW = datetime(2026, 1, 1, tzinfo=UTC)
DEADLINE = 1_796_000_000


def account(**fields: Any) -> dict[str, Any]:
    return {"id": "fca_1", "object": "financial_connections.account", "status": "active", **fields}


def test_status_details_are_read_as_stripe_words_them_new_values_included() -> None:
    known = {
        "action": "relink_required",
        "cause": "access_expired",
        "expected_deactivation_date": DEADLINE,
    }
    assert parse_account(account(status_details={"active": known})).status_details_active == (
        ActiveStatusDetails("relink_required", "access_expired", DEADLINE)
    )
    new = {"action": "reauthenticate_soon", "cause": "bank_merger"}
    assert parse_account(account(status_details={"active": new})).status_details_active == (
        ActiveStatusDetails("reauthenticate_soon", "bank_merger", None)
    )
    # Inactive accounts' details are empty; payloads older than 2026-06-24 have none.
    assert (
        parse_account(account(status="inactive", status_details={})).status_details_active is None
    )
    assert parse_account(account()).status_details_active is None


@pytest.mark.parametrize(
    "details",
    [
        {"active": "relink_required"},
        {"active": {"cause": "access_expired"}},
        {"active": {"action": 1}},
        {"active": {"action": "relink_required", "expected_deactivation_date": "soon"}},
        {"active": {"action": "x" * 65}},
        "active",
    ],
)
def test_malformed_status_details_are_an_invalid_answer(details: object) -> None:
    with pytest.raises(InvalidStripeResponse, match="status_details"):
        parse_account(account(status_details=details))


def test_the_earliest_account_number_expiry_is_kept() -> None:
    numbers = [
        {"expected_expiry_date": None, "identifier_type": "account_number"},
        {"expected_expiry_date": DEADLINE + 5},
        {"expected_expiry_date": DEADLINE},
    ]
    assert parse_account(account(account_numbers=numbers)).account_number_expiry == DEADLINE
    assert parse_account(account(account_numbers=None)).account_number_expiry is None
    with pytest.raises(InvalidStripeResponse, match="account_numbers"):
        parse_account(account(account_numbers={"expected_expiry_date": DEADLINE}))


def test_the_account_notice_goes_to_the_account_task_only_when_one_is_configured() -> None:
    notice = NotifyAccount(
        "fca_1",
        "relink_required",
        "active",
        "relink_required",
        "access_expired",
        DEADLINE,
        stripe_account="acct_1",
    )
    settings = Settings(fcsync_on_synced_task="app.on_synced")
    assert followup_for(notice, settings=settings, now=NOW) is None
    settings = Settings(fcsync_on_account_task="app.account", fcsync_on_account_queue="accounts")
    assert followup_for(notice, settings=settings, now=NOW) == Followup(
        "app.account",
        {
            "account": "fca_1",
            "kind": "relink_required",
            "status": "active",
            "action": "relink_required",
            "cause": "access_expired",
            "expected_deactivation_date": datetime.fromtimestamp(DEADLINE, tz=UTC).isoformat(),
            "expected_expiry_date": None,
            "event": None,
            "stripe_account": "acct_1",
        },
        queue="accounts",
    )


def test_accounts_needing_relink_are_a_gauge_by_cause() -> None:
    snapshot = FleetSnapshot(
        accounts={},
        oldest_pending_refresh_s=0,
        max_sync_lag_s=0,
        needing_relink={"access_expired": 2, "unspecified": 0},
    )
    metrics: list[Metric] = list(FleetCollector(lambda: snapshot).collect())
    (relink,) = [m for m in metrics if m.name == ACCOUNTS_NEEDING_RELINK]
    assert {s.labels["cause"]: s.value for s in relink.samples} == {
        "access_expired": 2,
        "unspecified": 0,
    }


@pytest.mark.parametrize(
    ("status", "action", "cause", "date", "text"),
    [
        ("active", "relink_required", "access_expired", DEADLINE, "required by 2026-11-30 "),
        ("active", "relink_required", None, None, "required (unspecified)"),
        ("active", "none", "unspecified", DEADLINE, ""),
        ("active", None, None, None, ""),
        ("inactive", "relink_required", "access_expired", DEADLINE, ""),
    ],
)
def test_the_relink_text_people_read(
    status: str, action: str | None, cause: str | None, date: int | None, text: str
) -> None:
    row = {
        "status": status,
        "status_details_action": action,
        "status_details_cause": cause,
        "expected_deactivation_date": date,
    }
    assert relink_text(row).startswith(text)
    if text:
        assert relink_text(row).endswith(f"({cause or 'unspecified'})")
