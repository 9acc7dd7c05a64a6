"""The one process supervisor: worker, beat and webhook receiver for `fcsync run`, and every
child the playground's stacks and the tests start.

Each child leads its own process group, so a terminal's Ctrl-C reaches only us; SIGINT, SIGTERM,
SIGHUP (or any child dying) stop them all in order, SIGKILL to the group after a grace period,
so nothing is left behind (not even a worker's pool processes). If we die without stopping them
(SIGKILL, the OOM killer), the kernel SIGKILLs every child too (see worker/parent_death.py)."""

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


def _celery(*, quiet: bool) -> list[str]:
    """`celery -A worker.app`; `quiet` leaves out the startup banner, which is no log line (the
    one thing in a worker's or beat's output that JSON logs could not make a JSON object of)."""
    return [str(Path(sys.executable).parent / "celery"), "-A", "worker.app"] + (
        ["--quiet"] if quiet else []
    )


def worker_argv(
    concurrency: int,
    *,
    name: str | None = None,
    pool: str | None = None,
    log_level: str = "INFO",
    quiet: bool = False,
) -> list[str]:
    """`celery worker` on the fcsync queue (name: the node name, to tell several apart)."""
    argv = [
        *_celery(quiet=quiet),
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


def beat_argv(schedule: Path, *, log_level: str = "INFO", quiet: bool = False) -> list[str]:
    return [
        *_celery(quiet=quiet),
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
    log_format: str = "text",
) -> list[Child]:
    """The stack's processes; the webhook receiver reads FCSYNC_LOG_LEVEL itself, Celery's
    processes are told `log_level` on their command line (and, for JSON logs, to print no
    banner). Every one of them reads FCSYNC_LOG_FORMAT from the environment it inherits."""
    quiet = log_format == "json"
    # Exactly one beat: two would double every sweep.
    children = [
        Child("worker", worker_argv(concurrency, log_level=log_level, quiet=quiet)),
        Child("beat", beat_argv(schedule, log_level=log_level, quiet=quiet)),
    ]
    if webhooks:
        children.append(Child("webhooks", webhooks_argv(host, port, path)))
    return children


def dying_with_us(argv: Sequence[str]) -> list[str]:
    """`argv` started so that the kernel SIGKILLs it when this process dies (on Linux). The
    signal comes when the thread that started the child ends: spawn from a lasting thread.
    SIGKILL, not SIGTERM: with nobody left to stop what hangs, the children die the way we
    did, and a worker's pool processes follow their master (Celery sets the same signal)."""
    if not sys.platform.startswith("linux"):
        return list(argv)
    return [sys.executable, "-m", "worker.parent_death", str(os.getpid()), *argv]


class Supervisor:
    """Named children, each leading its own process group; `stop()` (or `kill()`) signals a
    group before its leader is reaped, so a reused pid is never signalled."""

    def __init__(
        self,
        children: Sequence[Child] = (),
        env: Mapping[str, str] | None = None,
        *,
        log_dir: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.children = list(children)
        self.env = dict(env or os.environ)
        self.log_dir = log_dir
        self.cwd = cwd
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.killed: set[str] = set()
        self._stopping = False

    def start(self) -> None:
        for child in self.children:
            self.spawn(child.name, child.argv)

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start one more child (its log, with a log folder: `<name>.log` there)."""
        env = dict(env if env is not None else self.env)
        cwd = cwd or self.cwd
        argv = dying_with_us(argv)
        # process_group=0: the child leads a new group (see the module docstring).
        if self.log_dir is None:
            proc = subprocess.Popen(argv, env=env, cwd=cwd, process_group=0)
        else:
            # Unbuffered, so a log read while the child runs is complete up to now.
            env["PYTHONUNBUFFERED"] = "1"
            with (self.log_dir / f"{name}.log").open("ab") as out:
                proc = subprocess.Popen(
                    argv,
                    env=env,
                    cwd=cwd,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    process_group=0,
                )
        self.procs[name] = proc
        log.info("started %s (pid %d)", name, proc.pid)
        return proc

    def kill(self, name: str) -> None:
        """SIGKILL the child and its whole group (a crash: no shutdown, no acks), then reap it."""
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        self.killed.add(name)

    def exited(self) -> dict[str, int]:
        """Children that died on their own (not by `kill`): name -> exit code, as Popen's
        returncode. None of them is reaped, so `stop()` can still clear their groups."""
        found = {}
        for name, proc in self.procs.items():
            if name in self.killed:
                continue
            if proc.returncode is not None:
                found[name] = proc.returncode
                continue
            info = _exit_info(proc.pid)
            if info is not None:
                code = info.si_status
                found[name] = code if info.si_code == os.CLD_EXITED else -code
        return found

    def logs(self, tail: int = 60) -> str:
        """The last lines of every child's log (with a log folder), for a failure message."""
        parts = []
        for name in self.procs:
            path = self.log_dir / f"{name}.log" if self.log_dir else None
            if path is not None and path.exists():
                lines = path.read_text(errors="replace").splitlines()[-tail:]
                parts.append(f"--- last {len(lines)} lines of {path.name}\n" + "\n".join(lines))
        return "\n".join(parts)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        self._stopping = True

    def run(self) -> int:
        """Start everything and wait; returns the exit code for the CLI."""
        previous = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}
        try:
            self.start()
            while not self._stopping:
                for name in self.exited():
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


def _exit_info(pid: int) -> os.waitid_result | None:
    """How the child exited, or None while it runs; it is not reaped."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)


def _exited(pid: int) -> bool:
    return _exit_info(pid) is not None
