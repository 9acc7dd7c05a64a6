"""Emulator time: wall time plus an offset that only moves forward (or a frozen start time).

Days of daily refreshes pass in seconds by advancing the offset."""

from __future__ import annotations

import time


class Clock:
    def __init__(self, *, start_time: float | None, frozen: bool) -> None:
        self._start_time = start_time
        self._frozen = frozen
        self.reset()

    def reset(self) -> None:
        self._origin = time.time() if self._start_time is None else self._start_time
        self._started = time.monotonic()
        self._offset = 0.0

    def now(self) -> float:
        elapsed = 0.0 if self._frozen else time.monotonic() - self._started
        return self._origin + elapsed + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += seconds
