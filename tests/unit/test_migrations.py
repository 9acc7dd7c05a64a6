"""Alembic migrations on real SQLite and PostgreSQL: they build exactly the models' schema and
round-trip (upgrade -> downgrade -> upgrade) on both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from models import Base
from tests.conftest import fresh_database
from worker.db import downgrade_database, make_engine, upgrade_database

TABLES = {"accounts", "transactions", "refreshes", "webhook_events"}


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
