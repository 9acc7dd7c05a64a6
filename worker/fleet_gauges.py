"""The gauges /metrics computes from the database at each scrape (the fleet's freshness, by
state and by feature), so every process serving /metrics shows the same truth and no process
has to keep them up to date. worker/fleet.py takes the snapshot they show."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

ACCOUNTS = "fcsync_accounts"
OLDEST_PENDING_REFRESH = "fcsync_oldest_pending_refresh_seconds"
MAX_SYNC_LAG = "fcsync_max_sync_lag_seconds"
ACCOUNTS_NEEDING_RELINK = "fcsync_accounts_needing_relink"
FEATURE_ACCOUNTS = "fcsync_feature_accounts"
FEATURE_MAX_AGE = "fcsync_feature_max_age_seconds"


@dataclass(frozen=True)
class FleetSnapshot:
    """The accounts as the freshness model sees them now: how many in each state (every state
    named, 0 when none), the oldest pending refresh's age and the largest sync lag (0: none)."""

    accounts: Mapping[str, int]
    oldest_pending_refresh_s: float
    max_sync_lag_s: float
    # Tracked active accounts Stripe asks to relink before they deactivate, by Stripe's cause.
    needing_relink: Mapping[str, int] = field(default_factory=dict)
    # By feature (transactions, balances, ownership): the accounts tracked with it in each
    # freshness state, and the largest age of its stored data over those that can refresh it.
    features: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    feature_max_age_s: Mapping[str, float] = field(default_factory=dict)


class FleetCollector(Collector):
    """Gauges read from the database at scrape time, so every process serving /metrics shows
    the same truth and no process has to keep them up to date."""

    def __init__(self, snapshot: Callable[[], FleetSnapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        try:
            fleet = self._snapshot()
        except Exception:
            log.exception("could not read the accounts' freshness for /metrics")
            return
        yield _gauge(
            ACCOUNTS,
            "Accounts by freshness state",
            ["state"],
            (((state,), count) for state, count in fleet.accounts.items()),
        )
        yield GaugeMetricFamily(
            OLDEST_PENDING_REFRESH,
            "Age of the oldest refresh still pending (0: none pending)",
            value=fleet.oldest_pending_refresh_s,
        )
        yield GaugeMetricFamily(
            MAX_SYNC_LAG,
            "Largest time since a tracked, usable account's rows were last synced",
            value=fleet.max_sync_lag_s,
        )
        yield _gauge(
            ACCOUNTS_NEEDING_RELINK,
            "Tracked active accounts Stripe asks to relink before their expected deactivation "
            "date, by cause",
            ["cause"],
            (((cause,), count) for cause, count in fleet.needing_relink.items()),
        )
        yield _gauge(
            FEATURE_ACCOUNTS,
            "Accounts tracked with a feature, by feature and the feature's freshness state",
            ["feature", "state"],
            (
                ((feature, state), count)
                for feature, states in fleet.features.items()
                for state, count in states.items()
            ),
        )
        yield _gauge(
            FEATURE_MAX_AGE,
            "Largest age of a feature's stored data (since the refresh it came from, or since "
            "the account was stored), over tracked accounts that can refresh it; 0: none",
            ["feature"],
            (((feature,), seconds) for feature, seconds in fleet.feature_max_age_s.items()),
        )


def _gauge(
    name: str,
    documentation: str,
    labels: list[str],
    samples: Iterable[tuple[tuple[str, ...], float]],
) -> GaugeMetricFamily:
    """A labelled gauge of `samples`: (label values, value) pairs."""
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for label_values, value in samples:
        family.add_metric(list(label_values), value)
    return family
