"""The failed-refresh backoff every feature shares: doubling per failure in a row from
FCSYNC_FAILED_REFRESH_RETRY_S, capped, jittered upwards only, never before Stripe allows a
refresh, and the same answer for the same failure."""

from __future__ import annotations

from datetime import UTC, datetime

from worker.refresh_backoff import JITTER, failed_refresh_retry_at
from worker.settings import Settings

ATTEMPTED = 1_790_000_000
BASE_S = 900
CAP_S = 86_400
SETTINGS = Settings(fcsync_failed_refresh_retry_s=BASE_S, fcsync_failed_refresh_retry_max_s=CAP_S)


def delay(failures: int, *, key: str = "fca_1/balances", settings: Settings = SETTINGS) -> float:
    retry_at = failed_refresh_retry_at(
        attempted_at=ATTEMPTED,
        failures=failures,
        next_refresh_available_at=None,
        key=key,
        settings=settings,
    )
    return retry_at.timestamp() - ATTEMPTED


def test_refresh_backoff_doubles_per_failure_in_a_row_up_to_the_cap() -> None:
    for failures, unjittered in [(1, BASE_S), (2, 2 * BASE_S), (4, 8 * BASE_S), (7, 64 * BASE_S)]:
        assert unjittered <= delay(failures) < unjittered * (1 + JITTER), failures
    for failures in (8, 30, 10**6):
        assert CAP_S <= delay(failures) < CAP_S * (1 + JITTER), failures
    # No failure counted (a state seen without its history) waits as the first one.
    assert BASE_S <= delay(0) < BASE_S * (1 + JITTER)


def test_refresh_backoff_jitter_spreads_accounts_and_repeats_for_one_failure() -> None:
    delays = {delay(3, key=f"fca_{i}/transactions") for i in range(50)}
    assert len(delays) == 50, "every account its own time"
    assert max(delays) - min(delays) > 0.5 * JITTER * 4 * BASE_S, "spread over the jitter"
    assert delay(3, key="fca_7/ownership") == delay(3, key="fca_7/ownership")
    assert delay(3, key="fca_7/ownership") != delay(3, key="fca_7/balances")


def test_refresh_backoff_never_before_next_refresh_available_at() -> None:
    later = ATTEMPTED + 10 * CAP_S
    retry_at = failed_refresh_retry_at(
        attempted_at=ATTEMPTED,
        failures=1,
        next_refresh_available_at=later,
        key="fca_1/transactions",
        settings=SETTINGS,
    )
    assert retry_at == datetime.fromtimestamp(later, tz=UTC)


def test_refresh_backoff_base_and_cap_come_from_the_settings() -> None:
    small = Settings(fcsync_failed_refresh_retry_s=10, fcsync_failed_refresh_retry_max_s=40)
    assert 10 <= delay(1, settings=small) < 10 * (1 + JITTER)
    assert 40 <= delay(5, settings=small) < 40 * (1 + JITTER)
    # A cap below the base never shortens the base.
    upside_down = Settings(fcsync_failed_refresh_retry_s=100, fcsync_failed_refresh_retry_max_s=1)
    assert 100 <= delay(3, settings=upside_down) < 100 * (1 + JITTER)
    assert delay(3, settings=Settings(fcsync_failed_refresh_retry_s=0)) == 0
