"""The embedded broker of `make run`: kombu's filesystem transport, with two fixes for a worker that
must keep up with a burst of alerts.

1. A worker acknowledges a task after it ran (acks_late), and with a thread pool those acks are run by
   the worker's main loop between two calls to `drain_events`. Upstream, `drain_events` keeps polling
   until its timeout (2 s, fixed by Celery) whenever the prefetch window is full, so the finished
   tasks' acks wait, the window stays full, and the worker took about 4 tasks a second while its
   threads sat idle. Here `drain_events` returns after one empty poll, so the acks run at once.
2. Upstream lists and sorts the whole folder for every message taken: quadratic in the backlog. Here
   one listing serves messages until it is used up (new files are picked up by the next listing).
3. Upstream writes a message in place, so a consumer could read it half written; here a message is
   written aside and renamed into the folder (see `_put`), and a file that is not a message is dropped
   with an error line instead of stopping the worker.

Its folder is in memory where the machine has /dev/shm (config.settings says why and what a reboot
loses: nothing).

Chosen over another embedded transport (SQLAlchemy on SQLite would make the broker a second writer
on the database the web and the worker already share) because it needs no server and no new
dependency, and its files are easy to inspect. `CELERY_BROKER_URL` set to Redis or RabbitMQ replaces it.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from kombu.transport import filesystem
from kombu.transport.virtual import base as virtual

Empty = virtual.Empty
logger = logging.getLogger(__name__)


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
            name = pending.popleft()
            payload = self._take(name)
            if payload is None:
                continue
            try:
                return filesystem.loads(filesystem.bytes_to_str(payload))
            except ValueError:
                # Not a message (a file put there by hand, or cut short by a full disk). Dropping it loses
                # nothing: the database is the record and the sweeper enqueues what is due again.
                logger.error("dropped the embedded broker's file %s: not a message", name)
        raise Empty()

    # (The signature is the filesystem channel's; the type stubs know only the abstract one.)
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Upstream creates the file under its listed name and then writes it, so a consumer could take
        it empty or half written (seen under load: the worker died on the JSON). Here it is written
        under a name no consumer lists and renamed, which is atomic: a listed file is complete."""
        name = f"{round(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"  # upstream's names: oldest first
        final = os.path.join(self.data_folder_out, name)
        try:
            with open(f"{final}.writing", "wb") as f:
                f.write(filesystem.str_to_bytes(filesystem.dumps(payload)))
            os.rename(f"{final}.writing", final)
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _take(self, name: str) -> bytes | None:
        """Take one message (a rename: only one consumer can win it) and read it; None if another
        consumer took it first. Renamed in its own folder, not moved to another one: the folder may
        be in memory (settings), and a move to another filesystem is a copy."""
        source = os.path.join(self.data_folder_in, name)
        path = os.path.join(self.processed_folder, name) if self.store_processed else f"{source}.taken"
        try:
            shutil.move(source, path)
        except OSError:
            return None
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
