"""An unreachable broker: commands that enqueue say so in one line naming the broker (its
password masked) and exit 4 within seconds, instead of a kombu traceback."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.cli.conftest import Workdir, free_port

PASSWORD = "SuperSecretPw"


@pytest.mark.parametrize(
    "args",
    [
        ["track", "fca_q"],
        # The same enqueue path as `track`: only `make chaos` runs these two.
        pytest.param(["untrack", "fca_q"], marks=pytest.mark.long),
        pytest.param(["track", "fca_q", "--no-subscribe"], marks=pytest.mark.long),
    ],
)
@pytest.mark.parametrize("variable", ["REDIS_URL", "CELERY_BROKER_URL"])
def test_enqueue_to_an_unreachable_broker_exits_4_naming_it_masked(
    workdir: Workdir, args: list[str], variable: str
) -> None:
    port = free_port()  # nothing listens there
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"

    started = time.monotonic()
    result = workdir.run(*args, expect=4, **{variable: url})
    took = time.monotonic() - started

    (line,) = result.stderr.splitlines()
    assert line.startswith(
        f"error [broker_unavailable] (transient, gave up after retries): cannot reach the "
        f"broker at redis://:***@127.0.0.1:{port}/0: "
    ), line
    assert PASSWORD not in result.stdout + result.stderr
    assert result.stdout == ""
    assert took < 15, f"took {took:.1f}s"


@pytest.fixture
def silent_broker() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung broker, a full backlog)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(50)
        yield int(server.getsockname()[1])


def test_enqueue_to_a_broker_that_never_answers_gives_up_within_seconds(
    workdir: Workdir, silent_broker: int
) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{silent_broker}/0"

    started = time.monotonic()
    result = workdir.run("track", "fca_q", expect=4, timeout=60, REDIS_URL=url)
    took = time.monotonic() - started

    (line,) = result.stderr.splitlines()
    assert f"cannot reach the broker at redis://:***@127.0.0.1:{silent_broker}/0" in line
    assert PASSWORD not in result.stderr
    assert took < 30, f"took {took:.1f}s"  # redis-py alone would wait forever
