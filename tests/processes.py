"""What only tests need around their subprocesses (which worker.supervisor runs): where the
repository and its console scripts are, a Redis server of a test's own, a look at what waits on
the embedded broker, and the process tree below a pid (read from /proc)."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from worker.playground.convergence import wait_for
from worker.playground.emulator_env import free_port
from worker.supervisor import Supervisor

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


class RedisServer:
    """A `redis-server` of a test's own under `supervisor`, on a free port, nothing saved to
    disk: no other run on the machine reaches its data. `restart()` kills it and starts it
    again on the same port, empty (every message it held is lost)."""

    def __init__(self, supervisor: Supervisor, folder: Path, *, password: str | None = None):
        self.supervisor = supervisor
        self.folder = folder
        self.password = password
        self.port = free_port()
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start it and return once it answers."""
        import redis

        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        if self.password is not None:
            argv += ["--requirepass", self.password]
        # A log of its own per start: the first one's stays readable after a restart.
        self.supervisor.spawn(self._name, argv)
        client = redis.Redis(port=self.port, password=self.password, socket_connect_timeout=1)

        def pong() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        try:
            wait_for(pong, timeout=10, what=f"redis-server\n{self.supervisor.logs()}")
        finally:
            client.close()
        return self

    def restart(self) -> None:
        """SIGKILL, then the same server again on the same port, with nothing in it."""
        self.supervisor.kill(self._name)
        self.restarts += 1
        self.start()

    @property
    def _name(self) -> str:
        return "redis" if self.restarts == 0 else f"redis-{self.restarts + 1}"


def start_redis(supervisor: Supervisor, folder: Path, *, password: str | None = None) -> int:
    """A RedisServer under `supervisor`, started; returns its port once it answers."""
    return RedisServer(supervisor, folder, password=password).start().port


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


def descendants(pid: int) -> dict[int, str]:
    """Every process below PID (children, grandchildren, ...) with its command line."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                try:
                    cmd = (Path("/proc") / str(child) / "cmdline").read_bytes()
                except OSError:
                    continue
                found[child] = cmd.replace(b"\0", b" ").decode(errors="replace")
                frontier.append(child)
    return found


def alive(pid: int) -> bool:
    """Running (a zombie is dead, only not reaped yet)."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def cpu_s(pid: int) -> float:
    """CPU seconds the process has used (user and system; 0 when it is gone)."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    # Fields 14 and 15 of /proc/PID/stat (utime, stime), in clock ticks.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
