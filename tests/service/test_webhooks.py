"""Webhook handling over inbox rows: events are the emulator's own (read from /v1/events and
signed with its signer), stored by `receive_webhook`, then processed by `handle_event`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import requests
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from emulator import signature_header
from models import Base, Refresh, WebhookEvent
from tests.emulator.conftest import API_KEY, make_emulator
from tests.rows import account_row
from tests.service.conftest import WEBHOOK_SECRET, make_settings
from tests.service.harness import REFRESH_COOLDOWN_S, REFRESH_DELAY_S, EmulatedFC, sync_requests
from worker import event_handlers, refresh, reports, webhooks
from worker.intents import SyncDue
from worker.stripe_gateway import gateway_from_settings

REFRESHED = "financial_connections.account.refreshed_transactions"


def events(
    fc: EmulatedFC, type_: str, *, stripe_account: str | None = None
) -> list[dict[str, Any]]:
    """Stripe's events of one type, oldest first (of a connected account: `stripe_account`)."""
    context = {"Stripe-Account": stripe_account} if stripe_account else {}
    response = requests.get(
        f"{fc.emulator.base_url}/v1/events",
        params={"type": type_, "limit": "100"},
        headers={"Authorization": f"Bearer {API_KEY}", **context},
        timeout=10,
    )
    response.raise_for_status()
    return list(reversed(response.json()["data"]))


def receive(
    fc: EmulatedFC,
    session: Session,
    event: dict[str, Any],
    *,
    now: datetime,
    secret: str = WEBHOOK_SECRET,
) -> webhooks.Receipt:
    """What the receiver does with one delivery signed with `secret`, committed."""
    payload = json.dumps(event).encode()
    receipt = webhooks.receive_webhook(
        session, payload, signature_header(payload, secret), settings=fc.settings, now=now
    )
    session.commit()
    return receipt


def deliver(
    fc: EmulatedFC, session: Session, event: dict[str, Any], *, now: datetime
) -> tuple[webhooks.Receipt, event_handlers.EventResult]:
    """What the receiver and then the handle_event task do with one delivery."""
    receipt = receive(fc, session, event, now=now)
    assert receipt.status == 200, receipt
    result = event_handlers.handle_event(
        session, fc.gateway, event["id"], now=now, settings=fc.settings
    )
    session.commit()
    return receipt, result


def start_and_finish_refresh(fc: EmulatedFC, session: Session, account_id: str) -> str:
    """A refresh we asked for, finished at Stripe; only its webhook will tell us the outcome."""
    decision = refresh.request_refresh(
        session, fc.gateway, account_id, source="manual", now=fc.now(), settings=fc.settings
    )
    session.commit()
    assert decision.outcome == "started" and decision.refresh_id is not None
    fc.advance(REFRESH_DELAY_S + REFRESH_COOLDOWN_S)
    return decision.refresh_id


def test_webhooks_same_event_twice_is_a_duplicate(fc: EmulatedFC, session: Session) -> None:
    account_id = fc.create_account(transactions=20)
    fc.track(session, account_id)
    refresh_id = start_and_finish_refresh(fc, session, account_id)
    (event,) = events(fc, REFRESHED)
    now = fc.now()

    receipt, first = deliver(fc, session, event, now=now)
    assert not receipt.duplicate
    assert first.outcome == "processed"
    assert sync_requests(first.intents) == [SyncDue(account_id)]
    assert account_row(session, account_id).refresh_status == "succeeded"

    receipt, second = deliver(fc, session, event, now=now)
    assert receipt.duplicate
    assert (second.outcome, second.intents) == ("duplicate", ())
    count = session.scalar(select(func.count()).select_from(WebhookEvent))
    assert count == 1
    row = session.get(WebhookEvent, event["id"])
    assert row is not None and row.outcome == "processed"
    assert account_row(session, account_id).refresh_id == refresh_id


def play_two_refreshes(
    fc: EmulatedFC, session: Session, *, reverse: bool
) -> tuple[dict[str, Any], list[int]]:
    """Two refreshes succeed; their webhooks arrive in order or reversed, and each requested
    sync runs before the next delivery, as a worker would run it."""
    account_id = fc.create_account(transactions=150)
    fc.track(session, account_id)
    refresh_ids = [start_and_finish_refresh(fc, session, account_id) for _ in range(2)]
    delivered = events(fc, REFRESHED)
    assert [e["data"]["object"]["transaction_refresh"]["id"] for e in delivered] == refresh_ids
    now = fc.now()
    syncs_requested = []
    for event in reversed(delivered) if reverse else delivered:
        _, result = deliver(fc, session, event, now=now)
        assert result.outcome == "processed"
        requested = sync_requests(result.intents)
        syncs_requested.append(len(requested))
        for _ in requested:
            start, _steps = fc.sync(session, account_id)
            assert start.outcome == "started"
    assert fc.mismatches(session, account_id) == []
    account = account_row(session, account_id)
    state = {
        name: getattr(account, name)
        for name in (
            "refresh_id",
            "refresh_status",
            "refresh_last_attempted_at",
            "refresh_next_available_at",
            "cursor_refresh_id",
            "cursor_refresh_at",
            "next_due_at",
            "last_error_code",
        )
    }
    state["transactions"] = reports.stored_transactions(session, account_id)
    assert state["refresh_id"] == state["cursor_refresh_id"] == refresh_ids[-1]
    return state, syncs_requested


def test_webhooks_refreshed_events_in_reverse_order_end_in_the_same_state(
    fc: EmulatedFC, session: Session
) -> None:
    in_order, in_order_syncs = play_two_refreshes(fc, session, reverse=False)
    assert in_order_syncs == [1, 1]
    for table in reversed(Base.metadata.sorted_tables):
        session.execute(delete(table))
    session.commit()

    # The same seed and clock: an identical Stripe, whose webhooks arrive newest first.
    with make_emulator() as emu:
        settings = make_settings(emu.base_url)
        twin = EmulatedFC(emu, emu.control, gateway_from_settings(settings), settings)
        reversed_state, reversed_syncs = play_two_refreshes(twin, session, reverse=True)
    # The older event asks for nothing: its refresh is already behind the cursor.
    assert reversed_syncs == [1, 0]
    assert reversed_state == in_order


def test_webhooks_stale_failed_event_does_not_move_state_backwards(
    fc: EmulatedFC, session: Session
) -> None:
    account_id = fc.create_account(transactions=20, failure_rate=1.0)
    fc.track(session, account_id)
    failed_id = start_and_finish_refresh(fc, session, account_id)
    fc.control.update_account(account_id, failure_rate=0.0)
    succeeded_id = start_and_finish_refresh(fc, session, account_id)
    failed, succeeded = events(fc, REFRESHED)
    assert failed["data"]["object"]["transaction_refresh"]["status"] == "failed"
    now = fc.now()

    _, newer = deliver(fc, session, succeeded, now=now)
    assert sync_requests(newer.intents)
    before = account_row(session, account_id)
    due_at = before.next_due_at
    _, stale = deliver(fc, session, failed, now=now)

    assert (stale.outcome, stale.intents) == ("processed", ())
    account = account_row(session, account_id)
    assert (account.refresh_id, account.refresh_status) == (succeeded_id, "succeeded")
    assert account.last_error_code is None
    assert account.next_due_at == due_at
    # The stale refresh is still on record, with its own outcome.
    failed_row = session.get(Refresh, failed_id)
    assert failed_row is not None and failed_row.status == "failed"


def test_webhooks_stale_event_does_not_revive_a_deactivated_account(
    fc: EmulatedFC, session: Session
) -> None:
    account_id = fc.create_account(transactions=20)
    fc.track(session, account_id)
    refresh_id = start_and_finish_refresh(fc, session, account_id)
    (event,) = events(fc, REFRESHED)
    assert event["data"]["object"]["status"] == "active"
    fc.control.set_account_status(account_id, "inactive")
    decision = refresh.request_refresh(
        session, fc.gateway, account_id, source="manual", now=fc.now(), settings=fc.settings
    )
    session.commit()
    assert decision.outcome == "inactive"

    _, result = deliver(fc, session, event, now=fc.now())
    account = account_row(session, account_id)
    assert (account.status, account.last_error_code) == ("inactive", "account_inactive")
    # Its refresh did succeed before the deactivation: those rows are still worth syncing.
    assert account.refresh_id == refresh_id
    assert result.outcome == "processed"
    assert sync_requests(result.intents) == [SyncDue(account_id)]
