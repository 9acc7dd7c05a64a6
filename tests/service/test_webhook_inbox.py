"""The webhook inbox over time: a row that fails permanently is marked failed and never swept
again; rows that keep failing back off and never crowd a lost event out of the sweep."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session

from models import WebhookEvent
from worker import event_handlers, inbox, repository
from worker.errors import ConfigurationError
from worker.intents import HandleEvent
from worker.records import FCAccount
from worker.settings import Settings
from worker.stripe_gateway import StripeGateway, gateway_from_settings

T0 = datetime(2026, 11, 1, tzinfo=UTC)
STALE = timedelta(seconds=900)
REFRESHED = "financial_connections.account.refreshed_transactions"
ACCOUNT: dict[str, Any] = {
    "id": "fca_1",
    "livemode": False,
    "institution_name": "Bank",
    "display_name": None,
    "last4": None,
    "category": "cash",
    "subcategory": "checking",
    "status": "active",
    "permissions": ("transactions",),
    "subscriptions": (),
    "customer": None,
    "created": 1_700_000_000,
    "transaction_refresh": None,
}


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "stripe_api_key": "sk_test_inbox",
        "stripe_webhook_secret": "whsec_inbox",
        "fcsync_stale_pending_s": int(STALE.total_seconds()),
        "fcsync_sweep_batch": 200,
    }
    values.update(overrides)
    return Settings(**values)


def event_json(event_id: str, **overrides: Any) -> str:
    body: dict[str, Any] = {
        "id": event_id,
        "object": "event",
        "created": 1_700_000_000,
        "livemode": False,
        "type": REFRESHED,
        "data": {
            "object": {"id": "fca_1", "object": "financial_connections.account", "status": "active"}
        },
    }
    body.update(overrides)
    return json.dumps(body)


def store(session: Session, row_id: str, payload: str, *, at: datetime) -> None:
    """A row as the receiver stored it (before envelopes were validated, for the bad ones)."""
    event = inbox.InboxEvent(row_id, REFRESHED, "fca_1", False, 1_700_000_000, payload)
    assert inbox.insert_webhook_events(session, [event], now=at) == {row_id}
    session.commit()


def sweep(session: Session, at: datetime, config: Settings) -> list[str]:
    found = event_handlers.unhandled_events(session, now=at, settings=config)
    session.commit()
    assert all(isinstance(i, HandleEvent) for i in found.intents)
    return [i.event_id for i in found.intents if isinstance(i, HandleEvent)]


# Each was stored with 200 and then failed in handle_event on every sweep, forever.
POISON = {
    "utf8_bom": ("evt_bom", "\ufeff" + event_json("evt_bom")),
    "type_not_a_string": ("evt_typenum", event_json("evt_typenum", type=42)),
    "fc_event_without_object": ("evt_noobject", event_json("evt_noobject", data={})),
    "id_not_evt": ("evt_notevt", event_json("ch_notevt")),
    "not_json": ("evt_notjson", "{"),
    "account_refresh_without_id": (
        "evt_badaccount",
        event_json(
            "evt_badaccount",
            data={
                "object": {
                    "id": "fca_1",
                    "object": "financial_connections.account",
                    "transaction_refresh": {"status": "succeeded"},
                }
            },
        ),
    ),
}


@pytest.mark.parametrize("case", sorted(POISON))
def test_inbox_unparseable_row_is_marked_failed_and_never_swept_again(
    session: Session, case: str
) -> None:
    row_id, payload = POISON[case]
    config = settings()
    store(session, row_id, payload, at=T0)
    assert sweep(session, T0 + STALE, config) == [row_id]

    result = event_handlers.handle_event(
        session, StripeGateway(None), row_id, now=T0 + STALE, settings=config
    )
    session.commit()
    assert (result.outcome, result.intents) == ("failed", ())
    row = session.get(WebhookEvent, row_id)
    assert row is not None and row.outcome == "failed" and row.error
    assert row.processed_at == T0 + STALE
    for days in (1, 7, 30):
        assert sweep(session, T0 + timedelta(days=days), config) == []


def test_inbox_row_whose_id_no_task_accepts_is_failed_by_the_sweep(session: Session) -> None:
    """`"id": null` was stored under the text "None": handle_event's task refuses that id."""
    config = settings()
    store(session, "None", event_json(None), at=T0)  # type: ignore[arg-type]
    assert sweep(session, T0 + STALE, config) == []
    row = session.get(WebhookEvent, "None")
    assert row is not None and row.outcome == "failed" and row.processed_at is not None
    assert sweep(session, T0 + timedelta(days=2), config) == []


def test_inbox_sweep_is_not_starved_by_rows_that_keep_failing(session: Session) -> None:
    config = settings()
    for n in range(200):
        store(session, f"evt_poison{n:03d}", event_json(f"evt_poison{n:03d}"), at=T0)
    first = T0 + STALE
    assert len(sweep(session, first, config)) == 200
    # Their tasks keep failing transiently (nothing marks them); a genuine event arrives and
    # its enqueue is lost.
    store(session, "evt_lost", event_json("evt_lost"), at=first)
    assert sweep(session, first + STALE, config) == ["evt_lost"]
    # Much later, with every row due again, never-swept rows still come first.
    store(session, "evt_lost2", event_json("evt_lost2"), at=T0 + timedelta(days=9))
    later = sweep(session, T0 + timedelta(days=10), config)
    assert later[0] == "evt_lost2" and len(later) == 200


def test_inbox_row_that_keeps_failing_is_enqueued_at_most_daily(session: Session) -> None:
    config = settings()
    store(session, "evt_flaky", event_json("evt_flaky"), at=T0)
    enqueued = []
    for minute in range(15, 7 * 24 * 60, 15):  # a beat sweep every 15 minutes for a week
        at = T0 + timedelta(minutes=minute)
        if sweep(session, at, config):
            enqueued.append(at)
    gaps = [later - earlier for earlier, later in itertools.pairwise(enqueued)]
    assert gaps == sorted(gaps), "the backoff only grows"
    assert gaps[-1] == timedelta(days=1)
    assert len(enqueued) <= 7 + 7  # doubling from 15 minutes to a day, then daily


def test_inbox_event_of_the_other_mode_is_ignored_by_the_handler(session: Session) -> None:
    """Stored before the mode check (or by a receiver without a key): never applied."""
    config = settings(fcsync_auto_track=True)
    store(session, "evt_live", event_json("evt_live", livemode=True), at=T0)
    # The gateway of the (test) key the event came with: its mode is the one applied.
    gateway = gateway_from_settings(config)
    result = event_handlers.handle_event(session, gateway, "evt_live", now=T0, settings=config)
    session.commit()
    assert (result.outcome, result.intents) == ("ignored", ())


def test_inbox_row_failing_for_years_is_still_swept_daily(session: Session) -> None:
    config = settings()
    store(session, "evt_old", event_json("evt_old"), at=T0)
    row = session.get(WebhookEvent, "evt_old")
    assert row is not None
    row.sweeps = 3 * 365
    session.commit()
    at = T0 + timedelta(days=3 * 365)
    assert sweep(session, at, config) == ["evt_old"]
    row = session.get(WebhookEvent, "evt_old")
    assert row is not None and row.next_sweep_at == at + timedelta(days=1)


def test_inbox_failed_reason_never_holds_a_secret(
    session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk_live_" + "Z9" * 12
    config = settings()
    store(session, "evt_leaky", event_json("evt_leaky", type=secret + "\n"), at=T0)
    event_handlers.handle_event(session, StripeGateway(None), "evt_leaky", now=T0, settings=config)
    session.commit()
    row = session.get(WebhookEvent, "evt_leaky")
    assert row is not None and row.outcome == "failed" and row.error
    assert secret not in row.error and secret not in caplog.text
    assert "type" in row.error


def test_inbox_event_is_not_failed_by_fcsync_configuration(session: Session) -> None:
    """No STRIPE_API_KEY in the worker is fcsync's problem: the event waits, unfailed."""
    repository.save_account(session, FCAccount(**ACCOUNT), now=T0)
    session.commit()
    deactivated = "financial_connections.account.deactivated"
    store(session, "evt_config", event_json("evt_config", type=deactivated), at=T0)
    with pytest.raises(ConfigurationError):
        event_handlers.handle_event(
            session, StripeGateway(None), "evt_config", now=T0, settings=settings()
        )
    session.rollback()
    row = session.get(WebhookEvent, "evt_config")
    assert row is not None and (row.processed_at, row.outcome) == (None, None)
    assert sweep(session, T0 + STALE, settings()) == ["evt_config"]
