"""The events sweep against the emulator: events webhooks never delivered are read back from
GET /v1/events into the inbox and handled like delivered ones; events already received are
duplicates; the overlap re-reads the last minutes; a gap past Stripe's 30 days is warned of."""

from __future__ import annotations

import json
import logging

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Transaction, WebhookEvent
from tests.service.conftest import TaskRig
from tests.service.harness import EmulatedFC, sync_requests
from tests.service.test_webhooks import REFRESHED, deliver, events, start_and_finish_refresh
from worker import contract, event_handlers, events_sweep, inbox
from worker.intents import HandleEvent
from worker.stripe_payloads import InvalidStripeResponse, parse_events_page

DAY_S = 86_400


def sweep(fc: EmulatedFC, session: Session, **settings: object) -> events_sweep.EventsSweep:
    used = fc.settings.model_copy(update=settings) if settings else fc.settings
    swept = events_sweep.sweep_events(session, fc.gateway, now=fc.now(), settings=used)
    session.commit()
    return swept


def handle(fc: EmulatedFC, session: Session, swept: events_sweep.EventsSweep) -> int:
    """What the worker does with the sweep's intents: each event handled, each sync run."""
    syncs = 0
    for intent in swept.intents:
        assert isinstance(intent, HandleEvent)
        result = event_handlers.handle_event(
            session, fc.gateway, intent.event_id, now=fc.now(), settings=fc.settings
        )
        session.commit()
        for due in sync_requests(result.intents):
            fc.sync(session, due.account_id)
            syncs += 1
    return syncs


def missed_refresh(fc: EmulatedFC, session: Session, *, transactions: int = 20) -> str:
    """A tracked account whose refresh finished at Stripe; no webhook told fcsync."""
    account_id = fc.create_account(transactions=transactions)
    fc.track(session, account_id)
    start_and_finish_refresh(fc, session, account_id)
    return account_id


def inbox_ids(session: Session) -> set[str]:
    return set(session.scalars(select(WebhookEvent.id)))


def test_events_sweep_stores_and_handles_events_webhooks_never_delivered(
    fc: EmulatedFC, session: Session
) -> None:
    account_id = missed_refresh(fc, session, transactions=150)
    assert fc.mismatches(session, account_id) != []

    swept = sweep(fc, session)

    (refreshed,) = events(fc, REFRESHED)
    # The account's `created` event and its refresh's, both types fcsync handles.
    assert swept.outcomes == {"stored": 2}
    assert refreshed["id"] in inbox_ids(session)
    assert HandleEvent(refreshed["id"]) in swept.intents
    assert handle(fc, session, swept) == 1
    assert fc.mismatches(session, account_id) == []
    # Swept again (both within the overlap): one request, nothing new, nothing to handle.
    listed = fc.requests("GET /v1/events")
    again = sweep(fc, session)
    assert again.outcomes == {"duplicate": 2} and again.intents == ()
    assert fc.requests("GET /v1/events") == listed + 1


def test_events_sweep_skips_events_the_receiver_already_stored(
    fc: EmulatedFC, session: Session
) -> None:
    missed_refresh(fc, session)
    (event,) = events(fc, REFRESHED)
    receipt, result = deliver(fc, session, event, now=fc.now())
    assert not receipt.duplicate and result.outcome == "processed"

    swept = sweep(fc, session)

    assert swept.outcomes.get("duplicate") == 1
    assert HandleEvent(event["id"]) not in swept.intents
    assert session.scalar(select(func.count()).where(WebhookEvent.id == event["id"])) == 1
    row = session.get(WebhookEvent, event["id"])
    assert row is not None and row.outcome == "processed"


def test_events_sweep_reads_from_the_newest_inbox_event_less_the_overlap(
    fc: EmulatedFC, session: Session
) -> None:
    account_id = missed_refresh(fc, session)  # an old, missed event
    fc.advance(3_600)
    start_and_finish_refresh(fc, session, account_id)  # missed, 5 min before the next
    fc.advance(300)
    start_and_finish_refresh(fc, session, account_id)  # delivered
    old, in_overlap, delivered = events(fc, REFRESHED)
    deliver(fc, session, delivered, now=fc.now())

    swept = sweep(fc, session, fcsync_events_overlap_s=600)

    assert swept.start == delivered["created"] - 600
    stored = {i.event_id for i in swept.intents if isinstance(i, HandleEvent)}
    # Within the overlap: read back; before it, the sweep trusts the inbox.
    assert in_overlap["id"] in stored and old["id"] not in stored
    assert swept.outcomes == {"stored": 1, "duplicate": 1}
    assert old["id"] not in inbox_ids(session)


def test_events_sweep_since_a_given_time_reads_what_the_inbox_already_passed(
    fc: EmulatedFC, session: Session
) -> None:
    """The whole deployment was down, and the receiver stored a newer event before beat swept:
    sweeping from the start of the outage reads the events the newest one hides."""
    account_id = missed_refresh(fc, session)
    outage = fc.now()
    fc.advance(3_600)
    start_and_finish_refresh(fc, session, account_id)  # missed
    fc.advance(3_600)
    start_and_finish_refresh(fc, session, account_id)  # delivered after the restart
    _, missed, delivered = events(fc, REFRESHED)
    deliver(fc, session, delivered, now=fc.now())
    assert HandleEvent(missed["id"]) not in sweep(fc, session).intents

    swept = events_sweep.sweep_events(
        session, fc.gateway, now=fc.now(), settings=fc.settings, since=outage
    )

    assert HandleEvent(missed["id"]) in swept.intents
    assert swept.start == int(outage.timestamp()) - 1 and not swept.gap_beyond_retention


def gaps() -> float:
    return REGISTRY.get_sample_value("fcsync_events_sweep_gaps_total") or 0.0


def test_events_sweep_warns_when_the_inbox_is_older_than_stripes_30_days(
    fc: EmulatedFC, session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    account_id = fc.create_account(transactions=20)
    fc.track(session, account_id)
    first = sweep(fc, session)
    assert first.stored == 1 and not first.gap_beyond_retention
    fc.advance(29 * DAY_S)
    assert not sweep(fc, session).gap_beyond_retention
    fc.advance(2 * DAY_S)
    start_and_finish_refresh(fc, session, account_id)
    before = gaps()

    with caplog.at_level(logging.WARNING, logger="worker.events_sweep"):
        swept = sweep(fc, session)

    assert swept.gap_beyond_retention
    assert gaps() == before + 1
    assert any("longer ago than the 30 days" in r.getMessage() for r in caplog.records)
    # What Stripe still lists is read all the same.
    assert swept.stored == 1


def test_sweep_events_task_enqueues_handling_of_what_it_stored(
    fc: EmulatedFC, rig: TaskRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.webhooks import sweep_events_task

    monkeypatch.setattr(rig.runtime, "clock", fc)  # the emulator's frozen clock

    with Session(rig.engine) as session:
        missed_refresh(fc, session)

    report = sweep_events_task.run()

    assert report == {"contexts": 1, "listed": 2, "stored": 2, "gaps": 0}
    handled = rig.take(contract.HANDLE_EVENT)
    assert len(handled) == 2
    assert sweep_events_task.run()["stored"] == 0
    assert rig.take(contract.HANDLE_EVENT) == []


def test_events_sweep_asks_only_for_the_types_fcsync_handles(fc: EmulatedFC) -> None:
    assert set(events_sweep.SWEPT_TYPES) == set(event_handlers.HANDLERS)
    assert all(t.startswith("financial_connections.account.") for t in events_sweep.SWEPT_TYPES)


def test_events_sweep_reads_each_tracked_connected_accounts_events_in_its_context(
    fc: EmulatedFC, session: Session
) -> None:
    assert events_sweep.contexts_to_sweep(session) == (None,)
    tenant = "acct_1SweptTenant"
    platform = missed_refresh(fc, session)
    connected = fc.create_account(transactions=30, stripe_account=tenant)
    fc.track(session, connected, stripe_account=tenant)
    start_and_finish_refresh(fc, session, connected)
    contexts = events_sweep.contexts_to_sweep(session)
    assert contexts == (None, tenant)

    swept = {
        context: events_sweep.sweep_events(
            session, fc.gateway, now=fc.now(), settings=fc.settings, stripe_account=context
        )
        for context in contexts
    }
    session.commit()

    assert all(s.stored > 0 for s in swept.values()), swept
    stored = {
        (e.account_id, e.stripe_account)
        for e in session.scalars(select(WebhookEvent).where(WebhookEvent.type == REFRESHED))
    }
    assert stored == {(platform, None), (connected, tenant)}
    # Each context starts its next sweep from its own newest event.
    for context in contexts:
        newest = session.scalar(
            select(func.max(WebhookEvent.created)).where(
                WebhookEvent.stripe_account.is_(None)
                if context is None
                else WebhookEvent.stripe_account == context
            )
        )
        assert inbox.newest_event_created(session, context) == newest is not None
    assert sum(handle(fc, session, s) for s in swept.values()) == 2
    stored_ids = set(
        session.scalars(select(Transaction.id).where(Transaction.account_id == connected))
    )
    assert stored_ids == {t["id"] for t in fc.truth(connected)}


def test_list_events_page_reads_a_connected_accounts_events_with_its_context(
    fc: EmulatedFC,
) -> None:
    platform = fc.create_account(transactions=1)
    connected = fc.create_account(transactions=1, stripe_account="acct_1SweptTenant")

    def listed(stripe_account: str | None) -> list[str]:
        page = fc.gateway.list_events_page(
            types=events_sweep.SWEPT_TYPES, created_gt=0, stripe_account=stripe_account
        )
        return [json.loads(body)["data"]["object"]["id"] for body in page.bodies]

    assert listed(None) == [platform]
    assert listed("acct_1SweptTenant") == [connected]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"object": "list", "data": {}, "has_more": False}, "`data` must be an array"),
        ({"object": "list", "data": [], "has_more": True}, "true on an empty page"),
        ({"object": "list", "data": [{"id": "evt_1"}] * 2, "has_more": False}, "same event twice"),
        ({"object": "list", "data": [{"id": "ch_1"}], "has_more": True}, "starting with evt_"),
        ({"object": "event", "data": [], "has_more": False}, "`object`"),
    ],
)
def test_events_page_is_checked_before_paging_on(body: dict[str, object], problem: str) -> None:
    with pytest.raises(InvalidStripeResponse, match=problem):
        parse_events_page(body)
