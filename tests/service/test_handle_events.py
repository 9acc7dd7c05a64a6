"""fcsync.handle_events, the receiver's one message per batch: each event handled as
fcsync.handle_event handles it and only once (a repeated id, a redelivered message); one event's
failure never costs the others; a transient failure is retried for the failed events alone."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from celery.exceptions import Retry, SoftTimeLimitExceeded
from celery.signals import task_retry
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from models import WebhookEvent
from tasks.webhooks import handle_event_task, handle_events_task
from tests.service.conftest import TaskRig
from tests.service.harness import RETRIEVE_ACCOUNT, EmulatedFC
from tests.service.test_webhooks import REFRESHED, receive, start_and_finish_refresh
from worker import contract, event_handlers, inbox, log_context

DEACTIVATED = "financial_connections.account.deactivated"


def store(fc: EmulatedFC, session: Session, event: dict[str, Any]) -> str:
    """The event as the receiver stores it (signed, checked, into the inbox)."""
    assert receive(fc, session, event, now=fc.now()).enqueue
    return str(event["id"])


def refreshed(fc: EmulatedFC, session: Session) -> tuple[str, str]:
    """A tracked account whose refresh finished at Stripe, and its stored event saying so (to
    be handled with a sync of the account)."""
    account_id = fc.create_account(transactions=5)
    fc.track(session, account_id)
    start_and_finish_refresh(fc, session, account_id)
    return account_id, store(fc, session, fc.control.trigger_event(REFRESHED, account_id))


class Contexts(logging.Handler):
    """Each record's level and log context, as its JSON line would carry it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: list[tuple[int, dict[str, str]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.levelno, dict(log_context.current())))


def synced(rig: TaskRig) -> list[str]:
    return sorted(str(f.kwargs["account_id"]) for f in rig.take(contract.SYNC_TRANSACTIONS))


def processed(session: Session, event_id: str) -> str | None:
    session.expire_all()
    row = session.get(WebhookEvent, event_id)
    assert row is not None
    return row.outcome if row.processed_at is not None else None


@contextmanager
def retries_seen(then: Callable[[], None] = lambda: None) -> Iterator[list[dict[str, Any]]]:
    """The kwargs of each retry the task sends (eagerly applied, it runs at once, after `then`)."""
    seen: list[dict[str, Any]] = []

    def on_retry(reason: Any = None, **_: Any) -> None:
        assert isinstance(reason, Retry) and reason.sig is not None
        seen.append(dict(reason.sig.kwargs))
        then()

    task_retry.connect(on_retry)
    try:
        yield seen
    finally:
        task_retry.disconnect(on_retry)


def test_handle_events_handles_each_event_once_and_a_repeated_id_once(
    fc: EmulatedFC, session: Session, rig: TaskRig
) -> None:
    first_account, first = refreshed(fc, session)
    second_account, second = refreshed(fc, session)

    result = handle_events_task.apply(kwargs={"event_ids": [first, second, first]})

    assert result.state == "SUCCESS"
    assert result.result == {"outcomes": {first: "processed", second: "processed"}}
    assert synced(rig) == sorted([first_account, second_account])
    assert processed(session, first) == processed(session, second) == "processed"


def test_handle_events_redelivered_handles_only_what_the_first_delivery_did_not(
    fc: EmulatedFC, session: Session, rig: TaskRig
) -> None:
    """A worker that died after handling the first event: the redelivered message handles the
    second, and the first (its sync already sent) is a duplicate."""
    _, first = refreshed(fc, session)
    second_account, second = refreshed(fc, session)
    handle_event_task.apply(kwargs={"event_id": first})
    rig.sent.clear()

    result = handle_events_task.apply(kwargs={"event_ids": [first, second]})

    assert result.result == {"outcomes": {first: "duplicate", second: "processed"}}
    assert synced(rig) == [second_account]
    again = handle_events_task.apply(kwargs={"event_ids": [first, second]})
    assert again.result == {"outcomes": {first: "duplicate", second: "duplicate"}}
    assert synced(rig) == []


def test_handle_events_one_failing_event_never_costs_the_others(
    fc: EmulatedFC, session: Session, rig: TaskRig
) -> None:
    first_account, first = refreshed(fc, session)
    second_account, second = refreshed(fc, session)
    # Stored before envelopes were checked, it can never be parsed: failed for good.
    poison = inbox.InboxEvent("evt_poison", REFRESHED, first_account, False, 1, "{")
    inbox.insert_webhook_events(session, [poison], now=fc.now())
    session.commit()

    contexts = Contexts()
    logger = logging.getLogger("worker")
    logger.addHandler(contexts)
    try:
        result = handle_events_task.apply(
            kwargs={"event_ids": [first, "evt_poison", "evt_NotInTheInbox", second]}
        )
    finally:
        logger.removeHandler(contexts)

    assert result.state == "SUCCESS"
    assert result.result == {
        "outcomes": {
            first: "processed",
            "evt_poison": "failed",
            "evt_NotInTheInbox": "unknown_event",
            second: "processed",
        }
    }
    assert synced(rig) == sorted([first_account, second_account])
    assert processed(session, "evt_poison") == "failed"
    # Each failure's line names its own event (and account, when the inbox knows it).
    failures = [seen for level, seen in contexts.seen if level >= logging.WARNING]
    assert [(c.get("event_id"), c.get("account_id")) for c in failures] == [
        ("evt_poison", first_account),
        ("evt_NotInTheInbox", None),
    ]


def test_handle_events_transient_failure_retries_the_failed_events_alone(
    fc: EmulatedFC, session: Session, rig: TaskRig
) -> None:
    """A status event re-reads the account from Stripe, which answers 500: retried, while the
    refresh event beside it (no Stripe call) is handled once, never again by the retry."""
    status_account = fc.create_account(transactions=1)
    fc.track(session, status_account)
    status_event = store(fc, session, fc.control.trigger_event(DEACTIVATED, status_account))
    refreshed_account, refreshed_event = refreshed(fc, session)
    fc.control.set_faults(server_error_rate=1.0)

    with retries_seen(then=lambda: fc.control.set_faults(server_error_rate=0.0)) as retries:
        result = handle_events_task.apply(kwargs={"event_ids": [status_event, refreshed_event]})

    assert retries == [{"event_ids": [status_event]}]
    assert result.state == "SUCCESS"
    assert result.result == {"outcomes": {status_event: "processed"}}
    assert processed(session, status_event) == processed(session, refreshed_event) == "processed"
    assert synced(rig) == [refreshed_account]


def test_handle_events_unexpected_error_fails_the_task_after_the_others_are_handled(
    fc: EmulatedFC, session: Session, rig: TaskRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug met by one event: logged, left unprocessed for the sweep, the rest handled; the
    task fails so the bug is seen, and is not retried (it would meet the bug again)."""
    broken_account = fc.create_account(transactions=1)
    fc.track(session, broken_account)
    broken = store(fc, session, fc.control.trigger_event(DEACTIVATED, broken_account))
    account_id, event_id = refreshed(fc, session)

    def bug(*_: Any) -> event_handlers.EventResult:
        raise KeyError("a bug")

    monkeypatch.setitem(event_handlers.HANDLERS, DEACTIVATED, bug)
    with retries_seen() as retries:
        result = handle_events_task.apply(kwargs={"event_ids": [broken, event_id]})

    assert result.state == "FAILURE" and "1 of 2 events" in str(result.result)
    assert retries == []
    assert processed(session, broken) is None  # the sweep's to pick up
    assert processed(session, event_id) == "processed"
    assert synced(rig) == [account_id]


def test_handle_events_out_of_time_retries_the_rest_unhandled(
    fc: EmulatedFC, session: Session, rig: TaskRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The soft time limit hits during the second event: it (rolled back) and the third go to
    the retry, the first stays handled once."""
    first_account, first = refreshed(fc, session)
    slow_account = fc.create_account(transactions=1)
    fc.track(session, slow_account)
    slow = store(fc, session, fc.control.trigger_event(DEACTIVATED, slow_account))
    third_account, third = refreshed(fc, session)
    handler = event_handlers.HANDLERS[DEACTIVATED]
    calls: list[str] = []

    def out_of_time_once(ctx: Any, event: Any) -> event_handlers.EventResult:
        calls.append(event.id)
        if len(calls) == 1:
            raise SoftTimeLimitExceeded
        return handler(ctx, event)

    monkeypatch.setitem(event_handlers.HANDLERS, DEACTIVATED, out_of_time_once)
    with retries_seen() as retries:
        result = handle_events_task.apply(kwargs={"event_ids": [first, slow, third]})

    assert retries == [{"event_ids": [slow, third]}]
    assert result.result == {"outcomes": {slow: "processed", third: "processed"}}
    assert calls == [slow, slow]
    assert synced(rig) == sorted([first_account, third_account])


# Row locks are PostgreSQL's; SQLite runs one writer at a time.
@pytest.mark.parametrize(
    "committed_engine", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_one_event_handled_by_two_workers_at_once_asks_stripe_once(
    fc: EmulatedFC, session: Session, committed_engine: Engine
) -> None:
    """A redelivered message, or a sweep's copy of a slow one, hands one event to two workers at
    the same moment: the second waits for the first and finds it handled, instead of re-reading
    the account beside it."""
    account_id = fc.create_account(transactions=1)
    fc.track(session, account_id)
    event_id = store(fc, session, fc.control.trigger_event(DEACTIVATED, account_id))
    reads_before = fc.requests(RETRIEVE_ACCOUNT)
    fc.control.set_faults(latency_ms=300)
    outcomes: list[str] = []

    def handle() -> None:
        with Session(committed_engine) as own:
            result = event_handlers.handle_event(
                own, fc.gateway, event_id, now=fc.now(), settings=fc.settings
            )
            own.commit()
            outcomes.append(result.outcome)

    workers = [threading.Thread(target=handle) for _ in range(2)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        fc.control.set_faults(latency_ms=0)
    assert sorted(outcomes) == ["duplicate", "processed"]
    assert fc.requests(RETRIEVE_ACCOUNT) - reads_before == 1
