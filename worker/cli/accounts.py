"""The account commands (track, untrack, refresh, sync): each enqueues its task for a worker, or
with --inline runs it and the follow-ups it needs in this process."""

from __future__ import annotations

import click

from worker import contract
from worker.cli.exits import UsageLine, expected_errors
from worker.cli.guards import (
    account_argument,
    after_cooldown,
    confirm_purge,
    feature_list,
    known_account,
    purge_stored,
    stripe_account_kwargs,
    stripe_account_option,
    stripe_key_option,
    tracked_features,
)
from worker.cli.inline import dispatch_or_inline, inline_option, only


@click.command()
@account_argument
@click.option("--no-subscribe", is_flag=True, help="Do not subscribe to Stripe's daily refresh.")
@click.option(
    "--features",
    "wanted",
    metavar="LIST",
    callback=feature_list,
    help="What to keep fresh, comma-separated: any of transactions, balances, ownership "
    "(each needs the account's permission of that name). Default: what is tracked already, "
    "transactions for a new account.",
)
@stripe_account_option
@stripe_key_option
@inline_option
@expected_errors
def track(
    account: str,
    no_subscribe: bool,
    wanted: list[str] | None,
    stripe_account: str | None,
    stripe_key: str | None,
    inline: bool,
) -> None:
    """Start keeping ACCOUNT (fca_...) in sync."""
    features = {} if wanted is None else {"features": wanted}
    dispatch_or_inline(
        contract.TRACK_ACCOUNT,
        inline,
        only(contract.SYNC_TRANSACTIONS),
        account_id=account,
        subscribe=not no_subscribe,
        **features,
        **stripe_account_kwargs(stripe_account, stripe_key),
    )


@click.command()
@account_argument
@click.option("--keep-subscription", is_flag=True, help="Leave Stripe's daily refresh on.")
@click.option(
    "--purge",
    is_flag=True,
    help="Then delete ACCOUNT's stored data (transactions, refreshes, inbox events, the "
    "account row); untracks in this process first. Asks on a terminal.",
)
@click.option("--yes", is_flag=True, help="With --purge: do not ask for confirmation.")
@stripe_account_option
@stripe_key_option
@inline_option
@expected_errors
def untrack(
    account: str,
    keep_subscription: bool,
    purge: bool,
    yes: bool,
    stripe_account: str | None,
    stripe_key: str | None,
    inline: bool,
) -> None:
    """Stop scheduling ACCOUNT; its stored transactions stay (unless --purge)."""
    if yes and not purge:
        raise UsageLine(
            "--yes confirms --purge: add --purge, or leave --yes out", code="yes_without_purge"
        )
    if purge:
        known_account(account, "purge")
        if not yes:
            confirm_purge(account)
    dispatch_or_inline(
        contract.UNTRACK_ACCOUNT,
        # A worker's untrack could land after the purge and store the account again.
        inline or purge,
        only(),
        account_id=account,
        unsubscribe=not keep_subscription,
        **stripe_account_kwargs(stripe_account, stripe_key),
    )
    if purge:
        purged = purge_stored(account)
        click.echo(
            f"purged {account}: {purged.transactions} transactions, {purged.refreshes} "
            f"refreshes, {purged.events} inbox events and the account row"
        )


@click.command()
@account_argument
@click.option("--wait", is_flag=True, help="With --inline: poll until done, then sync.")
@stripe_account_option
@stripe_key_option
@inline_option
@expected_errors
def refresh(
    account: str, wait: bool, stripe_account: str | None, stripe_key: str | None, inline: bool
) -> None:
    """Ask Stripe to refresh every feature ACCOUNT is tracked with (transactions, balances,
    ownership), each only when Stripe allows one."""
    if wait and not inline:
        raise click.UsageError("--wait needs --inline (a queued refresh completes in the worker)")
    # The task would start tracking an account it has never seen (other services rely on
    # that); from the command line that is more likely a typo, so it needs `track` first.
    known = known_account(account, "refresh")
    follow = only(contract.POLL_REFRESH, contract.SYNC_TRANSACTIONS) if wait else only()
    # Each feature through its own gate; transactions, the default, named as before.
    for feature in tracked_features(known):
        done = dispatch_or_inline(
            contract.REFRESH_ACCOUNT,
            inline,
            follow,
            account_id=account,
            source="manual",
            **({} if feature == "transactions" else {"feature": feature}),
            **stripe_account_kwargs(stripe_account, stripe_key),
        )
        if done and done[0]["outcome"] == "cooldown":
            if feature == "transactions":
                click.echo(after_cooldown(known))
            else:
                click.echo(f"{feature}: Stripe allows the next refresh at {done[0]['retry_at']}")


@click.command()
@account_argument
@click.option("--full", is_flag=True, help="Re-read the whole history, not just what changed.")
@stripe_account_option
@stripe_key_option
@inline_option
@expected_errors
def sync(
    account: str, full: bool, stripe_account: str | None, stripe_key: str | None, inline: bool
) -> None:
    """Page ACCOUNT's transactions from Stripe into the database."""
    known_account(account, "sync")
    dispatch_or_inline(
        contract.SYNC_TRANSACTIONS,
        inline,
        only(contract.SYNC_TRANSACTIONS),
        account_id=account,
        full=full,
        **stripe_account_kwargs(stripe_account, stripe_key),
    )
