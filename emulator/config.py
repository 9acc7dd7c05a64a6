"""Settings of one emulator: the bank it simulates (EmulatorConfig) and its faults (FaultSettings).

FaultSettings.merged() is the single validator for fault keys from flags, JSON and code."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

# The version stripe-python's current line pins (and fcsync sends): what a request without a
# Stripe-Version header, and an event with no endpoint version, is answered at.
DEFAULT_API_VERSION = "2026-10-28.endive"
DEFAULT_PERMISSIONS = ("balances", "transactions")


@dataclass(frozen=True)
class FaultSettings:
    requests_per_second: float = 0.0
    rate_limit_rate: float = 0.0
    server_error_rate: float = 0.0
    drop_connection_rate: float = 0.0
    latency_ms: float = 0.0
    # A fraction of API requests waits latency_spike_ms more (on top of latency_ms).
    latency_spike_rate: float = 0.0
    latency_spike_ms: float = 0.0
    webhook_drop_rate: float = 0.0
    webhook_duplicate_rate: float = 0.0
    # How many deliveries a duplicated event gets in all (2: the event and one copy).
    webhook_duplicate_copies: int = 2
    webhook_reorder: bool = False
    # Emulator seconds: advancing the clock a day delivers what was delayed by less than that.
    webhook_delay_s: float = 0.0
    # The fraction of deliveries `webhook_delay_s` applies to (all of them by default).
    webhook_delay_rate: float = 1.0
    seed: int = 0

    def merged(self, updates: dict[str, Any]) -> FaultSettings:
        """A copy with `updates` applied; ValueError names the first bad key."""
        known = {f.name for f in fields(self)}
        clean: dict[str, Any] = {}
        for key, value in updates.items():
            if key not in known:
                raise ValueError(f"unknown fault key: {key}")
            if key == "webhook_reorder":
                if not isinstance(value, bool):
                    raise ValueError("webhook_reorder must be a boolean")
            elif key in ("seed", "webhook_duplicate_copies"):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{key} must be an integer")
                if key == "webhook_duplicate_copies" and value < 2:
                    raise ValueError("webhook_duplicate_copies must be >= 2")
            else:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{key} must be a number")
                if value < 0 or (key.endswith("_rate") and value > 1):
                    bound = "in [0, 1]" if key.endswith("_rate") else ">= 0"
                    raise ValueError(f"{key} must be {bound}")
                value = float(value)
            clean[key] = value
        merged = replace(self, **clean)
        if merged.rate_limit_rate + merged.server_error_rate + merged.drop_connection_rate > 1:
            raise ValueError("rate_limit_rate + server_error_rate + drop_connection_rate > 1")
        return merged

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EmulatorConfig:
    """What the emulated bank looks like; account-level values are defaults the control API
    may override per account."""

    seed: int = 0
    accounts: int = 0
    transactions: int = 50
    refresh_delay_s: float = 1.0
    refresh_cooldown_s: float = 60.0
    failure_rate: float = 0.0
    permissions: tuple[str, ...] = DEFAULT_PERMISSIONS
    api_version: str = DEFAULT_API_VERSION
    webhook_url: str | None = None
    webhook_secret: str | None = None
    faults: FaultSettings | None = None
    # Time-travel: the clock starts at start_time (default: wall time now); frozen clocks only
    # move through the control API, which makes whole runs byte-for-byte repeatable.
    start_time: float | None = None
    frozen_clock: bool = False
    webhook_attempts: int = 4
    webhook_backoff_s: float = 0.5

    def initial_faults(self) -> FaultSettings:
        return self.faults if self.faults is not None else FaultSettings(seed=self.seed)
