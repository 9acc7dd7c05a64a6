"""A real `celery beat` starts on Redis and on the embedded broker and publishes its sweeps,
each with an expiry, onto the fcsync queue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.conftest import Processes, wait_for
from tests.processes import decode_message, embedded_queue
from worker.db import upgrade_database

pytestmark = pytest.mark.integration

SWEEPS = {
    "fcsync.refresh_due_accounts",
    "fcsync.poll_stale_refreshes",
    "fcsync.retry_failed_syncs",
    # Every five beat periods: within the test's wait at FCSYNC_BEAT_INTERVAL_S=0.5.
    "fcsync.reconcile_due_accounts",
}


def _beat_env(tmp_path: Path, broker_url: str) -> dict[str, str]:
    db_url = f"sqlite:///{tmp_path / 'fcsync.db'}"
    upgrade_database(db_url)
    return {
        "DATABASE_URL": db_url,
        "CELERY_BROKER_URL": broker_url,
        "FCSYNC_BEAT_INTERVAL_S": "0.5",
    }


def _sweeps_in(messages: list[dict[str, Any]]) -> set[str]:
    # beat entries carry `expires`: a sweep that waited too long is dropped, not run late.
    return {m["task"] for m in messages if m["headers"].get("expires")}


def test_beat_publishes_sweeps_on_redis(
    processes: Processes, stack_redis_url: str, tmp_path: Path
) -> None:
    # A Redis server of the test's own (as every stack test's): no other test's worker consumes
    # these, and nothing any other run keeps in the machine's Redis is flushed.
    client = redis.Redis.from_url(stack_redis_url)
    processes.beat(_beat_env(tmp_path, stack_redis_url))

    def published() -> bool:
        raw = client.lrange("fcsync", 0, -1)
        return _sweeps_in([decode_message(json.loads(m)) for m in raw]) == SWEEPS

    wait_for(published, timeout=30, what=f"beat to publish {SWEEPS}\n{processes.logs()}")


def test_beat_publishes_sweeps_on_embedded_broker(processes: Processes, tmp_path: Path) -> None:
    broker_file = tmp_path / "broker.sqlite"
    processes.beat(_beat_env(tmp_path, f"sqla+sqlite:///{broker_file}"))
    wait_for(
        lambda: _sweeps_in(embedded_queue(broker_file)) == SWEEPS,
        timeout=30,
        what=f"beat to publish {SWEEPS}\n{processes.logs()}",
    )
