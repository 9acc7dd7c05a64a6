"""The one process supervisor: a child that died on its own is reported without being reaped,
so stopping still clears whatever it left in its process group (and never signals a pid the
system may have handed to someone else); and if it is killed outright, its children die too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from worker.playground.convergence import wait_for
from worker.supervisor import Supervisor

# The child leaves a grandchild in its process group (as a worker leaves its pool) and says
# where; then it ends as told.
LEAVES_ONE_BEHIND = "sleep 60 & echo $! > left.pid; {end}"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _gone(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def _left_behind(folder: Path) -> int:
    def written() -> str:
        path = folder / "left.pid"
        return path.read_text().strip() if path.exists() else ""

    return int(wait_for(written, timeout=5, what="the grandchild's pid"))


def test_supervisor_reports_an_exited_child_without_reaping_it(tmp_path: Path) -> None:
    supervisor = Supervisor(log_dir=tmp_path)
    proc = supervisor.spawn("quits", ["sh", "-c", "exit 3"])
    try:
        assert wait_for(supervisor.exited, timeout=10, what="the child to exit") == {"quits": 3}
        # Not reaped: its pid, which is also its group's id, cannot be reused before stop().
        assert proc.returncode is None
        assert Path(f"/proc/{proc.pid}").exists()
    finally:
        supervisor.stop()
    assert proc.returncode == 3


def test_supervisor_stop_clears_the_group_of_a_child_that_died(tmp_path: Path) -> None:
    supervisor = Supervisor(log_dir=tmp_path, cwd=tmp_path)
    supervisor.spawn("leader", ["sh", "-c", LEAVES_ONE_BEHIND.format(end="exit 1")])
    try:
        left = _left_behind(tmp_path)
        assert wait_for(supervisor.exited, timeout=10, what="the leader to exit") == {"leader": 1}
        assert _alive(left)
    finally:
        supervisor.stop()
    assert _gone(left), "what the dead leader left in its group outlived stop()"


def test_supervisor_kill_takes_the_whole_group_and_is_no_exit(tmp_path: Path) -> None:
    supervisor = Supervisor(log_dir=tmp_path, cwd=tmp_path)
    proc = supervisor.spawn("worker", ["sh", "-c", LEAVES_ONE_BEHIND.format(end="wait")])
    try:
        left = _left_behind(tmp_path)
        supervisor.kill("worker")
        assert proc.returncode == -signal.SIGKILL
        assert supervisor.exited() == {}
        assert _gone(left)
    finally:
        supervisor.stop()


# A supervisor in a process of its own: it starts a `sleep`, says its pid, and waits.
SUPERVISES_A_SLEEP = """
import sys, time
from worker.supervisor import Supervisor
print(Supervisor().spawn("sleep", ["sleep", "60"]).pid, flush=True)
time.sleep(60)
"""


def test_supervisor_children_die_with_it_when_it_is_killed(tmp_path: Path) -> None:
    # SIGKILL runs no handler and no `finally`: only the kernel can stop the children then.
    with subprocess.Popen(
        [sys.executable, "-c", SUPERVISES_A_SLEEP], stdout=subprocess.PIPE, text=True
    ) as supervisor:
        assert supervisor.stdout is not None
        child = int(supervisor.stdout.readline())
        try:
            assert _alive(child)
            supervisor.kill()
            supervisor.wait()
            assert _gone(child), "the supervisor's child outlived it"
        finally:
            if _alive(child):
                os.kill(child, signal.SIGKILL)
