"""The PostgreSQL backend's health check (config/postgresql/base.py): an idle connection whose socket has
nothing to read is kept without a query to the server; one the server ended, or one with something
waiting on its socket, gets Django's `SELECT 1`, and a broken one is replaced before the next query."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import ProgrammingError, close_old_connections, connection

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the socket check belongs to the PostgreSQL backend; SQLite runs in the process")


@pytest.fixture
def admin() -> Iterator[psycopg.Connection[Any]]:
    """A connection of its own to the same server, as another client has."""
    connection.ensure_connection()
    other = psycopg.connect(**connection.get_connection_params(), autocommit=True)
    yield other
    other.close()


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def _last_query_of(admin: psycopg.Connection[Any], pid: int) -> str:
    row = admin.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
    assert row is not None, f"backend {pid} is gone"
    return str(row[0])


def _new_request() -> None:
    """What Django does at the start of a request (and config.celery before a task): forget the last check."""
    close_old_connections()
    connection.close_if_health_check_failed()


def _until_readable(timeout: float = 5.0) -> None:
    """Wait until the server's last word has reached our socket (it may take a moment after it sent it)."""
    import select

    poller = select.poll()
    poller.register(connection.connection.fileno(), select.POLLIN)
    assert poller.poll(timeout * 1000), "the server said nothing within the time"


def test_the_service_runs_on_the_backend_whose_check_asks_the_socket_first() -> None:
    assert connection.settings_dict["ENGINE"] == "config.postgresql"
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] is True


def test_an_idle_healthy_connection_is_kept_without_a_query_to_the_server(admin: psycopg.Connection[Any]) -> None:
    pid = _backend_pid()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 42")
    raw = connection.connection

    _new_request()

    assert connection.connection is raw
    assert _last_query_of(admin, pid) == "SELECT 42"  # Django's check would have left "SELECT 1"
    assert _backend_pid() == pid


def test_a_connection_the_server_ended_is_replaced_before_the_next_query(admin: psycopg.Connection[Any]) -> None:
    pid = _backend_pid()
    assert admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)
    _until_readable()

    _new_request()

    assert _backend_pid() != pid  # a new connection, and the query did not fail


def test_a_connection_with_a_message_waiting_gets_the_servers_check_and_is_kept(
    admin: psycopg.Connection[Any],
) -> None:
    with connection.cursor() as cursor:
        cursor.execute("LISTEN ext_twilio_health_test")
    pid = _backend_pid()
    raw = connection.connection
    admin.execute("NOTIFY ext_twilio_health_test")
    _until_readable()

    _new_request()

    assert connection.connection is raw  # the server answered the check: the connection stays
    deadline = time.monotonic() + 5
    while _last_query_of(admin, pid) != "SELECT 1" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _last_query_of(admin, pid) == "SELECT 1"
    with connection.cursor() as cursor:
        cursor.execute("UNLISTEN *")


def test_after_an_error_the_server_is_asked_as_django_does(admin: psycopg.Connection[Any]) -> None:
    pid = _backend_pid()
    raw = connection.connection
    with pytest.raises(ProgrammingError), connection.cursor() as cursor:
        cursor.execute("SELECT no_such_column FROM deliveries_organization")
    assert connection.errors_occurred

    _new_request()

    assert _last_query_of(admin, pid) == "SELECT 1"
    assert connection.connection is raw  # the server answered: the connection stays
    assert _backend_pid() == pid


def test_a_send_whose_connection_the_server_ended_claims_on_a_new_one(
    admin: psycopg.Connection[Any], tenant: Any, fake_twilio: Any
) -> None:
    """A task's first statement is often its claim, sent together (deliveries.services.sql.at_once): that
    path checks the connection as Django's cursors do, so a database restart costs no failed task."""
    from deliveries import services
    from tests.conftest import make_delivery

    delivery = make_delivery(tenant)
    pid = _backend_pid()
    assert admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)
    _until_readable()
    close_old_connections()  # the start of a task, as Celery's Django fixup and config.celery make it

    decision = services.delivery_send(delivery_id=str(delivery.id))

    assert decision.status == "queued" and len(fake_twilio.posts()) == 1
    assert _backend_pid() != pid
