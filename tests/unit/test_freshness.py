"""How fresh an account is and why not, derived from its stored row alone: one reason per state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from models import Account, AccountFeature
from worker.freshness import MEANING, Facts, Freshness, State, feature_state, freshness

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
NOW_TS = int(NOW.timestamp())
HOUR = 3_600


def account(**changes: Any) -> Account:
    """A tracked, active account synced an hour ago up to Stripe's latest refresh: fresh."""
    fields: dict[str, Any] = {
        "id": "fca_1",
        "status": "active",
        "tracked": True,
        "transactions_tracked": True,
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


def judge(a: Account) -> Freshness:
    return freshness(a, Facts(), now=NOW)


def test_an_account_synced_to_its_recent_latest_refresh_is_fresh() -> None:
    fresh = judge(account())
    assert (fresh.state, fresh.reason, fresh.code) == (State.FRESH, None, None)


def test_a_recorded_error_does_not_make_fresh_data_stale() -> None:
    assert judge(account(last_error_code="rate_limit")).state is State.FRESH


DAY_OLD = {"cursor_refresh_at": NOW_TS - 25 * HOUR, "refresh_last_attempted_at": NOW_TS - 25 * HOUR}


@pytest.mark.parametrize(
    ("changes", "reason", "state"),
    [
        ({"tracked": False}, "not tracked", State.UNTRACKED),
        (
            # Tracked with balances or ownership only: no permission for transactions needed.
            {"transactions_tracked": False, "permissions": ["balances"]},
            "transactions not tracked: fcsync keeps only its other features fresh",
            State.UNTRACKED,
        ),
        (
            {"status": "inactive", "last_error_code": "account_inactive"},
            "inactive at Stripe: no refresh possible until it is reactivated",
            State.INACTIVE,
        ),
        (
            {"status": "disconnected"},
            "disconnected at Stripe: final; the user must link the account again",
            State.DISCONNECTED,
        ),
        (
            {"permissions": ["balances"], "last_error_code": "missing_permission"},
            "no transactions permission: relink the account with it",
            State.RELINK_REQUIRED,
        ),
        (
            {"refresh_id": "fctxnref_3", "refresh_status": "pending"},
            "refresh fctxnref_3 pending at Stripe",
            State.REFRESHING,
        ),
        (
            {
                "sync_target_refresh_id": "fctxnref_3",
                "sync_lease_expires_at": NOW + timedelta(minutes=2),
            },
            "sync to fctxnref_3 in progress",
            State.REFRESHING,
        ),
        (
            {
                "sync_target_refresh_id": "fctxnref_3",
                "sync_lease_expires_at": NOW - timedelta(minutes=2),
                "last_error_code": "api_error",
            },
            "sync to fctxnref_3 interrupted (last error [api_error]); the next sweep resumes it",
            State.FAILING,
        ),
        (
            {
                "refresh_id": "fctxnref_3",
                "refresh_status": "failed",
                "refresh_next_available_at": NOW_TS + HOUR,
            },
            "refresh fctxnref_3 failed; cooling down until 2026-11-01 13:00:00 UTC",
            State.FAILING,
        ),
        (
            {
                "refresh_id": "fctxnref_3",
                "refresh_status": "failed",
                "refresh_next_available_at": NOW_TS - HOUR,
                "next_due_at": NOW + timedelta(minutes=15),
            },
            "refresh fctxnref_3 failed; next try at 2026-11-01 12:15:00 UTC",
            State.FAILING,
        ),
        (
            {"refresh_id": None, "refresh_status": None, "cursor_refresh_id": None},
            "never synced: no refresh yet",
            State.STALE,
        ),
        (
            {"cursor_refresh_id": None, "cursor_refresh_at": None, "last_error_code": "x"},
            "never synced (last error [x])",
            State.FAILING,
        ),
        (
            {"refresh_id": "fctxnref_3"},
            "sync behind the latest refresh fctxnref_3",
            State.STALE,
        ),
        (
            {**DAY_OLD, "refresh_next_available_at": NOW_TS + HOUR},
            "cooling down until 2026-11-01 13:00:00 UTC",
            State.COOLING_DOWN,
        ),
        (
            {**DAY_OLD, "subscriptions": ["transactions"], "next_due_at": NOW + timedelta(hours=1)},
            "waiting for Stripe's daily refresh (fcsync steps in at 2026-11-01 13:00:00 UTC)",
            State.STALE,
        ),
        (
            {**DAY_OLD, "next_due_at": NOW + timedelta(minutes=1)},
            "refresh due at 2026-11-01 12:01:00 UTC",
            State.STALE,
        ),
        (
            {**DAY_OLD, "next_due_at": NOW - timedelta(hours=1)},
            "refresh overdue since 2026-11-01 11:00:00 UTC",
            State.STALE,
        ),
    ],
)
def test_freshness_names_the_state_that_keeps_the_account_from_being_fresh_and_why(
    changes: dict[str, Any], reason: str, state: State
) -> None:
    judged = judge(account(**changes))
    assert (judged.state, judged.reason) == (state, reason)


def test_a_gone_account_is_disconnected() -> None:
    judged = judge(account(gone_at=NOW - timedelta(days=1)))
    assert judged.state is State.DISCONNECTED
    assert judged.reason is not None and judged.reason.startswith("gone: ")


def test_a_failed_refresh_is_failing_with_its_code_and_the_cooldown_it_left() -> None:
    judged = judge(
        account(
            refresh_id="fctxnref_3",
            refresh_status="failed",
            refresh_next_available_at=NOW_TS + HOUR,
        )
    )
    assert (judged.state, judged.code) == (State.FAILING, "refresh_failed")
    assert judged.until == NOW + timedelta(hours=1)


def test_a_cooling_down_account_says_until_when() -> None:
    judged = judge(account(**DAY_OLD, refresh_next_available_at=NOW_TS + HOUR))
    assert (judged.state, judged.until) == (State.COOLING_DOWN, NOW + timedelta(hours=1))


def test_an_overdue_account_with_an_error_is_failing_with_that_code() -> None:
    judged = judge(
        account(**DAY_OLD, next_due_at=NOW - timedelta(hours=1), last_error_code="rate_limit")
    )
    assert (judged.state, judged.code) == (State.FAILING, "rate_limit")


def test_a_pending_refresh_is_refreshing_since_stripe_started_it() -> None:
    started = NOW_TS - 300
    judged = judge(
        account(
            refresh_id="fctxnref_3", refresh_status="pending", refresh_last_attempted_at=started
        )
    )
    assert judged.state is State.REFRESHING
    assert judged.refresh_pending_since == NOW - timedelta(seconds=300)
    assert judge(account()).refresh_pending_since is None


def test_every_state_has_a_meaning_for_people() -> None:
    assert set(MEANING) == set(State)


def feature(**changes: Any) -> AccountFeature:
    """A balances feature refreshed an hour ago, its data stored: fresh."""
    fields: dict[str, Any] = {
        "account_id": "fca_1",
        "feature": "balances",
        "refresh_status": "succeeded",
        "refresh_last_attempted_at": NOW_TS - HOUR,
        "refresh_next_available_at": NOW_TS - HOUR + 60,
        "stored_refresh_at": NOW_TS - HOUR,
        "last_error_code": None,
    }
    fields.update(changes)
    return AccountFeature(**fields)


@pytest.mark.parametrize(
    ("account_changes", "feature_changes", "state"),
    [
        ({}, {}, State.FRESH),
        ({"tracked": False}, {}, State.UNTRACKED),
        ({"gone_at": NOW}, {}, State.DISCONNECTED),
        ({"status": "disconnected"}, {}, State.DISCONNECTED),
        ({"status": "inactive"}, {"last_error_code": "account_inactive"}, State.INACTIVE),
        ({}, {"last_error_code": "missing_permission"}, State.RELINK_REQUIRED),
        ({}, {"refresh_status": "pending"}, State.REFRESHING),
        ({}, {"refresh_status": "failed", "last_error_code": "refresh_failed"}, State.FAILING),
        ({}, {"stored_refresh_at": None}, State.STALE),
        ({}, {"stored_refresh_at": NOW_TS - 25 * HOUR}, State.STALE),
        (
            {},
            {"stored_refresh_at": NOW_TS - 25 * HOUR, "refresh_next_available_at": NOW_TS + 60},
            State.COOLING_DOWN,
        ),
        # The account's own troubles are not its features': a failing sync leaves them fresh.
        ({"last_error_code": "rate_limit", "refresh_status": "failed"}, {}, State.FRESH),
    ],
)
def test_a_features_state_is_judged_on_the_accounts_scale(
    account_changes: dict[str, Any], feature_changes: dict[str, Any], state: State
) -> None:
    assert feature_state(account(**account_changes), feature(**feature_changes), now=NOW) is state
