"""A real `celery beat` starts on Redis and on the embedded broker and publishes its sweeps,
each with an expiry, onto the fcsync queue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import create_engine, text

from tests.integration.conftest import Processes, wait_for
from worker.db import upgrade_database

pytestmark = pytest.mark.integration

SWEEPS = {"fcsync.refresh_due_accounts", "fcsync.poll_stale_refreshes", "fcsync.retry_failed_syncs"}


def _beat_env(tmp_path: Path, broker_url: str) -> dict[str, str]:
    db_url = f"sqlite:///{tmp_path / 'fcsync.db'}"
    upgrade_database(db_url)
    return {
        "DATABASE_URL": db_url,
        "CELERY_BROKER_URL": broker_url,
        "FCSYNC_BEAT_INTERVAL_S": "0.5",
    }


def _sweeps_in(messages: list[dict[str, Any]]) -> set[str]:
    found = set()
    for message in messages:
        headers = message["headers"]
        # beat entries carry `expires`: a sweep that waited too long is dropped, not run late.
        if headers.get("expires"):
            found.add(headers["task"])
    return found


def test_beat_publishes_sweeps_on_redis(
    processes: Processes, redis_url: str, tmp_path: Path
) -> None:
    # A database of its own on the test Redis, so no other test's worker consumes these.
    url = redis_url.rsplit("/", 1)[0] + "/13"
    client = redis.Redis.from_url(url)
    client.flushdb()
    processes.beat(_beat_env(tmp_path, url))

    def published() -> bool:
        raw = client.lrange("fcsync", 0, -1)
        return _sweeps_in([json.loads(m) for m in raw]) == SWEEPS

    wait_for(published, timeout=30, what=f"beat to publish {SWEEPS}\n{processes.logs()}")
    client.flushdb()


def test_beat_publishes_sweeps_on_embedded_broker(processes: Processes, tmp_path: Path) -> None:
    broker_file = tmp_path / "broker.sqlite"
    processes.beat(_beat_env(tmp_path, f"sqla+sqlite:///{broker_file}"))
    engine = create_engine(f"sqlite:///{broker_file}")

    def published() -> bool:
        if not broker_file.exists():
            return False
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    text(
                        "SELECT m.payload FROM kombu_message m "
                        "JOIN kombu_queue q ON q.id = m.queue_id WHERE q.name = 'fcsync'"
                    )
                ).all()
        except Exception:  # tables not created yet by the transport
            return False
        return _sweeps_in([json.loads(r[0]) for r in rows]) == SWEEPS

    try:
        wait_for(published, timeout=30, what=f"beat to publish {SWEEPS}\n{processes.logs()}")
    finally:
        engine.dispose()
