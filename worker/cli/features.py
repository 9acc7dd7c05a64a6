"""What fcsync stored of an account's balances and owners, shown to a person: `balances`
(lines, Stripe's balance shape as JSON, or CSV) and `owners` (lines, or Stripe's owner JSON)."""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, datetime
from typing import Any

import click

from worker.cli.exits import expected_errors
from worker.cli.guards import account_argument, known_account

CSV_FIELDS = ["as_of", "type", "currency", "current", "cash_available", "credit_used"]


def _amounts(shaped: dict[str, Any], key: str, inner: str) -> dict[str, int] | None:
    part = shaped.get(key)
    return part.get(inner) if isinstance(part, dict) else None


@click.command()
@account_argument
@click.option("--json", "as_json", is_flag=True, help="JSON array in Stripe's balance shape.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row, a line per currency.")
@expected_errors
def balances(account: str, as_json: bool, as_csv: bool) -> None:
    """Stored balance history of ACCOUNT, newest first (track it with --features ...,balances)."""
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    from worker.db import session_scope
    from worker.feature_reports import stored_balances

    with session_scope() as session:
        rows = stored_balances(session, account)
    if not rows:
        known_account(account, "show")  # an unknown account is an error, as for `status`
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in rows:
            # One line per currency: the maps Stripe keys by currency, flattened.
            for currency, current in row["current"].items():
                writer.writerow(
                    {
                        "as_of": row["as_of"],
                        "type": row["type"],
                        "currency": currency,
                        "current": current,
                        "cash_available": (_amounts(row, "cash", "available") or {}).get(currency),
                        "credit_used": (_amounts(row, "credit", "used") or {}).get(currency),
                    }
                )
        return
    for row in rows:
        when = f"{datetime.fromtimestamp(row['as_of'], tz=UTC):%Y-%m-%d %H:%M:%S}"
        extra = (
            f"available {_amounts(row, 'cash', 'available')}"
            if row["type"] == "cash"
            else f"used {_amounts(row, 'credit', 'used')}"
        )
        click.echo(f"{when}  {row['type']:<6} current {row['current']}  {extra}")


@click.command()
@account_argument
@click.option("--json", "as_json", is_flag=True, help="JSON array of Stripe's owner objects.")
@expected_errors
def owners(account: str, as_json: bool) -> None:
    """Owners of ACCOUNT's latest ownership (track it with --features ...,ownership)."""
    from worker.db import session_scope
    from worker.feature_reports import stored_owners

    with session_scope() as session:
        rows = stored_owners(session, account)
    if not rows:
        known_account(account, "show")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        contact = ", ".join(v for v in (row["email"], row["phone"], row["raw_address"]) if v)
        click.echo(f"{row['id']}  {row['name']}" + (f"  ({contact})" if contact else ""))
