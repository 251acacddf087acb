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
        executor.migrate(executor.loader.graph.leaf_nodes())  # every later migration too, for the tests after

    assert "delivery_unsummarised" in _indexes()


@pytest.mark.django_db(transaction=True)
def test_a_delivery_s_sends_are_counted_without_its_looks_at_twilio_when_migrating() -> None:
    """Before, attempt_count counted every attempt, a reconcile's look-up included."""
    sends_counted = ("deliveries", "0015_sends_counted_and_call_holds")
    executor = MigrationExecutor(connection)
    (before,) = [p.key for p in executor.loader.graph.node_map[sends_counted].parents if p.key[0] == "deliveries"]
    executor.migrate([before])
    try:
        old = executor.loader.project_state([before]).apps
        org = old.get_model("deliveries", "Organization").objects.create(oid="o")
        delivery = old.get_model("deliveries", "Delivery").objects.create(
            organization=org,
            from_number="+15005550006",
            to_number="+15005550001",
            body="b",
            original_length=1,
            encoding="gsm7",
            segments=1,
            attempt_count=3,
        )
        attempt = old.get_model("deliveries", "Attempt")
        for number, trigger in enumerate(["automatic", "reconcile", "retry"], start=1):
            attempt.objects.create(delivery=delivery, number=number, trigger=trigger, started_at=org.created_at)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    from deliveries.models import Delivery

    assert Delivery.objects.get(id=delivery.id).attempt_count == 2


@pytest.mark.django_db
def test_every_model_change_has_its_migration() -> None:
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()
