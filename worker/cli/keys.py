"""`fcsync keys`: the Stripe accounts this deployment is configured with, as a person (or a
script, --json) checks them: never a secret, only each key's last four characters."""

from __future__ import annotations

import json
from typing import Any

import click

from worker.cli.exits import UsageLine
from worker.errors import ConfigurationError
from worker.settings import get_settings
from worker.stripe_keys import StripeKey
from worker.stripe_keys_file import load_stripe_keys

COLUMNS = ("name", "mode", "kind", "key", "webhook secrets", "connected accounts")


def key_summary(key: StripeKey) -> dict[str, Any]:
    """What may be shown of one configured account."""
    return {
        "name": key.name,
        "mode": key.mode,
        "kind": key.kind,
        "key_last4": key.last4,
        "webhook_secrets": len(key.webhook_secrets),
        "stripe_accounts": list(key.stripe_accounts),
    }


def _cells(row: dict[str, Any]) -> tuple[str, ...]:
    last4 = row["key_last4"]
    key = f"...{last4}" if last4 else ("(none)" if row["kind"] is None else "...")
    return (
        row["name"],
        row["mode"] or "-",
        row["kind"] or "-",
        key,
        str(row["webhook_secrets"]),
        ", ".join(row["stripe_accounts"]) or "any",
    )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def keys(as_json: bool) -> None:
    """The configured Stripe accounts: name, mode, key kind and last four, secrets, contexts."""
    try:
        configured = load_stripe_keys(get_settings())
    except ConfigurationError as exc:
        # A bad file is the user's to fix, like a bad argument: the fix is in the message.
        raise UsageLine(str(exc), code=exc.code) from None
    rows = [key_summary(k) for k in configured.keys]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(
            "no Stripe account configured: set STRIPE_API_KEY, or FCSYNC_STRIPE_ACCOUNTS", err=True
        )
        return
    table = [COLUMNS, *(_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    for line in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
