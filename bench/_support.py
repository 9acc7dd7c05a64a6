"""Shared by the benchmarks: the machine facts every JSON records, a PostgreSQL database of
the benchmark's own for as long as it runs, and `fcsync` commands run as a user runs them."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.playground.databases import create_postgres_database, drop_postgres_database
from worker.playground.emulator_env import stack_env

# The server the benchmarks make their throwaway databases on (through its `postgres` database).
POSTGRES_ADMIN_URL = os.environ.get(
    "FCSYNC_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def run_facts() -> dict[str, Any]:
    """When, on which commit and on how many cores a benchmark ran."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "nproc": os.cpu_count(),
    }


@contextmanager
def postgres_database(part: str) -> Iterator[str]:
    """A database of the benchmark's own (`bench_<part>_<pid>_...`) while the block runs; yields
    its URL. Raises (OperationalError) when the server is unreachable: the caller says so."""
    url = create_postgres_database(POSTGRES_ADMIN_URL, f"bench_{part}_{os.getpid()}")
    try:
        yield url
    finally:
        drop_postgres_database(POSTGRES_ADMIN_URL, url)


@dataclass(frozen=True)
class Finished:
    """How one `fcsync` command run as a child process ended."""

    exit_code: int
    seconds: float
    peak_rss_mb: float
    output: str


def fcsync_env(base_url: str, db_url: str, **overrides: str) -> dict[str, str]:
    """The environment of an `fcsync` command on the emulator at `base_url`: no request budget
    (the benchmark measures fcsync, not its throttle), polls a fifth of a second apart."""
    return stack_env(
        base_url=base_url,
        db_url=db_url,
        broker_url="memory://",
        redis_url=None,
        concurrency=1,
        overrides={
            "FCSYNC_REQUESTS_PER_SECOND": "0",
            "FCSYNC_POLL_INITIAL_S": "0.2",
            "FCSYNC_LOG_LEVEL": "WARNING",
            **overrides,
        },
    )


# Run between the benchmark and `fcsync`: Linux counts a forked child's copy of its parent's
# memory into the child's ru_maxrss, so a child forked straight from a benchmark holding a
# 1,000,000-row emulator reports that emulator's size. This small process forks fcsync instead,
# waits for it and writes its own peak (KiB) to the file named first.
_LAUNCHER = """
import os, sys
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_fcsync(args: list[str], env: dict[str, str], *, timeout_s: float = 3_600) -> Finished:
    """`fcsync ARGS` as a user runs it, in a child process; its peak RSS is the kernel's count
    for that process alone (wait4's rusage: exact, no sampling)."""
    fcsync = Path(sys.executable).with_name("fcsync")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fcsync-bench-run-") as tmp:
        peak_file = Path(tmp) / "peak_kib"
        with (Path(tmp) / "output").open("w+") as out:
            launcher = [sys.executable, "-c", _LAUNCHER, str(peak_file), str(fcsync), *args]
            child = subprocess.run(
                launcher, env=env, stdout=out, stderr=out, timeout=timeout_s, check=False
            )
            out.seek(0)
            output = out.read()
        peak_kib = int(peak_file.read_text()) if peak_file.exists() else 0
    return Finished(
        exit_code=child.returncode,
        seconds=time.monotonic() - started,
        peak_rss_mb=peak_kib / 1024,
        output=output,
    )
