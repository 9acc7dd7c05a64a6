"""Group commit: events handed over while a batch is written are stored together, handed to one
task message (several past EVENT_IDS_MAX, in one call), and each request gets its own answer (a
duplicate's, a refusal's)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import DataError

from models import WebhookEvent
from tests.unit.conftest import SECRET
from worker import contract, inbox_writer
from worker.inbox import REFRESHED_TRANSACTIONS, InboxEvent
from worker.inbox_writer import InboxWriter
from worker.records import Followup
from worker.runtime import Runtime
from worker.settings import Settings
from worker.webhooks import Verified


def verified(event_id: str, *, account_id: str = "fca_1") -> Verified:
    return Verified(
        InboxEvent(event_id, REFRESHED_TRANSACTIONS, account_id, False, 1_700_000_000, "{}")
    )


class Batches:
    """send_many that records each call's messages (the events each names); the first call waits
    until released, so the events handed over meanwhile make up the next batch."""

    def __init__(self) -> None:
        self.sent: list[list[list[str]]] = []
        self.release = threading.Event()

    def __call__(self, followups: Sequence[Followup]) -> None:
        assert {f.task for f in followups} == {contract.HANDLE_EVENTS}
        self.sent.append([list(f.kwargs["event_ids"]) for f in followups])
        if len(self.sent) == 1:
            assert self.release.wait(timeout=10)


def runtime_for(engine: Engine, batches: Batches) -> Runtime:
    settings = Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        stripe_webhook_secret=SECRET,  # type: ignore[arg-type]
    )
    return Runtime(settings, send=lambda f: batches([f]), send_many=batches, engine=engine)


def stored(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(select(WebhookEvent.id)).scalars())


def test_events_handed_over_meanwhile_are_stored_and_enqueued_as_one_batch(
    committed_engine: Engine,
) -> None:
    batches = Batches()
    writer = InboxWriter(runtime_for(committed_engine, batches))
    with ThreadPoolExecutor(max_workers=8) as pool:
        first = pool.submit(writer.store, verified("evt_first"))
        while not batches.sent:  # the writer is busy with the first event
            threading.Event().wait(0.01)
        # One event delivered twice at once, and another already stored.
        ids = ["evt_a", "evt_b", "evt_c", "evt_a", "evt_first"]
        rest = [pool.submit(writer.store, verified(event_id)) for event_id in ids]
        threading.Event().wait(0.2)  # every one of them queued behind the first batch
        batches.release.set()
        receipts = [r.result(timeout=10) for r in rest]
    assert first.result().enqueue and not first.result().duplicate
    assert [(r.event_id, r.duplicate, r.enqueue) for r in receipts] == [
        ("evt_a", False, True),
        ("evt_b", False, True),
        ("evt_c", False, True),
        ("evt_a", True, False),
        ("evt_first", True, False),
    ]
    assert batches.sent == [[["evt_first"]], [["evt_a", "evt_b", "evt_c"]]]
    assert stored(committed_engine) == ["evt_a", "evt_b", "evt_c", "evt_first"]


def test_a_batch_past_the_bound_of_ids_is_several_messages_sent_at_once(
    committed_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbox_writer, "EVENT_IDS_MAX", 2)
    batches = Batches()
    writer = InboxWriter(runtime_for(committed_engine, batches))
    with ThreadPoolExecutor(max_workers=8) as pool:
        first = pool.submit(writer.store, verified("evt_first"))
        while not batches.sent:
            threading.Event().wait(0.01)
        rest = [pool.submit(writer.store, verified(f"evt_{n}")) for n in range(5)]
        threading.Event().wait(0.2)
        batches.release.set()
        assert all(r.result(timeout=10).enqueue for r in [first, *rest])
    assert batches.sent[1] == [["evt_0", "evt_1"], ["evt_2", "evt_3"], ["evt_4"]]


@pytest.mark.postgres
def test_a_value_the_database_refuses_fails_only_its_own_request(postgres_engine: Engine) -> None:
    batches = Batches()
    batches.release.set()
    writer = InboxWriter(runtime_for(postgres_engine, batches))
    too_long = "fca_" + "x" * 500  # past the column's length: PostgreSQL refuses it
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            good = [pool.submit(writer.store, verified(f"evt_ok{i}")) for i in range(3)]
            bad = pool.submit(writer.store, verified("evt_bad", account_id=too_long))
            assert all(not r.result(timeout=10).duplicate for r in good)
            with pytest.raises(DataError):
                bad.result(timeout=10)
        assert stored(postgres_engine) == ["evt_ok0", "evt_ok1", "evt_ok2"]
    finally:
        with postgres_engine.begin() as conn:
            conn.execute(WebhookEvent.__table__.delete())


class _Abort(BaseException):
    """Not an Exception: what a send that is interrupted (not failed) raises."""


def test_a_batch_that_breaks_the_writer_answers_its_requests_and_the_next_batch_is_served(
    committed_engine: Engine,
) -> None:
    calls: list[int] = []

    def send_many(followups: Sequence[Followup]) -> None:
        calls.append(len(followups))
        if len(calls) == 1:
            raise _Abort

    settings = Settings(
        database_url=committed_engine.url.render_as_string(hide_password=False),
        stripe_webhook_secret=SECRET,  # type: ignore[arg-type]
    )
    runtime = Runtime(settings, send=lambda f: None, send_many=send_many, engine=committed_engine)
    writer = InboxWriter(runtime)
    answers: list[object] = []

    def deliver(event_id: str) -> None:
        try:
            answers.append(writer.store(verified(event_id)).enqueue)
        except _Abort as exc:
            answers.append(exc)

    for event_id in ("evt_broken", "evt_next"):
        # A daemon: a request left waiting fails the test instead of hanging it.
        request = threading.Thread(target=deliver, args=(event_id,), daemon=True)
        request.start()
        request.join(timeout=10)
    assert len(answers) == 2 and isinstance(answers[0], _Abort) and answers[1] is True
    assert calls == [1, 1]
