"""The embedded broker of `make run`: kombu's filesystem transport, with two fixes for a worker that
must keep up with a burst of alerts.

1. A worker acknowledges a task after it ran (acks_late), and with a thread pool those acks are run by
   the worker's main loop between two calls to `drain_events`. Upstream, `drain_events` keeps polling
   until its timeout (2 s, fixed by Celery) whenever the prefetch window is full, so the finished
   tasks' acks wait, the window stays full, and the worker took about 4 tasks a second while its
   threads sat idle. Here `drain_events` returns after one empty poll, so the acks run at once.
2. Upstream lists and sorts the whole folder for every message taken: quadratic in the backlog. Here
   one listing serves messages until it is used up (new files are picked up by the next listing).

Chosen over another embedded transport (SQLAlchemy on SQLite would make the broker a second writer
on the database the web and the worker already share) because it needs no server and no new
dependency, and its files are easy to inspect. `CELERY_BROKER_URL` set to Redis or RabbitMQ replaces it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from kombu.transport import filesystem
from kombu.transport.virtual import base as virtual

Empty = virtual.Empty


class Channel(filesystem.Channel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listing: dict[str, deque[str]] = {}

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        pending = self._listing.get(queue)
        if not pending:
            suffix = f".{queue}.msg"
            # Names start with the enqueue time in ms, so sorted is oldest first.
            pending = deque(sorted(n for n in os.listdir(self.data_folder_in) if n.endswith(suffix)))
            self._listing[queue] = pending
        while pending:
            payload = self._take(pending.popleft())
            if payload is not None:
                return filesystem.loads(filesystem.bytes_to_str(payload))
        raise Empty()

    def _take(self, name: str) -> bytes | None:
        """Move one message out of the folder and read it; None if another consumer took it first."""
        folder = self.processed_folder if self.store_processed else tempfile.gettempdir()
        try:
            shutil.move(os.path.join(self.data_folder_in, name), folder)
        except OSError:
            return None
        path = os.path.join(folder, name)
        try:
            with open(path, "rb") as f:
                payload = f.read()
            if not self.store_processed:
                os.remove(path)
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot read file {path!r} from queue.") from exc
        return payload


class Transport(filesystem.Transport):
    Channel = Channel

    def drain_events(self, connection: Any, timeout: Any = None) -> None:  # type: ignore[override]
        # (kombu's two base classes disagree on this signature; this is the virtual transport's.)
        get: Callable[..., None] = cast(Any, self.cycle).get
        try:
            get(self._deliver, timeout=timeout)
        except Empty:
            if self.polling_interval:
                time.sleep(self.polling_interval)
            raise TimeoutError() from None
