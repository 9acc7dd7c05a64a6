"""Typed settings, read once from the environment; secrets never appear in reprs or logs."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.errors import ConfigurationError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The Stripe API version this code is written against (stripe-python 15.3.x pins the same one).
STRIPE_API_VERSION = "2026-06-24.dahlia"
STRIPE_DEFAULT_API_BASE = "https://api.stripe.com"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    database_url: str = "sqlite:///fcsync.db"
    redis_url: str | None = None
    celery_broker_url: str | None = None
    stripe_api_key: SecretStr | None = None
    stripe_api_base: str = STRIPE_DEFAULT_API_BASE
    stripe_webhook_secret: SecretStr | None = None

    # Tuning knobs. Defaults are chosen for Stripe's test mode limits (25 req/s).
    fcsync_embedded_broker_path: Path = Path("fcsync-broker.sqlite")
    fcsync_embedded_broker_poll_s: float = Field(default=0.1, gt=0, le=5)
    fcsync_requests_per_second: float = Field(default=20.0, ge=0)
    fcsync_max_network_retries: int = Field(default=2, ge=0, le=10)
    fcsync_http_timeout_s: float = Field(default=30.0, gt=0)
    fcsync_pages_per_run: int = Field(default=20, ge=1)
    fcsync_refresh_interval_s: int = Field(default=86_400, ge=60)
    fcsync_poll_deadline_s: int = Field(default=3_600, ge=1)
    fcsync_poll_initial_s: float = Field(default=5.0, gt=0)
    fcsync_poll_max_s: float = Field(default=300.0, gt=0)
    fcsync_sync_lease_s: int = Field(default=300, ge=5)
    fcsync_stale_pending_s: int = Field(default=900, ge=1)
    # Stripe refreshes subscribed accounts about daily; beat steps in only this much later.
    fcsync_subscription_grace_s: int = Field(default=7_200, ge=0)
    fcsync_failed_refresh_retry_s: int = Field(default=900, ge=0)
    # An account that cannot refresh (inactive, no `transactions` permission) is re-read this
    # often, so a lost `reactivated` webhook still ends its pause: one Stripe request per period.
    # A sync that failed permanently is retried by the failed-sync sweep as often.
    fcsync_unusable_recheck_s: int = Field(default=86_400, ge=60)
    # Countdowns longer than this go through beat instead (see celeryconfig visibility_timeout).
    fcsync_max_countdown_s: int = Field(default=3_600, ge=1)
    fcsync_sweep_batch: int = Field(default=200, ge=1)
    fcsync_max_retries: int = Field(default=8, ge=0)
    fcsync_on_synced_task: str | None = None
    fcsync_on_synced_queue: str = "celery"
    fcsync_auto_track: bool = False
    fcsync_webhook_tolerance_s: int = Field(default=300, ge=0)
    fcsync_webhook_max_body_bytes: int = Field(default=262_144, ge=1024)
    fcsync_beat_interval_s: float = Field(default=60.0, gt=0)
    fcsync_log_level: str = "INFO"
    # Celery task events (task-sent from every sender, received/started/succeeded/failed from
    # workers), so Flower and `celery events` show fcsync's tasks as they are queued and run.
    fcsync_task_events: bool = True
    # `fcsync ... --inline` waits this long before its first retry of a transient error, doubling.
    fcsync_inline_retry_s: float = Field(default=1.0, ge=0)
    # Time-travel testing: follow an external clock (e.g. the emulator's /_emulator/clock).
    fcsync_clock_url: str | None = None

    @field_validator(
        "redis_url", "celery_broker_url", "fcsync_on_synced_task", "fcsync_clock_url", mode="before"
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("fcsync_log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value.upper()

    @property
    def broker_url(self) -> str:
        if self.celery_broker_url:
            return self.celery_broker_url
        if self.redis_url:
            return self.redis_url
        return f"sqla+sqlite:///{self.fcsync_embedded_broker_path}"

    @property
    def uses_embedded_broker(self) -> bool:
        return self.broker_url.startswith("sqla+")

    def require_api_key(self) -> str:
        if self.stripe_api_key is None or not self.stripe_api_key.get_secret_value():
            raise ConfigurationError(
                "STRIPE_API_KEY is not set: fcsync needs a Stripe secret or restricted key",
                code="missing_setting",
            )
        return self.stripe_api_key.get_secret_value()

    def webhook_secrets(self) -> list[str]:
        """All configured signing secrets (comma-separated, so a secret can be rotated)."""
        if self.stripe_webhook_secret is None:
            raise ConfigurationError(
                "STRIPE_WEBHOOK_SECRET is not set: the webhook receiver needs the endpoint's "
                "signing secret (whsec_...)",
                code="missing_setting",
            )
        secrets = [s.strip() for s in self.stripe_webhook_secret.get_secret_value().split(",")]
        secrets = [s for s in secrets if s]
        if not secrets:
            raise ConfigurationError("STRIPE_WEBHOOK_SECRET is empty", code="missing_setting")
        return secrets

    @property
    def livemode(self) -> bool | None:
        """True for live keys, False for test keys, None when no key is configured."""
        if self.stripe_api_key is None:
            return None
        key = self.stripe_api_key.get_secret_value()
        return "_live_" in key


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests and the CLI change the environment)."""
    get_settings.cache_clear()
