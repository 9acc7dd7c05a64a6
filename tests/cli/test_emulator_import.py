"""The CLI loads the emulator only for the command that serves it: importing `fcsync`, or
running any other command, leaves the emulator out of the process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.cli.conftest import clean_environ

LOADED = "print(sorted(m for m in sys.modules if m.split('.')[0] == 'emulator'))"


def _emulator_modules(*statements: str) -> str:
    code = "; ".join(["import sys", *statements, LOADED])
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=clean_environ()
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_importing_the_cli_leaves_the_emulator_out() -> None:
    assert _emulator_modules("import worker.cli") == "[]"


@pytest.mark.parametrize("command", ["status", "demo", "run"])
def test_other_commands_leave_the_emulator_out(command: str) -> None:
    run = f"from worker.cli import cli; cli([{command!r}, '--help'], standalone_mode=False)"
    assert _emulator_modules(run) == "[]"


def test_the_emulator_command_loads_it() -> None:
    run = "from worker.cli import cli; cli(['emulator', '--help'], standalone_mode=False)"
    assert "'emulator.cli'" in _emulator_modules(run)
