"""`fcsync run`: worker, beat and webhook receiver as supervised child processes.

Each child leads its own process group, so a terminal's Ctrl-C reaches only us; SIGINT, SIGTERM,
SIGHUP (or any child dying) stop them all in order, SIGKILL to the group after a grace period,
so nothing is left behind (not even a worker's pool processes)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)

GRACE_S = 15.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class Child:
    name: str
    argv: Sequence[str]


def worker_argv(
    concurrency: int, *, name: str | None = None, pool: str | None = None, log_level: str = "INFO"
) -> list[str]:
    """`celery worker` on the fcsync queue (name: the node name, to tell several apart)."""
    argv = [
        str(Path(sys.executable).parent / "celery"),
        "-A",
        "worker.app",
        "worker",
        "-Q",
        "fcsync",
        f"--loglevel={log_level}",
        f"--concurrency={concurrency}",
        "--without-gossip",
        "--without-mingle",
    ]
    if pool is not None:
        argv.append(f"--pool={pool}")
    if name is not None:
        argv += ["-n", f"{name}@%h"]
    return argv


def beat_argv(schedule: Path, *, log_level: str = "INFO") -> list[str]:
    celery = str(Path(sys.executable).parent / "celery")
    return [
        celery,
        "-A",
        "worker.app",
        "beat",
        f"--loglevel={log_level}",
        "--schedule",
        str(schedule),
    ]


def webhooks_argv(host: str, port: int, path: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "worker",
        "webhooks",
        "--host",
        host,
        "--port",
        str(port),
        "--path",
        path,
    ]


def stack_children(
    *,
    concurrency: int,
    webhooks: bool,
    host: str,
    port: int,
    path: str,
    schedule: Path,
    log_level: str,
) -> list[Child]:
    """The stack's processes; the webhook receiver reads FCSYNC_LOG_LEVEL itself, Celery's
    processes are told `log_level` on their command line."""
    # Exactly one beat: two would double every sweep.
    children = [
        Child("worker", worker_argv(concurrency, log_level=log_level)),
        Child("beat", beat_argv(schedule, log_level=log_level)),
    ]
    if webhooks:
        children.append(Child("webhooks", webhooks_argv(host, port, path)))
    return children


class Supervisor:
    def __init__(
        self,
        children: Sequence[Child],
        env: Mapping[str, str] | None = None,
        *,
        log_dir: Path | None = None,
    ) -> None:
        self.children = list(children)
        self.env = dict(env or os.environ)
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._stopping = False

    def start(self) -> None:
        for child in self.children:
            # process_group=0: the child leads a new group (see the module docstring).
            if self.log_dir is None:
                self.procs[child.name] = subprocess.Popen(
                    list(child.argv), env=self.env, process_group=0
                )
            else:
                with (self.log_dir / f"{child.name}.log").open("ab") as out:
                    self.procs[child.name] = subprocess.Popen(
                        list(child.argv),
                        env=self.env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        process_group=0,
                    )
            log.info("started %s (pid %d)", child.name, self.procs[child.name].pid)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        self._stopping = True

    def run(self) -> int:
        """Start everything and wait; returns the exit code for the CLI."""
        previous = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}
        try:
            self.start()
            while not self._stopping:
                for name, proc in self.procs.items():
                    if _exited(proc.pid):
                        log.error("%s exited; stopping the rest", name)
                        return 1
                time.sleep(0.2)
            return 0
        finally:
            self.stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def stop(self) -> None:
        # Children are reaped only at the very end: until then a child's pid, which is also its
        # group id, cannot be reused, so the group kill below reaches only our own processes.
        running = {name: proc for name, proc in self.procs.items() if proc.returncode is None}
        for proc in running.values():
            os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        for name, proc in running.items():
            while not _exited(proc.pid):
                if time.monotonic() > deadline:
                    log.warning("%s did not stop in %.0fs; killing it", name, GRACE_S)
                    break
                time.sleep(0.05)
            # Whatever is left in the child's group (a killed worker's pool) goes with it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            if proc.wait() not in (0, -signal.SIGTERM):
                log.warning("%s exited with %s", name, proc.returncode)


def _exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None
