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
from worker.intents import SyncDue, TrackAccount


def in_context(event: dict[str, Any], context: str | None, suffix: str) -> dict[str, Any]:
    """The event as Stripe would send it from `context` (a Connect event carries `account`)."""
    event = {k: v for k, v in event.items() if k != "account"}
    return {**event, "id": event["id"] + suffix, **({"account": context} if context else {})}


def refreshed_event(fc: EmulatedFC, session: Session, context: str | None) -> dict[str, Any]:
    """An account tracked in `context`, a refresh it finished at Stripe, and that event."""
    account_id = create_account_in(fc, context, transactions=20) if context else None
    account_id = account_id or fc.create_account(transactions=20)
    fc.track(session, account_id, stripe_account=context)
    start_and_finish_refresh(fc, session, account_id)
    (event,) = events(fc, REFRESHED, stripe_account=context)
    return event


def assert_applied_only_from(
    fc: EmulatedFC, session: Session, event: dict[str, Any], own: str | None
) -> None:
    """Delivered from every other context, the event is kept, ignored, and changes nothing;
    from the account's own, it is applied."""
    account_id = event["data"]["object"]["id"]
    now = fc.now()
    others = [c for c in (None, CONNECTED, OTHER_CONNECTED) if c != own]
    for n, context in enumerate(others):
        receipt, result = deliver(fc, session, in_context(event, context, f"x{n}"), now=now)
        assert receipt.enqueue and not receipt.duplicate
        assert (result.outcome, result.intents) == ("ignored", ())
        row = session.get(WebhookEvent, event["id"] + f"x{n}")
        assert row is not None and row.outcome == "ignored" and row.processed_at is not None
        assert row.error is not None and row.error.startswith("[stripe_account_mismatch]")
        # Never applied: fcsync still waits for the refresh it started.
        assert account_row(session, account_id).refresh_status == "pending"

    _, result = deliver(fc, session, in_context(event, own, "own"), now=now)
    assert result.outcome == "processed"
    assert sync_requests(result.intents) == [SyncDue(account_id)]
    assert account_row(session, account_id).refresh_status == "succeeded"


def test_connect_webhooks_a_platform_accounts_event_applies_only_from_the_platform(
    fc: EmulatedFC, session: Session
) -> None:
    assert_applied_only_from(fc, session, refreshed_event(fc, session, None), None)


def test_connect_webhooks_a_connected_accounts_event_applies_only_from_its_context(
    fc: EmulatedFC, session: Session
) -> None:
    assert_applied_only_from(fc, session, refreshed_event(fc, session, CONNECTED), CONNECTED)


def test_connect_webhooks_auto_track_takes_the_events_context(
    fc: EmulatedFC, session: Session
) -> None:
    event = refreshed_event(fc, session, CONNECTED)
    other = dict(event["data"]["object"], id="fca_1NotTrackedYet")
    unknown = {**in_context(event, CONNECTED, "U"), "data": {"object": other}}
    fc.settings = fc.settings.model_copy(update={"fcsync_auto_track": True})

    _, result = deliver(fc, session, unknown, now=fc.now())
    assert result.outcome == "processed"
    assert result.intents == (TrackAccount("fca_1NotTrackedYet", stripe_account=CONNECTED),)
