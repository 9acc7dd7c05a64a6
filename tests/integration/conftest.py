"""Real `celery worker` / `celery beat` subprocesses for integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))


def wait_for(
    predicate: Callable[[], object],
    *,
    timeout: float,
    interval: float = 0.2,
    what: str = "condition",
) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Processes:
    """Starts subprocesses in their own process groups and always reaps them."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, args: list[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"{name}.log"
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=full_env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append((proc, log))
        return proc

    def worker(
        self,
        env: dict[str, str],
        *,
        concurrency: int = 2,
        name: str = "worker",
        pool: str = "prefork",
    ) -> subprocess.Popen[bytes]:
        return self.start(
            [
                CELERY,
                "-A",
                "worker.app",
                "worker",
                "-Q",
                "fcsync",
                "--loglevel=INFO",
                f"--concurrency={concurrency}",
                f"--pool={pool}",
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"{name}@%h",
            ],
            env,
            name,
        )

    def beat(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        return self.start(
            [
                CELERY,
                "-A",
                "worker.app",
                "beat",
                "--loglevel=INFO",
                "--schedule",
                str(self.tmp_path / "celerybeat-schedule"),
            ],
            env,
            "beat",
        )

    def logs(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}"
            for _, log in self.procs
            if log.exists()
        )

    def stop(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc, _ in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def processes(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Processes]:
    procs = Processes(tmp_path)
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
def stack_redis_url(redis_url: str) -> Iterator[str]:
    """A Redis database of the end-to-end stacks' own, emptied before and after each test so no
    stale message (or rate-limit bucket) from an earlier run can leak in."""
    import redis

    url = redis_url.rsplit("/", 1)[0] + "/14"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def stack_postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (the stacks migrate it themselves)."""
    from tests.conftest import PG_ADMIN_URL, unavailable
    from tests.integration.stack import create_database, drop_database

    try:
        url = create_database(PG_ADMIN_URL)
    except Exception as exc:
        unavailable("PostgreSQL", exc)
    yield url
    drop_database(PG_ADMIN_URL, url)
