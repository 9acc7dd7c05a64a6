"""The Stripe request budget: one token bucket in Redis shared by every client (so a fleet of
workers stays under Stripe's limit together), and its in-process twin."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis

from worker.errors import RateLimitedError
from worker.ratelimit import (
    LocalTokenBucket,
    RedisTokenBucket,
    bucket_key,
    default_burst,
    limiter_for,
)
from worker.stripe_keys import DEFAULT

RATE = 20.0
CLIENTS = 3
CALLS_EACH = 20
# A second's worth plus a small burst, with room for the threads' scheduling jitter.
MOST_IN_ONE_SECOND = 1.25 * RATE + 1


def _acquire_concurrently(buckets: list[RedisTokenBucket] | list[LocalTokenBucket]) -> list[float]:
    stamps: list[float] = []
    lock = threading.Lock()

    def run(bucket: RedisTokenBucket | LocalTokenBucket) -> None:
        for _ in range(CALLS_EACH):
            bucket.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=run, args=(b,)) for b in buckets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return sorted(stamps)


def _most_in_one_second(stamps: list[float]) -> int:
    return max(sum(1 for u in stamps[i:] if u - t < 1.0) for i, t in enumerate(stamps))


@pytest.mark.redis
def test_ratelimit_redis_bucket_is_one_budget_for_all_clients(redis_url: str) -> None:
    key = f"fcsync:test:ratelimit:{uuid.uuid4().hex}"
    clients = [redis.Redis.from_url(redis_url) for _ in range(CLIENTS)]
    buckets = [RedisTokenBucket(c, rate=RATE, key=key) for c in clients]
    started = time.monotonic()
    stamps = _acquire_concurrently(buckets)
    assert len(stamps) == CLIENTS * CALLS_EACH
    # A small burst goes at once; the rest is paced at RATE for all clients together (three
    # separate budgets would have let all 60 calls through at once).
    burst = default_burst(RATE)
    paced = len(stamps) - burst
    assert stamps[-1] - started >= 0.9 * paced / RATE
    # No one-second window holds much more than a second's worth: a full second's burst on top
    # (twice RATE) would leave Stripe's own bucket empty, and the next early request a 429.
    assert _most_in_one_second(stamps) <= MOST_IN_ONE_SECOND
    clients[0].delete(key)
    for c in clients:
        c.close()


@pytest.mark.redis
def test_ratelimit_redis_bucket_refuses_waits_longer_than_max_wait(redis_url: str) -> None:
    key = f"fcsync:test:ratelimit:{uuid.uuid4().hex}"
    client = redis.Redis.from_url(redis_url)
    bucket = RedisTokenBucket(client, rate=1.0, burst=1.0, max_wait_s=0.5, key=key)
    bucket.acquire()
    with pytest.raises(RateLimitedError) as exc:
        bucket.acquire()
    assert exc.value.code == "local_rate_limit"
    assert exc.value.retry_after == pytest.approx(1.0, abs=0.2)
    client.delete(key)
    client.close()


def test_ratelimit_local_bucket_paces_threads_of_one_process() -> None:
    bucket = LocalTokenBucket(rate=RATE)
    started = time.monotonic()
    stamps = _acquire_concurrently([bucket] * CLIENTS)
    assert stamps[-1] - started >= 0.9 * (len(stamps) - default_burst(RATE)) / RATE
    assert _most_in_one_second(stamps) <= MOST_IN_ONE_SECOND
    strict = LocalTokenBucket(rate=1.0, burst=1.0, max_wait_s=0.5)
    strict.acquire()
    with pytest.raises(RateLimitedError):
        strict.acquire()


def test_ratelimit_bucket_key_per_stripe_account() -> None:
    # `default` keeps the single-key bucket, so old and new workers share it during an upgrade.
    assert bucket_key(DEFAULT) == "fcsync:ratelimit:stripe"
    assert bucket_key("eu-live") == "fcsync:ratelimit:stripe:eu-live"


@pytest.mark.redis
def test_ratelimit_each_stripe_account_has_its_own_budget(redis_url: str) -> None:
    """Stripe limits every account on its own: one account's spent budget never slows another,
    while two limiters of one account share theirs."""
    client = redis.Redis.from_url(redis_url)
    names = [f"test-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    try:
        spent, other = (limiter_for(redis_url, 1.0, name) for name in names)
        again = limiter_for(redis_url, 1.0, names[0])
        assert isinstance(spent, RedisTokenBucket) and isinstance(again, RedisTokenBucket)
        assert spent.acquire() == 0.0  # the one-request burst
        assert other is not None and other.acquire() == 0.0
        assert again.acquire() > 0.5  # same account: waited for the next token
        assert client.exists(bucket_key(names[0]), bucket_key(names[1])) == 2
    finally:
        client.delete(*(bucket_key(name) for name in names))
        client.close()
