"""The base of every fcsync task (the app's task_cls): retry policy, time limits and the process's
runtime, declared once; a message must be a task message (tasks/consumer.py), fit the task's
signature and carry a sane retry count; an expected PermanentError is logged once, never retried."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, cast

from celery import Task
from celery.signals import task_postrun, task_prerun
from sqlalchemy.exc import OperationalError

from tasks.arguments import ACCOUNT_ID_MAX, EVENT_ID_MAX, bad_argument, stripe_id
from tasks.consumer import checked_strategy
from worker import log_context
from worker.app import app, runtime
from worker.errors import ErrorCode, PermanentError, TransientError
from worker.runtime import Runtime
from worker.settings import (
    TASK_RETRY_BACKOFF_MAX_S,
    TASK_SOFT_TIME_LIMIT_S,
    TASK_TIME_LIMIT_S,
    get_settings,
)

log = logging.getLogger(__name__)


class FcsyncTask(Task):  # type: ignore[type-arg]
    # Expected failures: Celery marks them failed and logs them at INFO without a traceback
    # (dropped below, since fcsync has already logged them) and never retries them.
    throws = (PermanentError,)
    # A lost database connection is as transient as a Stripe 5xx.
    autoretry_for = (TransientError, OperationalError)
    max_retries = get_settings().fcsync_max_retries
    retry_backoff = 2
    retry_backoff_max = TASK_RETRY_BACKOFF_MAX_S
    retry_jitter = True
    # Within what the broker holds unacknowledged (Redis's visibility timeout, RabbitMQ's
    # consumer timeout: worker.settings), so a slow task is never redelivered
    # (unless FCSYNC_BROKER_VISIBILITY_TIMEOUT_S is set shorter, as the chaos tests do).
    soft_time_limit = TASK_SOFT_TIME_LIMIT_S
    time_limit = TASK_TIME_LIMIT_S

    @property
    def runtime(self) -> Runtime:
        """Sessions, gateway, clock and dispatch of this process (or of the calling context)."""
        return runtime()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Celery's documented override: call run() directly, because the tracer has already
        # pushed the request (Task.__call__ would push an empty one and hide request.id).
        try:
            self._check_message(args, kwargs)
            return self.run(*args, **kwargs)
        except PermanentError as exc:
            # Failures inside a unit of work are logged (and recorded) there; only argument
            # errors, raised before any unit of work starts, are logged here.
            if exc.code == ErrorCode.BAD_ARGUMENT:
                log.error("bad argument to %s[%s]: %s", self.name, self.request.id or "-", exc)
            raise

    def retry(
        self,
        args: Any = None,
        kwargs: Any = None,
        exc: Exception | None = None,
        throw: bool = True,
        eta: Any = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Any:
        """Where the error knows how long to wait (a spent request budget), wait at least that
        long: the backoff alone would spend the retries before the budget refills."""
        wait = getattr(exc, "retry_after", None)
        if wait is not None and eta is None:
            countdown = max(countdown or 0, wait)
        return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)

    def start_strategy(self, app: Any, consumer: Any, **kwargs: Any) -> Any:
        return checked_strategy(super().start_strategy(app, consumer, **kwargs))

    def _check_message(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        signature = inspect.signature(self.run)
        try:
            signature.bind(*args, **kwargs)
        except TypeError:
            # Python's own message would quote an unexpected keyword in full, however long.
            takes = ", ".join(
                p.name if p.default is p.empty else f"{p.name}={p.default!r}"
                for p in signature.parameters.values()
            )
            raise bad_argument(
                f"the arguments of {self.name}",
                f"({takes})",
                {"args": list(args), "kwargs": kwargs},
            ) from None
        # Celery's autoretry computes 2**retries from this header before it compares it with
        # max_retries: a forged count would burn CPU and memory on the first transient error.
        retries = self.request.retries
        highest = self.max_retries or 0
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= highest:
            raise bad_argument("the retries header", f"an integer from 0 to {highest}", retries)


class _FcsyncFailureLoggedOnce(logging.Filter):
    """Drops Celery's 'raised expected' line for fcsync tasks: fcsync logged the failure."""

    def filter(self, record: logging.LogRecord) -> bool:
        data = getattr(record, "data", None)
        return not (
            isinstance(data, dict)
            and data.get("description") == "raised expected"
            and str(data.get("name", "")).startswith("fcsync.")
        )


_trace_log = logging.getLogger("celery.app.trace")
if not any(isinstance(f, _FcsyncFailureLoggedOnce) for f in _trace_log.filters):
    _trace_log.addFilter(_FcsyncFailureLoggedOnce())


# Each running task's log context, entered before it starts and left after Celery has logged
# its outcome, so Celery's own "succeeded", "retry" and "raised" lines carry its ids too. A stack
# per id: a task applied inside another with the same id (an eager redelivery) must leave its
# own context, never overwrite the outer one's and leak it.
_task_log_contexts: dict[str, list[AbstractContextManager[None]]] = {}


def _logged_id(value: Any, prefix: str, max_length: int) -> str | None:
    """An id argument for the log lines; one the task will refuse stays out of them (the
    refusal names it, shortened)."""
    try:
        return stripe_id(value, prefix, max_length=max_length)
    except PermanentError:
        return None


@task_prerun.connect
def _enter_task_log_context(
    task_id: str,
    task: Task,  # type: ignore[type-arg]
    kwargs: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    context = log_context.bound(
        task_id=task_id,
        task_name=task.name,
        account_id=_logged_id(kwargs.get("account_id"), "fca_", ACCOUNT_ID_MAX),
        event_id=_logged_id(kwargs.get("event_id"), "evt_", EVENT_ID_MAX),
    )
    context.__enter__()
    _task_log_contexts.setdefault(task_id, []).append(context)


@task_postrun.connect
def _leave_task_log_context(task_id: str, **_: Any) -> None:
    contexts = _task_log_contexts.get(task_id)
    if contexts:
        contexts.pop().__exit__(None, None, None)
        if not contexts:
            del _task_log_contexts[task_id]


def fcsync_task(name: str, **options: Any) -> Callable[[Callable[..., Any]], FcsyncTask]:
    """Registers a task under its stable name; the body gets its FcsyncTask first (bound), for
    `self.runtime` and `self.request`."""
    return cast(
        Callable[[Callable[..., Any]], FcsyncTask], app.task(name=name, bind=True, **options)
    )
