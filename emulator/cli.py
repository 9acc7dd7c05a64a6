"""`fcsync emulator` / `python -m emulator`: serve the emulator until SIGINT or SIGTERM.

worker/cli/serve.py mounts `emulator_command` (imported only when that command is used); every
fault key is also a flag (dashes for underscores)."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

import click

from emulator.config import EmulatorConfig, FaultSettings
from emulator.server import Emulator

DEFAULTS = EmulatorConfig()
FAULTS = FaultSettings()
RATE = click.FloatRange(0, 1)
NON_NEGATIVE = click.FloatRange(0)


@click.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=12111, show_default=True, type=click.IntRange(0, 65535))
@click.option("--seed", default=DEFAULTS.seed, show_default=True, type=int)
@click.option(
    "--accounts",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Seed N accounts at start.",
)
@click.option(
    "--transactions",
    default=DEFAULTS.transactions,
    show_default=True,
    type=click.IntRange(0, 1_000_000),
    help="Initial history of each account.",
)
@click.option(
    "--refresh-delay-s", default=DEFAULTS.refresh_delay_s, show_default=True, type=NON_NEGATIVE
)
@click.option(
    "--refresh-cooldown-s",
    default=DEFAULTS.refresh_cooldown_s,
    show_default=True,
    type=NON_NEGATIVE,
)
@click.option("--failure-rate", default=DEFAULTS.failure_rate, show_default=True, type=RATE)
@click.option("--webhook-url", default=None, help="Deliver events here (needs --webhook-secret).")
@click.option("--webhook-secret", default=None)
@click.option(
    "--requests-per-second",
    default=FAULTS.requests_per_second,
    type=NON_NEGATIVE,
    help="Stripe-like rate limit; 0 = off.",
)
@click.option("--rate-limit-rate", default=FAULTS.rate_limit_rate, type=RATE)
@click.option("--server-error-rate", default=FAULTS.server_error_rate, type=RATE)
@click.option("--drop-connection-rate", default=FAULTS.drop_connection_rate, type=RATE)
@click.option("--latency-ms", default=FAULTS.latency_ms, type=NON_NEGATIVE)
@click.option("--latency-spike-rate", default=FAULTS.latency_spike_rate, type=RATE)
@click.option("--latency-spike-ms", default=FAULTS.latency_spike_ms, type=NON_NEGATIVE)
@click.option("--webhook-drop-rate", default=FAULTS.webhook_drop_rate, type=RATE)
@click.option("--webhook-duplicate-rate", default=FAULTS.webhook_duplicate_rate, type=RATE)
@click.option(
    "--webhook-duplicate-copies",
    default=FAULTS.webhook_duplicate_copies,
    type=click.IntRange(2),
    help="Deliveries of a duplicated event in all.",
)
@click.option("--webhook-reorder/--no-webhook-reorder", default=FAULTS.webhook_reorder)
@click.option(
    "--webhook-delay-s",
    default=FAULTS.webhook_delay_s,
    type=NON_NEGATIVE,
    help="Delay in emulator seconds (advancing the clock delivers them).",
)
@click.option("--webhook-delay-rate", default=FAULTS.webhook_delay_rate, type=RATE)
def emulator_command(
    host: str,
    port: int,
    seed: int,
    accounts: int,
    transactions: int,
    refresh_delay_s: float,
    refresh_cooldown_s: float,
    failure_rate: float,
    webhook_url: str | None,
    webhook_secret: str | None,
    **faults: Any,
) -> None:
    """Serve the Stripe Financial Connections emulator."""
    if bool(webhook_url) != bool(webhook_secret):
        raise click.UsageError("--webhook-url and --webhook-secret go together")
    try:
        fault_settings = FaultSettings(seed=seed).merged(faults)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    config = EmulatorConfig(
        seed=seed,
        accounts=accounts,
        transactions=transactions,
        refresh_delay_s=refresh_delay_s,
        refresh_cooldown_s=refresh_cooldown_s,
        failure_rate=failure_rate,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        faults=fault_settings,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    emulator = Emulator(config)
    base_url = emulator.start(host=host, port=port)
    logging.getLogger("emulator").info(
        "Stripe FC emulator listening on %s (seed %d, %d accounts)", base_url, seed, accounts
    )
    try:
        # Short waits keep the main thread responsive to signals.
        while not stopping.wait(0.5):
            pass
    finally:
        emulator.stop()
