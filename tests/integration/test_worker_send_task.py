"""A real `celery worker` subprocess consumes a task sent by name and changes the database."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy.orm import Session

from models import WebhookEvent
from tests.integration.conftest import Processes, wait_for
from worker.db import make_engine, upgrade_database

pytestmark = pytest.mark.integration


def _store_event(db_url: str) -> str:
    """An inbox event of a type fcsync does not handle: processing it needs no Stripe call."""
    event_id = f"evt_{uuid.uuid4().hex}"
    payload = {
        "id": event_id,
        "object": "event",
        "type": "financial_connections.account.refreshed_balance",
        "created": 1,
        "livemode": False,
        "data": {
            "object": {"id": "fca_x", "object": "financial_connections.account", "status": "active"}
        },
    }
    engine = make_engine(db_url)
    with Session(engine) as session, session.begin():
        session.add(
            WebhookEvent(
                id=event_id,
                type=payload["type"],
                account_id="fca_x",
                livemode=False,
                created=1,
                payload=json.dumps(payload),
                received_at=datetime.now(UTC),
            )
        )
    engine.dispose()
    return event_id


def _outcome(db_url: str, event_id: str) -> str | None:
    engine = make_engine(db_url)
    with Session(engine) as session:
        row = session.get(WebhookEvent, event_id)
        outcome = row.outcome if row else None
    engine.dispose()
    return outcome


def _send_and_check(
    processes: Processes, db_url: str, broker_url: str, extra_env: dict[str, str]
) -> None:
    upgrade_database(db_url)
    env = {
        "DATABASE_URL": db_url,
        "CELERY_BROKER_URL": broker_url,
        "STRIPE_API_KEY": "sk_test_x",
        **extra_env,
    }
    processes.worker(env, concurrency=1)
    event_id = _store_event(db_url)
    client = Celery("caller", broker=broker_url)
    client.send_task("fcsync.handle_event", kwargs={"event_id": event_id}, queue="fcsync")
    wait_for(
        lambda: _outcome(db_url, event_id) == "ignored",
        timeout=60,
        what=f"worker to process {event_id}\n{processes.logs()}",
    )


def test_worker_on_redis_processes_task_sent_by_name(
    processes: Processes, redis_url: str, postgres_url: str
) -> None:
    _send_and_check(processes, postgres_url, redis_url, {"REDIS_URL": redis_url})


def test_worker_on_embedded_broker_processes_task_sent_by_name(
    processes: Processes, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'fcsync.db'}"
    broker = f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    _send_and_check(processes, db_url, broker, {})
