"""The embedded database's writers take turns (config/sqlite/base.py): the threads of one process queue on
a gate, and the one at its head asks SQLite for the write lock, which another process may hold, every
half millisecond instead of sleeping in SQLite's busy handler. PostgreSQL has no such gate (row locks)."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import OperationalError, connection, transaction

from deliveries.models import Organization

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _embedded_database_only() -> None:
    if connection.vendor != "sqlite":
        pytest.skip("the writers' gate belongs to the embedded SQLite backend")


@pytest.fixture
def other_process() -> Iterator[sqlite3.Connection]:
    """A connection of its own to the same file, as another process (the web, or the worker) has."""
    connection.ensure_connection()
    other = sqlite3.connect(connection.settings_dict["NAME"], timeout=0, isolation_level=None, check_same_thread=False)
    yield other
    if other.in_transaction:
        other.rollback()
    other.close()


def _traced() -> list[str]:
    """The statements this thread's connection runs from now on."""
    statements: list[str] = []
    connection.ensure_connection()
    connection.connection.set_trace_callback(statements.append)
    return statements


def _begins(statements: list[str]) -> int:
    return sum(1 for s in statements if s.startswith("BEGIN"))


def _in_thread(target: Any) -> threading.Thread:
    def run() -> None:
        try:
            target()
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_writer_held_off_by_another_process_asks_again_until_it_gets_in(
    other_process: sqlite3.Connection,
) -> None:
    other_process.execute("BEGIN IMMEDIATE")  # the other process is writing
    threading.Timer(0.3, other_process.commit).start()
    statements = _traced()

    with transaction.atomic():
        Organization.objects.create(oid=str(uuid.uuid4()))

    # SQLite's busy handler would have waited inside one BEGIN; here it was asked again and again.
    assert _begins(statements) >= 10
    assert Organization.objects.count() == 1
    with connection.cursor() as cursor:  # a statement outside a transaction still waits as SQLite does
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone()[0] == 20_000


def test_writers_of_one_process_wait_their_turn_without_asking_sqlite(other_process: sqlite3.Connection) -> None:
    first_in, first_may_commit = threading.Event(), threading.Event()
    second_statements: list[str] = []

    def first() -> None:
        with transaction.atomic():
            Organization.objects.create(oid="first-" + str(uuid.uuid4()))
            first_in.set()
            first_may_commit.wait(10)

    def second() -> None:
        connection.ensure_connection()
        connection.connection.set_trace_callback(second_statements.append)
        with transaction.atomic():
            Organization.objects.create(oid="second-" + str(uuid.uuid4()))

    one = _in_thread(first)
    assert first_in.wait(10)
    two = _in_thread(second)
    two.join(0.3)

    assert two.is_alive()  # waiting for its turn …
    assert _begins(second_statements) == 0  # … on the gate, not in SQLite
    first_may_commit.set()
    one.join(10)
    two.join(10)
    assert not one.is_alive() and not two.is_alive()
    assert _begins(second_statements) == 1  # its turn came: one BEGIN, the lock was free
    assert Organization.objects.count() == 2


def test_a_transaction_that_fails_lets_the_next_writer_in() -> None:
    def fail_midway() -> None:
        with transaction.atomic():
            Organization.objects.create(oid=str(uuid.uuid4()))
            raise RuntimeError("a failure inside the transaction")

    with pytest.raises(RuntimeError):
        fail_midway()

    done = threading.Event()

    def write() -> None:
        with transaction.atomic():
            Organization.objects.create(oid=str(uuid.uuid4()))
        done.set()

    _in_thread(write).join(10)

    assert done.is_set()
    with transaction.atomic():  # and this thread again
        Organization.objects.create(oid=str(uuid.uuid4()))
    assert Organization.objects.count() == 2


def test_a_writer_that_cannot_get_in_within_the_timeout_fails_as_sqlite_would_and_frees_its_turn(
    other_process: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "timeout", 0.2)
    other_process.execute("BEGIN IMMEDIATE")

    with pytest.raises(OperationalError, match="database is locked"), transaction.atomic():
        Organization.objects.create(oid=str(uuid.uuid4()))

    other_process.commit()
    done = threading.Event()

    def write() -> None:
        with transaction.atomic():
            Organization.objects.create(oid=str(uuid.uuid4()))
        done.set()

    _in_thread(write).join(10)
    assert done.is_set()  # the gate was given back
    assert Organization.objects.count() == 1
