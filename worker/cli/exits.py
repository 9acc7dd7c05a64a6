"""How `fcsync` ends: 0 ok, 1 declined at a prompt, 2 usage or bad id, 3 permanent error (Stripe's,
an unknown account, no schema), 4 transient error after retries (Stripe, an unreachable broker or
DB); an expected failure is one line `error [code]: ...`, never a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from worker.errors import PermanentError, TransientError
from worker.redaction import redact

F = TypeVar("F", bound=Callable[..., Any])
EXIT_DECLINED = 1  # a question answered "no": nothing failed, nothing was done
EXIT_USAGE = 2
EXIT_PERMANENT = 3
EXIT_TRANSIENT = 4


class UsageLine(click.ClickException):
    """A usage error as one line, `error [code]: ...` like every other fcsync error (click's
    own usage errors print the whole synopsis)."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code

    def show(self, file: Any = None) -> None:
        # The message quotes what the user typed, which may be a URL with a password in it.
        click.echo(redact(f"error [{self.code}]: {self.message}"), err=True)


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
