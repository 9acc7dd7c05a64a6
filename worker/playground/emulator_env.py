"""The emulated Stripe a playground stack talks to, and the environment its processes get:
the caller's own FCSYNC_/STRIPE_/CELERY_ settings scrubbed, the emulator's in their place."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from emulator import Emulator, EmulatorConfig, FaultSettings

DAY_S = 86_400
API_KEY = "sk_test_fcsync_playground"
WEBHOOK_SECRET = "whsec_fcsync_playground"
# A platform's Connect endpoint (its connected accounts' events) has a signing secret of its own;
# the receiver takes both (STRIPE_WEBHOOK_SECRET holds several, comma-separated).
CONNECT_WEBHOOK_SECRET = "whsec_fcsync_playground_connect"
WEBHOOK_PATH = "/webhooks/stripe"
# The emulator enforces Stripe's test-mode limit; fcsync's shared budget stays below it, so
# every 429 a run sees is an injected fault, never fcsync outrunning Stripe.
STRIPE_TEST_RPS = 25
FCSYNC_RPS = 20
# A failed refresh may be retried only after this much emulator time: beat never retries one
# within an emulated day, which keeps the number of refreshes per day predictable.
REFRESH_COOLDOWN_S = 3_600.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def playground_emulator(seed: int) -> Emulator:
    """Seeded, refreshes done a second after they start, Stripe's rate limit enforced."""
    return Emulator(
        EmulatorConfig(
            seed=seed,
            refresh_delay_s=1.0,
            refresh_cooldown_s=REFRESH_COOLDOWN_S,
            faults=FaultSettings(seed=seed, requests_per_second=STRIPE_TEST_RPS),
        )
    )


def scrubbed_environ() -> dict[str, str]:
    """This process's environment without any fcsync, Stripe or Celery setting: a stack must
    never reach the caller's own database, broker or Stripe account."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FCSYNC_", "STRIPE_", "CELERY_"))
        and k not in ("REDIS_URL", "DATABASE_URL")
    }


def stack_env(
    *,
    base_url: str,
    db_url: str,
    broker_url: str,
    redis_url: str | None,
    concurrency: int,
    overrides: Mapping[str, str],
) -> dict[str, str]:
    """The environment of every process of a stack on the emulator at `base_url`."""
    env = scrubbed_environ()
    budget = float(FCSYNC_RPS)
    if redis_url:
        env["REDIS_URL"] = redis_url
    else:
        # Without Redis the budget is per process: split it among the pool processes.
        budget = 0.9 * STRIPE_TEST_RPS / concurrency
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": db_url,
            "CELERY_BROKER_URL": broker_url,
            "STRIPE_API_KEY": API_KEY,
            "STRIPE_API_BASE": base_url,
            "STRIPE_WEBHOOK_SECRET": f"{WEBHOOK_SECRET},{CONNECT_WEBHOOK_SECRET}",
            # Every process reads the emulator's clock, so a day passes in one call.
            "FCSYNC_CLOCK_URL": f"{base_url}/_emulator/clock",
            "FCSYNC_BEAT_INTERVAL_S": "1",
            "FCSYNC_POLL_INITIAL_S": "1",
            "FCSYNC_POLL_MAX_S": "3",
            "FCSYNC_REQUESTS_PER_SECOND": f"{budget:g}",
            "FCSYNC_EMBEDDED_BROKER_POLL_S": "0.05",
            "FCSYNC_LOG_LEVEL": "INFO",
            # Stacks run side by side (tests, benchmarks): a worker's /metrics only when asked.
            "FCSYNC_METRICS_PORT": "0",
        }
    )
    env.update(overrides)
    return env
