"""/healthz answers without touching anything; /readyz checks the database and the broker."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import OperationalError
from kombu import Connection

from config import health
from config.celery import app as celery_app


@pytest.fixture(autouse=True)
def fresh_broker_check() -> Any:
    health.forget_broker_check()
    yield
    health.forget_broker_check()


def test_healthz_answers_without_the_database(client: Any) -> None:
    # No django_db mark: any database access in this test would raise.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ready_when_database_and_broker_answer(client: Any) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


@pytest.mark.django_db
def test_readyz_names_an_unreachable_broker(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Port 1 on localhost: nothing listens, the connection is refused at once.
    monkeypatch.setattr(celery_app, "connection_for_write", lambda: Connection("redis://:hunter2@127.0.0.1:1/0"))
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("unreachable (")
    assert "hunter2" not in response.content.decode()


class _DownConnection:
    def cursor(self) -> Any:
        raise OperationalError('connection to server at "db.internal" failed: password authentication failed')


def test_readyz_names_an_unreachable_database(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "connection", _DownConnection())
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "unreachable (OperationalError)", "broker": "ok"}
    assert "db.internal" not in response.content.decode()


@pytest.mark.django_db
def test_readyz_opens_one_broker_connection_however_often_it_is_called(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[int] = []
    real = celery_app.connection_for_write

    def counting() -> Any:
        opened.append(1)
        return real()

    monkeypatch.setattr(celery_app, "connection_for_write", counting)
    for _ in range(20):
        assert client.get("/readyz").status_code == 200
    assert len(opened) == 1  # one per call before


def test_the_probes_are_not_redirected_to_https_but_the_rest_is(client: Any, settings: Any) -> None:
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    response = client.get("/api/schema/")
    assert response.status_code == 301 and response["Location"].startswith("https://")
