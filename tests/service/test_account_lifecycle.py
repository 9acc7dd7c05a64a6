"""An account's whole lifecycle through the tasks, run in this process against the emulator:
active -> active with a relink required by a date -> inactive -> relinked (active, same id) ->
disconnected; each change told once to FCSYNC_ON_ACCOUNT_TASK, history kept, no row twice."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from emulator import signature_header
from models import Account, AccountFeature, WebhookEvent
from tasks.refresh import poll_refresh_task, refresh_account_task, refresh_due_accounts_task
from tasks.sync import sync_transactions_task
from tasks.tracking import track_account_task
from tasks.webhooks import handle_event_task
from tests.service.conftest import WEBHOOK_SECRET, TaskRig
from tests.service.harness import REFRESH_COOLDOWN_S, REFRESH_DELAY_S, EmulatedFC
from tests.service.test_webhooks import events
from worker import contract, fleet, reports, repository, webhooks
from worker.db import session_scope

ACCOUNT_TASK = "app.account_changed"
FC = "financial_connections.account."
DAY_S = 86_400


def configure(fc: EmulatedFC, rig: TaskRig) -> None:
    rig.runtime.settings = fc.settings.model_copy(
        update={"fcsync_on_account_task": ACCOUNT_TASK, "fcsync_on_account_queue": "accounts"}
    )
    # The tasks' `now` is the emulator's, so what is due is due in Stripe's time.
    rig.runtime.clock = fc


def notices(rig: TaskRig) -> list[dict[str, Any]]:
    taken = rig.take(ACCOUNT_TASK)
    assert all(f.queue == "accounts" for f in taken)
    return [f.kwargs for f in taken]


def refresh_and_sync(fc: EmulatedFC, rig: TaskRig, account_id: str) -> list[dict[str, Any]]:
    """A manual refresh, its poll once Stripe finished it, and every sync run it leads to."""
    assert refresh_account_task(account_id=account_id, source="manual")["outcome"] == "started"
    fc.advance(REFRESH_DELAY_S)
    rig.take(contract.POLL_REFRESH)
    assert poll_refresh_task(account_id=account_id)["outcome"] == "succeeded"
    runs = []
    while syncs := rig.take(contract.SYNC_TRANSACTIONS):
        runs += [sync_transactions_task(**f.kwargs) for f in syncs]
    fc.advance(REFRESH_COOLDOWN_S)
    return runs


def deliver_latest(fc: EmulatedFC, rig: TaskRig, type_: str) -> str:
    """The newest event of `type_` as the receiver stores it, then handled by its task."""
    event = events(fc, FC + type_)[-1]
    payload = json.dumps(event).encode()
    with session_scope(rig.engine) as session:
        receipt = webhooks.receive_webhook(
            session,
            payload,
            signature_header(payload, WEBHOOK_SECRET),
            settings=rig.runtime.settings,
            now=fc.now(),
        )
    assert receipt.enqueue, receipt
    assert handle_event_task(event_id=event["id"])["outcome"] == "processed"
    return str(event["id"])


def stored(rig: TaskRig, account_id: str) -> tuple[Account, int]:
    with Session(rig.engine) as session:
        account = session.get(Account, account_id)
        assert account is not None
        return account, repository.count_transactions(session, account_id)


def scheduled(rig: TaskRig) -> list[str]:
    """The accounts beat's due sweep asks to refresh now."""
    refresh_due_accounts_task()
    return [f.kwargs["account_id"] for f in rig.take(contract.REFRESH_ACCOUNT)]


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat()


def test_lifecycle_relink_required_inactive_relinked_keeps_history_and_tells_each_change_once(
    fc: EmulatedFC, rig: TaskRig
) -> None:
    configure(fc, rig)
    account_id = fc.create_account(transactions=150)
    track_account_task(account_id=account_id, subscribe=False)
    refresh_and_sync(fc, rig, account_id)
    _, count = stored(rig, account_id)
    assert count == len(fc.truth(account_id))
    assert notices(rig) == []

    deadline = int(fc.now().timestamp()) + 10 * DAY_S
    fc.control.expect_deactivation(
        account_id, cause="access_expired", expected_deactivation_date=deadline
    )
    refresh_and_sync(fc, rig, account_id)
    relink = {
        "account": account_id,
        "kind": "relink_required",
        "status": "active",
        "action": "relink_required",
        "cause": "access_expired",
        "expected_deactivation_date": iso(deadline),
        "expected_expiry_date": None,
        "event": None,
        "stripe_account": None,
    }
    assert notices(rig) == [relink]
    account, _ = stored(rig, account_id)
    assert (account.status_details_action, account.expected_deactivation_date) == (
        "relink_required",
        deadline,
    )
    with Session(rig.engine) as session:
        (row,) = reports.account_status(session, account_id, now=fc.now())
        assert reports.relink_text(row).startswith("required by ")
        assert fleet.snapshot(session, now=fc.now()).needing_relink["access_expired"] == 1
    # Seen again, unchanged: nothing more to tell.
    refresh_and_sync(fc, rig, account_id)
    assert notices(rig) == []

    fc.control.deactivate(account_id)
    deliver_latest(fc, rig, "deactivated")
    (deactivated,) = notices(rig)
    assert (deactivated["kind"], deactivated["status"], deactivated["action"]) == (
        "deactivated",
        "inactive",
        None,
    )
    assert refresh_account_task(account_id=account_id, source="manual")["outcome"] == "inactive"
    assert scheduled(rig) == []
    before_relink, count = stored(rig, account_id)
    truth_before = {t["id"] for t in fc.truth(account_id)}
    assert count == len(truth_before)

    fc.control.relink(account_id)
    deliver_latest(fc, rig, "reactivated")
    assert [n["kind"] for n in notices(rig)] == ["reactivated"]
    assert scheduled(rig) == [account_id]  # beat's next sweep refreshes it again
    runs = refresh_and_sync(fc, rig, account_id)
    after, count = stored(rig, account_id)
    truth_after = {t["id"] for t in fc.truth(account_id)}
    new_rows = len(truth_after - truth_before)
    assert new_rows > 0
    # Incremental from the stored cursor: only the new refresh's rows, none twice.
    assert sum(r["inserted"] for r in runs) == new_rows
    assert sum(r["inserted"] + r["updated"] for r in runs) < len(truth_after)
    assert count == len(truth_after)
    assert after.cursor_refresh_id != before_relink.cursor_refresh_id
    assert after.next_due_at is not None and after.status_details_action is None
    with Session(rig.engine) as session:
        assert fc.mismatches(session, account_id) == []

    expiry = int(fc.now().timestamp()) + 20 * DAY_S
    fc.control.account_numbers_changed(account_id, FC + "upcoming_account_number_expiry", expiry)
    event_id = deliver_latest(fc, rig, "upcoming_account_number_expiry")
    (expiring,) = notices(rig)
    assert (expiring["kind"], expiring["expected_expiry_date"], expiring["event"]) == (
        "upcoming_account_number_expiry",
        iso(expiry),
        event_id,
    )
    fc.control.account_numbers_changed(account_id, FC + "account_numbers_updated")
    deliver_latest(fc, rig, "account_numbers_updated")
    assert [n["kind"] for n in notices(rig)] == ["account_numbers_updated"]
    with Session(rig.engine) as session:
        outcomes = session.scalars(
            select(WebhookEvent.outcome).where(WebhookEvent.type.like(f"{FC}%account_number%"))
        )
        assert list(outcomes) == ["processed", "processed"]

    fc.control.disconnect(account_id)
    deliver_latest(fc, rig, "disconnected")
    assert [n["kind"] for n in notices(rig)] == ["disconnected"]
    gone, count = stored(rig, account_id)
    assert (gone.status, gone.next_due_at, count) == ("disconnected", None, len(truth_after))


def test_no_account_task_configured_sends_nothing(fc: EmulatedFC, rig: TaskRig) -> None:
    account_id = fc.create_account(transactions=5)
    track_account_task(account_id=account_id, subscribe=False)
    fc.control.expect_deactivation(account_id, cause="institution_requirement")
    refresh_and_sync(fc, rig, account_id)
    assert [f for f in rig.sent if not f.task.startswith("fcsync.")] == []


def test_an_account_tracked_while_relink_required_is_told_once_with_unknown_values_kept(
    fc: EmulatedFC, rig: TaskRig
) -> None:
    configure(fc, rig)
    account_id = fc.create_account(transactions=5)
    fc.control.expect_deactivation(account_id, cause="a_cause_stripe_adds_later", action="soon")
    track_account_task(account_id=account_id, subscribe=False)
    # Not a relink Stripe asks for: stored as Stripe words it, nothing to tell.
    assert notices(rig) == []
    account, _ = stored(rig, account_id)
    assert (account.status_details_action, account.status_details_cause) == (
        "soon",
        "a_cause_stripe_adds_later",
    )
    fc.control.expect_deactivation(account_id, cause="a_cause_stripe_adds_later")
    refresh_and_sync(fc, rig, account_id)
    assert [(n["kind"], n["cause"]) for n in notices(rig)] == [
        ("relink_required", "a_cause_stripe_adds_later")
    ]
    with Session(rig.engine) as session:
        snapshot = fleet.snapshot(session, now=fc.now())
        assert snapshot.needing_relink["a_cause_stripe_adds_later"] == 1
        assert snapshot.needing_relink["access_expired"] == 0


FEATURES = ["transactions", "balances", "ownership"]


def due_refreshes(rig: TaskRig) -> list[tuple[str, str]]:
    """What beat's due sweep asks to refresh now: (account, feature) pairs."""
    refresh_due_accounts_task()
    return sorted(
        (f.kwargs["account_id"], f.kwargs.get("feature", "transactions"))
        for f in rig.take(contract.REFRESH_ACCOUNT)
    )


def parked_while_inactive(fc: EmulatedFC, rig: TaskRig) -> str:
    """An account tracked with every feature, deactivated (no event delivered), each feature's
    refresh refused and parked until the unusable recheck: nothing due."""
    configure(fc, rig)
    account_id = fc.create_account(transactions=20, permissions=FEATURES)
    track_account_task(account_id=account_id, subscribe=False, features=FEATURES)
    rig.sent.clear()
    fc.control.deactivate(account_id)
    for feature in FEATURES:
        report = refresh_account_task(account_id=account_id, source="manual", feature=feature)
        assert report["outcome"] == "inactive"
    assert due_refreshes(rig) == []
    notices(rig)
    return account_id


def test_reactivated_event_makes_every_parked_feature_due_at_once(
    fc: EmulatedFC, rig: TaskRig
) -> None:
    account_id = parked_while_inactive(fc, rig)
    fc.control.relink(account_id)
    deliver_latest(fc, rig, "reactivated")
    # Not a day later at the unusable recheck: the next sweep refreshes each feature.
    assert due_refreshes(rig) == [(account_id, f) for f in sorted(FEATURES)]
    assert due_refreshes(rig) == []


def test_a_read_that_finds_the_account_active_again_makes_its_parked_features_due(
    fc: EmulatedFC, rig: TaskRig
) -> None:
    account_id = parked_while_inactive(fc, rig)
    # Relinked, and the `reactivated` event lost: the transactions refresh's read sees it.
    fc.control.relink(account_id)
    assert refresh_account_task(account_id=account_id, source="manual")["outcome"] == "started"
    assert due_refreshes(rig) == [(account_id, "balances"), (account_id, "ownership")]
    with Session(rig.engine) as session:
        rows = session.scalars(
            select(AccountFeature).where(AccountFeature.account_id == account_id)
        )
        assert {row.last_error_code for row in rows} == {None}
    assert [n["kind"] for n in notices(rig)] == ["reactivated"]
