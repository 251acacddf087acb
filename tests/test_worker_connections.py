"""A real worker keeps its database connections from one task to the next (DB_CONN_MAX_AGE), as the
web process does, instead of opening one per task (Celery's default with Django)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.db import connection

from deliveries.models import Delivery
from deliveries.services import queue
from tests.conftest import WORKER_DB_APPLICATION, Tenant, Worker, make_delivery, wait_for
from tests.fakes.twilio import FakeTwilio

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _worker_connections(worker: Worker) -> set[object]:
    """The worker's open database connections: PostgreSQL lists them with their application name; an
    SQLite connection is an open handle on the database file."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", [WORKER_DB_APPLICATION])
            return {pid for (pid,) in cursor.fetchall()}
    assert worker.proc is not None
    database = Path(connection.settings_dict["NAME"]).resolve()
    fds = Path(f"/proc/{worker.proc.pid}/fd")
    return {fd.name for fd in fds.iterdir() if Path(os.path.realpath(fd)) == database}


def test_the_worker_keeps_its_database_connections_from_one_task_to_the_next(
    celery_worker: Worker, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    seen: set[object] = set()
    for batch in range(3):
        deliveries = [make_delivery(tenant, to_number=f"+1500555{batch}{n:03d}") for n in range(4)]
        queue.send([str(d.id) for d in deliveries])
        sent = 4 * (batch + 1)
        wait_for(lambda: Delivery.objects.filter(status="queued").count() == sent)  # noqa: B023 - waited on at once
        still_open = _worker_connections(celery_worker)
        assert still_open, "the worker closed its connections after its tasks"
        seen |= still_open

    # Four threads: at most one connection each (and one the worker opened at start), over 12 tasks.
    assert len(seen) <= 5
    assert len(fake_twilio.posts()) == 12
