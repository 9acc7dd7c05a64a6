"""Settings: defaults, broker choice, secrets hidden, missing secrets named, countdowns that fit
the broker."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from worker.errors import ConfigurationError
from worker.settings import Settings
from worker.stripe_keys_file import load_stripe_keys

RABBITMQ = "amqp://guest:guest@mq:5672//"


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
    keys = load_stripe_keys(make(monkeypatch))
    with pytest.raises(ConfigurationError, match="STRIPE_API_KEY"):
        keys.api_keys()
    with pytest.raises(ConfigurationError, match="STRIPE_WEBHOOK_SECRET"):
        keys.require_webhook_secrets()


def test_settings_secrets_never_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    s = make(
        monkeypatch, STRIPE_API_KEY="sk_test_supersecret", STRIPE_WEBHOOK_SECRET="whsec_a, whsec_b"
    )
    assert "supersecret" not in repr(s) and "whsec_a" not in repr(s)
    assert "supersecret" not in str(s.model_dump())
    (default,) = load_stripe_keys(s).keys
    assert default.secret_values() == ["whsec_a", "whsec_b"]
    assert default.livemode is False
    assert load_stripe_keys(make(monkeypatch, STRIPE_API_KEY="sk_live_x")).keys[0].livemode


def test_settings_reject_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FCSYNC_PAGES_PER_RUN", "0")
    with pytest.raises(ValueError, match="fcsync_pages_per_run"):
        Settings()


@pytest.mark.parametrize(
    ("name", "value", "ok"),
    [
        ("FCSYNC_RECONCILE_INTERVAL_S", "0", True),
        ("FCSYNC_RECONCILE_INTERVAL_S", "3600", True),
        ("FCSYNC_RECONCILE_INTERVAL_S", "3599", False),
        ("FCSYNC_RECONCILE_INTERVAL_S", "-1", False),
        ("FCSYNC_RECONCILE_DAYS", "180", True),
        ("FCSYNC_RECONCILE_DAYS", "181", False),
        ("FCSYNC_RECONCILE_DAYS", "0", False),
    ],
)
def test_settings_reconcile_is_off_or_at_least_hourly_over_at_most_180_days(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, ok: bool
) -> None:
    monkeypatch.setenv(name, value)
    if ok:
        assert getattr(Settings(), name.lower()) == int(value)
    else:
        with pytest.raises(ValidationError, match=name.lower()):
            Settings()


@pytest.mark.parametrize(
    ("url", "amqp"),
    [
        (RABBITMQ, True),
        ("amqps://u:p@mq:5671/fcsync", True),
        ("pyamqp://mq//", True),
        ("redis://h:6379/0", False),
        ("sqla+sqlite:///broker.sqlite", False),
    ],
)
def test_settings_tell_rabbitmq_by_its_url(
    monkeypatch: pytest.MonkeyPatch, url: str, amqp: bool
) -> None:
    assert make(monkeypatch, CELERY_BROKER_URL=url).uses_amqp_broker is amqp


def test_settings_refuse_a_consumer_timeout_too_short_for_a_retry_or_a_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # RabbitMQ 3.8.15's 15 min: a retry's 10 min backoff and two task runs do not fit.
    with pytest.raises(ValidationError, match=r"CONSUMER_TIMEOUT_S=900 .* at least 1800 s"):
        make(monkeypatch, CELERY_BROKER_URL=RABBITMQ, FCSYNC_BROKER_CONSUMER_TIMEOUT_S="900")
    # RabbitMQ's default of 30 min leaves 10 min of countdown, too short for a longer poll cap.
    default = {"CELERY_BROKER_URL": RABBITMQ, "FCSYNC_BROKER_CONSUMER_TIMEOUT_S": "1800"}
    assert make(monkeypatch, **default).longest_countdown_s == 600
    with pytest.raises(ValidationError, match=r"at least 2200 s, or lower FCSYNC_POLL_MAX_S"):
        make(monkeypatch, **default, FCSYNC_POLL_MAX_S="1000")
    # Other brokers have no consumer timeout.
    make(monkeypatch, REDIS_URL="redis://h:6379/0", FCSYNC_BROKER_CONSUMER_TIMEOUT_S="900")


def test_settings_visibility_timeout_is_the_setting_else_four_max_countdowns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert make(monkeypatch).broker_visibility_timeout_s == 14_400
    s = make(monkeypatch, FCSYNC_MAX_COUNTDOWN_S="20000")
    assert s.broker_visibility_timeout_s == 80_000
    s = make(monkeypatch, FCSYNC_MAX_COUNTDOWN_S="60", FCSYNC_BROKER_VISIBILITY_TIMEOUT_S="301")
    assert s.broker_visibility_timeout_s == 301


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"FCSYNC_BROKER_VISIBILITY_TIMEOUT_S": "600"}, "FCSYNC_MAX_COUNTDOWN_S=3600"),
        (
            {"FCSYNC_BROKER_VISIBILITY_TIMEOUT_S": "60", "FCSYNC_MAX_COUNTDOWN_S": "60"},
            "FCSYNC_MAX_COUNTDOWN_S=60",
        ),
        (
            {"FCSYNC_BROKER_VISIBILITY_TIMEOUT_S": "10", "FCSYNC_MAX_COUNTDOWN_S": "5"},
            "FCSYNC_POLL_MAX_S=300",
        ),
    ],
)
def test_settings_visibility_timeout_must_outlast_every_countdown(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        make(monkeypatch, **env)


def test_settings_reject_unknown_failpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FCSYNC_FAILPOINTS", "sync.after_pgae=0.1")
    with pytest.raises(ValueError, match=r"unknown failpoint 'sync\.after_pgae'"):
        Settings()
    monkeypatch.setenv("FCSYNC_FAILPOINTS", "sync.after_page=0.1, refresh.after_post")
    assert Settings().armed_failpoints == {"sync.after_page": 0.1, "refresh.after_post": 1.0}
