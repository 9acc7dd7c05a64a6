"""A sync's reading ahead of its account's transaction pages: a background thread fetches the
run's next pages one after the other (worker/stripe_gateway.py says how one is fetched), and
keeps them, in order, until the sync takes them. A page Stripe refused for good (a permanent
error: the account gone, a malformed answer) is kept as that error, in its place: asked for
again it would get the same answer, at the cost of a request."""

from __future__ import annotations

import contextvars
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from worker.errors import PermanentError
from worker.records import TransactionPage

# A page as it arrived: the page, or the permanent error Stripe's answer to it was.
Arrival = TransactionPage | PermanentError

# Pages read ahead and not yet taken, at most: a database slower than Stripe holds the reading
# back here, so the memory a sync holds does not grow with FCSYNC_PAGES_PER_RUN.
MOST_WAITING = 20


class ReadAhead:
    """The pages one account's reading ahead has brought, in order, until the sync takes them."""

    def __init__(self, params: dict[str, Any]) -> None:
        self._changed = threading.Condition()
        self._pages: deque[tuple[dict[str, Any], Arrival, str | None]] = deque()
        # The parameters of the page the sync takes next.
        self._next = params
        self._reading = True
        self.cancelled = False

    def expects(self, params: dict[str, Any]) -> bool:
        with self._changed:
            return (
                not self.cancelled and self._next == params and (self._reading or bool(self._pages))
            )

    def arrived(self, params: dict[str, Any], page: Arrival, request_id: str | None) -> None:
        """Keep the page; while MOST_WAITING wait to be taken, wait for the sync first."""
        with self._changed:
            self._pages.append((params, page, request_id))
            self._changed.notify_all()
            while len(self._pages) >= MOST_WAITING and not self.cancelled:
                self._changed.wait()

    def stopped(self) -> None:
        with self._changed:
            self._reading = False
            self._changed.notify_all()

    def cancel(self) -> None:
        with self._changed:
            self.cancelled = True
            self._pages.clear()
            self._changed.notify_all()

    def finished(self) -> bool:
        with self._changed:
            return self.cancelled or (not self._reading and not self._pages)

    def take(
        self,
        params: dict[str, Any],
        *,
        wait: bool,
        accept: Callable[[TransactionPage], bool] | None = None,
    ) -> tuple[Arrival, str | None] | None:
        """The page for `params` once it has arrived (`wait`) or if it has; None when this
        reading will not bring it (other parameters, a transient error, the end of its pages).
        A page `accept` refuses, or a refused page's error when `accept` is given (pages taken
        beside the one the sync asked for), stays where it is, for the next taker."""
        with self._changed:
            if self._next != params:
                self.cancelled = True
                self._pages.clear()
                return None
            while not self._pages and self._reading and wait and not self.cancelled:
                self._changed.wait()
            if not self._pages:
                return None
            head = self._pages[0][1]
            if accept is not None and (isinstance(head, PermanentError) or not accept(head)):
                return None
            _, page, request_id = self._pages.popleft()
            self._changed.notify_all()
            if isinstance(page, TransactionPage) and page.last_id is not None:
                self._next = {**params, "starting_after": page.last_id}
            return page, request_id


Fetch = Callable[[dict[str, Any]], tuple[Arrival, str | None]]


class PagesAhead:
    """Each account's reading ahead, for one gateway."""

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch
        self._readings: dict[str, ReadAhead] = {}
        self._lock = threading.Lock()
        self._reader: ThreadPoolExecutor | None = None

    def start(
        self, account_id: str, params: dict[str, Any], pages: int, until: float | None = None
    ) -> None:
        """Read up to `pages` pages from `params` on, the last one the first to arrive at or
        after `until` (time.monotonic()), unless the account's reading already brings that
        page next."""
        with self._lock:
            current = self._readings.get(account_id)
            if current is not None and current.expects(params):
                return
            if current is not None:
                current.cancel()
            if self._reader is None:
                # A thread per account being read at once (created as needed; one for a
                # worker process's one sync): one account's reading never waits for another's.
                self._reader = ThreadPoolExecutor(thread_name_prefix="fcsync-read-ahead")
            reading = ReadAhead(params)
            self._readings[account_id] = reading
            # In a copy of the caller's context: the thread's lines (stripe-python's own among
            # them) carry the unit of work's account and task like the rest of it.
            context = contextvars.copy_context()
            self._reader.submit(context.run, self._read, reading, params, pages, until)

    def brings_more(self, account_id: str) -> bool:
        """Whether the account's reading has pages waiting or is still fetching."""
        with self._lock:
            reading = self._readings.get(account_id)
        return reading is not None and not reading.finished()

    def stop(self, account_id: str) -> None:
        with self._lock:
            reading = self._readings.pop(account_id, None)
        if reading is not None:
            reading.cancel()

    def take(
        self,
        account_id: str,
        params: dict[str, Any],
        *,
        wait: bool,
        accept: Callable[[TransactionPage], bool] | None = None,
    ) -> tuple[Arrival, str | None] | None:
        """See `ReadAhead.take`; a reading that will bring nothing more is forgotten."""
        with self._lock:
            reading = self._readings.get(account_id)
        if reading is None:
            return None
        taken = reading.take(params, wait=wait, accept=accept)
        if taken is None and reading.finished():
            with self._lock:
                if self._readings.get(account_id) is reading:
                    del self._readings[account_id]
        return taken

    def _read(
        self, reading: ReadAhead, params: dict[str, Any], pages: int, until: float | None
    ) -> None:
        # Where the pages read so far ended: a page ending at one again (or holding the one
        # it follows) would be read forever; the sync refuses it, no further page is asked for.
        ends = {params.get("starting_after")}
        try:
            for _ in range(pages):
                if reading.cancelled:
                    return
                try:
                    page, request_id = self._fetch(params)
                except Exception:
                    # A transient failure: asked again by the sync, the page fails (or
                    # succeeds) as it would have without reading ahead.
                    return
                reading.arrived(params, page, request_id)
                if isinstance(page, PermanentError):
                    return
                last_id = page.last_id
                if not page.has_more or last_id is None or last_id in ends:
                    return
                if until is not None and time.monotonic() >= until:
                    # The run's time is up: its last page is this one (run_sync ends it here).
                    return
                if any(t.id == params.get("starting_after") for t in page.transactions):
                    return
                ends.add(last_id)
                params = {**params, "starting_after": last_id}
        finally:
            reading.stopped()
