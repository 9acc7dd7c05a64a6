"""Logging for every fcsync process (CLI, receiver, Celery worker and beat): one format (text, or
one JSON object per line), one level, quiet third parties, and filters on every handler that
stamp the unit of work's ids on each record and mask the secrets in it."""

from __future__ import annotations

import logging
import sys
import traceback
from types import TracebackType
from typing import Any

from pythonjsonlogger.json import JsonEncoder, JsonFormatter

from worker import log_context
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


class ContextFilter(logging.Filter):
    """Stamps the ids of the unit of work in progress (worker/log_context.py) on each record; a
    field the record already has (given as `extra`) stays. Celery's own task lines (received,
    succeeded, failed, retried) name their task in `data`: those become the same two fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = dict(log_context.current())
        data = getattr(record, "data", None)
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            fields.setdefault("task_id", data["id"])
            fields.setdefault("task_name", str(data.get("name", "")))
        for name, value in fields.items():
            if value and not hasattr(record, name):
                setattr(record, name, value)
        return True


_encoder = JsonEncoder()


def _masked(value: Any) -> Any:
    """`value` as JSON will show it, with every string in it redacted."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(item) for item in value]
    # A date, an exception, any object: as the library would write it, then masked.
    return _masked(_encoder.default(value))


class JsonLines(JsonFormatter):
    """One JSON object per record: level, logger, process, message, the unit of work's ids, any
    `extra`, the exception text and the time (UTC). The RedactingFilter masks the message and
    the exception; the extras (Celery's task arguments and return values) are masked here."""

    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "processName", "message"],
            rename_fields={"levelname": "level", "name": "logger", "processName": "process"},
            timestamp="time",
        )

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {key: _masked(value) for key, value in log_data.items()}


def level_number(level: str | int | None) -> int:
    """`"debug"`, `"INFO"`, `10`... as a logging level; INFO for anything else."""
    if isinstance(level, int):
        return level
    number = logging.getLevelName((level or "INFO").upper())
    return number if isinstance(number, int) else logging.INFO


def filtered(handler: logging.Handler) -> logging.Handler:
    """`handler` with the context and redacting filters (once each), in that order."""
    for kind in (ContextFilter, RedactingFilter):
        if not any(isinstance(f, kind) for f in handler.filters):
            handler.addFilter(kind())
    return handler


def install(logger: logging.Logger, level: str | int | None, log_format: str = "text") -> None:
    """Filter every handler of `logger` (and write JSON lines for `log_format` "json"); set the
    third-party levels for `level`. Celery calls this through its after_setup_logger signals,
    once it has made its handlers."""
    for handler in logger.handlers:
        filtered(handler)
        if log_format == "json":
            handler.setFormatter(JsonLines())
    # One object per line: Python's warnings too, not their own two-line text.
    logging.captureWarnings(log_format == "json")
    chatty = logging.DEBUG if level_number(level) <= logging.DEBUG else logging.WARNING
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(chatty)


def print_uncaught(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    """sys.excepthook: an exception that escaped every handler still prints masked."""
    sys.stderr.write(redact("".join(traceback.format_exception(kind, value, tb))))


def log_uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    """sys.excepthook for JSON logs: an exception that escaped every handler is one more line."""
    logging.getLogger("fcsync").critical("uncaught exception", exc_info=(kind, value, tb))


def configure_logging(level: str | int | None, log_format: str = "text") -> None:
    """The CLI's and the receiver's logging: records on stderr at `level`, redacted, and so
    is the traceback of anything uncaught."""
    logging.basicConfig(level=level_number(level), format=FORMAT)
    install(logging.getLogger(), level, log_format)
    sys.excepthook = log_uncaught if log_format == "json" else print_uncaught
