"""`fcsync` imports the emulator only for the commands that run it: the account, show and
database commands (and `--help` of the others) start without loading it."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.cli.conftest import clean_environ

# Runs in a fresh interpreter: this test process imported the emulator long ago.
PROBE = """
import json, sys
from click.testing import CliRunner
from worker.cli import cli

def loaded():
    return sorted(m for m in sys.modules if m == "emulator" or m.startswith("emulator."))

seen = {}
for args in sys.argv[1:]:
    result = CliRunner().invoke(cli, [*args.split(), "--help"])
    assert result.exit_code == 0, result.output
    seen[args] = loaded()
print(json.dumps(seen))
"""


def loaded_after(*commands: str) -> dict[str, list[str]]:
    """The emulator's modules imported after `fcsync COMMAND --help`, for each in turn."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *commands],
        env=clean_environ(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    seen: dict[str, list[str]] = json.loads(out)
    return seen


def test_cli_commands_start_without_the_emulator() -> None:
    seen = loaded_after("track", "refresh", "sync", "status", "db upgrade", "run", "demo")

    assert all(modules == [] for modules in seen.values()), seen


def test_cli_emulator_command_loads_the_emulator_when_used() -> None:
    seen = loaded_after("status", "emulator")

    assert seen["status"] == []
    assert "emulator.cli" in seen["emulator"]
