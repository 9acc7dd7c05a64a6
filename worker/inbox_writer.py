"""Group commit for the webhook receiver: the events of concurrent requests stored in one INSERT
(one commit) and handed to one task message (fcsync.handle_events), each request answered once
its own event is durable."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from datetime import datetime

from sqlalchemy.exc import DataError

from worker import inbox, log_context
from worker.intents import EVENT_IDS_MAX, HandleEvents
from worker.runtime import Runtime
from worker.webhooks import Receipt, Verified

log = logging.getLogger(__name__)

# Events written at most in one statement: far above what the receiver's threads hold at once
# (FCSYNC_WEBHOOK_THREADS per process), and below SQLAlchemy's 1,000 rows per INSERT.
MAX_BATCH = 500

_Waiting = tuple[Verified, "Future[Receipt]"]


class InboxWriter:
    """One writer thread per receiver process. A request hands over its verified event and waits;
    the writer takes every event queued meanwhile, stores them in one statement, enqueues one
    task for the newly stored ones, then answers them all. Under load a batch fills while the
    previous one is written, so one round trip (and one WAL flush) serves many events."""

    def __init__(self, runtime: Runtime) -> None:
        # One message for a batch's new events, on every broker: building and publishing a task
        # message cost about half the receiver's CPU per event on Redis, and on the embedded
        # broker each message is a commit of its own (an fsync) that one per request queued.
        self._runtime = runtime
        self._queue: queue.SimpleQueue[_Waiting] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def store(self, verified: Verified) -> Receipt:
        """The event's receipt once it is in the inbox (and its task sent); raises what storing
        it raised (a database error, for the edge to answer 503 or 400)."""
        self._ensure_started()
        waiting: Future[Receipt] = Future()
        self._queue.put((verified, waiting))
        return waiting.result()

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                # A daemon: a request never outlives its process's server, which stops first.
                self._thread = threading.Thread(
                    target=self._run, name="fcsync-inbox-writer", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write(batch)
            except BaseException as exc:
                # Never leave a request waiting for an answer, nor the receiver without a writer.
                log.exception("inbox writer failed on a batch of %d", len(batch))
                for _, waiting in batch:
                    if not waiting.done():
                        waiting.set_exception(exc)

    def _write(self, batch: Sequence[_Waiting]) -> None:
        try:
            now = self._runtime.clock.now()
            stored = self._insert([verified for verified, _ in batch], now=now)
        except DataError:
            # One event holds a value the database refuses: each alone, so only its own
            # request is refused.
            for one in batch:
                self._write_alone(one)
            return
        except BaseException as exc:
            for _, waiting in batch:
                waiting.set_exception(exc)
            return
        self._answer(batch, stored, now=now)

    def _write_alone(self, one: _Waiting) -> None:
        verified, waiting = one
        try:
            now = self._runtime.clock.now()
            stored = self._insert([verified], now=now)
        except BaseException as exc:
            waiting.set_exception(exc)
            return
        self._answer([one], stored, now=now)

    def _insert(self, events: Sequence[Verified], *, now: datetime) -> set[str]:
        # One statement, atomic on its own: committed as it runs, no BEGIN/COMMIT round trips.
        with self._runtime.session(one_statement=True) as session:
            return inbox.insert_webhook_events(session, [v.event for v in events], now=now)

    def _answer(self, batch: Sequence[_Waiting], stored: set[str], *, now: datetime) -> None:
        receipts = []
        for verified, _ in batch:
            new = verified.event.id in stored
            # A second copy of one event in the same batch is its duplicate.
            stored.discard(verified.event.id)
            receipts.append(verified.receipt(stored=new))
        self._enqueue(receipts, now=now)
        for (_, waiting), receipt in zip(batch, receipts, strict=True):
            waiting.set_result(receipt)

    def _enqueue(self, receipts: Sequence[Receipt], *, now: datetime) -> None:
        new = [(r.event_id, r.account_id) for r in receipts if r.enqueue and r.event_id]
        ids = [event_id for event_id, _ in new]
        intents = [
            HandleEvents(tuple(ids[at : at + EVENT_IDS_MAX]))
            for at in range(0, len(ids), EVENT_IDS_MAX)
        ]
        try:
            self._runtime.dispatch_all(intents, now=now)
        except Exception:
            # Stored in the inbox already: the retry_failed_syncs sweep enqueues them later.
            for n, (event_id, account_id) in enumerate(new):
                with log_context.bound(event_id=event_id, account_id=account_id):
                    log.error(
                        "could not enqueue %s; the sweep will pick it up",
                        event_id,
                        exc_info=n == 0,  # the batch's one cause, once
                    )
