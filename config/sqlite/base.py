"""Django's SQLite backend, with the writers of one process taking turns.

SQLite lets one connection write at a time (BEGIN IMMEDIATE takes the lock). A writer that finds it taken
waits in SQLite's busy handler, which sleeps 1, 2, 5, 10 … then 100 ms between tries and is not fair: a
writer that has waited long sleeps longest while newcomers take the lock. With the worker's 64 threads
and the web's threads writing at once, an unlucky send waited for seconds (alert latency p99 near 1 s in
a burst) and the threads' wake-ups cost CPU (about 25 sleeps per message in the worker).

Here a writer first takes its process's gate, so the threads of one process queue in order on a lock
and wake once. The writer at the head of the queue then asks SQLite for the write lock every half
millisecond (another process may hold it) instead of SQLite's lengthening sleeps: at most one thread
per process polls. Both waits are bounded by the database `timeout` (20 s), after which the transaction
fails as SQLite would, with "database is locked". Reads are not gated: in WAL mode they never wait.

Only transactions take turns (`transaction.atomic`, which the intake and the worker's writes use); a
single statement outside one still meets SQLite's busy handler, as before. Measured for issue 9
(docs/performance.md, 14:09 to 16:11).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.db.backends.sqlite3 import base

POLL_SECONDS = 0.0005  # how often the head of a process's queue asks SQLite for the write lock
_gate = threading.Lock()  # one writer per process at a time


class DatabaseWrapper(base.DatabaseWrapper):
    _holds_gate = False

    def _start_transaction_under_autocommit(self) -> None:
        timeout = float(self.settings_dict["OPTIONS"].get("timeout", 5))
        with self.wrap_database_errors:
            if not _gate.acquire(timeout=timeout):
                raise self.Database.OperationalError("database is locked")
            self._holds_gate = True
            try:
                self._begin(timeout)
            except BaseException:
                self._release_gate()
                raise

    def _begin(self, timeout: float) -> None:
        """BEGIN (IMMEDIATE: the settings' transaction mode), retried without SQLite's busy handler."""
        mode = getattr(self, "transaction_mode", None)  # (Django's; the type stubs omit it)
        begin = f"BEGIN {mode}" if mode else "BEGIN"
        deadline = time.monotonic() + timeout
        self.connection.execute("PRAGMA busy_timeout = 0")
        try:
            while True:
                try:
                    self.connection.execute(begin)
                    return
                except self.Database.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() >= deadline:
                        raise
                time.sleep(POLL_SECONDS)
        finally:
            # Statements outside a transaction keep SQLite's own wait.
            self.connection.execute(f"PRAGMA busy_timeout = {round(timeout * 1000)}")

    def _release_gate(self) -> None:
        if self._holds_gate:
            self._holds_gate = False
            _gate.release()

    # Django's private hooks, which the type stubs omit.
    def _commit(self) -> Any:
        try:
            return super()._commit()  # type: ignore[misc]
        finally:
            self._release_gate()

    def _rollback(self) -> Any:
        try:
            return super()._rollback()  # type: ignore[misc]
        finally:
            self._release_gate()

    def _close(self) -> Any:
        try:
            return super()._close()  # type: ignore[misc]
        finally:
            self._release_gate()
