"""The fleet benchmark's clock: it sees the last account synced within a tenth of a second, not
at its next once-a-second sample, and it starts only once the worker is ready."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from bench.fleet import time_until
from worker.playground.stack import Stack, StackOptions


def test_time_until_sees_the_end_within_its_poll() -> None:
    started = time.monotonic()
    end = started + 1.25
    counter = itertools.count()
    wall, samples = time_until(
        lambda: time.monotonic() >= end,
        lambda: next(counter),
        started=started,
        first=-1,
        timeout_s=10,
    )
    # Polled once a second, the bench saw this end at 2 s: 0.75 s that were nobody's work.
    assert 1.25 <= wall <= 1.45
    assert samples[0] == (0.0, -1)
    # The request count is still sampled about once a second, not at every poll.
    assert [count for _, count in samples[1:]] == [0]
    assert 1.0 <= samples[1][0] < 1.25


def test_time_until_gives_up_after_its_timeout() -> None:
    with pytest.raises(TimeoutError):
        time_until(lambda: False, lambda: 0, started=time.monotonic(), first=0, timeout_s=0.3)


def test_worker_ready_once_celery_says_so(tmp_path: Path) -> None:
    stack = Stack(StackOptions(db_url="sqlite://", broker_url="memory://", workdir=tmp_path), [])
    assert not stack.worker_ready()
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "worker.log"
    log.write_text("[2026-11-30 20:33:59,261: INFO/MainProcess] Connected to redis://\n")
    assert not stack.worker_ready()
    with log.open("a") as out:
        out.write("[2026-11-30 20:33:59,359: INFO/MainProcess] celery@vm ready.\n")
    assert stack.worker_ready()
    assert not stack.worker_ready("worker-2")
