"""Celery's task lifecycle as metrics, from its signals in whichever process sees each step:
sent (the sender), received (the worker's main process), started, retried, failed and succeeded
(the pool process running the task). Connected when worker.app is imported."""

from __future__ import annotations

import os
import time
from typing import Any

from celery.signals import (
    after_task_publish,
    task_failure,
    task_postrun,
    task_prerun,
    task_received,
    task_retry,
    worker_process_shutdown,
)

from worker import metrics

# When each running task started (monotonic), by task id, for its run time.
_started: dict[str, float] = {}


def _queue(request: Any) -> str | None:
    info = getattr(request, "delivery_info", None) or {}
    queue = info.get("routing_key") if isinstance(info, dict) else None
    return queue if isinstance(queue, str) else None


def _name(task: Any) -> str:
    return str(getattr(task, "name", None) or "unknown")


@after_task_publish.connect
def _sent(sender: Any = None, routing_key: str | None = None, **_: Any) -> None:
    # `sender` is the task's name here.
    metrics.celery_task("sent", str(sender or "unknown"), routing_key)


@task_received.connect
def _received(request: Any = None, **_: Any) -> None:
    metrics.celery_task("received", _name(request), _queue(request))


@task_prerun.connect
def _started_task(task_id: str = "", task: Any = None, **_: Any) -> None:
    _started[task_id] = time.monotonic()
    metrics.celery_task("started", _name(task), _queue(getattr(task, "request", None)))


@task_postrun.connect
def _ended(task_id: str = "", task: Any = None, state: str | None = None, **_: Any) -> None:
    started = _started.pop(task_id, None)
    if state != "SUCCESS":
        return
    name, queue = _name(task), _queue(getattr(task, "request", None))
    metrics.celery_task("succeeded", name, queue)
    if started is not None:
        metrics.celery_task_runtime(name, queue, time.monotonic() - started)


@task_retry.connect
def _retried(sender: Any = None, request: Any = None, **_: Any) -> None:
    metrics.celery_task("retried", _name(sender), _queue(request))


@task_failure.connect
def _failed(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    exception_name = type(exception).__name__ if exception is not None else "UnknownException"
    queue = _queue(getattr(sender, "request", None))
    metrics.celery_task("failed", _name(sender), queue, exception=exception_name)


@worker_process_shutdown.connect
def _pool_process_ended(**_: Any) -> None:
    metrics.process_exited(os.getpid())
