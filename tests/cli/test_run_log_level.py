"""`fcsync run` passes FCSYNC_LOG_LEVEL on to the Celery worker and beat it supervises."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.cli.conftest import FCSYNC, Supervisor, clean_environ, wait_for
from tests.processes import alive, descendants


def test_run_gives_its_celery_children_the_configured_log_level(
    tmp_path: Path, children: Supervisor
) -> None:
    env = {
        **clean_environ(),
        "FCSYNC_LOG_LEVEL": "DEBUG",
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
            if f" worker.app {role} " in f" {cmd} "
        }
        # Only a worker told DEBUG writes celery's DEBUG records (its bootsteps) to the log.
        debug = "DEBUG/MainProcess" in log.read_text(errors="replace")
        return found if len(found) == 2 and debug else {}

    try:
        commands = wait_for(started, timeout=40, what=f"DEBUG worker and beat\n{children.logs()}")
        for role, cmd in commands.items():
            assert "--loglevel=DEBUG" in cmd.split(), (role, cmd)
    finally:
        below = descendants(proc.pid)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, children.logs()
        assert not [pid for pid in below if alive(pid)]
