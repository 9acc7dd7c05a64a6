"""Real `celery worker` / `celery beat` subprocesses for integration tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brokers import stack_broker
from tests.conftest import unavailable
from tests.processes import ROOT, RedisServer
from worker.playground.convergence import wait_for
from worker.playground.stack import StackOptions
from worker.supervisor import Supervisor, beat_argv, worker_argv

__all__ = ["Processes", "wait_for"]


class Processes(Supervisor):
    """Celery children of one test, with their logs in its tmp_path."""

    def worker(
        self,
        env: dict[str, str],
        *,
        concurrency: int = 2,
        name: str = "worker",
        pool: str = "prefork",
    ) -> subprocess.Popen[bytes]:
        return self.spawn(
            name,
            worker_argv(concurrency, name=name, pool=pool),
            # Workers of tests running side by side would contend for the default metrics port.
            env={**os.environ, "FCSYNC_METRICS_PORT": "0", **env},
        )

    def beat(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        return self.spawn(
            "beat",
            beat_argv(self.log_dir / "celerybeat-schedule"),
            env={**os.environ, **env},
        )


@pytest.fixture
def processes(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Processes]:
    procs = Processes(log_dir=tmp_path, cwd=ROOT)
    yield procs
    procs.stop()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        print(procs.logs())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture
def stack_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server of the stack's own: no message, rate-limit bucket or flush from another
    run on this machine (or an earlier test) can reach it, and a test may restart it."""
    if shutil.which("redis-server") is None:
        unavailable("Redis", "no redis-server on PATH")
    server = Supervisor(log_dir=tmp_path)
    try:
        yield RedisServer(server, tmp_path).start()
    finally:
        server.stop()


@pytest.fixture
def broker() -> str:
    """The broker a test's stack runs on; `parametrize("broker", on_brokers())` runs it on each."""
    return "redis"


@pytest.fixture
def stack_redis_url(stack_redis: RedisServer) -> str:
    return stack_redis.url


@pytest.fixture
def stack_options(
    fresh_postgres_url: str, stack_redis_url: str, broker: str, tmp_path: Path
) -> Iterator[StackOptions]:
    """A stack on `broker` (the test's own Redis, or a RabbitMQ vhost of its own), the shared
    request budget on that Redis, and a fresh PostgreSQL database."""
    with stack_broker(broker, stack_redis_url, "fcsync_e2e") as broker_url:
        yield StackOptions(
            db_url=fresh_postgres_url,
            broker_url=broker_url,
            redis_url=stack_redis_url,
            workdir=tmp_path,
        )
