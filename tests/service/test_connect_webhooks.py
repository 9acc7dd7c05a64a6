"""Connect events (`account` set) against the stored account's Stripe account context: applied
only when the contexts agree, otherwise kept in the inbox marked ignored, with the reason."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from models import WebhookEvent
from tests.rows import account_row
from tests.service.connect import CONNECTED, OTHER_CONNECTED, create_account_in
from tests.service.harness import EmulatedFC, sync_requests
from tests.service.test_webhooks import REFRESHED, deliver, events, start_and_finish_refresh
from worker import tracking
from worker.intents import SyncDue, TrackAccount


def track_in(fc: EmulatedFC, session: Session, account_id: str, context: str | None) -> None:
    result = tracking.track_account(
        session,
        fc.gateway,
        account_id,
        subscribe=False,
        now=fc.now(),
        settings=fc.settings,
        stripe_account=context,
    )
    assert result.outcome == "tracked", result
    session.commit()


def in_context(event: dict[str, Any], context: str | None, suffix: str) -> dict[str, Any]:
    """The event as Stripe would send it from `context` (a Connect event carries `account`)."""
    event = {k: v for k, v in event.items() if k != "account"}
    return {**event, "id": event["id"] + suffix, **({"account": context} if context else {})}


def assert_ignored_for_context(session: Session, event_id: str) -> None:
    row = session.get(WebhookEvent, event_id)
    assert row is not None and row.outcome == "ignored" and row.processed_at is not None
    assert row.error is not None and row.error.startswith("[stripe_account_mismatch]")


def test_connect_webhooks_an_event_of_another_context_is_stored_and_ignored(
    fc: EmulatedFC, session: Session
) -> None:
    account_id = fc.create_account(transactions=20)
    track_in(fc, session, account_id, None)
    start_and_finish_refresh(fc, session, account_id)
    (event,) = events(fc, REFRESHED)
    now = fc.now()

    for context, suffix in ((CONNECTED, "A"), (OTHER_CONNECTED, "B")):
        receipt, result = deliver(fc, session, in_context(event, context, suffix), now=now)
        assert receipt.enqueue and not receipt.duplicate
        assert (result.outcome, result.intents) == ("ignored", ())
        assert_ignored_for_context(session, event["id"] + suffix)
        # Never applied: fcsync still waits for the refresh it started.
        assert account_row(session, account_id).refresh_status == "pending"

    _, result = deliver(fc, session, in_context(event, None, "P"), now=now)
    assert result.outcome == "processed"
    assert sync_requests(result.intents) == [SyncDue(account_id)]
    assert account_row(session, account_id).refresh_status == "succeeded"


def test_connect_webhooks_a_connected_accounts_event_applies_only_from_its_context(
    fc: EmulatedFC, session: Session
) -> None:
    account_id = create_account_in(fc, CONNECTED, transactions=20)
    track_in(fc, session, account_id, CONNECTED)
    start_and_finish_refresh(fc, session, account_id)
    (event,) = events(fc, REFRESHED)
    now = fc.now()

    # The platform's own event (no `account`), or another connected account's, names it too.
    for context, suffix in ((None, "P"), (OTHER_CONNECTED, "B")):
        _, result = deliver(fc, session, in_context(event, context, suffix), now=now)
        assert result.outcome == "ignored"
        assert_ignored_for_context(session, event["id"] + suffix)
        assert account_row(session, account_id).refresh_status == "pending"

    _, result = deliver(fc, session, in_context(event, CONNECTED, "A"), now=now)
    assert result.outcome == "processed"
    assert sync_requests(result.intents) == [SyncDue(account_id)]
    assert account_row(session, account_id).refresh_status == "succeeded"


def test_connect_webhooks_auto_track_takes_the_events_context(
    fc: EmulatedFC, session: Session
) -> None:
    account_id = create_account_in(fc, CONNECTED, transactions=5)
    track_in(fc, session, account_id, CONNECTED)
    start_and_finish_refresh(fc, session, account_id)
    (event,) = events(fc, REFRESHED)
    other = dict(event["data"]["object"], id="fca_1NotTrackedYet")
    unknown = {**in_context(event, CONNECTED, "U"), "data": {"object": other}}
    fc.settings = fc.settings.model_copy(update={"fcsync_auto_track": True})

    _, result = deliver(fc, session, unknown, now=fc.now())
    assert result.outcome == "processed"
    assert result.intents == (TrackAccount("fca_1NotTrackedYet", stripe_account=CONNECTED),)
