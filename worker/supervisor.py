"""`fcsync run`: worker, beat and webhook receiver as supervised child processes.

Children share our session; SIGINT/SIGTERM (or any child dying) stops them all, SIGKILL after
a grace period, so nothing is left behind."""

from __future__ import annotations

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


@dataclass(frozen=True)
class Child:
    name: str
    argv: Sequence[str]


def stack_children(
    *, concurrency: int, webhooks: bool, host: str, port: int, path: str, schedule: Path
) -> list[Child]:
    bindir = Path(sys.executable).parent
    celery = str(bindir / "celery")
    children = [
        Child(
            "worker",
            [
                celery,
                "-A",
                "worker.app",
                "worker",
                "-Q",
                "fcsync",
                "--loglevel=INFO",
                f"--concurrency={concurrency}",
                "--without-gossip",
                "--without-mingle",
            ],
        ),
        # Exactly one beat: two would double every sweep.
        Child(
            "beat",
            [celery, "-A", "worker.app", "beat", "--loglevel=INFO", "--schedule", str(schedule)],
        ),
    ]
    if webhooks:
        children.append(
            Child(
                "webhooks",
                [
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
                ],
            )
        )
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
            if self.log_dir is None:
                self.procs[child.name] = subprocess.Popen(list(child.argv), env=self.env)
            else:
                with (self.log_dir / f"{child.name}.log").open("ab") as out:
                    self.procs[child.name] = subprocess.Popen(
                        list(child.argv), env=self.env, stdout=out, stderr=subprocess.STDOUT
                    )
            log.info("started %s (pid %d)", child.name, self.procs[child.name].pid)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        self._stopping = True

    def run(self) -> int:
        """Start everything and wait; returns the exit code for the CLI."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            while not self._stopping:
                for name, proc in self.procs.items():
                    if proc.poll() is not None:
                        log.error("%s exited with %s; stopping the rest", name, proc.returncode)
                        self.stop()
                        return 1
                time.sleep(0.2)
            self.stop()
            return 0
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0fs; killing it", name, GRACE_S)
                proc.kill()
                proc.wait()
