"""`fcsync`: the command line, an edge like tasks/ — it parses, calls and prints.

Exit codes: 0 ok, 2 usage, 3 permanent Stripe/data error, 4 transient error after retries.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import sys
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from worker import contract
from worker.errors import ConfigurationError, PermanentError, TransientError
from worker.records import Followup
from worker.settings import get_settings

F = TypeVar("F", bound=Callable[..., Any])
EXIT_PERMANENT = 3
EXIT_TRANSIENT = 4
# Inline mode retries a transient failure this many times (1, 2, 4, 8 s apart) before exit 4.
INLINE_RETRIES = 4


def expected_errors(fn: F) -> F:
    """Expected failures become one clear line and an exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PermanentError as exc:
            click.echo(f"error [{exc.code}]: {exc}", err=True)
            sys.exit(EXIT_PERMANENT)
        except TransientError as exc:
            click.echo(f"error [{exc.code}] (transient, gave up after retries): {exc}", err=True)
            sys.exit(EXIT_TRANSIENT)

    return wrapper  # type: ignore[return-value]


def _echo(line: str) -> None:
    click.echo(f"{datetime.now(UTC):%H:%M:%S} {line}")


@click.group()
@click.option("--log-level", default=None, help="Python log level (default FCSYNC_LOG_LEVEL).")
def cli(log_level: str | None) -> None:
    """fcsync keeps Stripe Financial Connections transactions synced into your database."""
    logging.basicConfig(
        level=(log_level or get_settings().fcsync_log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@cli.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@expected_errors
def db_upgrade(revision: str) -> None:
    """Apply migrations to DATABASE_URL."""
    from worker.db import upgrade_database

    upgrade_database(revision=revision)
    click.echo(f"database at {revision}")


@db.command("downgrade")
@click.argument("revision")
@expected_errors
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION ('base' drops everything)."""
    from worker.db import downgrade_database

    downgrade_database(revision=revision)
    click.echo(f"database at {revision}")


def _enqueue(task: str, **kwargs: Any) -> None:
    from worker.app import send_followup

    send_followup(Followup(task, kwargs))
    click.echo(f"enqueued {task} {json.dumps(kwargs, sort_keys=True)}")


def _run_inline(first: Followup, *, follow: Callable[[Followup], bool]) -> list[dict[str, Any]]:
    """Run a task and the follow-ups `follow` accepts in this process (no broker, no worker),
    honouring their countdowns and retrying transient errors with backoff."""
    from worker.app import app, uow

    app.loader.import_default_modules()  # the task modules named in celeryconfig.imports
    queue: deque[Followup] = deque([first])
    previous = uow.set_dispatch(queue.append)
    results: list[dict[str, Any]] = []
    try:
        while queue:
            item = queue.popleft()
            if item is not first and (not item.task.startswith("fcsync.") or not follow(item)):
                continue
            if item.countdown:
                time.sleep(item.countdown)
            for attempt in range(INLINE_RETRIES + 1):
                try:
                    result = app.tasks[item.task].run(**item.kwargs)
                    break
                except TransientError as exc:
                    if attempt == INLINE_RETRIES:
                        raise
                    _echo(f"{item.task}: transient error [{exc.code}], retrying")
                    time.sleep(2**attempt)
            results.append(result)
            _echo(f"{item.task.removeprefix('fcsync.')}: {_summary(result)}")
    finally:
        uow.set_dispatch(previous)
    return results


def _summary(result: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in result.items() if k != "account")


def _dispatch_or_inline(
    task: str, inline: bool, follow: Callable[[Followup], bool], **kwargs: Any
) -> None:
    if inline:
        _run_inline(Followup(task, kwargs), follow=follow)
    else:
        _enqueue(task, **kwargs)


def _only(*names: str) -> Callable[[Followup], bool]:
    return lambda f: f.task in names


inline_option = click.option(
    "--inline", is_flag=True, help="Run in this process instead of enqueueing for a worker."
)


@cli.command()
@click.argument("account")
@click.option("--no-subscribe", is_flag=True, help="Do not subscribe to Stripe's daily refresh.")
@inline_option
@expected_errors
def track(account: str, no_subscribe: bool, inline: bool) -> None:
    """Start keeping ACCOUNT (fca_...) in sync."""
    _dispatch_or_inline(
        contract.TRACK_ACCOUNT,
        inline,
        _only(contract.SYNC_TRANSACTIONS),
        account_id=account,
        subscribe=not no_subscribe,
    )


@cli.command()
@click.argument("account")
@click.option("--keep-subscription", is_flag=True, help="Leave Stripe's daily refresh on.")
@inline_option
@expected_errors
def untrack(account: str, keep_subscription: bool, inline: bool) -> None:
    """Stop scheduling ACCOUNT; its stored transactions stay."""
    _dispatch_or_inline(
        contract.UNTRACK_ACCOUNT,
        inline,
        _only(),
        account_id=account,
        unsubscribe=not keep_subscription,
    )


@cli.command()
@click.argument("account")
@click.option("--wait", is_flag=True, help="With --inline: poll until done, then sync.")
@inline_option
@expected_errors
def refresh(account: str, wait: bool, inline: bool) -> None:
    """Ask Stripe for a transaction refresh of ACCOUNT (only when Stripe allows one)."""
    if wait and not inline:
        raise click.UsageError("--wait needs --inline (a queued refresh completes in the worker)")
    follow = _only(contract.POLL_REFRESH, contract.SYNC_TRANSACTIONS) if wait else _only()
    _dispatch_or_inline(
        contract.REFRESH_ACCOUNT, inline, follow, account_id=account, source="manual"
    )


@cli.command()
@click.argument("account")
@click.option("--full", is_flag=True, help="Re-read the whole history, not just what changed.")
@inline_option
@expected_errors
def sync(account: str, full: bool, inline: bool) -> None:
    """Page ACCOUNT's transactions from Stripe into the database."""
    _dispatch_or_inline(
        contract.SYNC_TRANSACTIONS,
        inline,
        _only(contract.SYNC_TRANSACTIONS),
        account_id=account,
        full=full,
    )


@cli.command()
@click.argument("account", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@expected_errors
def status(account: str | None, as_json: bool) -> None:
    """Sync state per account: refresh, cursor, rows stored, freshness, last error."""
    from worker.db import session_scope
    from worker.reports import account_status

    with session_scope() as session:
        rows = account_status(session, account)
    if account and not rows:
        raise PermanentError(f"account {account} is not known to fcsync", code="unknown_account")
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="fcsync accounts")
    columns = [
        "account",
        "status",
        "tracked",
        "subscribed",
        "refresh",
        "cursor",
        "transactions",
        "last_synced_at",
        "last_error",
    ]
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["id"],
            row["status"],
            "yes" if row["tracked"] else "no",
            "yes" if row["subscribed"] else "no",
            f"{row['refresh_status'] or '-'} {row['refresh_id'] or ''}".strip(),
            row["cursor"] or "-",
            str(row["transactions"]),
            str(row["last_synced_at"] or "never"),
            row["last_error"] or "",
        )
    Console(width=200 if not sys.stdout.isatty() else None).print(table)


@cli.command()
@click.argument("account")
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


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--path", default="/webhooks/stripe", show_default=True)
@expected_errors
def webhooks(host: str, port: int, path: str) -> None:
    """Serve the Stripe webhook receiver (waitress) at http://HOST:PORT/PATH."""
    from worker.http import serve

    if get_settings().database_url.startswith("sqlite"):
        from worker.db import upgrade_database

        upgrade_database()
    click.echo(f"fcsync webhooks listening on http://{host}:{port}{path}")
    serve(host, port, path=path)


@cli.command()
@click.option("--concurrency", default=2, show_default=True, type=int)
@click.option("--host", default="127.0.0.1", show_default=True, help="Webhook receiver host.")
@click.option("--port", default=8000, show_default=True, type=int, help="Webhook receiver port.")
@click.option("--path", default="/webhooks/stripe", show_default=True)
@click.option("--no-webhooks", is_flag=True, help="Poll only; do not serve webhooks.")
@expected_errors
def run(concurrency: int, host: str, port: int, path: str, no_webhooks: bool) -> None:
    """Worker + beat + webhook receiver in one command (Ctrl-C stops all of them)."""
    from pathlib import Path

    from worker.db import upgrade_database
    from worker.supervisor import Supervisor, stack_children

    settings = get_settings()
    upgrade_database()
    webhooks_on = not no_webhooks and settings.stripe_webhook_secret is not None
    if not no_webhooks and not webhooks_on:
        click.echo(
            "STRIPE_WEBHOOK_SECRET is not set: running without the webhook receiver "
            "(refreshes complete by polling)"
        )
    broker = "embedded broker" if settings.uses_embedded_broker else settings.broker_url
    click.echo(f"fcsync run: database {settings.database_url.split('@')[-1]}, {broker}")
    children = stack_children(
        concurrency=concurrency,
        webhooks=webhooks_on,
        host=host,
        port=port,
        path=path,
        schedule=Path(settings.fcsync_embedded_broker_path).with_name("celerybeat-schedule"),
    )
    sys.exit(Supervisor(children).run())


@cli.command()
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--timeout", default=110.0, show_default=True, type=float, help="Seconds.")
def demo(seed: int, timeout: float) -> None:
    """Run the whole job end to end against a seeded emulator and check the result."""
    from worker.demo import run_demo

    sys.exit(run_demo(seed=seed, timeout_s=timeout))


def _register_emulator() -> None:
    from emulator.cli import emulator_command

    cli.add_command(emulator_command, "emulator")


_register_emulator()


def main() -> None:
    try:
        cli()
    except ConfigurationError as exc:
        click.echo(f"error [{exc.code}]: {exc}", err=True)
        sys.exit(EXIT_PERMANENT)
