"""`python -m emulator ...`: the same command as `fcsync emulator`."""

from __future__ import annotations

from emulator.cli import emulator_command

if __name__ == "__main__":
    emulator_command.main(prog_name="python -m emulator")
