"""Real subprocesses for tests and benchmarks: `celery`/`fcsync` children, each leading its own
process group (a prefork worker's pool goes with it) and logging to a file, always reaped; plus
polling waits and a look at what waits on the embedded broker. Free of pytest."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    predicate: Callable[[], T], *, timeout: float, interval: float = 0.2, what: str = "condition"
) -> T:
    """Poll until `predicate()` is truthy and return it; AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class ProcessGroup:
    """Named children started with `start()`; `stop()` reaps every one of them and whatever
    is left in their process groups."""

    def __init__(
        self, log_dir: Path, env: Mapping[str, str] | None = None, *, cwd: Path = ROOT
    ) -> None:
        self.log_dir = log_dir
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.killed: set[str] = set()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        env = env if env is not None else self.env
        with (self.log_dir / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd or self.cwd,
                env={**(env if env is not None else os.environ), "PYTHONUNBUFFERED": "1"},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = proc
        return proc

    def kill(self, name: str) -> None:
        """SIGKILL the child and its whole group (a crash: no shutdown, no acks)."""
        proc = self.procs[name]
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
        self.killed.add(name)

    def exited(self) -> dict[str, int]:
        """Children that died on their own: name -> exit code."""
        return {
            name: proc.returncode
            for name, proc in self.procs.items()
            if name not in self.killed and proc.poll() is not None
        }

    def logs(self, tail: int = 60) -> str:
        parts = []
        for name in self.procs:
            log = self.log_dir / f"{name}.log"
            if log.exists():
                lines = log.read_text(errors="replace").splitlines()[-tail:]
                parts.append(f"--- last {len(lines)} lines of {log.name}\n" + "\n".join(lines))
        return "\n".join(parts)

    def stop(self, grace_s: float = 15.0) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        # Pool processes outliving their parent would still hold the group: kill what is left.
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


def embedded_queue(broker_file: Path, queue: str = "fcsync") -> list[dict[str, Any]]:
    """Messages waiting on the embedded broker (kombu's SQLAlchemy transport) in `queue`, oldest
    first: {"task", "headers", "args", "kwargs"}. Empty until the transport made its tables."""
    if not broker_file.exists():
        return []
    engine = create_engine(f"sqlite:///{broker_file}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT m.payload FROM kombu_message m JOIN kombu_queue q "
                    "ON q.id = m.queue_id WHERE q.name = :queue AND m.visible ORDER BY m.id"
                ),
                {"queue": queue},
            ).all()
    except Exception:  # the transport has not created its tables yet
        return []
    finally:
        engine.dispose()
    return [decode_message(json.loads(payload)) for (payload,) in rows]


def decode_message(message: dict[str, Any]) -> dict[str, Any]:
    """A Celery (protocol 2) message as kombu stores it: task name, headers, args, kwargs."""
    body = message["body"]
    if message["properties"].get("body_encoding") == "base64":
        body = base64.b64decode(body).decode()
    args, kwargs, _ = json.loads(body)
    headers = message["headers"]
    return {"task": headers["task"], "headers": headers, "args": args, "kwargs": kwargs}
