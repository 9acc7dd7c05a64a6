"""The webhook receiver as Flask serves it, over a real migrated database (SQLite and
PostgreSQL), with every follow-up it would enqueue captured instead of sent."""

from __future__ import annotations

from contextlib import AbstractContextManager

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from worker.http import create_app
from worker.records import Followup
from worker.runtime import Runtime
from worker.settings import Settings

SECRET = "whsec_test_current"
OLD_SECRET = "whsec_test_previous"
MAX_BODY = 8192


@pytest.fixture
def receiver_settings(committed_engine: Engine) -> Settings:
    return Settings(
        database_url=committed_engine.url.render_as_string(hide_password=False),
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
    committed_engine: Engine, receiver_settings: Settings, receiver_sent: list[Followup]
) -> Runtime:
    """The receiver's runtime: this test's database, follow-ups captured in `receiver_sent`."""
    return Runtime(receiver_settings, send=receiver_sent.append, engine=committed_engine)


@pytest.fixture
def receiver(
    receiver_runtime: Runtime, receiver_sent: list[Followup]
) -> tuple[FlaskClient, list[Followup]]:
    """The test client and the follow-ups the receiver dispatched."""
    return create_app(receiver_runtime).test_client(), receiver_sent
