"""`fcsync demo` (what `make demo` runs) as a user runs it: the whole job against the seeded
emulator on embedded defaults, a success verdict, and not one process left behind."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from tests.cli.conftest import FCSYNC, clean_environ

pytestmark = pytest.mark.slow


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
        [FCSYNC, "demo", "--timeout", "150"],
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
    assert carrying("DEMO_TEST_RUN", run_id) == [], "processes outlived the demo"
    # Embedded defaults in a temporary folder: nothing written where it was started.
    assert list(tmp_path.iterdir()) == []
