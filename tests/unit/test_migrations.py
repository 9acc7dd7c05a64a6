"""Alembic migrations on real SQLite and PostgreSQL: they build exactly the models' schema and
round-trip (upgrade -> downgrade -> upgrade) on both."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.orm import Session

from models import Base
from tests.conftest import fresh_database
from worker.cli.status_view import status_cells
from worker.db import downgrade_database, make_engine, upgrade_database
from worker.reports import account_status

TABLES = {
    "accounts",
    "transactions",
    "refreshes",
    "webhook_events",
    "account_features",
    "balances",
    "account_owners",
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own (the shared test databases stay migrated for other tests)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    with fresh_database("fcsync_mig") as url:
        yield url


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_migrations_build_exactly_the_models_schema(empty_database: str) -> None:
    upgrade_database(empty_database)
    engine = make_engine(empty_database)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"


def test_migrations_round_trip_upgrade_downgrade_upgrade(empty_database: str) -> None:
    upgrade_database(empty_database)
    assert _tables(empty_database) == TABLES
    downgrade_database(empty_database, "base")
    assert _tables(empty_database) == set()
    upgrade_database(empty_database)
    assert _tables(empty_database) == TABLES


def test_migrations_stripe_account_context_keeps_existing_rows_the_platforms(
    empty_database: str,
) -> None:
    """Rows written before the context existed read as the platform's (NULL), and nothing else
    about them changes."""
    upgrade_database(empty_database, "0003_gone_and_sync_retry")
    engine = make_engine(empty_database)
    now = datetime(2026, 11, 30, tzinfo=UTC)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO accounts (id, livemode, institution_name, category, subcategory,"
                    " status, permissions, subscriptions, tracked, refresh_interval_s,"
                    " sync_inserted, sync_updated, sync_requested, sync_requested_full,"
                    " created_at, updated_at) VALUES ('fca_old', false, 'Bank', 'cash',"
                    " 'checking', 'active', '[]', '[]', true, 86400, 0, 0, false, false,"
                    " :now, :now)"
                ),
                {"now": now},
            )
            conn.execute(
                text(
                    "INSERT INTO refreshes (id, account_id, source, status, inserted, updated)"
                    " VALUES ('fctxnref_old', 'fca_old', 'beat', 'succeeded', 1, 0)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO transactions (id, account_id, amount, currency, description,"
                    " status, transacted_at, transaction_refresh, updated, livemode,"
                    " first_seen_at, last_seen_at) VALUES ('fctxn_old', 'fca_old', -100, 'usd',"
                    " 'x', 'posted', 1, 'fctxnref_old', 1, false, :now, :now)"
                ),
                {"now": now},
            )
        upgrade_database(empty_database)
        with engine.connect() as conn:
            for table in ("accounts", "refreshes", "transactions"):
                rows = conn.execute(text(f"SELECT id, stripe_account FROM {table}")).all()
                assert [row.stripe_account for row in rows] == [None], table
            amount = conn.execute(text("SELECT amount FROM transactions")).scalar_one()
            assert amount == -100
        with Session(engine) as session:
            [status] = account_status(session, now=now)
        assert status["stripe_account"] is None
        assert status_cells(status)["context"] == "platform"
    finally:
        engine.dispose()
