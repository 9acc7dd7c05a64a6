"""One request budget for every worker: a token bucket in Redis, or in-process without Redis."""

from __future__ import annotations

import threading
import time
from typing import Any

from worker.errors import RateLimitedError
from worker.stripe_keys import DEFAULT

# Stripe limits each account on its own, so each configured Stripe account has its own bucket.
# `default` keeps the key of the single-key days: during a rolling upgrade old and new workers
# draw on one budget.
BUCKET_KEY = "fcsync:ratelimit:stripe"

# How much budget an idle bucket saves up, in seconds of its rate (at least one request).
# Stripe limits with a bucket of its own, about a second's worth: had ours a second's worth too,
# a fleet busy at exactly Stripe's rate would drain Stripe's bucket to zero, and any request
# arriving a few ms early (network, scheduling) got a 429. A tenth of a second leaves nine
# tenths of Stripe's bucket as a cushion, so FCSYNC_REQUESTS_PER_SECOND can be Stripe's limit
# itself; the rate over any longer stretch is the same (bench/fleet.py measures both).
BURST_S = 0.1


def default_burst(rate: float) -> float:
    return max(1.0, rate * BURST_S)


# Reserve one token and return how long the caller must wait for it (0 = go now). Tokens may go
# negative up to `max_wait * rate`, which queues callers fairly instead of letting them race.
# Redis TIME keeps every worker on the same clock.
_TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens < 1 then
  wait = (1 - tokens) / rate
end
if wait > max_wait then
  return tostring(-wait)
end
tokens = tokens - 1
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate + max_wait) + 2)
return tostring(wait)
"""


class RedisTokenBucket:
    """Shared across processes and machines; `acquire()` sleeps for its turn (and returns how
    long it slept) or raises."""

    def __init__(
        self,
        client: Any,
        *,
        rate: float,
        burst: float | None = None,
        max_wait_s: float = 10.0,
        key: str = BUCKET_KEY,
    ) -> None:
        self._script = client.register_script(_TOKEN_BUCKET_LUA)
        self._rate = rate
        self._burst = burst if burst is not None else default_burst(rate)
        self._max_wait = max_wait_s
        self._key = key

    def acquire(self) -> float:
        wait = float(self._script(keys=[self._key], args=[self._rate, self._burst, self._max_wait]))
        if wait < 0:
            raise RateLimitedError(
                f"shared Stripe request budget exhausted for {-wait:.1f}s",
                code="local_rate_limit",
                retry_after=-wait,
            )
        if wait > 0:
            time.sleep(wait)
        return wait


class LocalTokenBucket:
    """The same algorithm for one process (embedded broker, CLI --inline)."""

    def __init__(self, *, rate: float, burst: float | None = None, max_wait_s: float = 10.0):
        self._rate = rate
        self._burst = burst if burst is not None else default_burst(rate)
        self._max_wait = max_wait_s
        self._tokens = self._burst
        self._ts = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._ts) * self._rate)
            self._ts = now
            wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self._rate
            if wait > self._max_wait:
                raise RateLimitedError(
                    f"Stripe request budget exhausted for {wait:.1f}s",
                    code="local_rate_limit",
                    retry_after=wait,
                )
            self._tokens -= 1
        if wait > 0:
            time.sleep(wait)
        return wait


def bucket_key(stripe_key: str) -> str:
    """The Redis key of the budget of the Stripe account named `stripe_key`."""
    return BUCKET_KEY if stripe_key == DEFAULT else f"{BUCKET_KEY}:{stripe_key}"


def limiter_for(
    redis_url: str | None, rate: float, stripe_key: str = DEFAULT
) -> RedisTokenBucket | LocalTokenBucket | None:
    """The request budget of one configured Stripe account (worker/stripe_keys.py names them)."""
    if rate <= 0:
        return None
    if redis_url:
        import redis

        return RedisTokenBucket(
            redis.Redis.from_url(redis_url), rate=rate, key=bucket_key(stripe_key)
        )
    return LocalTokenBucket(rate=rate)
