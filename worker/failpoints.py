"""Failpoints for fault testing (the pattern of fail-rs and gofail): named places where a crash
matters, at which a process armed through FCSYNC_FAILPOINTS kills itself with SIGKILL at a
given probability per pass. Unarmed, a failpoint costs one dict lookup."""

from __future__ import annotations

import logging
import os
import random
import signal
from collections.abc import Mapping

log = logging.getLogger(__name__)

# Every failpoint there is, and the crash it stands for.
FAILPOINTS = {
    "refresh.after_post": "Stripe started the refresh; fcsync has not stored that it did",
    "sync.after_page": "some pages of a sync run committed, the rest not fetched",
    "sync.before_cursor_commit": "the last page's rows and the new cursor written, not committed",
}
# What a process that dies at a failpoint writes first, so a test can count the deaths.
KILL_LINE = "failpoint %s: killing process %d"

_armed: dict[str, float] = {}
_random = random.Random()


def parse(spec: str) -> dict[str, float]:
    """`name=probability,...` (e.g. `sync.after_page=0.1`) -> {name: probability}."""
    armed: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if name not in FAILPOINTS:
            raise ValueError(f"unknown failpoint {name!r} (known: {', '.join(FAILPOINTS)})")
        try:
            probability = float(value) if sep else 1.0
        except ValueError:
            raise ValueError(f"{item!r}: the probability is not a number") from None
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"{item!r}: the probability must be within 0..1")
        armed[name] = probability
    return armed


def arm(armed: Mapping[str, float]) -> None:
    """Arm this process's failpoints (replacing any armed before); empty disarms them all."""
    _armed.clear()
    _armed.update(armed)
    _reseed()


def _reseed() -> None:
    # Per process: the pool processes a worker forks each draw their own crashes.
    _random.seed(f"{sorted(_armed.items())}/{os.getpid()}")


os.register_at_fork(after_in_child=_reseed)


def failpoint(name: str) -> None:
    """Crash here, the way a power cut or an OOM kill would, if armed and the draw says so."""
    probability = _armed.get(name)
    if probability is None or _random.random() >= probability:
        return
    log.critical(KILL_LINE, name, os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)
