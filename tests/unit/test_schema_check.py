"""The start-up schema check every long-running process runs: a never-migrated or fully
downgraded database refuses (naming it, password masked); an unreachable one only warns, since
a worker may start before its database does and retries its tasks anyway."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from worker.db import SchemaMissingError, downgrade_database, require_schema, upgrade_database


def test_a_migrated_database_passes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fcsync.db'}"
    upgrade_database(url)

    require_schema(url)


def test_a_database_downgraded_to_base_has_no_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fcsync.db'}"
    upgrade_database(url)
    downgrade_database(url, "base")  # alembic_version stays, empty

    with pytest.raises(SchemaMissingError, match="run `fcsync db upgrade`"):
        require_schema(url)


def test_a_never_migrated_database_is_named_with_its_password_masked() -> None:
    # PostgreSQL-shaped URL to an unreachable port would only warn: use SQLite's memory database
    # for "reachable and empty", and check the masking on the error type itself.
    with pytest.raises(SchemaMissingError) as raised:
        require_schema("sqlite://")
    assert raised.value.code == "no_schema"
    masked = SchemaMissingError("postgresql+psycopg://fcsync:hunter22@db:5432/fcsync")
    assert str(masked) == (
        "the database at postgresql+psycopg://fcsync:***@db:5432/fcsync has no fcsync schema: "
        "run `fcsync db upgrade`"
    )


def test_an_unreachable_database_only_warns(caplog: pytest.LogCaptureFixture) -> None:
    url = "postgresql+psycopg://fcsync:hunter22@127.0.0.1:1/fcsync"

    with caplog.at_level(logging.WARNING, logger="worker.db"):
        require_schema(url)

    (record,) = caplog.records
    assert "cannot check the schema" in record.getMessage()
    assert "hunter22" not in record.getMessage()
