"""What `fcsync` checks before it acts (account ids, known accounts, migration revisions, a
destructive downgrade) and how it words what a user meets at its edges (an unreachable broker,
Stripe's refresh cooldown): one line naming the problem and the fix."""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from worker import log_context
from worker.cli.exits import EXIT_DECLINED, UsageLine
from worker.contexts import CONNECTED_ACCOUNT_ID
from worker.errors import ErrorCode, PermanentError, TransientError
from worker.records import Followup
from worker.redaction import mask_url, redact
from worker.settings import get_settings

if TYPE_CHECKING:
    from models import Account

# What Stripe's FC account ids look like; the accounts.id column holds 64 characters.
ACCOUNT_ID = re.compile(r"fca_[A-Za-z0-9]{1,60}")


def account_id(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """A click callback: checked before anything is enqueued, since a worker could only log
    a bad id and drop the task. A good one goes on the command's log lines."""
    if value is not None and not ACCOUNT_ID.fullmatch(value):
        raise UsageLine(
            f"{value!r} is not a Financial Connections account id: those look like "
            "fca_1Abc... (the `id` of a financial_connections.account, not an acct_ id)",
            code="bad_account_id",
        )
    log_context.note(account_id=value)
    return value


account_argument = click.argument("account", callback=account_id)


def connected_account_id(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> str | None:
    """A click callback for --stripe-account, checked before anything is enqueued."""
    if value is not None and not CONNECTED_ACCOUNT_ID.fullmatch(value):
        raise UsageLine(
            f"{value!r} is not a Stripe account id: a Connect connected account looks like "
            "acct_1Abc... (leave --stripe-account out for the platform's own accounts)",
            code="bad_stripe_account",
        )
    return value


def stripe_account_kwargs(stripe_account: str | None) -> dict[str, str]:
    """The task argument for --stripe-account, only when given: the platform's tasks keep the
    arguments they always had."""
    return {} if stripe_account is None else {"stripe_account": stripe_account}


stripe_account_option = click.option(
    "--stripe-account",
    callback=connected_account_id,
    metavar="ACCT",
    help="The Connect connected account ACCOUNT lives in (sent as Stripe-Account); "
    "default: the platform, or the context fcsync stored for ACCOUNT.",
)


def known_account(account: str, command: str) -> Account:
    """The stored account, or a permanent error with the hint to track it first."""
    from worker import repository
    from worker.db import session_scope

    with session_scope() as session:
        row = repository.get_account(session, account)
    if row is None:
        raise PermanentError(
            f"account {account} is not known to fcsync, so there is nothing to {command}: "
            f"run `fcsync track {account}` first",
            code=ErrorCode.UNKNOWN_ACCOUNT,
        )
    return row


@contextmanager
def known_revision(revision: str) -> Iterator[None]:
    """Alembic's CommandError (an unknown revision) as one usage line, checked before alembic
    connects and logs, unless the revision is relative to the database's own (+1, -1)."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from worker.db import alembic_config

    try:
        if not re.match(r"[+-]\d", revision):
            ScriptDirectory.from_config(alembic_config()).get_revisions(revision)
        yield
    except CommandError as exc:
        raise UsageLine(
            f"{exc}: use `head`, `base`, a revision id from migrations/versions or a relative "
            "step such as -1",
            code="bad_revision",
        ) from None


def confirm_downgrade(revision: str) -> None:
    """A downgrade drops tables and their rows: ask on a terminal, refuse elsewhere."""
    where = mask_url(get_settings().database_url)
    if not sys.stdin.isatty():
        raise UsageLine(
            f"downgrading {where} to {revision} drops tables and their data: "
            "add --yes to confirm without a terminal",
            code="confirmation_required",
        )
    if not click.confirm(
        f"Downgrade {where} to {revision}? Tables and their data will be dropped", default=False
    ):
        click.echo("nothing changed", err=True)
        sys.exit(EXIT_DECLINED)


# A user waits for the command: one quick retry of the publish, and redis-py's socket
# timeouts (none by default) bounded, so a broker that drops or never answers costs seconds.
CLI_PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0.2, "interval_step": 0.5}
CLI_REDIS_TIMEOUTS = {"socket_connect_timeout": 3.0, "socket_timeout": 3.0}


def publish(followup: Followup) -> None:
    """Send one task from the command line; an unreachable broker is a transient error that
    names it (password masked) instead of kombu's traceback."""
    from kombu.exceptions import OperationalError as BrokerError

    from worker.app import app, send_followup

    broker = get_settings().broker_url
    app.conf.task_publish_retry_policy = CLI_PUBLISH_RETRY
    if broker.startswith(("redis://", "rediss://")):
        app.conf.broker_transport_options = {
            **app.conf.broker_transport_options,
            **CLI_REDIS_TIMEOUTS,
        }
    try:
        send_followup(followup)
    except (BrokerError, OSError) as exc:
        raise TransientError(
            f"cannot reach the broker at {mask_url(broker)}: {redact(str(exc))}",
            code="broker_unavailable",
        ) from None


def cooldown(retry_at: str, now: datetime) -> str:
    """When Stripe allows the next refresh, as a moment (UTC) and as a wait."""
    moment = datetime.fromisoformat(retry_at).astimezone(UTC)
    # Rounded up: a wait under a second is still one, never "in 0s".
    wait = max(0, math.ceil((moment - now).total_seconds()))
    hours, rest = divmod(wait, 3600)
    parts = [f"{hours}h"] if hours else []
    parts += [f"{rest // 60}m"] if rest >= 60 else []
    parts += [] if hours else [f"{rest % 60}s"]
    return (
        f"cooldown: Stripe allows the next refresh at {moment:%Y-%m-%d %H:%M:%S} UTC "
        f"(in {' '.join(parts)})"
    )


def after_cooldown(account: Account) -> str:
    """What the user can do about a cooldown: who refreshes the account later, and now."""
    later = (
        "the account is tracked, so beat (`fcsync run`) refreshes it then"
        if account.tracked
        else f"it is not tracked, so run `fcsync refresh {account.id}` again then"
    )
    return f"{later}; meanwhile `fcsync sync {account.id}` stores what Stripe already has"
