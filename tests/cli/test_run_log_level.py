"""`fcsync run` passes FCSYNC_LOG_LEVEL and FCSYNC_LOG_FORMAT on to the Celery worker and beat
it supervises."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.cli.conftest import FCSYNC, Supervisor, clean_environ, wait_for
from tests.processes import alive, descendants

# What a worker told DEBUG writes (its bootsteps), in each format.
DEBUG_LINE = {"text": "DEBUG/MainProcess", "json": '"level": "DEBUG", "logger": "celery.'}


# Both formats reach the children through the same environment: `make test` runs one.
@pytest.mark.parametrize("log_format", [pytest.param("text", marks=pytest.mark.long), "json"])
def test_run_gives_its_celery_children_the_configured_log_level(
    tmp_path: Path, children: Supervisor, log_format: str
) -> None:
    env = {
        **clean_environ(),
        "FCSYNC_LOG_LEVEL": "DEBUG",
        "FCSYNC_LOG_FORMAT": log_format,
        "PYTHONUNBUFFERED": "1",
        "STRIPE_API_KEY": "sk_test_run_log_level",  # `fcsync run` refuses to start without one
    }
    proc = children.spawn("run", [FCSYNC, "run", "--concurrency", "1", "--no-webhooks"], env=env)
    log = tmp_path / "run.log"

    def started() -> dict[str, str]:
        below = descendants(proc.pid).values()
        found = {
            role: cmd
            for cmd in below
            for role in ("worker", "beat")
            if f" worker.app {role} " in f" {cmd} ".replace(" --quiet", "")
        }
        text = log.read_text(errors="replace")
        # Only a worker told DEBUG writes celery's DEBUG records (its bootsteps) to the log;
        # beat's first record can come after them, and the JSON check below needs it.
        debug = DEBUG_LINE[log_format] in text and "beat: Starting" in text
        return found if len(found) == 2 and debug else {}

    try:
        commands = wait_for(started, timeout=40, what=f"DEBUG worker and beat\n{children.logs()}")
        for role, cmd in commands.items():
            assert "--loglevel=DEBUG" in cmd.split(), (role, cmd)
            # No banner for JSON: it is the one thing Celery prints that is no log record.
            assert ("--quiet" in cmd.split()) == (log_format == "json"), (role, cmd)
    finally:
        below = descendants(proc.pid)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, children.logs()
        assert not [pid for pid in below if alive(pid)]
    if log_format == "json":
        # stdout and stderr of `fcsync run` and its children, in one file: every line is a log
        # record but `run`'s own answer and Celery's shutdown notice (both on stdout).
        printed = ("fcsync run: ", "worker: Warm shutdown")
        lines = [line for line in log.read_text().splitlines() if line]
        records = [json.loads(line) for line in lines if not line.startswith(printed)]
        assert {r["logger"] for r in records} >= {"worker.supervisor", "celery.beat"}, records
