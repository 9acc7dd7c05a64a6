"""The brokers a test stack runs on: Redis (the test's own server) or the machine's RabbitMQ, in a
vhost of the run's own, so no other test, xdist worker or run shares its fixed `fcsync` queue.
A RabbitMQ that cannot be reached skips its tests locally and fails them under CI=true."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import RABBITMQ_TEST_URL, unavailable

BROKERS = ("redis", "rabbitmq")


def on_brokers(brokers: Sequence[str] = BROKERS, *, long: Sequence[str] = ()) -> list[Any]:
    """`broker` parameters of a test that runs on each of `brokers`; those in `long` only under
    `make chaos` (marked `long`)."""
    return [
        pytest.param(b, marks=broker_marks(b) + ([pytest.mark.long] if b in long else []), id=b)
        for b in brokers
    ]


def broker_marks(broker: str) -> list[pytest.MarkDecorator]:
    """A test on RabbitMQ is marked `rabbitmq` (`-m "not rabbitmq"` leaves it out)."""
    return [pytest.mark.rabbitmq] if broker == "rabbitmq" else []


@contextmanager
def stack_broker(broker: str, redis_url: str, label: str) -> Iterator[str]:
    """The broker URL of one stack: `redis_url` itself, or a fresh RabbitMQ vhost for the block."""
    if broker == "redis":
        yield redis_url
    elif broker == "rabbitmq":
        with fresh_vhost(label) as url:
            yield url
    else:
        pytest.fail(f"no test stack for broker {broker!r}")


@contextmanager
def fresh_vhost(prefix: str) -> Iterator[str]:
    """A new vhost on the machine's RabbitMQ that the test user may use, deleted (with its
    queues and messages) when the block ends; yields the broker URL on it. The AMQP protocol
    cannot create a vhost and the management plugin may be off: `rabbitmqctl` can, as root."""
    base = urlsplit(RABBITMQ_TEST_URL)
    _require_rabbitmq()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    if (refused := _rabbitmqctl("add_vhost", name)) is not None:
        unavailable("RabbitMQ", refused)
    try:
        user = base.username or "guest"
        if refused := _rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*"):
            pytest.fail(refused)
        yield base._replace(path=f"/{name}").geturl()
    finally:
        if (refused := _rabbitmqctl("delete_vhost", name)) is not None:
            pytest.fail(refused)


def _require_rabbitmq() -> None:
    from kombu import Connection

    try:
        with Connection(RABBITMQ_TEST_URL, connect_timeout=3) as conn:
            conn.connect()
    except Exception as exc:
        unavailable("RabbitMQ", exc)
    if shutil.which("rabbitmqctl") is None:
        unavailable("RabbitMQ", "no rabbitmqctl on PATH to make a vhost with")


def _rabbitmqctl(*args: str) -> str | None:
    """None when the command succeeded, else what it answered."""
    done = subprocess.run(
        ["rabbitmqctl", "--quiet", *args], capture_output=True, text=True, timeout=60
    )
    if done.returncode == 0:
        return None
    return f"rabbitmqctl {' '.join(args)}: {(done.stderr or done.stdout).strip()}"
