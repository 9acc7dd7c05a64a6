"""Typed settings, read once from the environment; secrets never appear in reprs or logs."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker import failpoints

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Every task's time limits and retry backoff cap (declared on the task base, tasks/base.py): how
# long a broker may have to hold a message unacknowledged depends on them.
TASK_SOFT_TIME_LIMIT_S = 540
TASK_TIME_LIMIT_S = 600
TASK_RETRY_BACKOFF_MAX_S = 600
# Broker URL schemes of RabbitMQ (kombu's py-amqp transport).
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
# With acks_late a worker acknowledges an ETA message only after its run, and it may first wait
# for a pool process that is running out another task's time limit: two time limits on top of
# the countdown itself.
AMQP_ACK_MARGIN_S = 2 * TASK_TIME_LIMIT_S
LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[str, ...] = get_args(LogFormat)
# The Stripe API version this code is written against: the one stripe-python 16.1 pins, so the
# SDK's types describe what Stripe answers (tests/unit/test_api_version.py holds them equal).
STRIPE_API_VERSION = "2026-10-28.endive"
STRIPE_DEFAULT_API_BASE = "https://api.stripe.com"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    database_url: str = "sqlite:///fcsync.db"
    redis_url: str | None = None
    celery_broker_url: str | None = None
    stripe_api_key: SecretStr | None = None
    stripe_api_base: str = STRIPE_DEFAULT_API_BASE
    stripe_webhook_secret: SecretStr | None = None
    # A TOML file of named Stripe accounts, beside or instead of the two above
    # (worker/stripe_keys_file.py reads it; README "Several Stripe accounts").
    fcsync_stripe_accounts: Path | None = None

    # Tuning knobs. Defaults are chosen for Stripe's test mode limits (25 req/s).
    fcsync_embedded_broker_path: Path = Path("fcsync-broker.sqlite")
    fcsync_embedded_broker_poll_s: float = Field(default=0.1, gt=0, le=5)
    fcsync_requests_per_second: float = Field(default=20.0, ge=0)
    fcsync_max_network_retries: int = Field(default=2, ge=0, le=10)
    fcsync_http_timeout_s: float = Field(default=30.0, gt=0)
    # A sync task's turn: it stops at whichever comes first, then re-enqueues itself (fairness
    # across accounts). Seconds are what other accounts wait; pages bound it on any network.
    fcsync_run_s: float = Field(default=5.0, gt=0)
    fcsync_pages_per_run: int = Field(default=1_000, ge=1)
    fcsync_refresh_interval_s: int = Field(default=86_400, ge=60)
    fcsync_poll_deadline_s: int = Field(default=3_600, ge=1)
    fcsync_poll_initial_s: float = Field(default=5.0, gt=0)
    fcsync_poll_max_s: float = Field(default=300.0, gt=0)
    fcsync_sync_lease_s: int = Field(default=300, ge=5)
    fcsync_stale_pending_s: int = Field(default=900, ge=1)
    # Stripe refreshes subscribed accounts about daily; beat steps in only this much later.
    fcsync_subscription_grace_s: int = Field(default=7_200, ge=0)
    fcsync_failed_refresh_retry_s: int = Field(default=900, ge=0)
    # The failed-refresh backoff doubles from FCSYNC_FAILED_REFRESH_RETRY_S up to this (plus its
    # jitter, worker/refresh_backoff.py): an institution that keeps failing costs a few
    # requests a day per feature, not four an hour.
    fcsync_failed_refresh_retry_max_s: int = Field(default=86_400, ge=0)
    # An account that cannot refresh (inactive, no `transactions` permission) is re-read this
    # often, so a lost `reactivated` webhook still ends its pause: one Stripe request per period.
    # A sync that failed permanently is retried by the failed-sync sweep as often.
    fcsync_unusable_recheck_s: int = Field(default=86_400, ge=60)
    # Countdowns longer than this go through beat instead (see longest_countdown_s).
    fcsync_max_countdown_s: int = Field(default=3_600, ge=1)
    # RabbitMQ's `consumer_timeout` (its rabbitmq.conf, in ms there; 30 min by default): the
    # server closes a channel whose delivery stays unacknowledged longer than this.
    fcsync_broker_consumer_timeout_s: int = Field(default=1_800, ge=1)
    # Redis redelivers a message not acknowledged this long after delivery; None = derived
    # from the longest countdown (broker_visibility_timeout_s).
    fcsync_broker_visibility_timeout_s: int | None = Field(default=None, ge=1)
    fcsync_sweep_batch: int = Field(default=200, ge=1)
    fcsync_max_retries: int = Field(default=8, ge=0)
    fcsync_on_synced_task: str | None = None
    fcsync_on_synced_queue: str = "celery"
    # Told of each lifecycle change fcsync sees (worker/lifecycle.py): a relink Stripe asks for
    # by a date, deactivation, reactivation, disconnection, account number events.
    fcsync_on_account_task: str | None = None
    fcsync_on_account_queue: str = "celery"
    fcsync_auto_track: bool = False
    fcsync_webhook_tolerance_s: int = Field(default=300, ge=0)
    fcsync_webhook_max_body_bytes: int = Field(default=262_144, ge=1024)
    # Requests `fcsync webhooks` serves at once (granian's WSGI threads, per process); their events
    # are stored together (worker/inbox_writer.py), so more threads make larger batches: 16 cut
    # the receiver's CPU per event by a sixth against 8 (bench/webhooks.py, 16 senders).
    fcsync_webhook_threads: int = Field(default=16, ge=1, le=256)
    # Processes `fcsync webhooks` serves with, sharing its listening socket (each with as many
    # threads): more than one lets the receiver use more than one core.
    fcsync_webhook_processes: int = Field(default=1, ge=1, le=64)
    # The receiver's /status page answers loopback clients without it; any other client only
    # with it (worker/status_page.py). Unset: loopback only.
    fcsync_status_token: SecretStr | None = None
    fcsync_beat_interval_s: float = Field(default=60.0, gt=0)
    # Beat period of the events sweep (GET /v1/events back into the inbox); 0: no sweep.
    fcsync_events_sweep_s: float = Field(default=300.0, ge=0)
    # The sweep re-reads this much before the newest inbox event: events are not listed in
    # the order they were created in every case, and the inbox's dedupe makes re-reading free.
    fcsync_events_overlap_s: int = Field(default=600, ge=0)
    # Each tracked account is reconciled once per this period (in its own slot of it, see
    # worker/reconcile.py), re-reading the last FCSYNC_RECONCILE_DAYS days; 0: no sweep. At
    # least an hour: a reconciliation re-reads a whole window, a sync only what changed.
    fcsync_reconcile_interval_s: int = Field(default=604_800, ge=0)
    fcsync_reconcile_days: int = Field(default=30, ge=1, le=180)
    fcsync_log_level: str = "INFO"
    # "json": one JSON object per line, for a log shipper; text for people, wherever it goes.
    fcsync_log_format: LogFormat = "text"
    # Celery task events (task-sent from every sender, received/started/succeeded/failed from
    # workers), so Flower and `celery events` show fcsync's tasks as they are queued and run.
    fcsync_task_events: bool = True
    # The worker serves /metrics at http://HOST:PORT/metrics (0: not at all); the webhook
    # receiver serves its own on its port.
    fcsync_metrics_host: str = "127.0.0.1"
    fcsync_metrics_port: int = Field(default=9540, ge=0, le=65535)
    # `fcsync ... --inline` waits this long before its first retry of a transient error, doubling.
    fcsync_inline_retry_s: float = Field(default=1.0, ge=0)
    # Time-travel testing: follow an external clock (e.g. the emulator's /_emulator/clock).
    fcsync_clock_url: str | None = None
    # Fault testing only: `name=probability,...` of the failpoints this process crashes at.
    fcsync_failpoints: str | None = None

    @field_validator(
        "redis_url",
        "celery_broker_url",
        "fcsync_on_synced_task",
        "fcsync_on_account_task",
        "fcsync_clock_url",
        "fcsync_failpoints",
        "fcsync_status_token",
        "fcsync_stripe_accounts",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("fcsync_metrics_port", mode="before")
    @classmethod
    def _empty_is_off(cls, value: object) -> object:
        return 0 if value == "" else value

    @field_validator("fcsync_reconcile_interval_s")
    @classmethod
    def _off_or_an_hour(cls, value: int) -> int:
        if 0 < value < 3_600:
            raise ValueError("must be 0 (no reconciliation sweep) or at least 3600 seconds")
        return value

    @field_validator("fcsync_log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value.upper()

    @model_validator(mode="after")
    def _countdowns_fit_the_broker(self) -> Settings:
        """Every countdown fcsync schedules must be held by the broker until it is due: within
        Redis's visibility timeout (else it is delivered twice, celery/celery#4766) and, on
        RabbitMQ, within the consumer timeout (else the channel is closed)."""
        timeout = self.fcsync_broker_visibility_timeout_s
        longer = [
            f"{name.upper()}={value:g}"
            for name, value in (
                ("fcsync_max_countdown_s", self.fcsync_max_countdown_s),
                ("fcsync_poll_max_s", self.fcsync_poll_max_s),
            )
            if timeout is not None and value >= timeout
        ]
        if longer:
            raise ValueError(
                f"FCSYNC_BROKER_VISIBILITY_TIMEOUT_S={timeout} must be longer than the longest "
                f"countdown fcsync schedules ({', '.join(longer)}): Redis would deliver such a "
                "task again before it is due. Lower those settings too, or raise the timeout"
            )
        # A poll's backoff and a task's retry cannot be left to beat: the broker must hold them.
        needed = max(self.fcsync_poll_max_s, TASK_RETRY_BACKOFF_MAX_S)
        if self.uses_amqp_broker and self.consumer_timeout_room_s < needed:
            room = max(0, self.consumer_timeout_room_s)
            raise ValueError(
                f"FCSYNC_BROKER_CONSUMER_TIMEOUT_S={self.fcsync_broker_consumer_timeout_s} "
                f"leaves room for countdowns of {room} s on RabbitMQ, less than the {needed:g} s "
                "a poll or a retry may wait: raise RabbitMQ's consumer_timeout (and this "
                f"setting) to at least {needed + AMQP_ACK_MARGIN_S:g} s, or lower FCSYNC_POLL_MAX_S"
            )
        return self

    @field_validator("fcsync_log_format", mode="before")
    @classmethod
    def _known_format(cls, value: object) -> object:
        if not isinstance(value, str) or value.lower() not in LOG_FORMATS:
            raise ValueError(f"must be one of {', '.join(LOG_FORMATS)}")
        return value.lower()

    @property
    def broker_visibility_timeout_s(self) -> int:
        """The one configured, else 4x the longest countdown and at least 2 h: well past any task's
        countdown plus its run time (its hard time limit is 10 min)."""
        if self.fcsync_broker_visibility_timeout_s is not None:
            return self.fcsync_broker_visibility_timeout_s
        return max(4 * self.fcsync_max_countdown_s, 7_200)

    @field_validator("fcsync_failpoints")
    @classmethod
    def _known_failpoints(cls, value: str | None) -> str | None:
        failpoints.parse(value or "")
        return value

    @property
    def armed_failpoints(self) -> dict[str, float]:
        return failpoints.parse(self.fcsync_failpoints or "")

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

    @property
    def uses_amqp_broker(self) -> bool:
        return self.broker_url.split("://", 1)[0].lower() in AMQP_SCHEMES

    @property
    def longest_countdown_s(self) -> int:
        """The longest countdown fcsync gives a message; later work is left to beat. A worker
        holds an ETA message unacknowledged through its countdown and its run: Redis would
        deliver it again after its visibility timeout (celeryconfig sets that past this), and
        RabbitMQ closes the worker's channel once its consumer timeout passes
        (celery/celery#6760), so on RabbitMQ the countdown ends well within that timeout."""
        if not self.uses_amqp_broker:
            return self.fcsync_max_countdown_s
        return min(self.fcsync_max_countdown_s, self.consumer_timeout_room_s)

    @property
    def consumer_timeout_room_s(self) -> int:
        """The longest countdown RabbitMQ's consumer timeout leaves room for."""
        return self.fcsync_broker_consumer_timeout_s - AMQP_ACK_MARGIN_S


def invalid_settings(exc: ValidationError) -> list[str]:
    """One line per malformed setting, naming its variable (a rule across settings, a model
    validator, names them in its message instead): what a process refusing to start says
    instead of pydantic's traceback."""
    lines = []
    for error in exc.errors():
        name = "_".join(str(part) for part in error["loc"]).upper()
        where = f"{name}: " if name else ""
        # pydantic words a validator's own message "Value error, ..."; the message is enough.
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"error [invalid_setting]: {where}{message}")
    return lines


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests and the CLI change the environment)."""
    get_settings.cache_clear()
