"""When a failed refresh is tried again, the one policy every feature (transactions, balances,
ownership) shares: exponential backoff per failure in a row, capped, with jitter, and never
before Stripe's `next_refresh_available_at`."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from worker.settings import Settings

# Up to this fraction of the delay is added on top of it: accounts whose refreshes failed
# together (an institution's outage) spread over a quarter of the wait instead of coming back
# in the same beat tick. Added, never taken off, so FCSYNC_FAILED_REFRESH_RETRY_S stays the
# earliest retry.
JITTER = 0.25
# 2**20 times any base is far past any cap: doubling stops there (a refresh failing daily for
# years would otherwise overflow the delay).
_DOUBLINGS_MAX = 20


def failed_refresh_retry_at(
    *,
    attempted_at: int,
    failures: int,
    next_refresh_available_at: int | None,
    key: str,
    settings: Settings,
) -> datetime:
    """When to try again after the `failures`-th refresh in a row failed, counted from when it
    was attempted (Unix seconds): FCSYNC_FAILED_REFRESH_RETRY_S doubling with each failure up to
    FCSYNC_FAILED_REFRESH_RETRY_MAX_S, plus up to JITTER of it, never before Stripe allows
    one. `key` (the account and feature) picks the jitter: the same failure seen again (a
    duplicate webhook, a second poll) gives the same time, other accounts other ones."""
    base = settings.fcsync_failed_refresh_retry_s
    cap = max(settings.fcsync_failed_refresh_retry_max_s, base)
    delay = min(base * 2 ** min(max(failures - 1, 0), _DOUBLINGS_MAX), cap)
    delay += delay * JITTER * _spread(f"{key}/{failures}/{attempted_at}")
    retry_at = datetime.fromtimestamp(attempted_at, tz=UTC) + timedelta(seconds=delay)
    if next_refresh_available_at is not None:
        retry_at = max(retry_at, datetime.fromtimestamp(next_refresh_available_at, tz=UTC))
    return retry_at


def _spread(key: str) -> float:
    """A number in [0, 1) fixed by `key`, spread evenly over keys."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64
