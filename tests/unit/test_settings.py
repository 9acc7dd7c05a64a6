"""Settings: defaults, broker choice, secrets hidden, missing secrets named."""

from __future__ import annotations

import pytest

from worker.errors import ConfigurationError
from worker.settings import Settings


def make(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name in (
        "REDIS_URL",
        "CELERY_BROKER_URL",
        "STRIPE_API_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "DATABASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_settings_broker_defaults_to_embedded_then_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    s = make(monkeypatch)
    assert s.broker_url.startswith("sqla+sqlite:///") and s.uses_embedded_broker
    assert s.database_url == "sqlite:///fcsync.db"
    s = make(monkeypatch, REDIS_URL="redis://h:6379/0")
    assert s.broker_url == "redis://h:6379/0" and not s.uses_embedded_broker
    s = make(monkeypatch, REDIS_URL="redis://h/0", CELERY_BROKER_URL="amqp://guest@h//")
    assert s.broker_url == "amqp://guest@h//"


def test_settings_missing_secret_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    s = make(monkeypatch)
    with pytest.raises(ConfigurationError, match="STRIPE_API_KEY"):
        s.require_api_key()
    with pytest.raises(ConfigurationError, match="STRIPE_WEBHOOK_SECRET"):
        s.webhook_secrets()


def test_settings_secrets_never_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    s = make(
        monkeypatch, STRIPE_API_KEY="sk_test_supersecret", STRIPE_WEBHOOK_SECRET="whsec_a, whsec_b"
    )
    assert "supersecret" not in repr(s) and "whsec_a" not in repr(s)
    assert "supersecret" not in str(s.model_dump())
    assert s.webhook_secrets() == ["whsec_a", "whsec_b"]
    assert s.livemode is False
    assert make(monkeypatch, STRIPE_API_KEY="sk_live_x").livemode is True


def test_settings_reject_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FCSYNC_PAGES_PER_RUN", "0")
    with pytest.raises(ValueError, match="fcsync_pages_per_run"):
        Settings()


def test_settings_reject_unknown_failpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FCSYNC_FAILPOINTS", "sync.after_pgae=0.1")
    with pytest.raises(ValueError, match=r"unknown failpoint 'sync\.after_pgae'"):
        Settings()
    monkeypatch.setenv("FCSYNC_FAILPOINTS", "sync.after_page=0.1, refresh.after_post")
    assert Settings().armed_failpoints == {"sync.after_page": 0.1, "refresh.after_post": 1.0}
