"""How `--inline` shows its progress: a live bar through the phases on a terminal, one
timestamped line per step and per page otherwise (logs, pipes, CI)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import click

from worker import contract
from worker.cli.guards import cooldown
from worker.errors import TransientError
from worker.logs import filtered
from worker.records import Followup
from worker.settings import get_settings

if TYPE_CHECKING:
    from rich.console import Console


def _echo(line: str) -> None:
    click.echo(f"{datetime.now(UTC):%H:%M:%S} {line}")


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


def _terminal_console() -> Console | None:
    """rich's console when stdout is an interactive terminal. Piped (scripts, tests), rich is
    not even imported."""
    if not sys.stdout.isatty():
        return None
    from rich.console import Console

    console = Console()
    return console if console.is_interactive else None


@contextmanager
def progress_report() -> Iterator[InlineReport]:
    """A bar when stdout is a terminal and logs are text; plain lines (the log-friendly format)
    otherwise."""
    # The bar prints log records above itself, as text: JSON logs keep their own handlers.
    json_logs = get_settings().fcsync_log_format == "json"
    console = None if json_logs else _terminal_console()
    if console is None:
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
    root.handlers = [filtered(RichHandler(console=console, show_path=False))]
    try:
        with progress:
            yield BarReport(progress)
    finally:
        root.handlers = handlers


def _summary(result: dict[str, Any]) -> str:
    if result.get("outcome") == "cooldown" and result.get("retry_at"):
        from worker.clock import Clock
        from worker.settings import get_settings

        return cooldown(result["retry_at"], Clock(get_settings().fcsync_clock_url).now())
    return " ".join(f"{k}={v}" for k, v in result.items() if k != "account")
