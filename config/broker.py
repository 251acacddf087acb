"""The embedded broker of `make run`: kombu's filesystem transport, with three changes.

1. Acknowledgements run at once. A worker acknowledges a task after it ran (acks_late), and with a
   thread pool those acks are run by the worker's main loop between two calls to `drain_events`.
   Upstream, `drain_events` keeps polling until its timeout (2 s, fixed by Celery) whenever the
   prefetch window is full, so finished tasks' acks wait and the worker takes about 4 tasks a second
   while its threads sit idle. Here `drain_events` returns after one empty poll.
2. A message is written aside and renamed into the folder (`_put`). Upstream creates the file under
   the name consumers list and then writes it, so a consumer can take it empty or half written, and
   the worker stops on the JSON.
3. A consumer takes a message by renaming it within the folder (`_get`). Upstream moves it into the
   system's temporary folder under the same name: from /dev/shm that is another filesystem, so the
   move is a copy, and two workers taking one file at once write the same copy, one truncating it
   while the other reads it empty; the worker stops on the JSON.

docs/decisions/0001-embedded-broker.md records why, and the note offered upstream. Its folder is in
memory where the machine has /dev/shm (config.settings). `CELERY_BROKER_URL` set to Redis or RabbitMQ
replaces it.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

from kombu.transport import filesystem
from kombu.transport.virtual import base as virtual


class Channel(filesystem.Channel):
    # (The signature is the filesystem channel's; the type stubs know only the abstract one.)
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"  # upstream's names: oldest first
        final = os.path.join(self.data_folder_out, name)
        try:
            with open(f"{final}.writing", "wb") as f:
                f.write(filesystem.str_to_bytes(filesystem.dumps(payload)))
            os.rename(f"{final}.writing", final)  # atomic: a listed file is complete
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue: str) -> Any:  # type: ignore[override]
        """The oldest message of `queue`. A rename is atomic: of the consumers that listed a file, one
        takes it and the others find it gone. (No processed copy is kept: the settings never ask.)"""
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            taken = os.path.join(self.data_folder_in, f"{name}.{uuid.uuid4().hex}.taken")
            try:
                os.rename(os.path.join(self.data_folder_in, name), taken)
            except OSError:
                continue  # another consumer took it
            try:
                with open(taken, "rb") as f:
                    payload = f.read()
                os.remove(taken)
            except OSError as exc:
                raise filesystem.ChannelError(f"Cannot read file {taken!r} from queue.") from exc
            return filesystem.loads(filesystem.bytes_to_str(payload))
        raise virtual.Empty()


class Transport(filesystem.Transport):
    Channel = Channel

    def drain_events(self, connection: Any, timeout: Any = None) -> None:  # type: ignore[override]
        # (kombu's two base classes disagree on this signature; this is the virtual transport's.)
        get: Callable[..., None] = cast(Any, self.cycle).get
        try:
            get(self._deliver, timeout=timeout)
        except virtual.Empty:
            if self.polling_interval:
                time.sleep(self.polling_interval)
            raise TimeoutError() from None
