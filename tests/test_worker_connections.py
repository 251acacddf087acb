"""A real worker keeps its database connections from one task to the next (DB_CONN_MAX_AGE), as the
web process does, instead of opening one per task (Celery's default with Django)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from deliveries.models import Delivery
from deliveries.services import queue
from tests.conftest import WORKER_DB_APPLICATION, Tenant, make_delivery, wait_for
from tests.fakes.twilio import FakeTwilio

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    # PostgreSQL lists each connection with its application name; an SQLite connection is a file handle.
    pytest.mark.skipif(connection.vendor != "postgresql", reason="counts connections in pg_stat_activity"),
]


def _worker_connections() -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", [WORKER_DB_APPLICATION])
        return {pid for (pid,) in cursor.fetchall()}


def test_the_worker_keeps_its_database_connections_from_one_task_to_the_next(
    celery_worker: Any, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    seen: set[int] = set()
    for batch in range(3):
        deliveries = [make_delivery(tenant, to_number=f"+1500555{batch}{n:03d}") for n in range(4)]
        queue.send([str(d.id) for d in deliveries])
        sent = 4 * (batch + 1)
        wait_for(lambda: Delivery.objects.filter(status="queued").count() == sent)  # noqa: B023 - waited on at once
        still_open = _worker_connections()
        assert still_open, "the worker closed its connections after its tasks"
        seen |= still_open

    # Four threads: at most one connection each (and one the worker opened at start), over 12 tasks.
    assert len(seen) <= 5
    assert len(fake_twilio.posts()) == 12
