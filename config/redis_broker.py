"""kombu's Redis transport, with one client per channel for the commands it runs outside its consumer,
and a worker's acknowledgements written to Redis together.

One client: upstream wraps the channel's connection pool in a new `redis.Redis` for each such command
(`Channel.conn_or_acquire`): the LPUSH of every publish, and the worker's bookkeeping of each message it
takes and acknowledges. Building one cost 85 µs of CPU here, more than the LPUSH it sends (64 µs), three
times per message; py-spy put it at 7 % of the worker's CPU on PostgreSQL + Redis (issue 9). A client is
safe to share between threads: it takes a connection from the pool for each command, as before. A new
one is made when the channel replaces its pool (after a fork, or a reconnect).

Acknowledgements together (QoS): with `acks_late`, kombu keeps each message a worker has taken in Redis
(the unacked hash and index) until its task has run, so that a worker that stops puts it back. Upstream
removes it with a round trip of its own for each message; here the messages acknowledged within
ACK_WINDOW_SECONDS go in one. What it changes: until then a finished message is still recorded as taken.
A worker that stops gracefully writes its pending acknowledgements first, then puts back what it had not
run (as upstream); one that dies loses them, and Redis puts those messages back after its visibility
timeout (600 s): their tasks run again and find their work done (a send's claim, a timer's state).

Used when `CELERY_BROKER_URL` is `redis://` (config.settings); `rediss://` and Sentinel keep kombu's own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis, virtual

logger = logging.getLogger(__name__)

# Long enough to gather a worker's acknowledgements (a process acknowledges about 130 messages a second
# at full speed), short next to the visibility timeout; an acknowledgement delays nothing anyone waits for.
ACK_WINDOW_SECONDS = 0.05


class QoS(redis.QoS):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acked: list[str] = []
        self._acked_ready = threading.Condition()
        self._writer: threading.Thread | None = None
        self._closed = False
        self._closing = threading.Event()

    def ack(self, delivery_tag: str) -> None:
        with self._acked_ready:
            self._acked.append(delivery_tag)
            closed = self._closed
            if self._writer is None and not closed:
                self._writer = threading.Thread(target=self._write_acks, name="redis-acks", daemon=True)
                self._writer.start()
            self._acked_ready.notify()
        if closed:  # a task that finished after its channel closed: no writer is left, so at once
            self.acks_flush()
        virtual.QoS.ack(self, delivery_tag)  # kombu's own bookkeeping in the process, at once

    def acks_flush(self) -> bool:
        """Remove every message acknowledged so far from Redis' record of taken messages, in one round
        trip. False if Redis refused: they are kept for the next try."""
        with self._acked_ready:
            tags, self._acked = self._acked, []
        if not tags:
            return True
        try:
            with self.pipe_or_acquire() as pipe:
                pipe.zrem(self.unacked_index_key, *tags).hdel(self.unacked_key, *tags).execute()
        except Exception as exc:  # noqa: BLE001 - redis raises many types; the tags wait for the next try
            logger.warning(
                "could not write %d acknowledgements to Redis (%s); trying again", len(tags), type(exc).__name__
            )
            with self._acked_ready:
                self._acked[:0] = tags
            return False
        return True

    def _write_acks(self) -> None:
        while True:
            with self._acked_ready:
                while not self._acked and not self._closed:
                    self._acked_ready.wait()
            # Gather the acknowledgements that follow. A wait on an event that only closing sets, not a
            # sleep: a closing channel ends this thread at once rather than after the window, and the
            # acknowledgements meanwhile do not wake it.
            if self._closing.wait(ACK_WINDOW_SECONDS):
                return  # the channel closed, and writes what is pending itself (restore_unacked_once)
            if not self.acks_flush() and self._closing.wait(1):  # Redis is away: the worker reconnects
                return

    def restore_unacked_once(self, stderr: Any = None) -> Any:
        """The channel closes: its acknowledgements are written before the messages not acknowledged are
        put back, and its writer thread ends. Closed first, then written: an acknowledgement that comes
        meanwhile is written by its own call (ack), so none is left to a writer that has ended."""
        with self._acked_ready:
            self._closed = True
            self._acked_ready.notify()
        self._closing.set()
        self.acks_flush()
        return super().restore_unacked_once(stderr)


class Channel(redis.Channel):
    QoS = QoS
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
