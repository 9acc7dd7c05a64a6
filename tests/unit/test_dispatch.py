"""The intent -> task table: the task names and arguments the README's contract pins, the poll
backoff, and the waits the broker cannot hold left to beat."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worker import contract
from worker.dispatch import MAX_POLL_ATTEMPT, followup_for
from worker.intents import (
    HandleEvent,
    HandleEvents,
    Intent,
    NotifySynced,
    PollRefresh,
    PollStaleRefresh,
    RefreshDue,
    RetryRefreshAt,
    SyncDue,
    TrackAccount,
)
from worker.records import Followup
from worker.settings import Settings

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SETTINGS = Settings(
    fcsync_poll_initial_s=2,
    fcsync_poll_max_s=60,
    fcsync_max_countdown_s=3600,
    fcsync_on_synced_task=None,
)


@pytest.mark.parametrize(
    ("intent", "expected"),
    [
        (SyncDue("fca_1"), Followup(contract.SYNC_TRANSACTIONS, {"account_id": "fca_1"})),
        (
            SyncDue("fca_1", full=True),
            Followup(contract.SYNC_TRANSACTIONS, {"account_id": "fca_1", "full": True}),
        ),
        (
            PollRefresh("fca_1"),
            Followup(contract.POLL_REFRESH, {"account_id": "fca_1"}, countdown=2),
        ),
        (PollStaleRefresh("fca_1"), Followup(contract.POLL_REFRESH, {"account_id": "fca_1"})),
        (
            RefreshDue("fca_1"),
            Followup(contract.REFRESH_ACCOUNT, {"account_id": "fca_1", "source": "beat"}),
        ),
        (
            RetryRefreshAt("fca_1", "manual", NOW + timedelta(seconds=30)),
            Followup(
                contract.REFRESH_ACCOUNT, {"account_id": "fca_1", "source": "manual"}, countdown=31
            ),
        ),
        (
            RefreshDue("fca_1", "balances"),
            Followup(
                contract.REFRESH_ACCOUNT,
                {"account_id": "fca_1", "source": "beat", "feature": "balances"},
            ),
        ),
        (
            PollRefresh("fca_1", 0, "ownership"),
            Followup(
                contract.POLL_REFRESH, {"account_id": "fca_1", "feature": "ownership"}, countdown=2
            ),
        ),
        (
            PollStaleRefresh("fca_1", "balances"),
            Followup(contract.POLL_REFRESH, {"account_id": "fca_1", "feature": "balances"}),
        ),
        (HandleEvent("evt_1"), Followup(contract.HANDLE_EVENT, {"event_id": "evt_1"})),
        (
            HandleEvents(("evt_1", "evt_2")),
            Followup(contract.HANDLE_EVENTS, {"event_ids": ["evt_1", "evt_2"]}),
        ),
        (TrackAccount("fca_1"), Followup(contract.TRACK_ACCOUNT, {"account_id": "fca_1"})),
        (
            TrackAccount("fca_1", stripe_account="acct_1"),
            Followup(contract.TRACK_ACCOUNT, {"account_id": "fca_1", "stripe_account": "acct_1"}),
        ),
    ],
)
def test_dispatch_maps_each_intent_to_its_pinned_task(intent: Intent, expected: Followup) -> None:
    assert followup_for(intent, settings=SETTINGS, now=NOW) == expected


def test_dispatch_later_polls_back_off_within_the_bounds_and_never_pass_the_attempt_bound() -> None:
    for attempt in (1, 2, 5, 40, MAX_POLL_ATTEMPT, MAX_POLL_ATTEMPT + 1):
        followup = followup_for(PollRefresh("fca_1", attempt), settings=SETTINGS, now=NOW)
        assert followup is not None and followup.task == contract.POLL_REFRESH
        assert followup.kwargs == {"account_id": "fca_1", "attempt": min(attempt, MAX_POLL_ATTEMPT)}
        assert followup.countdown is not None
        assert SETTINGS.fcsync_poll_initial_s <= followup.countdown <= SETTINGS.fcsync_poll_max_s
    # Full jitter: the waits of later attempts spread over the whole range, not one value.
    waits = {
        followup_for(PollRefresh("fca_1", 20), settings=SETTINGS, now=NOW).countdown  # type: ignore[union-attr]
        for _ in range(50)
    }
    assert len(waits) > 1


def test_dispatch_a_cooldown_longer_than_the_broker_holds_is_left_to_beat() -> None:
    far = NOW + timedelta(seconds=SETTINGS.fcsync_max_countdown_s)
    assert followup_for(RetryRefreshAt("fca_1", "manual", far), settings=SETTINGS, now=NOW) is None
    # The refresh goes a second after the cooldown ends.
    near = NOW + timedelta(seconds=SETTINGS.fcsync_max_countdown_s - 1)
    followup = followup_for(RetryRefreshAt("fca_1", "manual", near), settings=SETTINGS, now=NOW)
    assert followup is not None and followup.countdown == SETTINGS.fcsync_max_countdown_s


def test_dispatch_on_rabbitmq_leaves_to_beat_what_its_consumer_timeout_cannot_hold() -> None:
    rabbitmq = SETTINGS.model_copy(update={"celery_broker_url": "amqp://guest:guest@mq:5672//"})
    # 30 min of consumer timeout leave 10 min of countdown (settings: AMQP_ACK_MARGIN_S).
    assert rabbitmq.fcsync_broker_consumer_timeout_s == 1_800
    assert rabbitmq.longest_countdown_s == 600 < SETTINGS.longest_countdown_s
    within = RetryRefreshAt("fca_1", "manual", NOW + timedelta(seconds=599))
    followup = followup_for(within, settings=rabbitmq, now=NOW)
    assert followup is not None and followup.countdown == 600
    beyond = RetryRefreshAt("fca_1", "manual", NOW + timedelta(seconds=600))
    assert followup_for(beyond, settings=rabbitmq, now=NOW) is None
    # Redis holds it (its visibility timeout is set past FCSYNC_MAX_COUNTDOWN_S).
    assert followup_for(beyond, settings=SETTINGS, now=NOW) is not None


def test_dispatch_notifies_the_on_synced_task_only_when_one_is_configured() -> None:
    synced = NotifySynced("fca_1", "fctxnref_1", inserted=3, updated=1)
    assert followup_for(synced, settings=SETTINGS, now=NOW) is None
    settings = SETTINGS.model_copy(update={"fcsync_on_synced_task": "app.on_synced"})
    assert followup_for(synced, settings=settings, now=NOW) == Followup(
        "app.on_synced",
        {"account": "fca_1", "refresh": "fctxnref_1", "inserted": 3, "updated": 1},
    )
