"""The Redis transport of config/redis_broker.py: kombu's, with one client per channel reused for every
command outside the consumer, and the messages still delivered and acknowledged exactly once."""

from __future__ import annotations

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
    assert built.count(False) == 1  # upstream builds one per publish, per message taken and per ack
    server = redis.Redis.from_url(URL)
    assert server.llen("reuse-test") == 0 and server.hlen("unacked") == 0  # all taken, every ack reached Redis
    queue.close()


def test_a_new_client_follows_a_new_pool(connection: Any) -> None:
    channel = connection.default_channel
    with channel.conn_or_acquire() as first, channel.conn_or_acquire() as again:
        assert first is again and first.connection_pool is channel.pool
    channel._disconnect_pools()  # what kombu does after a fork
    with channel.conn_or_acquire() as after:
        assert after is not first and after.connection_pool is channel.pool
        assert after.ping()
