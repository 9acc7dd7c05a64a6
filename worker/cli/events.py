"""`fcsync events`: Stripe's event list read back into the webhook inbox, once, on demand."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from worker import contract
from worker.cli.exits import expected_errors
from worker.cli.inline import dispatch_or_inline, inline_option, only


@click.group()
def events() -> None:
    """Stripe's events and the webhook inbox."""


@events.command("sweep")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]),
    default=None,
    help="Read the events created since this time (UTC) instead of since the newest in the "
    "inbox: after the whole deployment was down, the start of the outage.",
)
@inline_option
@expected_errors
def events_sweep(since: datetime | None, inline: bool) -> None:
    """Read the events of the last hours (since the newest in the inbox) from Stripe's
    GET /v1/events into the inbox, as beat does every FCSYNC_EVENTS_SWEEP_S: after a webhook
    outage, this recovers every event Stripe still lists (30 days). With --inline the new
    events are handled, and the accounts they announce synced, in this process."""
    since_arg = {} if since is None else {"since": since.replace(tzinfo=UTC).isoformat()}
    dispatch_or_inline(
        contract.SWEEP_EVENTS,
        inline,
        only(contract.HANDLE_EVENT, contract.SYNC_TRANSACTIONS),
        **since_arg,
    )
