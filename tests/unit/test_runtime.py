"""The runtime's unit of work: a database that cannot be reached is a transient failure (named,
its password masked) that tasks and --inline retry; a missing table stays a schema error."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from tests.processes import free_port
from worker.db import make_engine
from worker.errors import TransientError
from worker.records import Followup
from worker.runtime import Runtime
from worker.settings import Settings
from worker.stripe_gateway import StripeGateway, gateway_from_settings


def runtime_on(engine: Engine, sent: list[Followup]) -> Runtime:
    settings = Settings(database_url=engine.url.render_as_string(hide_password=False))
    return Runtime(
        settings, send=sent.append, engine=engine, gateway=lambda: gateway_from_settings(settings)
    )


def select_accounts(session: Session, _gateway: StripeGateway, _now: object) -> None:
    session.execute(text("SELECT count(*) FROM accounts"))


def test_runtime_unreachable_database_is_a_transient_error_without_its_password() -> None:
    engine = make_engine(f"postgresql+psycopg://fcsync:s3cret@127.0.0.1:{free_port()}/fcsync")
    sent: list[Followup] = []
    try:
        with pytest.raises(TransientError) as raised:
            runtime_on(engine, sent).run(None, select_accounts)
    finally:
        engine.dispose()
    assert raised.value.code == "database_unavailable"
    assert isinstance(raised.value.__cause__, OperationalError)
    assert "s3cret" not in str(raised.value)
    assert sent == []


def test_runtime_missing_table_is_not_retried_as_transient(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'never-migrated.db'}")
    try:
        with pytest.raises(OperationalError, match="no such table"):
            runtime_on(engine, []).run(None, select_accounts)
    finally:
        engine.dispose()
