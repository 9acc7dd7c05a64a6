"""The gauges /metrics computes by feature at scrape time, over a real database (SQLite and
PostgreSQL): accounts by each feature's freshness state (a feature that needs relinking
included) and the oldest stored data of each feature that can refresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session

from models import Account, AccountFeature
from worker import fleet
from worker.fleet_gauges import FleetCollector

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
NOW_TS = int(NOW.timestamp())
HOUR = 3_600


def account(account_id: str, **changes: Any) -> Account:
    """A tracked active account synced an hour ago, stored two days ago."""
    fields: dict[str, Any] = {
        "id": account_id,
        "permissions": ["transactions", "balances"],
        "subscriptions": [],
        "refresh_id": "fctxnref_" + account_id,
        "refresh_status": "succeeded",
        "refresh_last_attempted_at": NOW_TS - HOUR,
        "cursor_refresh_id": "fctxnref_" + account_id,
        "cursor_refresh_at": NOW_TS - HOUR,
        "last_synced_at": NOW - timedelta(hours=1),
        "next_due_at": NOW + timedelta(hours=23),
        "created_at": NOW - timedelta(days=2),
        "updated_at": NOW,
    }
    return Account(**{**fields, **changes})


def store(session: Session) -> None:
    session.add_all(
        [
            account("fca_fresh"),
            # Its transactions never synced: they wait since it was stored, two days.
            account("fca_new", cursor_refresh_id=None, cursor_refresh_at=None, refresh_id=None),
            account("fca_untracked", tracked=False, cursor_refresh_at=NOW_TS - 90 * 24 * HOUR),
        ]
    )
    session.flush()
    session.add_all(
        [
            # Refreshed three hours ago: fresh, and the oldest balances that can refresh.
            AccountFeature(
                account_id="fca_fresh", feature="balances", stored_refresh_at=NOW_TS - 3 * HOUR
            ),
            AccountFeature(
                account_id="fca_fresh", feature="ownership", last_error_code="missing_permission"
            ),
            # Never refreshed: stale, waiting since the account was stored.
            AccountFeature(account_id="fca_new", feature="ownership"),
            # An untracked account's feature neither counts as fresh nor holds the age up.
            AccountFeature(account_id="fca_untracked", feature="balances", stored_refresh_at=1),
        ]
    )
    session.flush()


def test_fleet_counts_each_features_accounts_by_state_and_its_oldest_data(
    session: Session,
) -> None:
    store(session)

    snap = fleet.snapshot(session, now=NOW)

    nonzero = {f: {s: n for s, n in states.items() if n} for f, states in snap.features.items()}
    assert nonzero == {
        "transactions": {"fresh": 1, "stale": 1, "untracked": 1},
        "balances": {"fresh": 1, "untracked": 1},
        "ownership": {"relink_required": 1, "stale": 1},
    }
    assert snap.feature_max_age_s == {
        "transactions": 2 * 24 * HOUR,
        "balances": 3 * HOUR,
        "ownership": 2 * 24 * HOUR,
    }


def test_fleet_feature_gauges_are_served_by_feature_and_state(session: Session) -> None:
    store(session)
    served = CollectorRegistry()
    served.register(FleetCollector(lambda: fleet.snapshot(session, now=NOW)))

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(served).decode())
        for s in family.samples
    }

    relink = (("feature", "ownership"), ("state", "relink_required"))
    assert samples["fcsync_feature_accounts", relink] == 1
    assert samples["fcsync_feature_accounts", (("feature", "balances"), ("state", "stale"))] == 0
    assert samples["fcsync_feature_max_age_seconds", (("feature", "balances"),)] == 3 * HOUR


def test_fleet_leaves_accounts_tracked_without_transactions_out_of_the_transactions_counts(
    session: Session,
) -> None:
    store(session)
    balances_only = {"transactions_tracked": False, "cursor_refresh_id": None, "refresh_id": None}
    session.add_all(
        [
            account("fca_balances", **balances_only),
            account("fca_balances_inactive", status="inactive", **balances_only),
        ]
    )
    session.flush()
    session.add_all(
        [
            AccountFeature(
                account_id="fca_balances", feature="balances", stored_refresh_at=NOW_TS - HOUR
            ),
            AccountFeature(account_id="fca_balances_inactive", feature="balances"),
        ]
    )
    session.flush()

    snap = fleet.snapshot(session, now=NOW)

    # Only the account fcsync does not track at all is `untracked`; the balances-only ones
    # count where their balances do, not again as transactions.
    transactions = {"fresh": 1, "stale": 1, "untracked": 1}
    assert {s: n for s, n in snap.accounts.items() if n} == transactions
    assert {s: n for s, n in snap.features["transactions"].items() if n} == transactions
    assert {s: n for s, n in snap.features["balances"].items() if n} == {
        "fresh": 2,
        "inactive": 1,
        "untracked": 1,
    }
