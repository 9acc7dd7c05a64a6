"""Fresh stack options for every run of a chaos scenario (the baseline and the faulty run each
get their own PostgreSQL database, their own budget database on the test's own Redis server and
their own broker: a database there too, or a RabbitMQ vhost), so nothing of one run is seen by
the other, nor by a run of another test or worker."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.brokers import stack_broker
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
    numbers = itertools.count(1)
    with contextlib.ExitStack() as cleanup:

        def make(label: str) -> StackOptions:
            db_url = cleanup.enter_context(fresh_database(f"fcsync_chaos_{label}"))
            redis_url = stack_redis.url.rsplit("/", 1)[0] + f"/{next(numbers)}"
            broker_url = cleanup.enter_context(
                stack_broker(broker, redis_url, f"fcsync_chaos_{label}")
            )
            workdir = tmp_path / label
            workdir.mkdir()
            return StackOptions(
                db_url=db_url, broker_url=broker_url, redis_url=redis_url, workdir=workdir
            )

        yield make
