"""Every run of a scenario has a broker of its own: a message sent on one run's broker never
reaches another run (on RabbitMQ the `fcsync` queue name is the same in every vhost), and a
run's RabbitMQ vhost is gone, messages and all, once the run ends."""

from __future__ import annotations

import pytest
from celery import Celery
from kombu import Connection

from tests.brokers import fresh_vhost, on_brokers
from tests.chaos.conftest import NewOptions
from worker.playground.stack import QUEUE

pytestmark = [pytest.mark.integration, pytest.mark.redis, pytest.mark.postgres]


def waiting(broker_url: str) -> int:
    """Messages ready on the broker's fcsync queue (declared as the stack declares it)."""
    client = Celery("fcsync-isolation", broker=broker_url)
    try:
        with client.connection_for_write() as conn:
            queue = client.amqp.queues[QUEUE].bind(conn.default_channel)
            return int(queue.queue_declare().message_count)
    finally:
        client.close()


def send(broker_url: str) -> None:
    client = Celery("fcsync-isolation", broker=broker_url)
    try:
        client.send_task("fcsync.track_account", kwargs={"account_id": "fca_1"}, queue=QUEUE)
    finally:
        client.close()


@pytest.mark.parametrize("broker", on_brokers())
def test_new_options_give_each_run_a_broker_of_its_own(
    new_options: NewOptions, broker: str
) -> None:
    first, second = new_options("first"), new_options("second")
    assert (waiting(first.broker_url), waiting(second.broker_url)) == (0, 0)
    send(first.broker_url)
    assert (waiting(first.broker_url), waiting(second.broker_url)) == (1, 0)


@pytest.mark.rabbitmq
def test_fresh_vhost_is_deleted_with_its_messages() -> None:
    with fresh_vhost("fcsync_isolation") as url:
        send(url)
        assert waiting(url) == 1
    with pytest.raises(Exception, match="NOT_ALLOWED"), Connection(url, connect_timeout=3) as conn:
        conn.connect()
