"""What the unit of work in progress is about (account, task, event, refresh, Stripe request),
held in a ContextVar so every log record it emits can carry it (worker/logs.py stamps them)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType

# task_id and task_name are the names Celery's task logger gives them.
FIELDS = (
    "account_id",
    "event_id",
    "task_id",
    "task_name",
    "refresh_id",
    "stripe_request_id",
)

# Outside every `bound` block: a unit of work has not begun, so `note` has nothing to add to.
_NOWHERE: Mapping[str, str] = MappingProxyType({})
_context: ContextVar[Mapping[str, str]] = ContextVar("fcsync_log_context", default=_NOWHERE)


def current() -> Mapping[str, str]:
    """The fields known so far in this context."""
    return _context.get()


@contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """A unit of work (a task, a CLI command, a webhook): `fields` (the unset ones left out) on
    every record logged inside; whatever `note` adds inside is forgotten with them at its end."""
    token = _context.set({**_context.get(), **_known(fields)})
    try:
        yield
    finally:
        _context.reset(token)


def note(**fields: str | None) -> None:
    """Add what the unit of work has just learned (its account, a Stripe request id, the refresh
    it is about) to the rest of it, until its `bound` block ends; outside one, nothing."""
    known = _known(fields)
    context = _context.get()
    if known and context is not _NOWHERE:
        _context.set({**context, **known})


def forget(*names: str) -> None:
    """What is no longer true for the rest of the unit of work (the previous request's id, once
    a new request has started)."""
    _known(dict.fromkeys(names))  # only field names
    context = _context.get()
    if context is not _NOWHERE and any(name in context for name in names):
        _context.set({key: value for key, value in context.items() if key not in names})


def _known(fields: Mapping[str, str | None]) -> dict[str, str]:
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise TypeError(f"not a log context field: {', '.join(sorted(unknown))}")
    return {name: value for name, value in fields.items() if value}
