"""Django's PostgreSQL backend, with a health check that asks the socket before it asks the server.

`CONN_HEALTH_CHECKS` keeps a connection across requests and tasks yet replaces one that broke while it
sat idle, so that a database restart costs no failed call or task. Django checks with a `SELECT 1` at
the start of every request and task: a round trip that cost 60–75 µs of this process's CPU, and the
server's share, on the path of every alert, both in the web (one of four round trips per `run`
call) and in the worker (one of nine per send) (issue 9).

An idle connection has no query in flight, so its server has nothing to say. When the server ends the
connection (a restart or shutdown, `pg_terminate_backend`, `idle_session_timeout`, a pooler closing it)
it sends its FATAL message and closes the socket, and the socket turns readable. So a socket with
nothing to read has not been ended by the server, and the check stops there; one with something to
read (that, or an asynchronous notice) gets Django's `SELECT 1`, which tells the two apart. A connection
dropped silently on the network (no FIN) is caught by neither check, as before: its first query fails.
Only an idle connection with no error since its last use is checked this way: after an error (Django
then checks before reuse too), or in any other state, the server is asked, as Django does.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        if self.connection is None or self.connection.closed or self.connection.broken:
            return False
        if self.errors_occurred or self.connection.info.transaction_status != TransactionStatus.IDLE:
            return bool(super().is_usable())
        try:
            poller = select.poll()  # not select.select: it cannot watch a descriptor above 1023
            poller.register(self.connection.fileno(), select.POLLIN | select.POLLPRI)
            if not poller.poll(0):
                return True
        except (OSError, ValueError):
            return False
        return bool(super().is_usable())
