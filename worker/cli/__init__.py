"""`fcsync`: the command line, an edge like tasks/ — it parses, calls and prints.

The group and `main` (errors met before any command runs) live here; each command lives in
the module named for what it does, and exits.py says how a command ends."""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, cast

import click

from worker import log_context
from worker.cli.exits import EXIT_PERMANENT, EXIT_TRANSIENT
from worker.errors import ConfigurationError
from worker.logs import configure_logging
from worker.redaction import redact
from worker.settings import LOG_LEVELS, get_settings, invalid_settings

if TYPE_CHECKING:
    from sqlalchemy.exc import DBAPIError

# Each command by the module that defines it, imported only when the command is used (or listed
# by `fcsync --help`): `--help` and a usage error never pay for the database, Celery or Stripe.
COMMANDS = {
    "db": "worker.cli.schema:db",
    "track": "worker.cli.accounts:track",
    "untrack": "worker.cli.accounts:untrack",
    "refresh": "worker.cli.accounts:refresh",
    "sync": "worker.cli.accounts:sync",
    "events": "worker.cli.events:events",
    "reconcile": "worker.cli.reconcile:reconcile",
    "status": "worker.cli.show:status",
    "transactions": "worker.cli.show:transactions",
    "balances": "worker.cli.features:balances",
    "owners": "worker.cli.features:owners",
    "webhooks": "worker.cli.serve:webhooks",
    "run": "worker.cli.serve:run",
    "demo": "worker.cli.serve:demo",
    "emulator": "worker.cli.serve:emulator",
    "keys": "worker.cli.keys:keys",
}


class LazyGroup(click.Group):
    """The group of COMMANDS, each imported when click first asks for it (click's "lazily
    loading subcommands" pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, name = COMMANDS[cmd_name].split(":")
        command = getattr(importlib.import_module(module), name)
        assert isinstance(command, click.Command), COMMANDS[cmd_name]
        return command


@click.group(cls=LazyGroup)
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


def _database_error(exc: Exception, kind: str) -> DBAPIError | None:
    """`exc` if it is SQLAlchemy's error class `kind`, else None. Looked up, not imported: a
    command that never imported SQLAlchemy cannot have raised its errors, and `--help` or a
    usage error should not load it just to rule them out."""
    errors = sys.modules.get("sqlalchemy.exc")
    if errors is None or not isinstance(exc, getattr(errors, kind)):
        return None
    return cast("DBAPIError", exc)


def _cli_naming_a_missing_schema() -> None:
    """A database that was never migrated fails the first query of any command (PostgreSQL's
    UndefinedTable, SQLite's "no such table"): one line naming the fix, not a traceback."""
    try:
        cli()
    except Exception as exc:
        failed = _database_error(exc, "DBAPIError")
        if failed is None:
            raise
        from worker.db import SchemaMissingError, is_missing_table

        if not is_missing_table(failed):
            raise
        schema = SchemaMissingError(get_settings().database_url)
        click.echo(f"error [{schema.code}]: {schema}", err=True)
        sys.exit(EXIT_PERMANENT)


def main() -> None:
    """Errors raised outside a command's own handling: settings and the database."""
    from pydantic import ValidationError

    try:
        _cli_naming_a_missing_schema()
    except ConfigurationError as exc:
        click.echo(redact(f"error [{exc.code}]: {exc}"), err=True)
        sys.exit(EXIT_PERMANENT)
    except ValidationError as exc:  # a malformed setting, read on first use
        for line in invalid_settings(exc):
            click.echo(redact(line), err=True)
        sys.exit(EXIT_PERMANENT)
    except Exception as exc:
        unreachable = _database_error(exc, "OperationalError")
        if unreachable is None:
            raise
        # Transient for the tasks too: they retry it.
        line = f"error [database_unavailable] (transient): {unreachable.orig}"
        click.echo(redact(line), err=True)
        sys.exit(EXIT_TRANSIENT)
