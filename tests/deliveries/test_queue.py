"""How work reaches Celery: a task due now is published on the thread's own producer, as apply_async
would publish it (services/queue.py says why)."""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection, Producer

from config.celery import app
from deliveries.services import queue


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every message handed to kombu, with everything it was given, and not sent anywhere."""
    seen: list[dict[str, Any]] = []

    def publish(self: Producer, body: Any, **kwargs: Any) -> None:
        seen.append({"body": body, **kwargs})

    monkeypatch.setattr(Producer, "publish", publish)
    # A producer of its own, on a connection where nothing is declared yet (not one an earlier test used).
    monkeypatch.setattr(queue._local, "producer", None, raising=False)
    app.conf.task_always_eager = False  # (the autouse eager_celery fixture sets it again for the next test)
    return seen


def test_a_send_due_now_is_the_message_apply_async_would_publish(published: list[dict[str, Any]]) -> None:
    delivery_id = str(uuid.uuid4())

    assert queue.send([delivery_id]) == 1
    app.tasks[queue.SEND_TASK].apply_async((delivery_id, "automatic"))

    ours, celerys = published
    assert ours["body"] == celerys["body"] == ((delivery_id, "automatic"), {}, ours["body"][2])
    # Each message has its own id; everything else in the headers is the same.
    assert ours["headers"]["id"] != celerys["headers"]["id"]
    ignored = {"id", "root_id"}
    assert {k: v for k, v in ours["headers"].items() if k not in ignored} == {
        k: v for k, v in celerys["headers"].items() if k not in ignored
    }
    assert ours["headers"]["task"] == queue.SEND_TASK
    assert ours["headers"]["ignore_result"] is True
    assert ours["headers"]["eta"] is None
    assert ours["headers"]["root_id"] == ours["headers"]["id"] == ours["correlation_id"]
    # Same route, serializer, retry policy and declared queue.
    for key in ("exchange", "routing_key", "serializer", "retry", "retry_policy", "delivery_mode", "declare"):
        assert ours[key] == celerys[key], key


def test_a_delayed_task_still_goes_through_apply_async_with_its_eta(published: list[dict[str, Any]]) -> None:
    delivery_id = str(uuid.uuid4())

    assert queue.send([delivery_id], trigger="retry", countdown=30) == 1

    (message,) = published
    assert message["body"][0] == (delivery_id, "retry")
    assert message["headers"]["eta"] is not None


def test_each_thread_keeps_one_producer_of_its_own(published: list[dict[str, Any]]) -> None:
    queue.send([str(uuid.uuid4())])
    mine = queue._producer()
    queue.send([str(uuid.uuid4())])
    theirs: list[Any] = []
    thread = threading.Thread(target=lambda: theirs.append(queue._producer()))
    thread.start()
    thread.join()

    assert queue._producer() is mine
    assert theirs[0] is not mine
    assert theirs[0].connection is not mine.connection
    assert len(published) == 2


def test_a_forked_process_makes_its_own_producer(published: list[dict[str, Any]]) -> None:
    mine = queue._producer()
    queue._local.pid = -1  # as in a child: the pid the producer was made in is not this process's

    assert queue._producer() is not mine


def test_a_broker_that_refuses_loses_nothing_and_says_how_many_wait(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(self: Producer, body: Any, **kwargs: Any) -> None:
        raise OSError("connection refused")

    monkeypatch.setattr(Producer, "publish", refuse)
    app.conf.task_always_eager = False  # (the autouse eager_celery fixture sets it again for the next test)
    ids = [str(uuid.uuid4()) for _ in range(3)]

    with caplog.at_level(logging.WARNING, logger="deliveries.services.queue"):
        assert queue.send(ids) == 0

    assert f"could not enqueue delivery {ids[0]} and 2 more" in caplog.text
    assert "the sweeper enqueues them" in caplog.text


@pytest.fixture
def memory_producer(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Producer, list[dict[str, Any]]]]:
    """This thread's producer on kombu's in-memory transport (a real broker of this process only), and
    every call of Producer.publish with its declare and retry, passed on to the real one."""
    app.conf.task_always_eager = False  # (the autouse eager_celery fixture sets it again for the next test)
    calls: list[dict[str, Any]] = []
    real = Producer.publish

    def publish(self: Producer, body: Any, **kwargs: Any) -> Any:
        calls.append({"declare": list(kwargs.get("declare") or []), "retry": kwargs.get("retry")})
        return real(self, body, **kwargs)

    monkeypatch.setattr(Producer, "publish", publish)
    with Connection("memory://") as connection:
        producer = Producer(connection, auto_declare=False)
        producer.channel.queue_declare(queue=app.conf.task_default_queue)
        producer.channel.queue_purge(app.conf.task_default_queue)  # the transport's queues live in the process
        monkeypatch.setattr(queue._local, "producer", producer, raising=False)
        monkeypatch.setattr(queue._local, "pid", os.getpid(), raising=False)
        yield producer, calls


def _waiting(producer: Producer) -> int:
    return int(producer.channel.queue_declare(queue=app.conf.task_default_queue, passive=True).message_count)


def test_the_queue_is_declared_on_a_connections_first_publish_and_after_a_reconnection(
    memory_producer: tuple[Producer, list[dict[str, Any]]],
) -> None:
    producer, calls = memory_producer
    default_queue = app.amqp.queues[app.conf.task_default_queue]

    queue.send([str(uuid.uuid4())])
    queue.send([str(uuid.uuid4())])
    producer.connection.declared_entities.clear()  # what kombu does when it replaces the connection
    queue.send([str(uuid.uuid4())])

    assert calls == [
        {"declare": [default_queue], "retry": True},  # as Celery publishes: kombu declares, then remembers it
        {"declare": [], "retry": False},  # declared on this connection already
        {"declare": [default_queue], "retry": True},
    ]
    assert _waiting(producer) == 3


def test_a_publish_that_fails_without_the_queue_is_made_again_as_celery_makes_it(
    memory_producer: tuple[Producer, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    producer, calls = memory_producer
    default_queue = app.amqp.queues[app.conf.task_default_queue]
    queue.send([str(uuid.uuid4())])
    recording = Producer.publish

    def lost_once(self: Producer, body: Any, **kwargs: Any) -> Any:
        if kwargs.get("declare") == []:
            calls.append({"declare": [], "retry": kwargs.get("retry")})
            raise ConnectionResetError("the broker went away")
        return recording(self, body, **kwargs)

    monkeypatch.setattr(Producer, "publish", lost_once)

    assert queue.send([str(uuid.uuid4())]) == 1

    assert calls[1:] == [{"declare": [], "retry": False}, {"declare": [default_queue], "retry": True}]
    assert _waiting(producer) == 2
