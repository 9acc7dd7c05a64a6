"""Logging for every fcsync process (CLI, receiver, Celery worker and beat): one format, one
level, quiet third parties, and a filter on every handler that masks secrets in each record."""

from __future__ import annotations

import logging
import sys
import traceback
from types import TracebackType

from worker.redaction import redact

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# stripe-python logs two INFO lines per request: a backfill of many pages would drown every
# other line. They come back at DEBUG, where a user is looking for exactly that.
CHATTY_LOGGERS = ("stripe",)

_exception_formatter = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Masks URL passwords and Stripe secrets in a record's message, arguments, exception and
    stack text. It sits on handlers, not loggers: a logger's filter never sees the records
    that propagate to it from its children."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # mismatched %-arguments: logging would print both raw in handleError
            message = f"{record.msg} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info:
            # Rendered once, here: a handler that formats after us finds only the masked text.
            record.exc_text = redact(_exception_formatter.formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def level_number(level: str | int | None) -> int:
    """`"debug"`, `"INFO"`, `10`... as a logging level; INFO for anything else."""
    if isinstance(level, int):
        return level
    number = logging.getLevelName((level or "INFO").upper())
    return number if isinstance(number, int) else logging.INFO


def redacting(handler: logging.Handler) -> logging.Handler:
    """`handler` with the redacting filter (once)."""
    if not any(isinstance(f, RedactingFilter) for f in handler.filters):
        handler.addFilter(RedactingFilter())
    return handler


def install(logger: logging.Logger, level: str | int | None) -> None:
    """Redact every handler of `logger` and set the third-party levels for `level` (Celery
    calls this through its after_setup_logger signals, once it has made its handlers)."""
    for handler in logger.handlers:
        redacting(handler)
    chatty = logging.DEBUG if level_number(level) <= logging.DEBUG else logging.WARNING
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(chatty)


def print_uncaught(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    """sys.excepthook: an exception that escaped every handler still prints masked."""
    sys.stderr.write(redact("".join(traceback.format_exception(kind, value, tb))))


def configure_logging(level: str | int | None) -> None:
    """The CLI's and the receiver's logging: records on stderr at `level`, redacted, and so
    is the traceback of anything uncaught."""
    logging.basicConfig(level=level_number(level), format=FORMAT)
    install(logging.getLogger(), level)
    sys.excepthook = print_uncaught
