"""The webhook receiver as Flask serves it, over a real migrated database (SQLite and
PostgreSQL), with every follow-up it would enqueue captured instead of sent."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session

from models import WebhookEvent
from worker import db
from worker.http import create_app
from worker.records import Followup
from worker.runtime import Runtime
from worker.settings import Settings

SECRET = "whsec_test_current"
OLD_SECRET = "whsec_test_previous"
MAX_BODY = 8192


@pytest.fixture(scope="session")
def receiver_pg_engine(postgres_url: str) -> Iterator[Engine]:
    db.upgrade_database(postgres_url)
    engine = db.make_engine(postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def receiver_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated database of this test's own (the PostgreSQL one is emptied afterwards)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'hooks.db'}"
        db.upgrade_database(url)
        engine = db.make_engine(url)
        yield engine
        engine.dispose()
        return
    engine = request.getfixturevalue("receiver_pg_engine")
    yield engine
    with engine.begin() as conn:
        conn.execute(delete(WebhookEvent))


@pytest.fixture
def receiver_settings(receiver_engine: Engine) -> Settings:
    return Settings(
        database_url=receiver_engine.url.render_as_string(hide_password=False),
        stripe_api_key="sk_test_x",  # type: ignore[arg-type]
        stripe_webhook_secret=f"{SECRET},{OLD_SECRET}",
        fcsync_webhook_max_body_bytes=MAX_BODY,
    )


def inbox_session(client: FlaskClient) -> AbstractContextManager[Session]:
    """A unit of work on the database the receiver behind `client` writes to."""
    runtime: Runtime = client.application.extensions["fcsync"]
    return runtime.session()


@pytest.fixture
def receiver_sent() -> list[Followup]:
    """Every follow-up the receiver dispatched, in order."""
    return []


@pytest.fixture
def receiver_runtime(
    receiver_engine: Engine, receiver_settings: Settings, receiver_sent: list[Followup]
) -> Runtime:
    """The receiver's runtime: this test's database, follow-ups captured in `receiver_sent`."""
    return Runtime(receiver_settings, send=receiver_sent.append, engine=receiver_engine)


@pytest.fixture
def receiver(
    receiver_runtime: Runtime, receiver_sent: list[Followup]
) -> tuple[FlaskClient, list[Followup]]:
    """The test client and the follow-ups the receiver dispatched."""
    return create_app(receiver_runtime).test_client(), receiver_sent
