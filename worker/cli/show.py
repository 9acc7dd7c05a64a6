"""What fcsync has stored, shown to a person: `status` (a table, or JSON) and `transactions`
(lines, Stripe's JSON shape, or CSV)."""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, datetime
from typing import Any

import click

from worker.cli.exits import UsageLine, expected_errors
from worker.cli.guards import account_argument, account_id, known_account
from worker.errors import ErrorCode, PermanentError
from worker.settings import get_settings


@click.command()
@click.argument("account", required=False, callback=account_id)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--context",
    metavar="CONTEXT",
    help="Only the accounts of this Stripe account context: `platform` or a connected acct_ id.",
)
@expected_errors
def status(account: str | None, as_json: bool, context: str | None) -> None:
    """Sync state per account: refresh, cursor, rows stored, next due, why not fresh, last error.
    Accounts come by context (the platform's first), then by id.

    --json times are Unix seconds (UTC), as in Stripe's objects."""
    from worker.clock import Clock
    from worker.db import session_scope
    from worker.events_sweep import EVENTS_RETENTION, retention_gap
    from worker.reports import account_status, stored_contexts

    now = Clock(get_settings().fcsync_clock_url).now()
    with session_scope() as session:
        rows = account_status(session, account, now=now)
        gap = retention_gap(session, now=now)
        stored = stored_contexts(session) if context is not None else []
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
        rows = _in_context(rows, context, stored, account=account)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from worker.cli.status_view import print_status

    print_status(rows, terminal=sys.stdout.isatty())


def _in_context(
    rows: list[dict[str, Any]], context: str, stored: list[str | None], *, account: str | None
) -> list[dict[str, Any]]:
    from worker.contexts import context_name, unknown_context

    why = unknown_context(context, stored)
    if why is not None:
        raise UsageLine(f"--context: {why}", code="bad_context")
    shown = [row for row in rows if context_name(row["stripe_account"]) == context]
    if account and not shown:
        # An empty table for a named account would read as "not tracked": say where it lives.
        where = context_name(rows[0]["stripe_account"])
        raise UsageLine(
            f"--context: account {account} lives in {where}, not {context}", code="bad_context"
        )
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
