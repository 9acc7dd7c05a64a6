"""`fcsync webhooks`'s processes (FCSYNC_WEBHOOK_PROCESSES), served by granian (a Rust HTTP server
with a WSGI interface): this process binds the port and forks the serving ones, which share it,
so the receiver's Python work is not held to one core by the GIL. A serving process that dies
stops them all, for whoever started the receiver (supervisor, compose) to start it again."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

from granian.constants import Interfaces
from granian.server import MPServer

from worker.parent_death import die_with_parent

# Connections the kernel holds for the processes to accept: a burst of Stripe's deliveries
# (and the bench's senders) connects at once.
LISTEN_BACKLOG = 1024
# Seconds a serving process has to finish its requests once told to stop, within the 15 s the
# supervisor gives the whole receiver (worker/supervisor.py GRACE_S).
STOP_TIMEOUT_S = 10


class _DeliberateThreads(logging.Filter):
    """granian warns at every start that more request threads than twice the cores "seems quite
    high": the receiver's threads are meant to wait together on one group commit (README,
    FCSYNC_WEBHOOK_THREADS), so the warning would only teach operators to ignore warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Configuration allows spawning up to")


# granian's own lines (start, workers, stop) through fcsync's handlers and format, not its own.
_LOGGING = {
    "filters": {"deliberate_threads": {"()": _DeliberateThreads}},
    "loggers": {
        "_granian": {"propagate": True, "filters": ["deliberate_threads"]},
        "granian.access": {"propagate": True},
    },
}


class _Receiver(MPServer):
    """granian's process manager, stopped as the receiver always was: by SIGTERM, SIGINT or
    SIGHUP (where granian would reload on a hangup), then ending by that signal."""

    stopped_by: int | None = None

    def signal_handler_interrupt(self, signum: int, frame: FrameType | None) -> None:
        self.stopped_by = self.stopped_by or signum
        super().signal_handler_interrupt(signum, frame)  # type: ignore[no-untyped-call]

    signal_handler_reload = signal_handler_interrupt


def serve(
    load_app: Callable[[], Any], host: str, port: int, *, processes: int, threads: int
) -> None:
    """Serve the WSGI app `load_app` builds in each of `processes` forked processes (each with
    its own app: runtime, database pool, broker connections) with `threads` request threads,
    until a stop signal or a serving process's exit (then SystemExit(1))."""
    parent = os.getpid()

    def load(_target: str) -> Any:
        # A serving process left behind by a SIGKILLed parent would hold the port forever.
        die_with_parent(parent)
        return load_app()

    server = _Receiver(
        "fcsync.webhooks",
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        websockets=False,
        workers=processes,
        blocking_threads=threads,
        backlog=LISTEN_BACKLOG,
        workers_kill_timeout=STOP_TIMEOUT_S,
        log_dictconfig=_LOGGING,
    )
    server.serve(target_loader=load)
    if server.stopped_by is not None:
        # Ended as told: by the signal itself, as a process without children would.
        signal.signal(server.stopped_by, signal.SIG_DFL)
        os.kill(os.getpid(), server.stopped_by)
