"""`fcsync webhooks` as several processes on one listening socket (FCSYNC_WEBHOOK_PROCESSES): each
accepts its own connections, so the receiver's Python work is not held to one core by the GIL.
The parent only binds, forks, forwards stop signals and reaps; a child that dies stops them all,
for whoever started the receiver (supervisor, compose) to start it again."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any

from worker.parent_death import die_with_parent

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Connections the kernel holds for the processes to accept: a burst of Stripe's deliveries
# (and the bench's senders) connects at once.
LISTEN_BACKLOG = 1024


def listening_socket(host: str, port: int) -> socket.socket:
    return socket.create_server((host, port), backlog=LISTEN_BACKLOG)


def serve_forked(sock: socket.socket, processes: int, serve_one: Callable[[], None]) -> None:
    """Run `serve_one` (serving `sock`) in `processes` children until a stop signal or a child's
    exit; then stop the others and end as they were told to (the signal) or failed (exit 1)."""
    parent = os.getpid()
    children: set[int] = set()
    stopping: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        if not stopping:
            stopping.append(signum)
        for pid in children:
            _signal(pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    for _ in range(processes):
        pid = os.fork()
        if pid == 0:
            _child(parent, previous, serve_one)
        children.add(pid)
    failed = False
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        children.discard(pid)
        if not stopping:
            log.error(
                "receiver process %d exited (%d); stopping the others",
                pid,
                os.waitstatus_to_exitcode(status),
            )
            failed = True
            stop(signal.SIGTERM, None)
    sock.close()
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    if failed:
        sys.exit(1)
    # Ended as told: by the signal itself, as a single process would.
    signal.signal(stopping[0], signal.SIG_DFL)
    os.kill(os.getpid(), stopping[0])


def _child(parent: int, handlers: dict[signal.Signals, Any], serve_one: Callable[[], None]) -> None:
    """Never returns: serves until stopped, then ends the process without the parent's cleanup."""
    code = 1
    try:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        die_with_parent(parent)
        serve_one()
        code = 0
    except KeyboardInterrupt:
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
