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
    from worker.tracking import PurgeResult

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


def configured_key_name(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> str | None:
    """A click callback for --stripe-key-name: a name of a configured key, checked before
    anything is enqueued (a worker would refuse it with `unknown_stripe_key`)."""
    if value is None:
        return None
    from worker.stripe_keys_file import load_stripe_keys

    names = load_stripe_keys(get_settings()).names()
    if value not in names:
        raise UsageLine(
            f"no configured Stripe key is named {value!r}: give one of "
            f"{', '.join(names) or '(none configured)'} (`fcsync keys` lists them), or leave "
            "--stripe-key-name out for the account's stored key",
            code="unknown_stripe_key",
        )
    return value


def stripe_account_kwargs(stripe_account: str | None, stripe_key: str | None) -> dict[str, str]:
    """The task arguments for --stripe-account and --stripe-key-name, only when given: the
    single-key platform's tasks keep the arguments they always had."""
    given = {"stripe_account": stripe_account, "stripe_key": stripe_key}
    return {name: value for name, value in given.items() if value is not None}


stripe_account_option = click.option(
    "--stripe-account",
    callback=connected_account_id,
    metavar="ACCT",
    help="The Connect connected account ACCOUNT lives in (sent as Stripe-Account); "
    "default: the platform, or the context fcsync stored for ACCOUNT.",
)

stripe_key_option = click.option(
    "--stripe-key-name",
    "stripe_key",
    callback=configured_key_name,
    metavar="NAME",
    help="The configured Stripe key (FCSYNC_STRIPE_ACCOUNTS) ACCOUNT is reached with; "
    "default: the key fcsync stored for ACCOUNT, else `default` (STRIPE_API_KEY).",
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


def tracked_features(account: Account) -> list[str]:
    """The features the stored account is tracked with: transactions first, if it is."""
    from worker import feature_store
    from worker.db import session_scope

    with session_scope() as session:
        optional = [f.feature for f in feature_store.features_of(session, account.id)]
    return (["transactions"] if account.transactions_tracked else []) + optional


def feature_list(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> list[str] | None:
    """A click callback for --features: a comma-separated list the task would accept."""
    from worker.refresh_gate import FEATURES

    if value is None:
        return None
    wanted = [f.strip() for f in value.split(",") if f.strip()]
    unknown = [f for f in wanted if f not in FEATURES]
    if unknown or not wanted:
        raise UsageLine(
            f"--features {value!r}: name one or more of transactions, balances, ownership, "
            "comma-separated (e.g. --features transactions,balances or --features balances)",
            code="bad_features",
        )
    return list(dict.fromkeys(wanted))


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
    _confirm(
        f"downgrading {where} to {revision} drops tables and their data",
        f"Downgrade {where} to {revision}? Tables and their data will be dropped",
    )


def confirm_purge(account: str) -> None:
    """A purge deletes what fcsync stored about the account: ask on a terminal, refuse
    elsewhere."""
    where = mask_url(get_settings().database_url)
    _confirm(
        f"purging {account} deletes its stored transactions, refreshes and events from {where}",
        f"Untrack {account} and delete its stored transactions, refreshes and events from {where}?",
    )


def _confirm(consequence: str, question: str) -> None:
    if not sys.stdin.isatty():
        raise UsageLine(
            f"{consequence}: add --yes to confirm without a terminal",
            code="confirmation_required",
        )
    if not click.confirm(question, default=False):
        click.echo("nothing changed", err=True)
        sys.exit(EXIT_DECLINED)


def purge_stored(account: str) -> PurgeResult:
    """Delete what fcsync stored about the (untracked) account, in one transaction."""
    from worker.db import session_scope
    from worker.tracking import purge_account

    with session_scope() as session:
        return purge_account(session, account)


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
