"""Fresh stack options for every run of a chaos scenario (the baseline and the faulty run each
get their own PostgreSQL database and their own broker and budget database on the test's own
Redis server), so nothing of one run is seen by the other."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import fresh_database
from tests.integration.conftest import stack_redis
from tests.processes import RedisServer
from worker.playground.stack import StackOptions

__all__ = ["NewOptions", "new_options", "stack_redis"]

NewOptions = Callable[[str], StackOptions]


@pytest.fixture
def new_options(
    stack_redis: RedisServer, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[NewOptions]:
    """`new_options(label)` for the broker the test is parametrized with (`broker`)."""
    broker = request.getfixturevalue("broker")
    if broker != "redis":
        pytest.fail(f"no chaos stack for broker {broker!r}")
    numbers = itertools.count(1)
    with contextlib.ExitStack() as cleanup:

        def make(label: str) -> StackOptions:
            db_url = cleanup.enter_context(fresh_database(f"fcsync_chaos_{label}"))
            redis_url = stack_redis.url.rsplit("/", 1)[0] + f"/{next(numbers)}"
            workdir = tmp_path / label
            workdir.mkdir()
            return StackOptions(
                db_url=db_url, broker_url=redis_url, redis_url=redis_url, workdir=workdir
            )

        yield make
