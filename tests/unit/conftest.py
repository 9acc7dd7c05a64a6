"""The webhook receiver as Flask serves it, over a real migrated database (SQLite and
PostgreSQL), with every follow-up it would enqueue captured instead of sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, delete

from models import WebhookEvent
from worker import db
from worker.http import create_app
from worker.records import Followup
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


@pytest.fixture
def receiver(
    receiver_engine: Engine, receiver_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> tuple[FlaskClient, list[Followup]]:
    """The test client and the follow-ups the receiver dispatched."""
    monkeypatch.setattr(db, "get_engine", lambda url_=None: receiver_engine)
    sent: list[Followup] = []
    app = create_app(receiver_settings, dispatch=sent.append)
    return app.test_client(), sent
