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
from worker.errors import PermanentError, TransientError
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


def test_runtime_one_gateway_and_one_request_budget_per_stripe_key(tmp_path: Path) -> None:
    """Stripe limits each account on its own: each key's requests draw on a bucket of its own
    (`default` keeping the single key's), and a key's gateway, once built, is the only one."""
    accounts = tmp_path / "stripe-accounts.toml"
    accounts.write_text('[accounts.eu]\napi_key = "sk_live_eu_0123456789abcdef"\n')
    settings = Settings(
        stripe_api_key="sk_test_default",
        fcsync_stripe_accounts=accounts,
        redis_url="redis://127.0.0.1:1/0",  # never dialled: the bucket is only built
        fcsync_requests_per_second=10,
    )
    runtime = Runtime(settings, send=lambda _: None, engine=make_engine("sqlite://"))

    default, eu = runtime.gateway_for("default"), runtime.gateway_for("eu")

    assert runtime.gateway_for("eu") is eu and runtime.gateway is default
    assert (default.stripe_key, default.livemode) == (None, False)
    assert (eu.stripe_key, eu.livemode) == ("eu", True)
    buckets = [getattr(g._limiter, "_key", None) for g in (default, eu)]
    assert buckets == ["fcsync:ratelimit:stripe", "fcsync:ratelimit:stripe:eu"]
    with pytest.raises(PermanentError) as unknown:
        runtime.gateway_for("us")
    assert unknown.value.code == "unknown_stripe_key"
