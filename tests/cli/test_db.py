"""`fcsync db upgrade` / `db downgrade REVISION` against DATABASE_URL."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect

from tests.cli.conftest import Workdir

TABLES = {"accounts", "transactions", "refreshes", "webhook_events"}


def tables(workdir: Workdir) -> set[str]:
    engine = create_engine(workdir.db_url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_db_upgrade_creates_the_schema_and_downgrade_base_drops_it(workdir: Workdir) -> None:
    assert workdir.run("db", "upgrade").stdout.strip() == "database at head"
    assert tables(workdir) >= TABLES
    (head,) = workdir.query("SELECT version_num FROM alembic_version")[0]

    assert workdir.run("db", "downgrade", "base", "--yes").stdout.strip() == "database at base"
    assert not TABLES & tables(workdir)
    assert workdir.query("SELECT version_num FROM alembic_version") == []

    workdir.run("db", "upgrade")  # and back: downgrade left nothing behind that blocks it
    assert tables(workdir) >= TABLES
    assert workdir.query("SELECT version_num FROM alembic_version") == [(head,)]
