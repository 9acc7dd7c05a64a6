"""The long-running commands: the webhook receiver, the whole stack (`run`), and the two that
need the emulator (`emulator`, `demo`), which import it only when they are used."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from worker.cli.exits import expected_errors
from worker.redaction import mask_url
from worker.settings import get_settings
from worker.stripe_keys_file import load_stripe_keys


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--path", default="/webhooks/stripe", show_default=True)
@expected_errors
def webhooks(host: str, port: int, path: str) -> None:
    """Serve the Stripe webhook receiver (granian) at http://HOST:PORT/PATH."""
    from worker.http import serve

    click.echo(f"fcsync webhooks listening on http://{host}:{port}{path}")
    serve(host, port, path=path)


@click.command()
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
    keys = load_stripe_keys(settings)
    keys.api_keys()  # the worker would refuse to start without one: say so now
    upgrade_database()
    webhooks_on = not no_webhooks and any(key.webhook_secrets for key in keys.keys)
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
        log_format=settings.fcsync_log_format,
    )
    sys.exit(Supervisor(children).run())


@click.command()
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--timeout", default=110.0, show_default=True, type=float, help="Seconds.")
@click.option(
    "--scale",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.001, 1.0),
    help="Share of each account's transactions (and of the pages per task run): 0.1 runs the "
    "same story on a tenth of the data.",
)
def demo(seed: int, timeout: float, scale: float) -> None:
    """Run the whole job end to end against a seeded emulator and check the result."""
    from worker.demo import run_demo

    sys.exit(run_demo(seed=seed, timeout_s=timeout, scale=scale))


class _LazyCommand(click.Command):
    """A command whose definition is imported the first time click reads it (to parse,
    describe or run it): mounting it in the group imports nothing, nor does listing it in
    `fcsync --help`, which reads only the attributes set here."""

    hidden = False
    deprecated = False

    def __init__(self, name: str, load: Callable[[], click.Command], *, short_help: str) -> None:
        # No super().__init__(): every other attribute comes from the loaded command.
        self.name = name
        self.short_help = short_help
        self._load = load

    @functools.cached_property
    def _command(self) -> click.Command:
        return self._load()

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._command, attr)


def _emulator_command() -> click.Command:
    from emulator.cli import emulator_command

    return emulator_command


# The short help is the command's docstring's, which tests/cli/test_imports.py holds equal.
emulator = _LazyCommand(
    "emulator", _emulator_command, short_help="Serve the Stripe Financial Connections emulator."
)
