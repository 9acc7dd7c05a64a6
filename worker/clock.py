"""fcsync's notion of "now": UTC wall time, or an external clock for time-travel testing.

With FCSYNC_CLOCK_URL set (any endpoint answering {"now": <unix seconds>}, such as the
emulator's /_emulator/clock), every process reads the same moved clock, so days of Stripe's
daily refreshes can pass in seconds while gating still compares like with like."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from worker.errors import TransientError

# Re-read the external clock at most this often; between reads it advances with wall time.
_REFRESH_S = 0.5


class Clock:
    def __init__(self, url: str | None = None) -> None:
        self._url = url
        self._offset = timedelta(0)
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def now(self) -> datetime:
        if not self._url:
            return datetime.now(UTC)
        with self._lock:
            if time.monotonic() - self._read_at > _REFRESH_S:
                self._offset = self._fetch() - datetime.now(UTC)
                self._read_at = time.monotonic()
            return datetime.now(UTC) + self._offset

    def _fetch(self) -> datetime:
        assert self._url
        # Here, not at the top: without a clock URL (production) nothing needs requests, and
        # `fcsync status` would load it only to read the wall clock.
        import requests

        try:
            response = requests.get(self._url, timeout=5)
            response.raise_for_status()
            return datetime.fromtimestamp(float(response.json()["now"]), tz=UTC)
        except (requests.RequestException, ValueError, KeyError) as exc:
            raise TransientError(f"cannot read FCSYNC_CLOCK_URL: {exc}", code="clock") from exc
