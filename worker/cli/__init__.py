"""`fcsync`: the command line, an edge like tasks/ — it parses, calls and prints.

Exit codes: 0 ok, 1 declined at a prompt, 2 usage or bad id, 3 permanent error (Stripe's, an
unknown account, no schema), 4 transient error after retries (Stripe, an unreachable broker or DB).
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import click

from worker import contract
from worker.cli.guards import (
    account_id,
    after_cooldown,
    confirm_downgrade,
    cooldown,
    known_account,
    known_revision,
    publish,
)
from worker.errors import ConfigurationError, PermanentError, TransientError
from worker.logs import configure_logging, redacting
from worker.records import Followup
from worker.redaction import mask_url, redact
from worker.settings import LOG_LEVELS, get_settings

F = TypeVar("F", bound=Callable[..., Any])
EXIT_PERMANENT = 3
EXIT_TRANSIENT = 4
# Inline mode retries a transient failure this many times (FCSYNC_INLINE_RETRY_S doubling:
# 1, 2, 4, 8 s by default, about as long as a 429 storm lasts) before exit 4.
INLINE_RETRIES = 4
# Outcomes the services record on the account instead of raising: permanent conditions that
# retrying cannot change, so --inline exits 3 with the recorded error code.
PERMANENT_OUTCOMES = {
    "inactive": (
        "account_inactive",
        "the account is not active at Stripe (inactive or disconnected); Stripe refuses refreshes",
    ),
    "no_permission": (
        "missing_permission",
        "the account lacks the transactions permission; relink it with "
        "permissions=['transactions']",
    ),
    "gone": (
        "account_gone",
        "Stripe no longer knows the account (404); fcsync stopped refreshing it",
    ),
}


def expected_errors(fn: F) -> F:
    """Expected failures become one clear line and an exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PermanentError as exc:
            click.echo(redact(f"error [{exc.code}]: {exc}"), err=True)
            sys.exit(EXIT_PERMANENT)
        except TransientError as exc:
            click.echo(
                redact(f"error [{exc.code}] (transient, gave up after retries): {exc}"), err=True
            )
            sys.exit(EXIT_TRANSIENT)

    return wrapper  # type: ignore[return-value]


def _echo(line: str) -> None:
    click.echo(f"{datetime.now(UTC):%H:%M:%S} {line}")


@click.group()
@click.version_option(package_name="fcsync", message="fcsync %(version)s")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default=None,
    help="Log level (default FCSYNC_LOG_LEVEL).",
)
def cli(log_level: str | None) -> None:
    """fcsync keeps Stripe Financial Connections transactions synced into your database."""
    configure_logging(log_level or get_settings().fcsync_log_level)


@cli.group()
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@expected_errors
def db_upgrade(revision: str) -> None:
    """Apply migrations to DATABASE_URL."""
    from worker.db import upgrade_database

    with known_revision(revision):
        upgrade_database(revision=revision)
    click.echo(f"database at {revision}")


@db.command("downgrade")
@click.argument("revision")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (drops tables and data).")
@expected_errors
def db_downgrade(revision: str, yes: bool) -> None:
    """Revert migrations down to REVISION ('base' drops everything)."""
    from worker.db import downgrade_database

    if not yes:
        confirm_downgrade(revision)
    with known_revision(revision):
        downgrade_database(revision=revision)
    click.echo(f"database at {revision}")


def _enqueue(task: str, **kwargs: Any) -> None:
    publish(Followup(task, kwargs))
    click.echo(f"enqueued {task} {json.dumps(kwargs, sort_keys=True)}")


def _run_inline(first: Followup, *, follow: Callable[[Followup], bool]) -> list[dict[str, Any]]:
    """Run a task and the follow-ups `follow` accepts in this process (no broker, no worker),
    honouring their countdowns and retrying transient errors with backoff."""
    from tasks.sync import page_hook
    from worker.app import app, uow
    from worker.db import require_schema

    require_schema()  # before the first Stripe call: its answer could not be stored anyway
    # A permanent failure ends the command with its own one-line error: the unit of work's
    # log line for the same failure would only repeat it.
    logging.getLogger("worker.unit_of_work").setLevel(logging.CRITICAL)
    app.loader.import_default_modules()  # the task modules named in celeryconfig.imports
    queue: deque[Followup] = deque([first])
    previous = uow.set_dispatch(queue.append)
    results: list[dict[str, Any]] = []
    first_wait = uow.settings.fcsync_inline_retry_s
    with _progress_report() as report:
        watching = page_hook.set(report.page)
        try:
            while queue:
                item = queue.popleft()
                if item is not first and (not item.task.startswith("fcsync.") or not follow(item)):
                    continue
                if item.countdown:
                    report.waiting(item)
                    time.sleep(item.countdown)
                report.running(item)
                for attempt in range(INLINE_RETRIES + 1):
                    try:
                        result = app.tasks[item.task].run(**item.kwargs)
                        break
                    except TransientError as exc:
                        if attempt == INLINE_RETRIES:
                            raise
                        report.retrying(item, exc)
                        time.sleep(first_wait * 2**attempt)
                results.append(result)
                report.finished(item, result)
        finally:
            uow.set_dispatch(previous)
            page_hook.reset(watching)
        report.done()
    for result in results:
        if result.get("outcome") in PERMANENT_OUTCOMES:
            code, why = PERMANENT_OUTCOMES[result["outcome"]]
            raise PermanentError(f"{result['account']}: {why}", code=code)
    return results


def _short(task: str) -> str:
    return task.removeprefix("fcsync.")


class InlineReport(Protocol):
    """How --inline shows its progress: a live bar on a terminal, plain lines otherwise."""

    def waiting(self, item: Followup) -> None: ...
    def running(self, item: Followup) -> None: ...
    def page(self, progress: dict[str, Any]) -> None: ...
    def retrying(self, item: Followup, exc: TransientError) -> None: ...
    def finished(self, item: Followup, result: dict[str, Any]) -> None: ...
    def done(self) -> None: ...


class PlainReport:
    """One timestamped line per finished task (logs, pipes, CI)."""

    def waiting(self, item: Followup) -> None:
        return

    def running(self, item: Followup) -> None:
        return

    def page(self, progress: dict[str, Any]) -> None:
        _echo(
            f"{_short(contract.SYNC_TRANSACTIONS)}: page={progress['pages']} "
            f"inserted={progress['inserted']} updated={progress['updated']}"
        )

    def retrying(self, item: Followup, exc: TransientError) -> None:
        _echo(f"{item.task}: transient error [{exc.code}], retrying")

    def finished(self, item: Followup, result: dict[str, Any]) -> None:
        _echo(f"{_short(item.task)}: {_summary(result)}")

    def done(self) -> None:
        return


class BarReport:
    """A rich progress bar through the phases: refresh pending -> pages -> done."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.pages = 0
        self.inserted = 0
        self.updated = 0
        self.bar = progress.add_task("starting", total=None, pages=0)

    def _show(self, description: str) -> None:
        self.progress.update(self.bar, description=description, pages=self.pages)

    def waiting(self, item: Followup) -> None:
        if item.task == contract.POLL_REFRESH:
            self._show(f"refresh pending, next poll in {item.countdown:g}s")
        else:
            self._show(f"{_short(item.task)} in {item.countdown:g}s")

    def running(self, item: Followup) -> None:
        if item.task == contract.SYNC_TRANSACTIONS:
            self._show("syncing pages")
        elif item.task in (contract.REFRESH_ACCOUNT, contract.POLL_REFRESH):
            self._show("refresh: reading the account")
        else:
            self._show(_short(item.task))

    def page(self, progress: dict[str, Any]) -> None:
        # Counts of finished runs plus this run's so far: the bar moves with every page.
        self.progress.update(
            self.bar,
            description=f"syncing: {self.inserted + progress['inserted']} new, "
            f"{self.updated + progress['updated']} updated",
            pages=self.pages + progress["pages"],
        )
        self.progress.refresh()

    def retrying(self, item: Followup, exc: TransientError) -> None:
        self.progress.console.print(
            f"{_short(item.task)}: transient error [{exc.code}], retrying", markup=False
        )
        self._show(f"{_short(item.task)}: retrying after [{exc.code}]")

    def finished(self, item: Followup, result: dict[str, Any]) -> None:
        self.pages += int(result.get("pages", 0))
        self.inserted += int(result.get("inserted", 0))
        self.updated += int(result.get("updated", 0))
        outcome = result.get("outcome")
        if item.task == contract.SYNC_TRANSACTIONS:
            self._show(f"synced {self.inserted} new, {self.updated} updated")
        elif outcome in ("started", "pending"):
            self._show(f"refresh {result.get('refresh') or ''} pending")
        else:
            self._show(f"{_short(item.task)}: {outcome}")
        self.progress.console.print(f"{_short(item.task)}: {_summary(result)}", markup=False)

    def done(self) -> None:
        total = max(self.pages, 1)
        self.progress.update(self.bar, total=total, completed=total)
        self._show("done")


@contextmanager
def _progress_report() -> Iterator[InlineReport]:
    """A bar when stdout is a terminal; plain lines (the log-friendly format) otherwise."""
    from rich.console import Console

    console = Console()
    if not (sys.stdout.isatty() and console.is_interactive):
        yield PlainReport()
        return
    from rich.logging import RichHandler
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(
        SpinnerColumn(),
        # Descriptions carry error codes such as "[rate_limit]": text, never markup.
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TextColumn("{task.fields[pages]} pages"),
        TimeElapsedColumn(),
        console=console,
    )
    # Log records would tear the live bar: print them above it through the same console.
    root = logging.getLogger()
    handlers = root.handlers[:]
    root.handlers = [redacting(RichHandler(console=console, show_path=False))]
    try:
        with progress:
            yield BarReport(progress)
    finally:
        root.handlers = handlers


def _summary(result: dict[str, Any]) -> str:
    if result.get("outcome") == "cooldown" and result.get("retry_at"):
        from worker.app import uow

        return cooldown(result["retry_at"], uow.clock.now())
    return " ".join(f"{k}={v}" for k, v in result.items() if k != "account")


def _dispatch_or_inline(
    task: str, inline: bool, follow: Callable[[Followup], bool], **kwargs: Any
) -> list[dict[str, Any]]:
    if inline:
        return _run_inline(Followup(task, kwargs), follow=follow)
    _enqueue(task, **kwargs)
    return []


def _only(*names: str) -> Callable[[Followup], bool]:
    return lambda f: f.task in names


inline_option = click.option(
    "--inline", is_flag=True, help="Run in this process instead of enqueueing for a worker."
)
account_argument = click.argument("account", callback=account_id)


@cli.command()
@account_argument
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
@account_argument
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
@account_argument
@click.option("--wait", is_flag=True, help="With --inline: poll until done, then sync.")
@inline_option
@expected_errors
def refresh(account: str, wait: bool, inline: bool) -> None:
    """Ask Stripe for a transaction refresh of ACCOUNT (only when Stripe allows one)."""
    if wait and not inline:
        raise click.UsageError("--wait needs --inline (a queued refresh completes in the worker)")
    # The task would start tracking an account it has never seen (other services rely on
    # that); from the command line that is more likely a typo, so it needs `track` first.
    known = known_account(account, "refresh")
    follow = _only(contract.POLL_REFRESH, contract.SYNC_TRANSACTIONS) if wait else _only()
    results = _dispatch_or_inline(
        contract.REFRESH_ACCOUNT, inline, follow, account_id=account, source="manual"
    )
    if results and results[0]["outcome"] == "cooldown":
        click.echo(after_cooldown(known))


@cli.command()
@account_argument
@click.option("--full", is_flag=True, help="Re-read the whole history, not just what changed.")
@inline_option
@expected_errors
def sync(account: str, full: bool, inline: bool) -> None:
    """Page ACCOUNT's transactions from Stripe into the database."""
    known_account(account, "sync")
    _dispatch_or_inline(
        contract.SYNC_TRANSACTIONS,
        inline,
        _only(contract.SYNC_TRANSACTIONS),
        account_id=account,
        full=full,
    )


@cli.command()
@click.argument("account", required=False, callback=account_id)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@expected_errors
def status(account: str | None, as_json: bool) -> None:
    """Sync state per account: refresh, cursor, rows stored, next due, why not fresh, last error.

    --json times are Unix seconds (UTC), as in Stripe's objects."""
    from worker.clock import Clock
    from worker.db import session_scope
    from worker.reports import account_status

    with session_scope() as session:
        rows = account_status(session, account, now=Clock(get_settings().fcsync_clock_url).now())
    if account and not rows:
        raise PermanentError(f"account {account} is not known to fcsync", code="unknown_account")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from worker.cli.status_view import print_status

    print_status(rows, terminal=sys.stdout.isatty())


@cli.command()
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


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--path", default="/webhooks/stripe", show_default=True)
@expected_errors
def webhooks(host: str, port: int, path: str) -> None:
    """Serve the Stripe webhook receiver (waitress) at http://HOST:PORT/PATH."""
    from worker.http import serve

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
    settings.require_api_key()  # the worker would refuse to start without it: say so now
    upgrade_database()
    webhooks_on = not no_webhooks and settings.stripe_webhook_secret is not None
    if not no_webhooks and not webhooks_on:
        click.echo(
            "STRIPE_WEBHOOK_SECRET is not set: running without the webhook receiver "
            "(refreshes complete by polling)"
        )
    broker = "embedded broker" if settings.uses_embedded_broker else mask_url(settings.broker_url)
    click.echo(f"fcsync run: database {mask_url(settings.database_url)}, {broker}")
    children = stack_children(
        concurrency=concurrency,
        webhooks=webhooks_on,
        host=host,
        port=port,
        path=path,
        schedule=Path(settings.fcsync_embedded_broker_path).with_name("celerybeat-schedule"),
        log_level=settings.fcsync_log_level,
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


def _cli_naming_a_missing_schema() -> None:
    """A database that was never migrated fails the first query of any command (PostgreSQL's
    UndefinedTable, SQLite's "no such table"): one line naming the fix, not a traceback."""
    from sqlalchemy.exc import DBAPIError

    from worker.db import SchemaMissingError, is_missing_table

    try:
        cli()
    except DBAPIError as exc:
        if not is_missing_table(exc):
            raise
        schema = SchemaMissingError(get_settings().database_url)
        click.echo(f"error [{schema.code}]: {schema}", err=True)
        sys.exit(EXIT_PERMANENT)


def main() -> None:
    """Errors raised outside a command's own handling: settings and the database."""
    from pydantic import ValidationError
    from sqlalchemy.exc import OperationalError

    try:
        _cli_naming_a_missing_schema()
    except ConfigurationError as exc:
        click.echo(redact(f"error [{exc.code}]: {exc}"), err=True)
        sys.exit(EXIT_PERMANENT)
    except ValidationError as exc:  # a malformed setting, read on first use
        for error in exc.errors():
            name = "_".join(str(part) for part in error["loc"]).upper()
            click.echo(redact(f"error [invalid_setting]: {name}: {error['msg']}"), err=True)
        sys.exit(EXIT_PERMANENT)
    except OperationalError as exc:  # transient for the tasks too: they retry it
        click.echo(redact(f"error [database_unavailable] (transient): {exc.orig}"), err=True)
        sys.exit(EXIT_TRANSIENT)
