"""Readiness checks: is the database reachable, is the broker reachable. Each is one round trip with
a short timeout, cheap enough for a probe every few seconds, and reports an error by its class name
only (a driver's message can carry a host name or a URL with a password in it)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection

BROKER_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = "ok"


def check_database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        return Check("database", False, f"unreachable ({type(exc).__name__})")
    return Check("database", True)


def check_broker() -> Check:
    from config.celery import app

    try:
        # A fresh connection each time: the probe must find out that the broker went away, which a
        # pooled connection that was fine a minute ago would not tell.
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=0, timeout=BROKER_TIMEOUT_SECONDS)
            # ensure_connection only opens the transport; a channel proves the broker answers.
            conn.default_channel  # noqa: B018
    except Exception as exc:  # noqa: BLE001
        return Check("broker", False, f"unreachable ({type(exc).__name__})")
    return Check("broker", True)
