"""`python -m emulator` / `fcsync emulator`: flags, the start-up log line, clean SIGTERM stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import stripe
from click.testing import CliRunner

from emulator import EmulatorControl
from emulator.cli import emulator_command
from worker.playground.emulator_env import free_port

REPO = Path(__file__).resolve().parents[2]


def test_serves_seeded_accounts_and_stops_on_sigterm() -> None:
    port = free_port()
    command = [
        sys.executable, "-m", "emulator", "--port", str(port), "--seed", "3",
        "--accounts", "2", "--transactions", "25", "--requests-per-second", "100",
        "--no-webhook-reorder", "--webhook-duplicate-copies", "3", "--webhook-delay-rate", "0.5",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        assert match, line
        client = stripe.StripeClient("sk_test_cli", base_addresses={"api": match.group(1)})
        assert len(client.v1.financial_connections.accounts.list().data) == 2
        faults = EmulatorControl(match.group(1)).faults()
        assert (faults["webhook_duplicate_copies"], faults["webhook_delay_rate"]) == (3, 0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_rejects_inconsistent_flags() -> None:
    runner = CliRunner()
    result = runner.invoke(emulator_command, ["--webhook-url", "http://x"])
    assert result.exit_code == 2 and "--webhook-secret" in result.output
    result = runner.invoke(emulator_command, ["--server-error-rate", "1.5"])
    assert result.exit_code == 2
    result = runner.invoke(
        emulator_command, ["--rate-limit-rate", "0.6", "--server-error-rate", "0.6"]
    )
    assert result.exit_code == 2
