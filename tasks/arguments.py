"""Validation of task arguments: a bad argument is a permanent failure, never a retry."""

from __future__ import annotations

from typing import Any

from worker.errors import PermanentError

RETRY_POLICY: dict[str, Any] = {
    "retry_backoff": 2,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "soft_time_limit": 540,
    "time_limit": 600,
}


def stripe_id(value: Any, prefix: str, name: str = "account_id") -> str:
    if not isinstance(value, str) or not value.startswith(prefix) or len(value) > 255:
        raise PermanentError(
            f"{name} must be a Stripe id starting with {prefix!r}, got {value!r}",
            code="bad_argument",
        )
    return value


def flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise PermanentError(f"{name} must be true or false, got {value!r}", code="bad_argument")
    return value


def choice(value: Any, allowed: frozenset[str], name: str) -> str:
    if value not in allowed:
        raise PermanentError(
            f"{name} must be one of {sorted(allowed)}, got {value!r}", code="bad_argument"
        )
    return str(value)
