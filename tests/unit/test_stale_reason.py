"""Why an account is not fresh, derived from its stored row alone: one reason per state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from models import Account
from worker.reports import stale_reason

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
NOW_TS = int(NOW.timestamp())
HOUR = 3_600


def account(**changes: Any) -> Account:
    """A tracked, active account synced an hour ago up to Stripe's latest refresh: fresh."""
    fields: dict[str, Any] = {
        "id": "fca_1",
        "status": "active",
        "tracked": True,
        "permissions": ["transactions"],
        "subscriptions": [],
        "refresh_interval_s": 86_400,
        "refresh_id": "fctxnref_2",
        "refresh_status": "succeeded",
        "refresh_last_attempted_at": NOW_TS - HOUR,
        "refresh_next_available_at": NOW_TS - HOUR + 60,
        "cursor_refresh_id": "fctxnref_2",
        "cursor_refresh_at": NOW_TS - HOUR,
        "next_due_at": NOW + timedelta(hours=23),
        "sync_target_refresh_id": None,
        "sync_lease_expires_at": None,
        "last_error_code": None,
        "last_error_message": None,
    }
    fields.update(changes)
    return Account(**fields)


def test_stale_reason_is_none_for_an_account_synced_to_its_recent_latest_refresh() -> None:
    assert stale_reason(account(), now=NOW) is None


def test_stale_reason_a_recorded_error_does_not_make_fresh_data_stale() -> None:
    assert stale_reason(account(last_error_code="rate_limit"), now=NOW) is None


DAY_OLD = {"cursor_refresh_at": NOW_TS - 25 * HOUR, "refresh_last_attempted_at": NOW_TS - 25 * HOUR}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"tracked": False}, "not tracked"),
        (
            {"status": "inactive", "last_error_code": "account_inactive"},
            "inactive at Stripe: no refresh possible until it is reactivated",
        ),
        (
            {"status": "disconnected"},
            "disconnected at Stripe: final; the user must link the account again",
        ),
        (
            {"permissions": ["balances"], "last_error_code": "missing_permission"},
            "no transactions permission: relink the account with it",
        ),
        (
            {"refresh_id": "fctxnref_3", "refresh_status": "pending"},
            "refresh fctxnref_3 pending at Stripe",
        ),
        (
            {
                "sync_target_refresh_id": "fctxnref_3",
                "sync_lease_expires_at": NOW + timedelta(minutes=2),
            },
            "sync to fctxnref_3 in progress",
        ),
        (
            {
                "sync_target_refresh_id": "fctxnref_3",
                "sync_lease_expires_at": NOW - timedelta(minutes=2),
                "last_error_code": "api_error",
            },
            "sync to fctxnref_3 interrupted (last error [api_error]); the next sweep resumes it",
        ),
        (
            {
                "refresh_id": "fctxnref_3",
                "refresh_status": "failed",
                "refresh_next_available_at": NOW_TS + HOUR,
            },
            "refresh fctxnref_3 failed; cooling down until 2026-11-01 13:00:00 UTC",
        ),
        (
            {
                "refresh_id": "fctxnref_3",
                "refresh_status": "failed",
                "refresh_next_available_at": NOW_TS - HOUR,
                "next_due_at": NOW + timedelta(minutes=15),
            },
            "refresh fctxnref_3 failed; next try at 2026-11-01 12:15:00 UTC",
        ),
        (
            {"refresh_id": None, "refresh_status": None, "cursor_refresh_id": None},
            "never synced: no refresh yet",
        ),
        (
            {"cursor_refresh_id": None, "cursor_refresh_at": None, "last_error_code": "x"},
            "never synced (last error [x])",
        ),
        (
            {"refresh_id": "fctxnref_3"},
            "sync behind the latest refresh fctxnref_3",
        ),
        (
            {**DAY_OLD, "refresh_next_available_at": NOW_TS + HOUR},
            "cooling down until 2026-11-01 13:00:00 UTC",
        ),
        (
            {**DAY_OLD, "subscriptions": ["transactions"], "next_due_at": NOW + timedelta(hours=1)},
            "waiting for Stripe's daily refresh (fcsync steps in at 2026-11-01 13:00:00 UTC)",
        ),
        (
            {**DAY_OLD, "next_due_at": NOW + timedelta(minutes=1)},
            "refresh due at 2026-11-01 12:01:00 UTC",
        ),
        (
            {**DAY_OLD, "next_due_at": NOW - timedelta(hours=1)},
            "refresh overdue since 2026-11-01 11:00:00 UTC",
        ),
    ],
)
def test_stale_reason_names_the_state_that_keeps_the_account_from_being_fresh(
    changes: dict[str, Any], reason: str
) -> None:
    assert stale_reason(account(**changes), now=NOW) == reason
