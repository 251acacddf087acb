"""Migrations that add an index to the delivery table while the service runs."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

FLOOD_SUMMARIES = ("deliveries", "0013_flood_summaries_indexed_while_waiting")


def _sql(migration: str) -> str:
    out = StringIO()
    call_command("sqlmigrate", "deliveries", migration, stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)  # sqlmigrate reads the applied migrations, outside a transaction
def test_the_flood_summaries_index_is_built_without_blocking_the_intake_s_writes_on_postgresql() -> None:
    """A plain CREATE INDEX holds every insert into the table until it is built (a fraction of a second
    at a million rows, more on a busy server, while LimaCharlie's `run` calls wait); PostgreSQL builds it
    CONCURRENTLY, outside a transaction. SQLite has no such option and takes the plain statement."""
    sql = _sql(FLOOD_SUMMARIES[1])

    if connection.vendor == "postgresql":
        assert 'CREATE INDEX CONCURRENTLY "delivery_unsummarised"' in sql
        assert "BEGIN;" not in sql  # no transaction around it: PostgreSQL refuses one
    else:
        assert 'CREATE INDEX "delivery_unsummarised"' in sql and "CONCURRENTLY" not in sql


def _indexes() -> set[str]:
    with connection.cursor() as cursor:
        return set(connection.introspection.get_constraints(cursor, "deliveries_delivery"))


@pytest.mark.django_db(transaction=True)
def test_the_flood_summaries_index_migrates_back_and_forth() -> None:
    executor = MigrationExecutor(connection)
    previous = executor.loader.graph.node_map[FLOOD_SUMMARIES].parents
    (before,) = [parent.key for parent in previous if parent.key[0] == "deliveries"]
    try:
        executor.migrate([before])
        assert "delivery_unsummarised" not in _indexes()
    finally:
        executor = MigrationExecutor(connection)
        # Forward to the latest migrations, not only this one: later tests need every later one applied.
        executor.migrate(executor.loader.graph.leaf_nodes())

    assert "delivery_unsummarised" in _indexes()
