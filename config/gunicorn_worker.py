"""gunicorn's threaded worker (gthread), leaving a new connection to an idle worker while its threads are busy.

Upstream, a worker accepts every connection it can, up to `worker_connections` (1,000), and a kept-alive
connection stays with the worker that accepted it. When callers open their connections in a burst,
whichever worker wakes first takes most of them, and keeps them: in `make bench`'s end-to-end scenario
one of the two web processes served 92 % of the calls in one run (CPU 824 against 55 ticks), so the
intake ran on one core while the other waited (231 calls a second; 274-282 when the two shared).
Here a worker whose threads are all busy leaves the listening socket to the others for a moment
(DEFER_SECONDS): an idle worker takes the connection; if every worker is busy, the connection is taken
after that moment as upstream would take it, so that more callers than threads still take turns.
Requests on connections a worker holds are served as before, queued for its threads.
deploy/gunicorn.conf.py selects it.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

# How long a worker with every thread busy leaves a waiting connection to the others before it takes it
# itself: long enough for an idle worker to wake and take it, short enough that a burst with more
# callers than threads in all does not leave a caller waiting for the others to finish.
DEFER_SECONDS = 0.02


class BalancedThreadWorker(ThreadWorker):
    busy = 0  # requests handed to the thread pool and not finished yet
    full_since: float | None = None  # since when every thread has been busy

    # gunicorn calls these on the worker's main loop thread only, so the counts need no lock.
    def enqueue_req(self, conn: Any) -> None:
        self.busy += 1
        super().enqueue_req(conn)
        if self.busy >= self.cfg.threads:
            self.full_since = self.full_since or time.monotonic()
            super().set_accept_enabled(False)

    def finish_request(self, conn: Any, fs: Future[Any]) -> None:
        self.busy -= 1  # before upstream's, which may hand the same connection to a thread again
        if self.busy < self.cfg.threads:
            self.full_since = None
        super().finish_request(conn, fs)

    def set_accept_enabled(self, enabled: bool) -> None:
        # The main loop asks to accept whenever it holds fewer than worker_connections, and asks again
        # at each event (a request finishing, a kept-alive connection speaking) while it does not.
        if enabled and self.full_since is not None and time.monotonic() - self.full_since < DEFER_SECONDS:
            enabled = False
        super().set_accept_enabled(enabled)
