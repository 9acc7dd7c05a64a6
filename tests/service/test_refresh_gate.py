"""The refresh gate, run through the real task code in this process under freezegun: never a
POST while a refresh is pending or before `next_refresh_available_at`, one as soon as it is
allowed; beat leaves alone an account whose daily refresh just landed; a redelivered task
cannot start a second refresh.

freezegun is safe here because the emulator's clock is frozen (it never reads wall time) and
is moved in step with freezegun's: the worker's `now` and Stripe's always agree."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import Engine

from models import Account
from tasks.refresh import poll_refresh_task, refresh_account_task, refresh_due_accounts_task
from tasks.tracking import track_account_task
from tests.emulator.conftest import API_KEY
from tests.rows import account_row
from tests.service.conftest import TaskRig
from tests.service.harness import REFRESH_COOLDOWN_S, REFRESH_DELAY_S, EmulatedFC, at
from worker import contract, refresh
from worker.db import session_scope
from worker.errors import PermanentError
from worker.records import FCAccount
from worker.stripe_gateway import StripeGateway

DAY_S = 86_400


def stored(engine: Engine, account_id: str) -> Account:
    with session_scope(engine) as session:
        return account_row(session, account_id)


def subscribe_and_complete_first_refresh(fc: EmulatedFC, clock: Any, account_id: str) -> None:
    """Track with Stripe's daily subscription; its first refresh succeeds and is polled."""
    assert track_account_task(account_id, subscribe=True)["outcome"] == "subscribed"
    clock.move_to(fc.advance(REFRESH_DELAY_S))
    assert poll_refresh_task(account_id)["outcome"] == "succeeded"


def test_refresh_gate_never_posts_while_pending_or_before_next_refresh_available_at(
    fc: EmulatedFC, rig: TaskRig
) -> None:
    account_id = fc.create_account(transactions=20)
    with freeze_time(fc.now()) as clock:
        first = refresh_account_task(account_id, source="manual")
        assert first["outcome"] == "started"
        assert fc.refresh_posts() == 1

        # Still pending on Stripe's side: the account is read, nothing is POSTed.
        assert refresh_account_task(account_id, source="manual")["outcome"] == "pending"
        assert fc.refresh_posts() == 1

        # Finished; Stripe accepts the next one only after its cooldown.
        finished_at = fc.advance(REFRESH_DELAY_S)
        clock.move_to(finished_at)
        cooldown = refresh_account_task(account_id, source="manual")
        assert cooldown["outcome"] == "cooldown"
        available = stored(rig.engine, account_id).refresh_next_available_at
        assert available == int(finished_at.timestamp()) + REFRESH_COOLDOWN_S
        assert cooldown["retry_at"] == at(available).isoformat()
        # The task comes back when it is allowed instead of polling Stripe in the meantime.
        (again,) = rig.take(contract.REFRESH_ACCOUNT)
        assert again.countdown == pytest.approx(REFRESH_COOLDOWN_S + 1)

        clock.move_to(fc.advance(REFRESH_COOLDOWN_S - 1))
        assert refresh_account_task(account_id, source="manual")["outcome"] == "cooldown"
        assert fc.refresh_posts() == 1

        clock.move_to(fc.advance(1))
        second = refresh_account_task(account_id, source="manual")
        assert second["outcome"] == "started"
        assert second["refresh"] != first["refresh"]
    assert fc.refresh_posts() == 2
    assert fc.gating_violations() == 0


def test_refresh_gate_beat_answers_fresh_when_stripes_daily_refresh_just_landed(
    fc: EmulatedFC, rig: TaskRig
) -> None:
    account_id = fc.create_account(transactions=20)
    with freeze_time(fc.now()) as clock:
        subscribe_and_complete_first_refresh(fc, clock, account_id)
        known = stored(rig.engine, account_id).refresh_id
        rig.sent.clear()

        # Stripe's own refresh runs a day after subscribing; wait out its cooldown as well, so
        # only the freshness rule can keep beat from asking for another one.
        clock.move_to(fc.advance(DAY_S + REFRESH_COOLDOWN_S))
        result = refresh_account_task(account_id, source="beat")
    assert result["outcome"] == "fresh"
    assert result["refresh"] != known
    assert fc.refresh_posts() == 0
    assert fc.gating_violations() == 0
    # What Stripe refreshed is synced, though.
    assert rig.take(contract.SYNC_TRANSACTIONS)
    assert stored(rig.engine, account_id).refresh_id == result["refresh"]


def test_refresh_gate_redelivery_after_a_crash_before_commit_posts_nothing(
    fc: EmulatedFC, rig: TaskRig
) -> None:
    account_id = fc.create_account(transactions=20)
    now = fc.now()
    with pytest.raises(RuntimeError), session_scope(rig.engine) as session:
        decision = refresh.request_refresh(
            session, fc.gateway, account_id, source="task", now=now, settings=fc.settings
        )
        assert decision.outcome == "started"
        raise RuntimeError("worker killed before its commit")
    assert fc.refresh_posts() == 1

    with freeze_time(now):
        redelivered = refresh_account_task(account_id, source="task")
    assert redelivered == {
        "account": account_id,
        "outcome": "pending",
        "refresh": decision.refresh_id,
        "retry_at": None,
    }
    assert fc.refresh_posts() == 1
    assert fc.gating_violations() == 0


class ReadThenRace(StripeGateway):
    """Two deliveries of one task both read the account before either POSTs (the message was
    redelivered while its first delivery was still running)."""

    def __init__(self, api_base: str, barrier: threading.Barrier) -> None:
        super().__init__(API_KEY, api_base=api_base, max_network_retries=0)
        self._barrier = barrier

    def retrieve_account(self, account_id: str, *, stripe_account: str | None) -> FCAccount:
        live = super().retrieve_account(account_id, stripe_account=stripe_account)
        self._barrier.wait(timeout=10)
        return live


def test_refresh_gate_concurrent_redelivery_replays_the_idempotency_key(
    fc: EmulatedFC, committed_engine: Engine
) -> None:
    account_id = fc.create_account(transactions=20)
    with session_scope(committed_engine) as session:
        fc.track(session, account_id)
        fc.refresh(session, account_id)  # a previous refresh, long finished
    now, posted_before = fc.now(), fc.refresh_posts()
    barrier = threading.Barrier(2)
    decisions: list[refresh.RefreshDecision] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        gateway = ReadThenRace(fc.emulator.base_url, barrier)
        try:
            with session_scope(committed_engine) as session:
                decisions.append(
                    refresh.request_refresh(
                        session, gateway, account_id, source="task", now=now, settings=fc.settings
                    )
                )
        except BaseException as exc:  # surfaced below, with the thread's traceback
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert [d.outcome for d in decisions] == ["started", "started"]
    assert decisions[0].refresh_id == decisions[1].refresh_id
    # Both deliveries POSTed, with the same key: Stripe replayed the first answer to the
    # second, so no refresh was asked for while one was pending.
    assert fc.refresh_posts() == posted_before + 2
    assert fc.gating_violations() == 0
    assert fc.control.account(account_id)["transaction_refresh"]["id"] == decisions[0].refresh_id


def test_refresh_gate_beat_steps_in_only_when_stripes_daily_refresh_is_overdue(
    fc: EmulatedFC, rig: TaskRig
) -> None:
    account_id = fc.create_account(transactions=20)
    with freeze_time(fc.now()) as clock:
        subscribe_and_complete_first_refresh(fc, clock, account_id)
        # Stripe stops its daily refresh behind fcsync's back: fcsync still counts on it.
        fc.gateway.unsubscribe_transactions(account_id, stripe_account=None)
        rig.sent.clear()
        grace = fc.settings.fcsync_subscription_grace_s

        # Stripe's refresh is a day late but within the grace period: beat leaves it to Stripe.
        clock.move_to(fc.advance(DAY_S + grace - 60))
        refresh_due_accounts_task()
        assert rig.take(contract.REFRESH_ACCOUNT) == []

        # Overdue: beat asks for one refresh, through the gate, and it is started.
        clock.move_to(fc.advance(120))
        refresh_due_accounts_task()
        (due,) = rig.take(contract.REFRESH_ACCOUNT)
        assert due.kwargs == {"account_id": account_id, "source": "beat"}
        assert refresh_account_task(**due.kwargs)["outcome"] == "started"
    assert fc.refresh_posts() == 1
    assert fc.gating_violations() == 0


def test_refresh_gate_observing_the_same_refresh_again_does_not_postpone_the_next(
    fc: EmulatedFC, rig: TaskRig
) -> None:
    account_id = fc.create_account(transactions=20)
    with freeze_time(fc.now()) as clock:
        assert track_account_task(account_id, subscribe=False)["outcome"] == "tracked"
        assert refresh_account_task(account_id, source="beat")["outcome"] == "started"
        clock.move_to(fc.advance(REFRESH_DELAY_S))
        assert poll_refresh_task(account_id)["outcome"] == "succeeded"
        due_at = stored(rig.engine, account_id).next_due_at
        rig.sent.clear()

        # Hours later a retried poll (or a late duplicate webhook) sees the same refresh again.
        clock.move_to(fc.advance(DAY_S - 3_600))
        assert poll_refresh_task(account_id)["outcome"] == "succeeded"
        assert stored(rig.engine, account_id).next_due_at == due_at

        # So the account is due a day after its refresh, not a day after the late look.
        clock.move_to(fc.advance(3_600))
        refresh_due_accounts_task()
        (due,) = rig.take(contract.REFRESH_ACCOUNT)
        assert refresh_account_task(**due.kwargs)["outcome"] == "started"
    assert fc.gating_violations() == 0


def test_refresh_gate_a_failure_stored_under_the_key_is_not_replayed_past_its_window(
    fc: EmulatedFC, committed_engine: Engine
) -> None:
    account_id = fc.create_account(transactions=20)
    now, window_s = fc.now(), fc.settings.fcsync_failed_refresh_retry_s
    fc.store_failed_refresh(account_id, now=now)

    # Within the key's window the stored failure is what Stripe answers...
    with session_scope(committed_engine) as session, pytest.raises(PermanentError):
        refresh.request_refresh(
            session, fc.gateway, account_id, source="task", now=now, settings=fc.settings
        )
    # ...but not for ever: the next window asks Stripe afresh.
    later = fc.advance(window_s)
    with session_scope(committed_engine) as session:
        decision = refresh.request_refresh(
            session, fc.gateway, account_id, source="task", now=later, settings=fc.settings
        )
    assert decision.outcome == "started"
    assert fc.gating_violations() == 0
