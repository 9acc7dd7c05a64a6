"""`fcsync demo` (what `make demo` runs) as a user runs it: the whole job against the seeded
emulator on embedded defaults, told as a tour (no log records in between), a success verdict,
and not one process left behind. On a tenth of the demo's data (`--scale 0.1`): the same
accounts, story and checks, its large backfills still several task runs each, in a fraction of
the time (the full bank's pages are most of `make demo`'s two minutes)."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.cli.conftest import FCSYNC, clean_environ

pytestmark = pytest.mark.slow

# A log record of any process: "2026-11-30 03:46:55,431 INFO ..." or Celery's "[...: INFO/...]".
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ |: (DEBUG|INFO|WARNING|ERROR)/")


def carrying(marker: str, value: str) -> list[int]:
    """Live processes whose environment carries marker=value (the demo and its descendants)."""
    needle = f"{marker}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_demo_runs_the_whole_job_and_leaves_nothing_behind(tmp_path: Path) -> None:
    run_id = uuid.uuid4().hex
    env = {**clean_environ(), "DEMO_TEST_RUN": run_id}
    proc = subprocess.run(
        [FCSYNC, "demo", "--scale", "0.1", "--timeout", "150"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert "OK: every account's transactions equal the emulator's ground truth" in " ".join(
        output.split()
    )
    for metric in ("gating violations", "transactions stored", "Stripe API requests"):
        assert metric in output
    assert "Traceback" not in output
    # A tour, not a log: records go to the demo's log folder, shown only when it fails.
    assert not [line for line in output.splitlines() if LOG_RECORD.search(line)], output
    prose = " ".join(output.split())
    for explained in (
        # The pages per task run scale with the data: 5 at a tenth of the demo's.
        "5 pages per task run, then the task re-enqueues itself",
        "its bank connection is inactive",
        "half of its refreshes fail",
        "A gating violation is a refresh requested while one is still pending",
        "Try it yourself",
        "fcsync status",
    ):
        assert explained in prose, explained
    # Every account's id whole in the summary: Stripe's 24 characters after the prefix.
    ids = set(re.findall(r"\bfca_\w+", output))
    assert len(ids) == 25 and {len(i) for i in ids} == {len("fca_") + 24}, ids
    assert "…" not in output
    assert carrying("DEMO_TEST_RUN", run_id) == [], "processes outlived the demo"
    # Embedded defaults in a temporary folder: nothing written where it was started.
    assert list(tmp_path.iterdir()) == []
