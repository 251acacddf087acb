"""kombu's Redis transport, with one client per channel for the commands it runs outside its consumer.

Upstream wraps the channel's connection pool in a new `redis.Redis` for each such command
(`Channel.conn_or_acquire`): the LPUSH of every publish, and the worker's bookkeeping of each message it
takes and acknowledges. Building one cost 85 µs of CPU here, more than the LPUSH it sends (64 µs), three
times per message; py-spy put it at 7 % of the worker's CPU on PostgreSQL + Redis (issue 9). A client is
safe to share between threads: it takes a connection from the pool for each command, as before. A new
one is made when the channel replaces its pool (after a fork, or a reconnect).

Used when `CELERY_BROKER_URL` is `redis://` (config.settings); `rediss://` and Sentinel keep kombu's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis


class Channel(redis.Channel):
    _reused_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        pool = self.pool
        reused = self._reused_client
        if reused is None or reused.connection_pool is not pool:
            reused = self._reused_client = self._create_client()
        yield reused


class Transport(redis.Transport):
    Channel = Channel
