"""`python -m worker.parent_death PARENT_PID COMMAND...`: become COMMAND, set to be SIGKILLed when
PARENT_PID (the supervisor that started it) dies, however it dies (Linux's PR_SET_PDEATHSIG).
The supervisor starts each child through this, so a SIGKILLed `fcsync run` leaves no orphans."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
# The parent died before the death signal was set: nobody will ever send it.
EXIT_ORPHANED = 70


def die_with_parent(parent: int) -> None:
    """This process is SIGKILLed when `parent` dies; it exits at once if `parent` already has."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
    if os.getppid() != parent:
        sys.exit(EXIT_ORPHANED)


def main(args: list[str]) -> None:
    parent, command = int(args[0]), args[1:]
    die_with_parent(parent)
    # The death signal survives exec (it is cleared only for set-user-ID programs).
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
