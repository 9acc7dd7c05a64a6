"""`fcsync db`: fcsync's schema, migrated up or down (a downgrade drops tables: it asks first)."""

from __future__ import annotations

import click

from worker.cli.exits import expected_errors
from worker.cli.guards import confirm_downgrade, known_revision


@click.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@expected_errors
def db_upgrade(revision: str) -> None:
    """Apply migrations to DATABASE_URL."""
    from worker.db import upgrade_database

    with known_revision(revision):
        upgrade_database(revision=revision)
    click.echo(f"database at {revision}")


@db.command("downgrade")
@click.argument("revision")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (drops tables and data).")
@expected_errors
def db_downgrade(revision: str, yes: bool) -> None:
    """Revert migrations down to REVISION ('base' drops everything)."""
    from worker.db import downgrade_database

    if not yes:
        confirm_downgrade(revision)
    with known_revision(revision):
        downgrade_database(revision=revision)
    click.echo(f"database at {revision}")
