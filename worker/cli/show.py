"""What fcsync has stored, shown to a person: `status` (a table, or JSON) and `transactions`
(lines, Stripe's JSON shape, or CSV)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from worker.cli.exits import UsageLine, expected_errors
from worker.cli.guards import account_argument, account_id, known_account
from worker.errors import ErrorCode, PermanentError
from worker.settings import Settings, get_settings


@click.command()
@click.argument("account", required=False, callback=account_id)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--context",
    metavar="CONTEXT",
    help="Only the accounts of this Stripe account context: `platform` or a connected acct_ id.",
)
@click.option(
    "--stripe-key-name",
    "stripe_key",
    metavar="NAME",
    help="Only the accounts reached with this Stripe key: `default` (STRIPE_API_KEY) or a "
    "name in FCSYNC_STRIPE_ACCOUNTS.",
)
@expected_errors
def status(account: str | None, as_json: bool, context: str | None, stripe_key: str | None) -> None:
    """Sync state per account: refresh, cursor, rows stored, next due, why not fresh, last error.
    Accounts come by Stripe key when more than one is configured or stored (`default` first),
    then by context (the platform's first), then by id.

    --json times are Unix seconds (UTC), as in Stripe's objects."""
    from worker.clock import Clock
    from worker.contexts import unknown_context
    from worker.db import session_scope
    from worker.inbox import EVENTS_RETENTION, retention_gap
    from worker.reports import account_status, known_keys, sections, stored_contexts, stored_keys
    from worker.stripe_keys import unknown_key_name

    settings = get_settings()
    now = Clock(settings.fcsync_clock_url).now()
    with session_scope() as session:
        rows = account_status(session, account, now=now)
        gap = retention_gap(session, now=now)
        stored = stored_contexts(session) if context is not None else []
        keys = known_keys(_configured_key_names(settings), stored_keys(session))
    if gap is not None:
        # On stderr: the table and the JSON stay what scripts read.
        click.echo(
            f"warning: the newest event in the webhook inbox is from {gap:%Y-%m-%d %H:%M} UTC, "
            f"older than the {EVENTS_RETENTION.days} days Stripe lists events for: events since "
            "then cannot be read back (beat's reconciliation still finds every refresh)",
            err=True,
        )
    if account and not rows:
        raise PermanentError(
            f"account {account} is not known to fcsync", code=ErrorCode.UNKNOWN_ACCOUNT
        )
    if context is not None:
        why = unknown_context(context, stored)
        rows = _only(rows, "--context", context, why, "bad_context", account, _context_of)
    if stripe_key is not None:
        why = unknown_key_name(stripe_key, keys)
        rows = _only(
            rows, "--stripe-key-name", stripe_key, why, "unknown_stripe_key", account, _key_of
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from worker.cli.status_view import print_status

    # One table as ever for a single key; with several, a section per (key, context).
    grouped = sections(rows) if len(keys) > 1 else None
    print_status(rows, terminal=sys.stdout.isatty(), sections=grouped)


def _configured_key_names(settings: Settings) -> list[str]:
    """The configured Stripe keys' names; none when the configuration cannot be read (status
    still shows what is stored, and the stored keys still group it)."""
    from worker.errors import ConfigurationError
    from worker.stripe_keys_file import load_stripe_keys

    try:
        return load_stripe_keys(settings).names()
    except ConfigurationError:
        return []


def _context_of(row: dict[str, Any]) -> tuple[str, str]:
    from worker.contexts import context_name

    return "lives in", context_name(row["stripe_account"])


def _key_of(row: dict[str, Any]) -> tuple[str, str]:
    return "is reached with the Stripe key", str(row["stripe_key"])


def _only(
    rows: list[dict[str, Any]],
    option: str,
    value: str,
    why: str | None,
    code: str,
    account: str | None,
    of: Callable[[dict[str, Any]], tuple[str, str]],
) -> list[dict[str, Any]]:
    """The rows whose `of` (how it reads, what) is `value`; a value that names nothing known
    is a usage error."""
    if why is not None:
        raise UsageLine(f"{option}: {why}", code=code)
    shown = [row for row in rows if of(row)[1] == value]
    if account and not shown:
        # An empty table for a named account would read as "not tracked": say where it lives.
        verb, where = of(rows[0])
        raise UsageLine(f"{option}: account {account} {verb} {where}, not {value}", code=code)
    return shown


@click.command()
@account_argument
@click.option("--json", "as_json", is_flag=True, help="JSON array in Stripe's transaction shape.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row.")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Only transactions transacted on or after this date (UTC).",
)
@expected_errors
def transactions(account: str, as_json: bool, as_csv: bool, since: datetime | None) -> None:
    """Stored transactions of ACCOUNT, newest first."""
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    from worker.db import session_scope
    from worker.reports import stored_transactions

    since_ts = int(since.replace(tzinfo=UTC).timestamp()) if since else None
    with session_scope() as session:
        rows = stored_transactions(session, account, since=since_ts)
    if not rows:
        known_account(account, "show")  # an unknown account is an error, as for `status`
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    fields = [
        "id",
        "status",
        "amount",
        "currency",
        "transacted_at",
        "posted_at",
        "void_at",
        "updated",
        "transaction_refresh",
        "description",
    ]
    flat = [{**{k: r[k] for k in fields if k in r}, **r["status_transitions"]} for r in rows]
    if as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=fields)
        writer.writeheader()
        writer.writerows({k: row.get(k) for k in fields} for row in flat)
        return
    for row in flat:
        when = datetime.fromtimestamp(row["transacted_at"], tz=UTC).date()
        click.echo(
            f"{row['id']}  {when}  {row['status']:<7} {row['amount']:>10} "
            f"{row['currency']}  {row['description']}"
        )
