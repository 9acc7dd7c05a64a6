"""Many follow-ups at once on Redis (a beat sweep's hundreds): every message lands on its queue,
as Celery's task message for the same name and kwargs, in one pipeline (one round trip), and
their task-sent events go in one event message of that round trip."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Exchange, Queue

from worker.app import app, publish_followups
from worker.records import Followup
from worker.settings import Settings


@pytest.fixture
def queue(redis_url: str) -> Iterator[str]:
    """A queue of this test's own on the test Redis (no worker consumes it), deleted after."""
    name = f"test_send_followups_{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    client.delete(name, f"_kombu.binding.{name}", f"_kombu.binding_permanent.{name}")


class RoundTrips:
    """Commands sent to Redis on their own, and each executed pipeline's commands."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.commands: list[str] = []
        self.pipelines: list[list[str]] = []
        single, pipelined = redis.Redis.execute_command, redis.client.Pipeline.execute

        def execute_command(client: Any, *args: Any, **options: Any) -> Any:
            self.commands.append(str(args[0]).upper())
            return single(client, *args, **options)

        def execute(pipe: Any, *args: Any, **options: Any) -> Any:
            self.pipelines.append([str(args[0]).upper() for args, _ in pipe.command_stack])
            return pipelined(pipe, *args, **options)

        monkeypatch.setattr(redis.Redis, "execute_command", execute_command)
        monkeypatch.setattr(redis.client.Pipeline, "execute", execute)


def test_send_followups_puts_every_message_on_redis_in_one_round_trip(
    redis_url: str, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(fcsync_on_synced_queue=queue)
    followups = [
        Followup("app.on_synced", {"account": f"fca_{n}", "refresh": None}) for n in range(300)
    ]
    with app.connection_for_write(redis_url) as conn:
        conn.ensure_connection(max_retries=1)
        producer = app.amqp.Producer(conn)
        trips = RoundTrips(monkeypatch)
        publish_followups(producer, followups, settings)
        monkeypatch.undo()

    # Every message in one pipeline (declaring the queue takes one or two more, once).
    assert "LPUSH" not in trips.commands
    assert [p.count("LPUSH") for p in trips.pipelines if "LPUSH" in p] == [len(followups)]
    messages = [json.loads(m) for m in redis.Redis.from_url(redis_url).lrange(queue, 0, -1)]
    # LPUSH puts the newest first: read oldest first, as a worker consumes them.
    sent = []
    for message in reversed(messages):
        args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        sent.append((message["headers"]["task"], args, kwargs))
    assert sent == [("app.on_synced", [], f.kwargs) for f in followups]


def test_send_followups_sends_the_message_celerys_send_task_sends(
    redis_url: str, queue: str
) -> None:
    settings = Settings(fcsync_on_synced_queue=queue)
    followup = Followup("app.on_synced", {"account": "fca_1", "refresh": None, "inserted": 3})
    with app.connection_for_write(redis_url) as conn:
        conn.ensure_connection(max_retries=1)
        producer = app.amqp.Producer(conn)
        app.send_task(followup.task, kwargs=followup.kwargs, queue=queue, producer=producer)
        publish_followups(producer, [followup], settings)

    def without_ids(raw: bytes) -> dict[str, Any]:
        message = json.loads(raw)
        for key in ("id", "root_id"):
            message["headers"].pop(key)
        for key in ("correlation_id", "delivery_tag"):
            message["properties"].pop(key)
        return message

    batched, sent = (without_ids(m) for m in redis.Redis.from_url(redis_url).lrange(queue, 0, -1))
    assert batched == sent


@pytest.fixture
def event_queue(redis_url: str) -> Iterator[str]:
    """A queue bound to Celery's event exchange as a receiver (Flower, `celery events`) binds
    its own: on Redis, events go to the bound queues, or nowhere."""
    name = f"test_send_followups_events_{uuid.uuid4().hex[:10]}"
    with app.connection_for_write(redis_url) as conn:
        events = Queue(name, Exchange("celeryev", type="topic"), routing_key="#")
        events(conn.default_channel).declare()
    yield name
    client = redis.Redis.from_url(redis_url)
    client.delete(name)
    bindings = client.smembers("_kombu.binding.celeryev")
    client.srem("_kombu.binding.celeryev", *[b for b in bindings if name.encode() in b] or [b""])


def announced(redis_url: str, event_queue: str) -> list[dict[str, Any]]:
    """Every event on the queue, oldest first, as Celery's receivers decode them (a message
    holds one event or, from a batch, a list of them)."""
    events: list[dict[str, Any]] = []
    for raw in reversed(redis.Redis.from_url(redis_url).lrange(event_queue, 0, -1)):
        body = json.loads(base64.b64decode(json.loads(raw)["body"]))
        events.extend(body if isinstance(body, list) else [body])
    return events


@pytest.fixture
def sent_events(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Task-sent events on (FCSYNC_TASK_EVENTS' default), whatever this process was given."""
    saved = app.conf.task_send_sent_event
    app.conf.task_send_sent_event = True
    yield
    app.conf.task_send_sent_event = saved


@pytest.mark.usefixtures("sent_events")
def test_send_followups_announces_every_task_in_one_event_message(
    redis_url: str, queue: str, event_queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(fcsync_on_synced_queue=queue)
    followups = [Followup("app.on_synced", {"account": f"fca_{n}"}) for n in range(200)]
    with app.connection_for_write(redis_url) as conn:
        conn.ensure_connection(max_retries=1)
        producer = app.amqp.Producer(conn)
        app.send_task("app.on_synced", kwargs={"account": "fca_x"}, queue=queue, producer=producer)
        trips = RoundTrips(monkeypatch)
        publish_followups(producer, followups, settings)
        monkeypatch.undo()

    # The batch's tasks and its one event message leave in the same round trip.
    assert "LPUSH" not in trips.commands
    assert [p.count("LPUSH") for p in trips.pipelines if "LPUSH" in p] == [len(followups) + 1]
    assert len(redis.Redis.from_url(redis_url).lrange(event_queue, 0, -1)) == 2
    by_send_task, *by_batch = announced(redis_url, event_queue)
    tasks = reversed(redis.Redis.from_url(redis_url).lrange(queue, 0, -2))
    assert [e["uuid"] for e in by_batch] == [json.loads(raw)["headers"]["id"] for raw in tasks]
    assert [e["kwargs"] for e in by_batch] == [repr(f.kwargs) for f in followups]
    # Each reads as the event Celery's send_task announces, but for its own task.
    own = ("uuid", "root_id", "kwargs", "clock", "timestamp")
    for event in by_batch:
        assert {k: v for k, v in event.items() if k not in own} == {
            k: v for k, v in by_send_task.items() if k not in own
        }
