"""Failpoints: off, nothing happens; armed, the process dies by SIGKILL at the given rate, after
one log line naming the failpoint (what a fault test counts)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from worker import failpoints

# Passes the failpoint 200 times, armed as the first argument says, and prints "survived".
PASSES = """
import logging, sys
from worker import failpoints
logging.basicConfig(level=logging.INFO)
failpoints.arm(failpoints.parse(sys.argv[1]))
for _ in range(200):
    failpoints.failpoint("sync.after_page")
print("survived")
"""


def _pass(spec: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PASSES, spec], capture_output=True, text=True, timeout=60
    )


def test_failpoint_armed_kills_the_process_after_saying_where() -> None:
    proc = _pass("sync.after_page=0.05")
    assert proc.returncode == -signal.SIGKILL
    assert "survived" not in proc.stdout
    assert "failpoint sync.after_page: killing process" in proc.stderr


def test_failpoint_unarmed_or_armed_elsewhere_does_nothing() -> None:
    for spec in ("", "sync.after_page=0", "refresh.after_post=1"):
        proc = _pass(spec)
        assert (proc.returncode, proc.stdout.strip()) == (0, "survived"), (spec, proc.stderr)


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("sync.nowhere=0.1", "unknown failpoint"),
        ("sync.after_page=often", "not a number"),
        ("sync.after_page=1.5", "within 0..1"),
    ],
)
def test_failpoint_spec_errors_name_the_item(spec: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        failpoints.parse(spec)
