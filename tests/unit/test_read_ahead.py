"""A sync's reading ahead, on its own: it holds at most MOST_WAITING pages the sync has not taken
(a slow database holds it back, so a run's memory does not grow with its pages), it ends at the
first page to arrive once its time is up, and a page Stripe refused for good is kept as its
error, in its place."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from worker.errors import PermanentError
from worker.read_ahead import MOST_WAITING, Arrival, PagesAhead
from worker.records import FCTransaction, TransactionPage

ACCOUNT = "fca_1"


class Pages:
    """An endless account: page n ends at `t_n`; every fetch counted."""

    def __init__(self, delay_s: float = 0.0, refuse_at: int | None = None) -> None:
        self.fetched = 0
        self.delay_s = delay_s
        self.refuse_at = refuse_at
        self.lock = threading.Lock()

    def fetch(self, params: dict[str, Any]) -> tuple[Arrival, str | None]:
        time.sleep(self.delay_s)
        with self.lock:
            self.fetched += 1
            n = self.fetched
        if n == self.refuse_at:
            return PermanentError("no such account", code="resource_missing"), f"req_{n}"
        row = FCTransaction(
            f"t_{n}", ACCOUNT, -100, "usd", "coffee", "posted", 1, None, 1, "fctxnref_1", 1, False
        )
        return TransactionPage(transactions=(row,), has_more=True), f"req_{n}"


@pytest.fixture
def reading() -> Iterator[Callable[[Pages], PagesAhead]]:
    """A reading ahead over `pages`, stopped after the test whatever it asserted (a reading
    holding pages nobody takes waits until it is stopped)."""
    made: list[PagesAhead] = []

    def make(pages: Pages) -> PagesAhead:
        made.append(PagesAhead(pages.fetch))
        return made[-1]

    yield make
    for ahead in made:
        ahead.stop(ACCOUNT)


def params(after: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"account": ACCOUNT, "limit": 100}
    if after is not None:
        found["starting_after"] = after
    return found


def settle(pages: Pages) -> int:
    """The fetch count once it stops moving."""
    last = -1
    while last != pages.fetched:
        last = pages.fetched
        time.sleep(0.05)
    return last


def test_reading_ahead_holds_at_most_most_waiting_untaken_pages(
    reading: Callable[[Pages], PagesAhead],
) -> None:
    pages = Pages()
    ahead = reading(pages)
    ahead.start(ACCOUNT, params(), 10 * MOST_WAITING)
    assert settle(pages) == MOST_WAITING
    # Taking pages lets it read as many more.
    after = None
    for _ in range(5):
        taken = ahead.take(ACCOUNT, params(after), wait=True)
        assert taken is not None and isinstance(taken[0], TransactionPage)
        after = taken[0].last_id
    assert settle(pages) == MOST_WAITING + 5


def test_reading_ahead_ends_at_the_first_page_to_arrive_once_its_time_is_up(
    reading: Callable[[Pages], PagesAhead],
) -> None:
    pages = Pages(delay_s=0.03)
    ahead = reading(pages)
    ahead.start(ACCOUNT, params(), 1_000, until=time.monotonic() + 0.1)
    read = settle(pages)
    assert 2 <= read <= 6
    assert ahead.brings_more(ACCOUNT)
    after = None
    for _ in range(read):
        taken = ahead.take(ACCOUNT, params(after), wait=True)
        assert taken is not None and isinstance(taken[0], TransactionPage)
        after = taken[0].last_id
    assert not ahead.brings_more(ACCOUNT)
    assert ahead.take(ACCOUNT, params(after), wait=True) is None
    assert pages.fetched == read


def test_a_page_refused_for_good_is_kept_as_its_error_and_ends_the_reading(
    reading: Callable[[Pages], PagesAhead],
) -> None:
    pages = Pages(refuse_at=2)
    ahead = reading(pages)
    ahead.start(ACCOUNT, params(), 10)
    assert settle(pages) == 2
    first = ahead.take(ACCOUNT, params(), wait=True)
    assert first is not None and isinstance(first[0], TransactionPage)
    # Beside the page the sync asked for, the error stays where it is...
    assert ahead.take(ACCOUNT, params("t_1"), wait=True, accept=lambda _: True) is None
    # ...and asked for, it is the answer, with its request id.
    refused = ahead.take(ACCOUNT, params("t_1"), wait=True)
    assert refused is not None and isinstance(refused[0], PermanentError)
    assert refused[1] == "req_2"
    assert pages.fetched == 2
