"""Balances and ownership, service level, against the emulator over HTTP on SQLite and
PostgreSQL: tracking only what permissions allow, each feature's own gate, completion by poll
and by webhook, the balance history and the owners replaced per ownership, each feature's own
due time in beat's sweeps."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import AccountFeature, Balance
from tasks.refresh import poll_refresh_task, refresh_account_task
from tasks.tracking import track_account_task
from tests.rows import account_row
from tests.service.conftest import TaskRig
from tests.service.harness import REFRESH_COOLDOWN_S, REFRESH_DELAY_S, EmulatedFC
from tests.service.test_webhooks import deliver, events
from worker import contract, feature_reports, feature_store, features, refresh
from worker.errors import ErrorCode
from worker.intents import PollRefresh, PollStaleRefresh, RefreshDue
from worker.records import FCBalance, FCOwner, FeatureRefreshState
from worker.settings import Settings

ALL = ["transactions", "balances", "ownership"]
OWNERS = [
    {"name": "Jenny Rosen", "email": "jenny@example.com", "phone": None, "raw_address": None},
    {"name": "Ada Lovelace", "email": None, "phone": "+15550001111", "raw_address": "1 Way"},
]
DAY_S = 86_400


def ask(
    fc: EmulatedFC,
    session: Session,
    account_id: str,
    feature: str,
    *,
    source: str = "manual",
    settings: Settings | None = None,
) -> features.FeatureResult:
    result = features.request_feature_refresh(
        session,
        fc.gateway,
        account_id,
        feature=feature,
        source=source,
        now=fc.now(),
        settings=settings or fc.settings,
    )
    session.commit()
    return result


def poll(
    fc: EmulatedFC,
    session: Session,
    account_id: str,
    feature: str,
    *,
    settings: Settings | None = None,
) -> str:
    result = features.poll_feature(
        session,
        fc.gateway,
        account_id,
        feature=feature,
        now=fc.now(),
        settings=settings or fc.settings,
    )
    session.commit()
    return result.outcome


def refreshes_ended(feature: str) -> float:
    """This process's count of `feature` refreshes seen to succeed (/metrics)."""
    labels = {"feature": feature, "outcome": "succeeded"}
    return REGISTRY.get_sample_value("fcsync_feature_refreshes_total", labels) or 0.0


def row(session: Session, account_id: str, feature: str) -> AccountFeature:
    found = feature_store.get_feature(session, account_id, feature)
    assert found is not None
    session.refresh(found)
    return found


def stored_owners(session: Session, account_id: str) -> list[dict[str, Any]]:
    return feature_reports.stored_owners(session, account_id)


def by_name(owners: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Owners as fcsync lists them (by name; Stripe's list order is not kept)."""
    return sorted(owners, key=lambda o: str(o["name"]))


def test_track_keeps_only_the_features_permissions_allow_and_says_why(
    fc: EmulatedFC, session: Session
) -> None:
    account_id = fc.create_account(permissions=["transactions", "balances"])
    result = fc.track(session, account_id, subscribe=True, features=ALL, expect=("no_permission",))
    # A clear answer: the feature the permissions do not grant, named. What they grant is
    # tracked all the same (and subscribed: the subscription is of transactions).
    assert result.missing_permissions == ("ownership",) and result.subscribed
    # Only the allowed feature is refreshed at once; the other is parked with the reason.
    assert [i for i in result.intents if isinstance(i, RefreshDue)] == [
        RefreshDue(account_id, "balances")
    ]
    balances, ownership = (
        row(session, account_id, "balances"),
        row(session, account_id, "ownership"),
    )
    assert balances.last_error_code is None
    assert ownership.last_error_code == ErrorCode.MISSING_PERMISSION
    assert "permissions=['ownership']" in (ownership.last_error_message or "")
    assert ownership.next_due_at is not None and ownership.next_due_at > fc.now()
    assert ask(fc, session, account_id, "ownership").outcome == "no_permission"
    assert fc.refresh_posts() == 0  # the subscription started the transaction refresh
    # Subscriptions stay transactions-only, as Stripe's are.
    assert fc.control.account(account_id)["subscriptions"] == ["transactions"]
    # Tracking again without features keeps them (still saying what lacks permission); naming
    # fewer drops the others.
    fc.track(session, account_id, subscribe=True, expect=("no_permission",))
    assert len(feature_store.features_of(session, account_id)) == 2
    fc.track(session, account_id, subscribe=True, features=["transactions"])
    assert feature_store.features_of(session, account_id) == []


@pytest.mark.parametrize("feature", ["balances", "ownership"])
def test_feature_gate_never_posts_while_pending_or_before_next_refresh_available_at(
    fc: EmulatedFC, session: Session, feature: str
) -> None:
    account_id = fc.create_account(permissions=["transactions", feature])
    fc.track(session, account_id, subscribe=True, features=["transactions", feature])
    posts = fc.refresh_posts()
    started = ask(fc, session, account_id, feature)
    assert started.outcome == "started"
    assert PollRefresh(account_id, 0, feature) in started.intents
    assert fc.refresh_posts() == posts + 1
    assert ask(fc, session, account_id, feature).outcome == "pending"
    fc.advance(REFRESH_DELAY_S)
    cooldown = ask(fc, session, account_id, feature)
    assert cooldown.outcome == "cooldown" and cooldown.retry_at is not None
    # Never due before Stripe allows it (here: a refresh interval after this refresh).
    due = row(session, account_id, feature).next_due_at
    assert due is not None and due >= cooldown.retry_at
    fc.advance(REFRESH_COOLDOWN_S - 1)
    assert ask(fc, session, account_id, feature).outcome == "cooldown"
    assert fc.refresh_posts() == posts + 1
    fc.advance(1)
    assert ask(fc, session, account_id, feature).outcome == "started"
    assert fc.refresh_posts() == posts + 2
    assert fc.gating_violations() == 0


def test_balance_refresh_completed_by_poll_adds_to_the_history(
    fc: EmulatedFC, session: Session
) -> None:
    account_id = fc.create_account(permissions=["transactions", "balances"])
    fc.track(session, account_id, subscribe=True, features=["transactions", "balances"])
    ended = refreshes_ended("balances")
    ask(fc, session, account_id, "balances")
    assert poll(fc, session, account_id, "balances") == "pending"
    fc.advance(REFRESH_DELAY_S)
    assert poll(fc, session, account_id, "balances") == "succeeded"
    assert poll(fc, session, account_id, "balances") == "succeeded"  # seen twice, stored once
    assert refreshes_ended("balances") == ended + 1  # and counted once
    credit = {"type": "credit", "current": {"usd": -900}, "credit": {"used": {"usd": 900}}}
    fc.control.update_account(account_id, balance=credit)
    fc.advance(REFRESH_COOLDOWN_S)
    ask(fc, session, account_id, "balances")
    fc.advance(REFRESH_DELAY_S)
    assert poll(fc, session, account_id, "balances") == "succeeded"
    assert refreshes_ended("balances") == ended + 2
    history = feature_store.balances_of(session, account_id)
    newest = history[0]
    assert (newest.type, newest.current, newest.credit_used) == (
        "credit",
        {"usd": -900},
        {"usd": 900},
    )
    assert history[1].type == "cash" and history[1].cash_available == history[1].current
    latest = fc.control.account(account_id)["balance"]
    assert history[0].as_of == latest["as_of"] and history[0].currency == "usd"
    done = row(session, account_id, "balances")
    assert done.refresh_status == "succeeded" and done.stored_refresh_at is not None
    assert done.next_due_at is not None
    assert done.next_due_at.timestamp() == done.refresh_last_attempted_at + DAY_S


def test_ownership_refresh_completed_by_poll_replaces_the_owners(
    fc: EmulatedFC, session: Session
) -> None:
    account_id = fc.create_account(permissions=["transactions", "ownership"])
    fc.control.update_account(account_id, owners=OWNERS)
    fc.track(session, account_id, subscribe=True, features=["transactions", "ownership"])
    ask(fc, session, account_id, "ownership")
    fc.advance(REFRESH_DELAY_S)
    assert poll(fc, session, account_id, "ownership") == "succeeded"
    assert stored_owners(session, account_id) == by_name(fc.control.owners(account_id))
    first_ownership = row(session, account_id, "ownership").ownership_id

    fc.control.update_account(account_id, owners=OWNERS[:1])
    fc.advance(REFRESH_COOLDOWN_S)
    ask(fc, session, account_id, "ownership")
    fc.advance(REFRESH_DELAY_S)
    assert poll(fc, session, account_id, "ownership") == "succeeded"
    assert stored_owners(session, account_id) == by_name(fc.control.owners(account_id))
    assert [o["name"] for o in stored_owners(session, account_id)] == ["Jenny Rosen"]
    assert row(session, account_id, "ownership").ownership_id != first_ownership


def test_feature_refreshes_completed_by_webhook_without_a_poll(
    fc: EmulatedFC, session: Session
) -> None:
    account_id = fc.create_account(permissions=["transactions", "balances", "ownership"])
    fc.control.update_account(account_id, owners=OWNERS)
    fc.track(session, account_id, subscribe=True, features=ALL)
    ask(fc, session, account_id, "balances")
    ask(fc, session, account_id, "ownership")
    fc.advance(REFRESH_DELAY_S)
    now = fc.now()
    for type_ in ("refreshed_balance", "refreshed_ownership"):
        (event,) = events(fc, f"financial_connections.account.{type_}")
        _, result = deliver(fc, session, event, now=now)
        assert result.outcome == "processed"
        # A duplicate delivery changes nothing.
        assert deliver(fc, session, event, now=now)[1].outcome == "duplicate"
    assert session.scalar(select(func.count()).select_from(Balance)) == 1
    assert stored_owners(session, account_id) == by_name(fc.control.owners(account_id))
    for feature in ("balances", "ownership"):
        assert row(session, account_id, feature).refresh_status == "succeeded"


def test_each_feature_has_its_own_due_time_in_beats_sweeps(
    fc: EmulatedFC, session: Session
) -> None:
    account_id = fc.create_account(permissions=["transactions", "balances", "ownership"])
    fc.track(session, account_id, subscribe=True, features=ALL)
    swept = refresh.due_refreshes(session, now=fc.now(), settings=fc.settings).intents
    session.commit()
    assert set(swept) >= {RefreshDue(account_id, "balances"), RefreshDue(account_id, "ownership")}
    # Claimed: the next sweep does not send them again.
    again = refresh.due_refreshes(session, now=fc.now(), settings=fc.settings).intents
    session.commit()
    assert not {i for i in again if isinstance(i, RefreshDue) and i.feature != "transactions"}

    ask(fc, session, account_id, "balances")
    fc.advance(REFRESH_DELAY_S)
    poll(fc, session, account_id, "balances")
    # The balance is due a refresh interval after its refresh, not with ownership.
    balance_due = row(session, account_id, "balances").next_due_at
    assert balance_due is not None
    later = fc.advance(DAY_S)
    swept = refresh.due_refreshes(session, now=later, settings=fc.settings).intents
    session.commit()
    assert RefreshDue(account_id, "balances") in swept

    # A pending ownership refresh with no webhook is polled by the stale-refresh sweep.
    fc.control.update_account(account_id, refresh_delay_s=10 * DAY_S)
    ask(fc, session, account_id, "ownership")
    # Pending: never due for another refresh, whatever its due time says.
    assert (
        RefreshDue(account_id, "ownership")
        not in refresh.due_refreshes(session, now=fc.now(), settings=fc.settings).intents
    )
    session.commit()
    stale_at = fc.advance(2 * fc.settings.fcsync_stale_pending_s)
    stale = refresh.stale_polls(session, now=stale_at, settings=fc.settings).intents
    session.commit()
    assert PollStaleRefresh(account_id, "ownership") in stale
    assert (
        PollStaleRefresh(account_id, "ownership")
        not in refresh.stale_polls(session, now=stale_at, settings=fc.settings).intents
    )


def test_untracked_or_unknown_features_are_not_refreshed(fc: EmulatedFC, session: Session) -> None:
    account_id = fc.create_account(permissions=["transactions", "balances"])
    assert ask(fc, session, account_id, "balances").outcome == "untracked"
    fc.track(session, account_id)
    assert ask(fc, session, account_id, "balances").outcome == "untracked"
    assert fc.refresh_posts() == 0
    assert account_row(session, account_id).tracked


def test_storage_balance_once_per_as_of_and_older_refresh_states_ignored(
    fc: EmulatedFC, session: Session
) -> None:
    account_id = fc.create_account(permissions=["transactions", "balances", "ownership"])
    fc.track(session, account_id, subscribe=True, features=ALL)
    balance = FCBalance(100, "cash", {"usd": 5}, {"usd": 4}, None)
    assert feature_store.save_balance(session, account_id, balance)
    assert not feature_store.save_balance(session, account_id, balance)
    assert feature_store.save_balance(
        session, account_id, FCBalance(90, "credit", {"eur": -1}, None, {"eur": 1})
    )
    assert [b.as_of for b in feature_store.balances_of(session, account_id)] == [100, 90]

    feature = row(session, account_id, "balances")
    assert feature_store.apply_feature_refresh(feature, FeatureRefreshState("succeeded", 50, 60))
    assert not feature_store.apply_feature_refresh(
        feature, FeatureRefreshState("pending", 50, None)
    )
    assert not feature_store.apply_feature_refresh(
        feature, FeatureRefreshState("succeeded", 40, 50)
    )
    assert (feature.refresh_status, feature.refresh_last_attempted_at) == ("succeeded", 50)

    owner = FCOwner("fcaown_1a", "fcaowns_1a", "A", None, None, None, 1)
    feature_store.replace_owners(session, account_id, [owner])
    feature_store.replace_owners(
        session, account_id, [FCOwner("fcaown_1b", "fcaowns_1b", "B", "b@x", None, None, 2)]
    )
    session.commit()
    assert [(o.id, o.ownership) for o in feature_store.owners_of(session, account_id)] == [
        ("fcaown_1b", "fcaowns_1b")
    ]


def test_owners_are_paged_to_the_end_before_any_is_stored(fc: EmulatedFC, session: Session) -> None:
    account_id = fc.create_account(permissions=["transactions", "ownership"])
    many = [{"name": f"Owner {i:03d}"} for i in range(150)]
    fc.control.update_account(account_id, owners=many)
    fc.track(session, account_id, subscribe=True, features=["transactions", "ownership"])
    ask(fc, session, account_id, "ownership")
    fc.advance(REFRESH_DELAY_S)
    assert poll(fc, session, account_id, "ownership") == "succeeded"
    assert len(stored_owners(session, account_id)) == 150
    assert fc.requests("GET /v1/financial_connections/accounts/{account}/owners") == 2


def test_tasks_carry_the_feature_from_refresh_to_poll(fc: EmulatedFC, rig: TaskRig) -> None:
    account_id = fc.create_account(permissions=["transactions", "balances"])
    assert (
        track_account_task(account_id, subscribe=False, features=["transactions", "balances"])[
            "outcome"
        ]
        == "tracked"
    )
    rig.sent.clear()
    started = refresh_account_task(account_id, source="manual", feature="balances")
    assert started["outcome"] == "started"
    (poll_followup,) = rig.take(contract.POLL_REFRESH)
    assert poll_followup.kwargs == {"account_id": account_id, "feature": "balances"}
    fc.advance(REFRESH_DELAY_S)
    assert poll_refresh_task(**poll_followup.kwargs)["outcome"] == "succeeded"
    with Session(rig.engine) as session:
        assert len(feature_store.balances_of(session, account_id)) == 1
