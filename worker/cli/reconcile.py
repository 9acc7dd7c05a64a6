"""`fcsync reconcile`: re-read an account's recent window from Stripe and heal the stored rows
(worker/reconcile.py), queued for a worker or, with --inline, here."""

from __future__ import annotations

import click

from worker import contract
from worker.cli.exits import UsageLine, expected_errors
from worker.cli.guards import (
    account_argument,
    known_account,
    stripe_account_kwargs,
    stripe_account_option,
    stripe_key_option,
)
from worker.cli.inline import dispatch_or_inline, inline_option, only

# Stripe lists up to the last 180 days (worker/reconcile.py's MAX_DAYS, not imported: the
# command parses before it loads the services).
MAX_DAYS = 180


def days_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    """--days as one line naming the fix (click's own message prints the whole synopsis)."""
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_DAYS:
        raise UsageLine(
            f"--days must be a whole number of days from 1 to {MAX_DAYS} (Stripe lists up to "
            f"{MAX_DAYS} days of transactions), got {value[:20]!r}",
            code="bad_days",
        )
    return int(value)


@click.command()
@account_argument
@click.option(
    "--days",
    metavar="N",
    callback=days_option,
    help="Re-read the transactions of the last N days (default FCSYNC_RECONCILE_DAYS).",
)
@stripe_account_option
@stripe_key_option
@inline_option
@expected_errors
def reconcile(
    account: str,
    days: int | None,
    stripe_account: str | None,
    stripe_key: str | None,
    inline: bool,
) -> None:
    """Re-read ACCOUNT's recent transactions from Stripe and repair the stored ones: missing
    rows inserted, rows that differ rewritten (newest `updated` wins), pending rows Stripe no
    longer lists marked vanished. The sync cursor does not move."""
    known_account(account, "reconcile")
    window = {} if days is None else {"days": days}
    results = dispatch_or_inline(
        contract.RECONCILE_ACCOUNT,
        inline,
        only(),
        account_id=account,
        **window,
        **stripe_account_kwargs(stripe_account, stripe_key),
    )
    for result in results:
        for transaction in result["vanished_ids"]:
            click.echo(f"vanished: {transaction} (pending, no longer listed by Stripe)")
        if result["outcome"] == "truncated":
            click.echo(
                f"the window held more than {result['pages']} pages: it was repaired as far as "
                "it was read and nothing was marked vanished; run again with a smaller --days"
            )
