"""gunicorn's threaded worker (gthread), taking a new connection only while it has a thread free.

Upstream, a worker accepts every connection it can, up to `worker_connections` (1,000), and a kept-alive
connection stays with the worker that accepted it. When callers open their connections in a burst,
whichever worker wakes first takes most of them, and keeps them: in `make bench`'s end-to-end scenario
one of the two web processes served 92 % of the calls in one run (CPU 824 against 55 ticks), so the
intake ran on one core while the other waited (231 calls a second; 274-282 when the two shared).
Here a worker whose threads are all busy leaves the listening socket to the others; it takes new
connections again as soon as a thread finishes. Requests on connections it already holds are served
as before (queued for its threads). deploy/gunicorn.conf.py selects it.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from gunicorn.workers.gthread import ThreadWorker


class BalancedThreadWorker(ThreadWorker):
    busy = 0  # requests handed to the thread pool and not finished yet

    # gunicorn calls these three on the worker's main loop thread only, so `busy` needs no lock.
    def enqueue_req(self, conn: Any) -> None:
        self.busy += 1
        super().enqueue_req(conn)
        if self.busy >= self.cfg.threads:
            super().set_accept_enabled(False)

    def finish_request(self, conn: Any, fs: Future[Any]) -> None:
        self.busy -= 1  # before upstream's, which may hand the same connection to a thread again
        super().finish_request(conn, fs)

    def set_accept_enabled(self, enabled: bool) -> None:
        # The main loop asks to accept whenever it holds fewer than worker_connections.
        super().set_accept_enabled(enabled and self.busy < self.cfg.threads)
