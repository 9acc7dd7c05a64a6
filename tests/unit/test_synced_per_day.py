"""Transactions synced per UTC day, the status page's chart: read from the refreshes table on a
real database (SQLite and PostgreSQL); and the rows stored per account, the demo's summary."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy.orm import Session

from models import Account, Refresh, Transaction
from worker.reports import DaySynced, synced_per_day, transaction_counts

NOW = datetime(2026, 11, 30, 9, 30, tzinfo=UTC)


def _refresh(n: int, synced_at: datetime | None, inserted: int, updated: int) -> Refresh:
    return Refresh(
        id=f"fctxnref_{n}",
        account_id="fca_chart",
        source="beat",
        status="succeeded",
        synced_at=synced_at,
        inserted=inserted,
        updated=updated,
    )


def test_synced_per_day_sums_each_utc_day_of_the_window(session: Session) -> None:
    session.add(
        Account(id="fca_chart", permissions=["transactions"], created_at=NOW, updated_at=NOW)
    )
    session.flush()
    midnight = datetime(2026, 11, 30, tzinfo=UTC)
    session.add_all(
        [
            _refresh(1, midnight, 5, 1),  # today's first second
            _refresh(2, NOW, 2, 0),
            _refresh(3, midnight - timedelta(seconds=1), 7, 3),  # yesterday's last second
            _refresh(4, midnight - timedelta(days=2), 0, 4),
            _refresh(5, midnight - timedelta(days=3), 100, 0),  # before the window
            _refresh(6, None, 50, 50),  # never synced: counts nowhere
        ]
    )
    session.flush()

    days = synced_per_day(session, now=NOW, days=3)

    assert days == [
        DaySynced(date(2026, 11, 28), 0, 4),
        DaySynced(date(2026, 11, 29), 7, 3),
        DaySynced(date(2026, 11, 30), 7, 1),
    ]


def test_synced_per_day_is_all_zero_days_without_syncs(session: Session) -> None:
    days = synced_per_day(session, now=NOW, days=14)
    assert len(days) == 14 and days[-1].day == date(2026, 11, 30)
    assert all(d.inserted == d.updated == 0 for d in days)


def _transaction(n: int, account_id: str) -> Transaction:
    return Transaction(
        id=f"fctxn_count_{n}",
        account_id=account_id,
        amount=-100 * n,
        currency="usd",
        status="posted",
        transacted_at=1_700_000_000 + n,
        transaction_refresh="fctxnref_count",
        updated=1_700_000_000 + n,
        first_seen_at=NOW,
        last_seen_at=NOW,
    )


def test_transaction_counts_counts_each_accounts_stored_rows(session: Session) -> None:
    for account_id in ("fca_count_a", "fca_count_b", "fca_count_none"):
        session.add(
            Account(id=account_id, permissions=["transactions"], created_at=NOW, updated_at=NOW)
        )
    session.flush()
    session.add_all([_transaction(n, "fca_count_a") for n in range(3)])
    session.add(_transaction(3, "fca_count_b"))
    session.flush()

    counts = transaction_counts(session)

    assert {a: n for a, n in counts.items() if a.startswith("fca_count_")} == {
        "fca_count_a": 3,
        "fca_count_b": 1,
    }
