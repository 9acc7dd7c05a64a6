"""Accounts that cannot refresh cost Stripe at most one request a day, and one Stripe no longer
knows costs nothing once it is marked gone: beat's sweeps are driven every few emulated
minutes across several emulated days, with the real tasks, gateway and emulator clock, and the
requests naming each account are counted by the emulator."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from emulator import signature_header
from models import Account, Refresh
from tasks.refresh import refresh_account_task, refresh_due_accounts_task
from tasks.tracking import track_account_task
from tests.service.beat import Beat, make_beat
from tests.service.conftest import WEBHOOK_SECRET, TaskRig
from tests.service.harness import EmulatedFC
from worker import contract, event_handlers, webhooks
from worker.db import session_scope

DAY_S = 86_400
HOUR_S = 3_600


def stored(rig: TaskRig, account_id: str) -> dict[str, Any]:
    with session_scope(rig.engine) as session:
        account = session.get(Account, account_id)
        assert account is not None
        beat_refreshes = session.scalars(
            select(Refresh.id).where(Refresh.account_id == account_id, Refresh.source == "beat")
        ).all()
        return {
            "gone_at": account.gone_at,
            "next_due_at": account.next_due_at,
            "last_error_code": account.last_error_code,
            "beat_refreshes": len(beat_refreshes),
        }


def row_error(rig: TaskRig, account_id: str) -> str | None:
    return stored(rig, account_id)["last_error_code"]  # type: ignore[no-any-return]


@pytest.fixture
def beat(fc: EmulatedFC, rig: TaskRig, monkeypatch: pytest.MonkeyPatch) -> Beat:
    return make_beat(fc, rig, monkeypatch)


def test_unusable_accounts_cost_at_most_one_request_a_day_and_gone_ones_none(
    fc: EmulatedFC, rig: TaskRig, beat: Beat
) -> None:
    days, step_s = 5, 5 * 60
    healthy = fc.create_account(transactions=30)
    inactive = fc.create_account(transactions=30, status="inactive")
    permissionless = fc.create_account(transactions=30, permissions=["balances"])
    deleted = fc.create_account(transactions=30)
    disconnected = fc.create_account(transactions=30, status="disconnected")
    outcomes = {
        account_id: track_account_task(account_id, subscribe=False)["outcome"]
        for account_id in (healthy, inactive, permissionless, deleted, disconnected)
    }
    assert outcomes == {
        healthy: "tracked",
        inactive: "inactive",
        permissionless: "no_permission",
        deleted: "tracked",
        disconnected: "inactive",
    }
    # Tracking read them once already: their first recheck is a full period away.
    recheck_at = beat.clock.now() + timedelta(seconds=fc.settings.fcsync_unusable_recheck_s)
    assert stored(rig, inactive)["next_due_at"] == recheck_at
    assert stored(rig, permissionless)["next_due_at"] == recheck_at
    # The deleted account was refreshed and synced once before Stripe forgot it.
    beat.tick(step_s)
    beat.tick(step_s)
    assert stored(rig, deleted)["beat_refreshes"] == 1
    fc.control.delete_account(deleted)

    per_day: list[Counter[str]] = []
    for _ in range(days):
        before = beat.requests_by_account()
        for _ in range(DAY_S // step_s):
            beat.tick(step_s)
        per_day.append(beat.requests_by_account() - before)

    for day, counts in enumerate(per_day):
        assert counts[inactive] <= 1, (day, counts)
        assert counts[permissionless] <= 1, (day, counts)
        # The first read after the deletion marks it gone; nothing asks about it afterwards.
        assert counts[deleted] == (1 if day == 0 else 0), (day, counts)
        assert counts[healthy] >= 1, (day, counts)
        # Final at Stripe: parked until an event or an operator, so it costs nothing.
        assert counts[disconnected] == 0, (day, counts)
    assert sum(c[inactive] for c in per_day) >= days - 1  # re-read daily, not parked for good
    assert sum(c[permissionless] for c in per_day) >= days - 1

    gone = stored(rig, deleted)
    assert gone["gone_at"] is not None and gone["next_due_at"] is None
    assert gone["last_error_code"] == "account_gone"
    assert stored(rig, inactive)["last_error_code"] == "account_inactive"
    assert stored(rig, permissionless)["last_error_code"] == "missing_permission"
    # The control account is refreshed by beat once a day and stays synced.
    assert stored(rig, healthy)["beat_refreshes"] >= days
    with session_scope(rig.engine) as session:
        assert fc.mismatches(session, healthy) == []
    assert beat.permanent_failures == Counter()
    assert fc.gating_violations() == 0


def test_unusable_accounts_a_refresh_beat_sent_that_never_reported_back_is_resent_once_a_window(
    fc: EmulatedFC, rig: TaskRig, beat: Beat
) -> None:
    account_id = fc.create_account(transactions=5)
    assert track_account_task(account_id, subscribe=False)["outcome"] == "tracked"
    window_s = fc.settings.fcsync_failed_refresh_retry_s

    sent_at: list[float] = []
    for _ in range(3 * window_s // 60):
        beat.advance(60)
        refresh_due_accounts_task()
        # The message is lost every time (broker restart, worker killed before it acked).
        if rig.take(contract.REFRESH_ACCOUNT):
            sent_at.append(beat.clock.current.timestamp())
    assert len(sent_at) == 3, sent_at
    assert [b - a for a, b in pairwise(sent_at)] == [window_s, window_s]
    assert beat.requests_by_account()[account_id] == 1  # the track's read only


def test_unusable_accounts_a_refresh_stuck_pending_is_re_read_daily_after_its_deadline(
    fc: EmulatedFC, rig: TaskRig, beat: Beat
) -> None:
    # Stripe takes two and a half days to finish this refresh, and no webhook ever comes.
    account_id = fc.create_account(transactions=30, refresh_delay_s=2.5 * DAY_S)
    assert track_account_task(account_id, subscribe=False)["outcome"] == "tracked"
    per_day: list[int] = []
    for _ in range(4):
        before = beat.requests_by_account()[account_id]
        beat.run_for(DAY_S, step_s=10 * 60)
        per_day.append(beat.requests_by_account()[account_id] - before)

    # Day 0: the refresh POST, its polling chain up to FCSYNC_POLL_DEADLINE_S, and stale
    # sweeps at most once per FCSYNC_STALE_PENDING_S; then one read a day while it hangs.
    deadline_s, stale_s = fc.settings.fcsync_poll_deadline_s, fc.settings.fcsync_stale_pending_s
    assert per_day[0] <= 2 + 2 * (deadline_s // stale_s) + deadline_s // 60, per_day
    assert per_day[1] <= 1 and per_day[2] <= 1, per_day
    # The daily read found it finished: synced, and the next refresh asked for.
    assert stored(rig, account_id)["beat_refreshes"] == 2
    with session_scope(rig.engine) as session:
        assert fc.mismatches(session, account_id) == []
    assert beat.permanent_failures == Counter()


def test_unusable_accounts_a_deactivated_webhook_parks_the_account_for_a_recheck(
    fc: EmulatedFC, rig: TaskRig, beat: Beat, session: Session
) -> None:
    account_id = fc.create_account(transactions=5)
    assert track_account_task(account_id, subscribe=False)["outcome"] == "tracked"
    fc.control.set_account_status(account_id, "inactive")
    (event,) = [e for e in fc.emulator.bank.events if e["type"].endswith(".deactivated")]
    payload = json.dumps(event).encode()
    now = beat.advance(30)
    receipt = webhooks.receive_webhook(
        session, payload, signature_header(payload, WEBHOOK_SECRET), settings=fc.settings, now=now
    )
    assert receipt.status == 200
    result = event_handlers.handle_event(
        session, fc.gateway, event["id"], now=now, settings=fc.settings
    )
    session.commit()

    assert result.outcome == "processed"
    account = session.get(Account, account_id)
    assert account is not None and account.status == "inactive"
    recheck = timedelta(seconds=fc.settings.fcsync_unusable_recheck_s)
    assert account.next_due_at == now + recheck


def test_unusable_accounts_pacing_never_delays_the_first_stale_poll_of_a_new_refresh(
    fc: EmulatedFC, rig: TaskRig, beat: Beat
) -> None:
    account_id = fc.create_account(transactions=30)
    assert track_account_task(account_id, subscribe=False)["outcome"] == "tracked"
    beat.run_for(HOUR_S, step_s=5 * 60)  # beat's refresh, polled and synced: due in a day
    assert stored(rig, account_id)["beat_refreshes"] == 1

    # Refreshed by hand; the worker dies with the poll, and the webhook is lost.
    assert refresh_account_task(account_id, source="manual")["outcome"] == "started"
    assert rig.take(contract.POLL_REFRESH)
    beat.run_for(fc.settings.fcsync_stale_pending_s + 10 * 60, step_s=5 * 60)

    with session_scope(rig.engine) as session:
        account = session.get(Account, account_id)
        assert account is not None and account.refresh_status == "succeeded"
        assert fc.mismatches(session, account_id) == []


def test_unusable_accounts_a_sync_that_fails_permanently_is_swept_again_once_a_day(
    fc: EmulatedFC, rig: TaskRig, beat: Beat
) -> None:
    account_id = fc.create_account(transactions=30)
    with session_scope(rig.engine) as session:
        fc.interrupted_sync(session, account_id, full=True)
        # A page cursor Stripe rejects (400 resource_missing): every run fails the same way.
        account = session.get(Account, account_id)
        assert account is not None
        account.sync_starting_after = "fctxn_1NotAnyTransactionOfThisAccount"
    per_day: list[int] = []
    for _ in range(2):
        before = beat.requests_by_account()[account_id]
        beat.run_for(DAY_S, step_s=5 * 60)
        per_day.append(beat.requests_by_account()[account_id] - before)

    # The sweep's one run a day costs its page (400) and the read showing that the account
    # itself exists; beat's daily refresh costs a read, the POST, a poll, and the sync it
    # triggers fails the same way (page and read again).
    assert all(n <= 2 + 5 for n in per_day), per_day
    assert beat.permanent_failures[f"{contract.SYNC_TRANSACTIONS} resource_missing"] <= 2 * 2
    assert row_error(rig, account_id) == "resource_missing"


def test_unusable_accounts_refreshes_that_keep_failing_back_off_to_one_a_day(
    fc: EmulatedFC, rig: TaskRig, beat: Beat
) -> None:
    # The institution fails every refresh.
    account_id = fc.create_account(transactions=30, failure_rate=1.0)
    assert track_account_task(account_id, subscribe=False)["outcome"] == "tracked"
    per_day: list[int] = []
    for _ in range(3):
        before = beat.requests_by_account()[account_id]
        beat.run_for(DAY_S, step_s=5 * 60)
        per_day.append(beat.requests_by_account()[account_id] - before)

    # An attempt is a read, the POST and its poll; the waits double from
    # FCSYNC_FAILED_REFRESH_RETRY_S (15 min, 30 min, 1 h, ...) up to a day.
    assert per_day[0] <= 3 * 8, per_day
    assert per_day[2] <= 3, per_day
    assert stored(rig, account_id)["last_error_code"] == "refresh_failed"
    assert fc.gating_violations() == 0
