"""`fcsync`: the command line, an edge like tasks/ — it parses, calls and prints.

The group and `main` (errors met before any command runs) live here; each command lives in
the module named for what it does, and exits.py says how a command ends."""

from __future__ import annotations

import sys

import click

from worker import log_context
from worker.cli import accounts, events, keys, schema, serve, show
from worker.cli.exits import EXIT_PERMANENT, EXIT_TRANSIENT
from worker.errors import ConfigurationError
from worker.logs import configure_logging
from worker.redaction import redact
from worker.settings import LOG_LEVELS, get_settings, invalid_settings


@click.group()
@click.version_option(package_name="fcsync", message="fcsync %(version)s")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default=None,
    help="Log level (default FCSYNC_LOG_LEVEL).",
)
def cli(log_level: str | None) -> None:
    """fcsync keeps Stripe Financial Connections transactions synced into your database."""
    settings = get_settings()
    configure_logging(log_level or settings.fcsync_log_level, settings.fcsync_log_format)
    # Each command is a unit of work: its account (and the Stripe requests it makes, with
    # --inline) goes on its log lines.
    click.get_current_context().with_resource(log_context.bound())


cli.add_command(schema.db)
cli.add_command(accounts.track)
cli.add_command(accounts.untrack)
cli.add_command(accounts.refresh)
cli.add_command(accounts.sync)
cli.add_command(events.events)
cli.add_command(show.status)
cli.add_command(show.transactions)
cli.add_command(serve.webhooks)
cli.add_command(serve.run)
cli.add_command(serve.demo)
cli.add_command(serve.emulator)
cli.add_command(keys.keys)


def _cli_naming_a_missing_schema() -> None:
    """A database that was never migrated fails the first query of any command (PostgreSQL's
    UndefinedTable, SQLite's "no such table"): one line naming the fix, not a traceback."""
    from sqlalchemy.exc import DBAPIError

    from worker.db import SchemaMissingError, is_missing_table

    try:
        cli()
    except DBAPIError as exc:
        if not is_missing_table(exc):
            raise
        schema = SchemaMissingError(get_settings().database_url)
        click.echo(f"error [{schema.code}]: {schema}", err=True)
        sys.exit(EXIT_PERMANENT)


def main() -> None:
    """Errors raised outside a command's own handling: settings and the database."""
    from pydantic import ValidationError
    from sqlalchemy.exc import OperationalError

    try:
        _cli_naming_a_missing_schema()
    except ConfigurationError as exc:
        click.echo(redact(f"error [{exc.code}]: {exc}"), err=True)
        sys.exit(EXIT_PERMANENT)
    except ValidationError as exc:  # a malformed setting, read on first use
        for line in invalid_settings(exc):
            click.echo(redact(line), err=True)
        sys.exit(EXIT_PERMANENT)
    except OperationalError as exc:  # transient for the tasks too: they retry it
        click.echo(redact(f"error [database_unavailable] (transient): {exc.orig}"), err=True)
        sys.exit(EXIT_TRANSIENT)
