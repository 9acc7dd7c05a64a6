"""The account commands (track, untrack, refresh, sync): each enqueues its task for a worker, or
with --inline runs it and the follow-ups it needs in this process."""

from __future__ import annotations

import click

from worker import contract
from worker.cli.exits import expected_errors
from worker.cli.guards import (
    account_argument,
    after_cooldown,
    known_account,
    stripe_account_kwargs,
    stripe_account_option,
)
from worker.cli.inline import dispatch_or_inline, inline_option, only


@click.command()
@account_argument
@click.option("--no-subscribe", is_flag=True, help="Do not subscribe to Stripe's daily refresh.")
@stripe_account_option
@inline_option
@expected_errors
def track(account: str, no_subscribe: bool, stripe_account: str | None, inline: bool) -> None:
    """Start keeping ACCOUNT (fca_...) in sync."""
    dispatch_or_inline(
        contract.TRACK_ACCOUNT,
        inline,
        only(contract.SYNC_TRANSACTIONS),
        account_id=account,
        subscribe=not no_subscribe,
        **stripe_account_kwargs(stripe_account),
    )


@click.command()
@account_argument
@click.option("--keep-subscription", is_flag=True, help="Leave Stripe's daily refresh on.")
@stripe_account_option
@inline_option
@expected_errors
def untrack(
    account: str, keep_subscription: bool, stripe_account: str | None, inline: bool
) -> None:
    """Stop scheduling ACCOUNT; its stored transactions stay."""
    dispatch_or_inline(
        contract.UNTRACK_ACCOUNT,
        inline,
        only(),
        account_id=account,
        unsubscribe=not keep_subscription,
        **stripe_account_kwargs(stripe_account),
    )


@click.command()
@account_argument
@click.option("--wait", is_flag=True, help="With --inline: poll until done, then sync.")
@stripe_account_option
@inline_option
@expected_errors
def refresh(account: str, wait: bool, stripe_account: str | None, inline: bool) -> None:
    """Ask Stripe for a transaction refresh of ACCOUNT (only when Stripe allows one)."""
    if wait and not inline:
        raise click.UsageError("--wait needs --inline (a queued refresh completes in the worker)")
    # The task would start tracking an account it has never seen (other services rely on
    # that); from the command line that is more likely a typo, so it needs `track` first.
    known = known_account(account, "refresh")
    follow = only(contract.POLL_REFRESH, contract.SYNC_TRANSACTIONS) if wait else only()
    results = dispatch_or_inline(
        contract.REFRESH_ACCOUNT,
        inline,
        follow,
        account_id=account,
        source="manual",
        **stripe_account_kwargs(stripe_account),
    )
    if results and results[0]["outcome"] == "cooldown":
        click.echo(after_cooldown(known))


@click.command()
@account_argument
@click.option("--full", is_flag=True, help="Re-read the whole history, not just what changed.")
@stripe_account_option
@inline_option
@expected_errors
def sync(account: str, full: bool, stripe_account: str | None, inline: bool) -> None:
    """Page ACCOUNT's transactions from Stripe into the database."""
    known_account(account, "sync")
    dispatch_or_inline(
        contract.SYNC_TRANSACTIONS,
        inline,
        only(contract.SYNC_TRANSACTIONS),
        account_id=account,
        full=full,
        **stripe_account_kwargs(stripe_account),
    )
