"""The Redis transport of config/redis_broker.py: kombu's, with one client per channel reused for every
command outside the consumer, and the messages still delivered and acknowledged exactly once."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection

from config import redis_broker

URL = "redis://127.0.0.1:6379/13"  # a db of its own: flushed by this test


@pytest.fixture
def connection() -> Iterator[Any]:
    redis.Redis.from_url(URL).flushdb()
    with Connection(URL, transport="config.redis_broker:Transport") as conn:
        yield conn
    redis.Redis.from_url(URL).flushdb()


def test_a_channel_builds_one_client_for_every_publish_and_ack(
    connection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[bool] = []
    real = redis_broker.Channel._create_client

    def counted(self: Any, asynchronous: bool = False) -> Any:
        built.append(asynchronous)
        return real(self, asynchronous)

    monkeypatch.setattr(redis_broker.Channel, "_create_client", counted)
    queue = connection.SimpleQueue("reuse-test")
    for n in range(10):
        queue.put({"n": n})
    taken = [queue.get(timeout=5) for _ in range(10)]
    for message in taken:
        message.ack()

    assert [message.payload["n"] for message in taken] == list(range(10))
    server = redis.Redis.from_url(URL)
    _wait_until(lambda: server.hlen("unacked") == 0)  # every acknowledgement reached Redis
    assert built.count(False) == 1  # upstream builds one per publish, per message taken and per ack
    assert server.llen("reuse-test") == 0
    queue.close()


def _wait_until(condition: Any, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within 5 s"
        time.sleep(0.01)


def test_the_acknowledgements_of_a_window_reach_redis_in_one_round_trip(
    connection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_broker, "ACK_WINDOW_SECONDS", 0.5)  # ample for ten acknowledgements
    written: list[int] = []
    real = redis_broker.QoS.acks_flush

    def counted(self: Any) -> bool:
        written.append(len(self._acked))
        return real(self)

    monkeypatch.setattr(redis_broker.QoS, "acks_flush", counted)
    queue = connection.SimpleQueue("acks-test")
    for n in range(10):
        queue.put({"n": n})
    taken = [queue.get(timeout=5) for _ in range(10)]
    server = redis.Redis.from_url(URL)
    assert server.hlen("unacked") == 10  # taken: recorded, so that a worker that stops puts them back

    for message in taken:
        message.ack()
    assert server.hlen("unacked") == 10  # not yet written
    _wait_until(lambda: server.hlen("unacked") == 0 and server.zcard("unacked_index") == 0)

    assert written == [10]
    queue.close()


def test_a_closing_channel_writes_its_acknowledgements_before_it_puts_back_what_it_did_not_run(
    connection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_broker, "ACK_WINDOW_SECONDS", 60)  # nothing is written by the window here
    queue = connection.SimpleQueue("restore-test")
    for n in range(3):
        queue.put({"n": n})
    taken = [queue.get(timeout=5) for _ in range(3)]
    taken[0].ack()
    taken[2].ack()
    writer = queue.channel.qos._writer
    assert writer is not None and writer.is_alive()
    time.sleep(0.2)  # the writer is inside its 60 s window when the channel closes

    queue.close()
    connection.release()  # a worker's warm shutdown: its channels close

    server = redis.Redis.from_url(URL)
    assert server.hlen("unacked") == 0 and server.zcard("unacked_index") == 0
    _wait_until(lambda: not writer.is_alive())  # the channel's writer of acknowledgements ended with it
    restored = [json.loads(raw) for raw in server.lrange("restore-test", 0, -1)]
    assert [json.loads(base64.b64decode(m["body"]))["n"] for m in restored] == [1]  # only the one not acknowledged


def test_a_new_client_follows_a_new_pool(connection: Any) -> None:
    channel = connection.default_channel
    with channel.conn_or_acquire() as first, channel.conn_or_acquire() as again:
        assert first is again and first.connection_pool is channel.pool
    channel._disconnect_pools()  # what kombu does after a fork
    with channel.conn_or_acquire() as after:
        assert after is not first and after.connection_pool is channel.pool
        assert after.ping()


def test_an_acknowledgement_after_its_channel_closed_is_written_at_once(connection: Any) -> None:
    queue = connection.SimpleQueue("late-test")
    queue.put({"n": 1})
    late = queue.get(timeout=5)
    qos = queue.channel.qos
    qos.restore_unacked_once()  # the channel closes while the task still runs
    server = redis.Redis.from_url(URL)
    server.hset("unacked", late.delivery_tag, "taken")  # as if it were still recorded as taken

    late.ack()

    assert qos._acked == [] and server.hlen("unacked") == 0
    queue.close()
