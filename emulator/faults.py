"""Faults on the Stripe API surface: Stripe's requests-per-second limit (a token bucket), seeded
random 429s, 500s and dropped connections (one roll per request in arrival order) and latency
spikes (a roll of their own stream, so adding spikes leaves a seed's other faults as they were)."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from emulator.config import FaultSettings

Outcome = Literal["pass", "drop", "rate_limit", "server_error"]


@dataclass(frozen=True)
class Decision:
    """What happens to one API request: its outcome, and how long it waits before it runs."""

    outcome: Outcome
    delay_s: float
    spiked: bool


class FaultInjector:
    def __init__(self, settings: FaultSettings) -> None:
        self._lock = threading.Lock()
        self._apply(settings)

    def _apply(self, settings: FaultSettings) -> None:
        self.settings = settings
        self._rng = random.Random(f"{settings.seed}/faults")
        self._spike_rng = random.Random(f"{settings.seed}/latency_spikes")
        self._tokens = max(settings.requests_per_second, 1.0)
        self._filled_at = time.monotonic()

    def replace(self, settings: FaultSettings) -> None:
        with self._lock:
            self._apply(settings)

    def update(self, updates: dict[str, Any]) -> FaultSettings:
        """Merge `updates` (ValueError if invalid); a new seed restarts the random stream."""
        with self._lock:
            merged = self.settings.merged(updates)
            if "seed" in updates or merged.requests_per_second != self.settings.requests_per_second:
                self._apply(merged)
            else:
                self.settings = merged
            return merged

    def decide(self) -> Decision:
        with self._lock:
            s = self.settings
            spiked = self._spike_rng.random() < s.latency_spike_rate
            delay_ms = s.latency_ms + (s.latency_spike_ms if spiked else 0.0)
            return Decision(self._outcome(s), delay_ms / 1000, spiked)

    def _outcome(self, s: FaultSettings) -> Outcome:
        roll = self._rng.random()
        if s.requests_per_second > 0 and not self._take_token(s.requests_per_second):
            return "rate_limit"
        if roll < s.drop_connection_rate:
            return "drop"
        roll -= s.drop_connection_rate
        if roll < s.rate_limit_rate:
            return "rate_limit"
        roll -= s.rate_limit_rate
        if roll < s.server_error_rate:
            return "server_error"
        return "pass"

    def _take_token(self, rate: float) -> bool:
        # Capacity equals one second's worth: a burst of `rate` requests, then `rate` per second.
        now = time.monotonic()
        self._tokens = min(max(rate, 1.0), self._tokens + (now - self._filled_at) * rate)
        self._filled_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
