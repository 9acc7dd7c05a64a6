"""The features an account is tracked with, service level, against the emulator over HTTP on
SQLite and PostgreSQL: an account tracked with balances or ownership only gets no transaction
refresh, sync, reconciliation or subscription from anything (track, beat's sweeps, a manual
refresh, a webhook); a tracked feature its permissions lack is named at track time; a re-track
with other features changes what is kept fresh."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from models import WebhookEvent
from tests.rows import account_row
from tests.service.harness import REFRESH_COOLDOWN_S, REFRESH_DELAY_S, EmulatedFC
from tests.service.test_features import ask
from tests.service.test_webhooks import deliver, events
from worker import feature_store, reconcile, refresh, reports, sync
from worker.errors import ErrorCode, PermanentError
from worker.intents import PollRefresh, PollStaleRefresh, ReconcileDue, RefreshDue, SyncDue
from worker.refresh import refresh_idempotency_key

DAY_S = 86_400


def refresh_elsewhere(fc: EmulatedFC, account_id: str) -> None:
    """A transaction refresh started at Stripe by someone else than fcsync, finished."""
    key = refresh_idempotency_key(account_id, "elsewhere", now=fc.now(), window_s=60)
    fc.gateway.refresh_transactions(account_id, stripe_account=None, idempotency_key=key)
    fc.advance(REFRESH_DELAY_S + REFRESH_COOLDOWN_S)


def swept(fc: EmulatedFC, session: Session) -> set[object]:
    """Everything beat's sweeps would send now (refreshes, stale polls, syncs, reconciles)."""
    now, settings = fc.now(), fc.settings
    found = {
        *refresh.due_refreshes(session, now=now, settings=settings).intents,
        *refresh.stale_polls(session, now=now, settings=settings).intents,
        *sync.resync_candidates(session, now=now, settings=settings).intents,
        *reconcile.due_reconciles(session, now=now, settings=settings).intents,
    }
    session.rollback()  # the claims are not the point here
    return found


@pytest.mark.parametrize("feature", ["balances", "ownership"])
def test_feature_choice_one_feature_alone_gets_no_transactions_work(
    fc: EmulatedFC, session: Session, feature: str
) -> None:
    account_id = fc.create_account(transactions=12, permissions=["transactions", feature])
    result = fc.track(session, account_id, subscribe=True, features=[feature])
    assert result.outcome == "tracked" and not result.subscribed
    assert result.intents == (RefreshDue(account_id, feature),)
    assert fc.control.account(account_id)["subscriptions"] == []
    assert not account_row(session, account_id).transactions_tracked
    assert [f.feature for f in feature_store.features_of(session, account_id)] == [feature]

    # Beat asks for the feature, never for transactions, even once they are all due.
    fc.advance(2 * DAY_S)
    assert {i for i in swept(fc, session) if getattr(i, "account_id", None) == account_id} == {
        RefreshDue(account_id, feature)
    }
    # Transactions Stripe refreshed anyway (started elsewhere) are not taken in: no sync, no
    # refresh row, nothing for the failed-sync or stale sweeps, and a webhook of it is kept in
    # the inbox with nothing started.
    refresh_elsewhere(fc, account_id)
    (event,) = events(fc, "financial_connections.account.refreshed_transactions")
    receipt, handled = deliver(fc, session, event, now=fc.now())
    assert receipt.enqueue and handled.outcome == "ignored" and handled.intents == ()
    stored_event = session.get(WebhookEvent, event["id"])
    assert stored_event is not None and stored_event.outcome == "ignored"
    assert not any(isinstance(i, SyncDue | PollRefresh) for i in swept(fc, session))
    # Nor by reading the account for its feature.
    fc.advance(DAY_S)
    asked = ask(fc, session, account_id, feature)
    assert asked.outcome == "started" and not any(isinstance(i, SyncDue) for i in asked.intents)
    # Asked for directly (a task, `fcsync sync`, `fcsync reconcile`): refused without a request.
    before = fc.control.stats()["requests"]
    decision = refresh.request_refresh(
        session, fc.gateway, account_id, source="manual", now=fc.now(), settings=fc.settings
    )
    assert decision.outcome == "untracked"
    polled = refresh.poll_refresh(
        session, fc.gateway, account_id, now=fc.now(), settings=fc.settings
    )
    assert polled.outcome == "none"
    start, steps = fc.sync(session, account_id, full=True)
    assert start.outcome == "untracked" and steps == []
    assert account_row(session, account_id).sync_lease_owner is None
    with pytest.raises(PermanentError) as refused:
        reconcile.start_reconcile(session, account_id, days=30, now=fc.now(), stripe_account=None)
    assert refused.value.code == ErrorCode.TRANSACTIONS_NOT_TRACKED
    session.rollback()
    assert fc.control.stats()["requests"] == before
    # The POSTs: the transaction refresh made elsewhere and the feature's.
    assert fc.list_calls() == 0 and fc.refresh_posts() == 2
    assert reports.stored_transactions(session, account_id) == []

    # What people see: tracked, its transactions not, and why.
    (status,) = reports.account_status(session, account_id, now=fc.now())
    assert status["tracked"] and not status["transactions_tracked"]
    assert status["state"] == "untracked" and "transactions not tracked" in status["stale_reason"]
    assert status["refresh_id"] is None and status["last_error"] is None
    assert list(status["features"]) == [feature]


def test_feature_choice_transactions_need_no_permission_when_not_tracked(
    fc: EmulatedFC, session: Session
) -> None:
    account_id = fc.create_account(permissions=["balances"])
    result = fc.track(session, account_id, subscribe=True, features=["balances"])
    assert result.outcome == "tracked" and result.missing_permissions == ()
    assert account_row(session, account_id).last_error_code is None


def test_feature_choice_a_subscription_made_elsewhere_is_left_alone(
    fc: EmulatedFC, session: Session
) -> None:
    account_id = fc.create_account(permissions=["transactions", "balances"])
    fc.gateway.subscribe_transactions(account_id, stripe_account=None)
    fc.track(session, account_id, subscribe=True, features=["balances"])
    assert fc.control.account(account_id)["subscriptions"] == ["transactions"]
    assert not account_row(session, account_id).transactions_tracked


def test_feature_choice_a_feature_the_permissions_lack_is_named_at_track_time(
    fc: EmulatedFC, session: Session
) -> None:
    account_id = fc.create_account(permissions=["transactions"])
    result = fc.track(session, account_id, features=["balances"], expect=("no_permission",))
    assert result.missing_permissions == ("balances",)
    # Tracked all the same, parked with the reason: a relink that grants it lets it refresh.
    parked = feature_store.get_feature(session, account_id, "balances")
    assert parked is not None and parked.last_error_code == ErrorCode.MISSING_PERMISSION
    assert result.intents == ()
    # Transactions the permissions lack, tracked with a feature they grant: both named.
    other = fc.create_account(permissions=["ownership"])
    both = fc.track(
        session, other, features=["transactions", "ownership"], expect=("no_permission",)
    )
    assert both.missing_permissions == ("transactions",)
    assert account_row(session, other).last_error_code == ErrorCode.MISSING_PERMISSION
    assert fc.refresh_posts() == 0


def test_feature_choice_retrack_without_transactions_stops_all_their_work(
    fc: EmulatedFC, session: Session
) -> None:
    account_id = fc.create_account(transactions=25, permissions=["transactions", "balances"])
    fc.track(session, account_id, subscribe=True, features=["transactions", "balances"])
    assert fc.control.account(account_id)["subscriptions"] == ["transactions"]
    fc.advance(REFRESH_DELAY_S)
    refresh.poll_refresh(session, fc.gateway, account_id, now=fc.now(), settings=fc.settings)
    session.commit()
    fc.sync(session, account_id)
    # A later refresh succeeded but not synced, and one still pending: work for every sweep.
    fc.advance(REFRESH_COOLDOWN_S)
    fc.refresh(session, account_id)
    fc.control.update_account(account_id, refresh_delay_s=10 * DAY_S)
    refresh.request_refresh(
        session, fc.gateway, account_id, source="manual", now=fc.now(), settings=fc.settings
    )
    session.commit()
    reconcile.due_reconciles(session, now=fc.now(), settings=fc.settings)  # its slot, set once
    session.commit()
    fc.advance(8 * DAY_S)
    assert {SyncDue(account_id), PollStaleRefresh(account_id), ReconcileDue(account_id)} <= swept(
        fc, session
    )

    # Dropping transactions ends Stripe's daily refresh of them; balances stay as they were.
    dropped = fc.track(session, account_id, subscribe=True, features=["balances"])
    assert dropped.outcome == "tracked" and not dropped.subscribed
    assert dropped.intents == (RefreshDue(account_id, "balances"),)
    assert fc.control.account(account_id)["subscriptions"] == []
    assert not account_row(session, account_id).transactions_tracked
    assert feature_store.get_feature(session, account_id, "balances") is not None
    assert {i for i in swept(fc, session) if getattr(i, "account_id", None) == account_id} == {
        RefreshDue(account_id, "balances")
    }
    # Tracking again without features keeps the choice.
    fc.track(session, account_id, subscribe=True)
    assert not account_row(session, account_id).transactions_tracked
    assert fc.control.account(account_id)["subscriptions"] == []


def test_feature_choice_retrack_with_transactions_subscribes_and_backfills(
    fc: EmulatedFC, session: Session
) -> None:
    account_id = fc.create_account(transactions=25, permissions=["transactions", "balances"])
    fc.track(session, account_id, subscribe=True, features=["balances"])
    fc.advance(DAY_S)
    added = fc.track(session, account_id, subscribe=True, features=["transactions", "balances"])
    assert added.outcome == "subscribed"
    assert fc.control.account(account_id)["subscriptions"] == ["transactions"]
    fc.advance(REFRESH_DELAY_S)
    polled = refresh.poll_refresh(
        session, fc.gateway, account_id, now=fc.now(), settings=fc.settings
    )
    session.commit()
    assert polled.outcome == "succeeded" and SyncDue(account_id) in polled.intents
    fc.sync(session, account_id)
    assert fc.mismatches(session, account_id) == []
    # Without subscribing (--no-subscribe), transactions newly tracked are due at once.
    fc.track(session, account_id, features=["balances"])
    fc.track(session, account_id, features=["transactions"])
    row = account_row(session, account_id)
    assert row.transactions_tracked and row.next_due_at is not None
    assert row.next_due_at <= fc.now()
    assert feature_store.features_of(session, account_id) == []
