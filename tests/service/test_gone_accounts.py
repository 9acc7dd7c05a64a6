"""An account Stripe no longer knows (404) is marked gone wherever fcsync meets the 404 (a
refresh, a poll, a sync, a status webhook, an untrack) and no sweep asks Stripe about it
again; tracking it again (or any successful read) brings it back."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from sqlalchemy.orm import Session

from emulator import signature_header
from models import Account
from tasks.refresh import refresh_account_task, refresh_due_accounts_task
from tasks.tracking import track_account_task, untrack_account_task
from tests.rows import account_row
from tests.service.beat import Beat, make_beat
from tests.service.conftest import WEBHOOK_SECRET, TaskRig
from tests.service.harness import EmulatedFC
from worker import accounts, contract, event_handlers, webhooks
from worker.db import session_scope

HOUR_S = 3_600


@pytest.fixture
def beat(fc: EmulatedFC, rig: TaskRig, monkeypatch: pytest.MonkeyPatch) -> Beat:
    return make_beat(fc, rig, monkeypatch)


def row(rig: TaskRig, account_id: str) -> Account:
    with session_scope(rig.engine) as session:
        account = account_row(session, account_id)
        session.expunge(account)
        return account


def assert_gone(rig: TaskRig, account_id: str) -> None:
    account = row(rig, account_id)
    assert account.gone_at is not None and account.next_due_at is None
    assert account.last_error_code == "account_gone"


def test_gone_account_mid_refresh_is_marked_by_the_poll_and_never_polled_again(
    fc: EmulatedFC, rig: TaskRig, beat: Beat
) -> None:
    # The refresh beat starts is still pending when Stripe forgets the account.
    account_id = fc.create_account(transactions=5, refresh_delay_s=6 * HOUR_S)
    assert track_account_task(account_id, subscribe=False)["outcome"] == "tracked"
    beat.tick(60)
    assert row(rig, account_id).refresh_status == "pending"
    fc.control.delete_account(account_id)
    before = beat.requests_by_account()[account_id]

    beat.run_for(12 * HOUR_S, step_s=5 * 60)

    assert beat.requests_by_account()[account_id] - before == 1
    assert_gone(rig, account_id)
    assert not beat.permanent_failures


def test_gone_account_mid_sync_is_marked_by_the_sync_and_left_by_the_failed_sync_sweep(
    fc: EmulatedFC, rig: TaskRig, beat: Beat
) -> None:
    account_id = fc.create_account(transactions=5)
    with session_scope(rig.engine) as session:
        fc.interrupted_sync(session, account_id)
    fc.control.delete_account(account_id)
    before = beat.requests_by_account()[account_id]

    beat.run_for(12 * HOUR_S, step_s=5 * 60)

    # The sweep's sync lists once (404), reads the account once to learn it is the account
    # that is missing, and nothing asks again.
    assert beat.requests_by_account()[account_id] - before == 2
    assert_gone(rig, account_id)
    assert row(rig, account_id).sync_lease_owner is None
    assert not beat.permanent_failures


def test_gone_account_is_left_alone_by_beat_until_tracked_again(
    fc: EmulatedFC, rig: TaskRig, beat: Beat
) -> None:
    account_id = fc.create_account(transactions=5)
    assert track_account_task(account_id, subscribe=False)["outcome"] == "tracked"
    # A 404 seen once (say, the account briefly reached with another key) marked it gone.
    with session_scope(rig.engine) as session:
        assert accounts.mark_gone(session, account_id, now=beat.clock.now())
    before = beat.requests_by_account()[account_id]

    beat.advance(2 * 86_400)
    refresh_due_accounts_task()
    assert rig.take(contract.REFRESH_ACCOUNT) == []
    # A beat message sent before it was marked is answered without asking Stripe.
    assert refresh_account_task(account_id, source="beat")["outcome"] == "gone"
    assert beat.requests_by_account()[account_id] == before

    # The operator's way back: track it again. It is due at once and refreshed.
    assert track_account_task(account_id, subscribe=False)["outcome"] == "tracked"
    account = row(rig, account_id)
    assert account.gone_at is None and account.last_error_code is None
    refresh_due_accounts_task()
    (due,) = rig.take(contract.REFRESH_ACCOUNT)
    assert refresh_account_task(**due.kwargs)["outcome"] == "started"


def test_gone_account_refresh_by_hand_reports_gone_and_tracking_it_again_keeps_it_gone(
    fc: EmulatedFC, rig: TaskRig, beat: Beat
) -> None:
    account_id = fc.create_account(transactions=5)
    assert track_account_task(account_id, subscribe=False)["outcome"] == "tracked"
    fc.control.delete_account(account_id)

    assert refresh_account_task(account_id, source="manual")["outcome"] == "gone"
    assert_gone(rig, account_id)
    assert track_account_task(account_id, subscribe=False)["outcome"] == "gone"
    assert_gone(rig, account_id)


def test_gone_account_can_be_untracked_without_stripe(
    fc: EmulatedFC, rig: TaskRig, beat: Beat
) -> None:
    account_id = fc.create_account(transactions=5)
    assert track_account_task(account_id, subscribe=True)["outcome"] == "subscribed"
    fc.control.delete_account(account_id)
    before = beat.requests_by_account()[account_id]

    # Stripe answers the unsubscribe with 404: there is nothing left to unsubscribe.
    assert untrack_account_task(account_id, unsubscribe=True)["outcome"] == "untracked"
    assert untrack_account_task(account_id, unsubscribe=True)["outcome"] == "untracked"
    assert beat.requests_by_account()[account_id] - before == 1
    account = row(rig, account_id)
    assert not account.tracked and account.gone_at is not None


def test_gone_account_status_webhook_marks_it_gone_instead_of_failing(
    fc: EmulatedFC, rig: TaskRig, beat: Beat, session: Session
) -> None:
    account_id = fc.create_account(transactions=5)
    assert track_account_task(account_id, subscribe=False)["outcome"] == "tracked"
    fc.control.set_account_status(account_id, "inactive")
    (event,) = [e for e in fc.emulator.bank.events if e["type"].endswith(".deactivated")]
    fc.control.delete_account(account_id)  # before the event is handled

    now: datetime = beat.advance(30)
    payload = json.dumps(event).encode()
    receipt = webhooks.receive_webhook(
        session, payload, signature_header(payload, WEBHOOK_SECRET), settings=fc.settings, now=now
    )
    assert receipt.status == 200
    result = event_handlers.handle_event(
        session, fc.gateway, event["id"], now=now, settings=fc.settings
    )
    session.commit()

    assert result.outcome == "processed"
    assert_gone(rig, account_id)
