"""The receiver's database pool: a connection per server thread, none tested at checkout, and a
connection the server dropped costs one 503 (Stripe redelivers), not one per pooled connection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, select, text

from emulator import signature_header
from models import WebhookEvent
from tests.unit.conftest import SECRET
from tests.unit.test_http_webhooks import event, post
from worker.http import create_app, receiver_engine
from worker.records import Followup
from worker.runtime import Runtime
from worker.settings import Settings

THREADS = 8


def settings_for(url: str) -> Settings:
    return Settings(
        database_url=url,
        stripe_api_key="sk_test_x",  # type: ignore[arg-type]
        stripe_webhook_secret=SECRET,  # type: ignore[arg-type]
        fcsync_webhook_threads=THREADS,
    )


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_receiver_pool_holds_a_connection_per_server_thread(kind: str, tmp_path: Path) -> None:
    url = (
        f"sqlite:///{tmp_path / 'fcsync.db'}"
        if kind == "sqlite"
        else "postgresql+psycopg://fcsync@127.0.0.1:1/never-connected"
    )
    engine = receiver_engine(settings_for(url))
    try:
        assert engine.pool.size() == THREADS  # type: ignore[attr-defined]
    finally:
        engine.dispose()


@pytest.fixture
def pg_receiver(postgres_engine: Engine) -> Iterator[tuple[FlaskClient, Engine]]:
    """The receiver as `fcsync webhooks` builds its database, on the test PostgreSQL."""
    settings = settings_for(postgres_engine.url.render_as_string(hide_password=False))
    engine = receiver_engine(settings)
    sent: list[Followup] = []
    runtime = Runtime(settings, send=sent.append, engine=engine)
    yield create_app(runtime).test_client(), engine
    engine.dispose()
    with postgres_engine.begin() as conn:
        conn.execute(text("DELETE FROM webhook_events"))


def delivered(client: FlaskClient, event_id: str) -> int:
    body = event(event_id)
    return int(post(client, body, signature_header(body, SECRET)).status_code)


def stored_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(WebhookEvent.id)).scalars())


@pytest.mark.postgres
def test_receiver_dropped_connections_cost_one_503_then_redelivery_is_stored(
    pg_receiver: tuple[FlaskClient, Engine], postgres_engine: Engine
) -> None:
    client, engine = pg_receiver
    # Every thread's connection pooled, then all of them cut by the server.
    held = [engine.connect() for _ in range(THREADS)]
    for conn in held:
        conn.execute(text("SELECT 1"))
        conn.close()
    with postgres_engine.connect() as admin:
        killed = admin.execute(
            text(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    assert killed >= THREADS
    ids = [f"evt_dropped{i}" for i in range(THREADS)]
    statuses = [delivered(client, event_id) for event_id in ids]
    # No round trip tests a connection at checkout: the first request finds its connection
    # dead and answers 503; the pool then replaces every connection opened before it.
    assert statuses == [503] + [200] * (THREADS - 1)
    assert stored_ids(engine) == set(ids[1:])
    assert delivered(client, ids[0]) == 200  # Stripe's redelivery
    assert stored_ids(engine) == set(ids)
