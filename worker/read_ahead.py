"""A sync's reading ahead of one account's transaction pages: the pages a background thread has
fetched, in order, until the sync takes them (worker/stripe_gateway.py does the fetching)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from worker.records import TransactionPage


class ReadAhead:
    """The pages one account's reading ahead has brought, in order, until the sync takes them."""

    def __init__(self, params: dict[str, Any]) -> None:
        self._changed = threading.Condition()
        self._pages: deque[tuple[dict[str, Any], TransactionPage, str | None]] = deque()
        # The parameters of the page the sync takes next.
        self._next = params
        self._reading = True
        self.cancelled = False

    def expects(self, params: dict[str, Any]) -> bool:
        with self._changed:
            return (
                not self.cancelled and self._next == params and (self._reading or bool(self._pages))
            )

    def arrived(
        self, params: dict[str, Any], page: TransactionPage, request_id: str | None
    ) -> None:
        with self._changed:
            self._pages.append((params, page, request_id))
            self._changed.notify_all()

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
    ) -> tuple[TransactionPage, str | None] | None:
        """The page for `params` once it has arrived (`wait`) or if it has; None when this
        reading will not bring it (other parameters, an error, the end of its pages). A page
        `accept` refuses stays where it is, for the next taker."""
        with self._changed:
            if self._next != params:
                self.cancelled = True
                self._pages.clear()
                return None
            while not self._pages and self._reading and wait and not self.cancelled:
                self._changed.wait()
            if not self._pages or (accept is not None and not accept(self._pages[0][1])):
                return None
            _, page, request_id = self._pages.popleft()
            if page.last_id is not None:
                self._next = {**params, "starting_after": page.last_id}
            return page, request_id
