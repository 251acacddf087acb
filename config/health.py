"""Readiness checks: is the database reachable, is the broker reachable. Each is one round trip with
a short timeout, cheap enough for a probe every few seconds, and reports an error by its class name
only (a driver's message can carry a host name or a URL with a password in it)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from django.db import connection

BROKER_TIMEOUT_SECONDS = 2.0
# One broker connection per this many seconds per process, however often /readyz is called: a probe
# every few seconds from several places (or anyone who can reach it) must not become a stream of
# new connections to the broker. An outage still shows within this long.
BROKER_CHECK_SECONDS = 5.0


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


_broker_lock = threading.Lock()
_broker_last: tuple[float, Check] | None = None


def check_broker() -> Check:
    """The broker's state, probed at most once per BROKER_CHECK_SECONDS; concurrent callers wait for
    the one probe under way rather than each opening a connection."""
    global _broker_last
    with _broker_lock:
        now = time.monotonic()
        if _broker_last is not None and now - _broker_last[0] < BROKER_CHECK_SECONDS:
            return _broker_last[1]
        result = _probe_broker()
        _broker_last = (time.monotonic(), result)
        return result


def forget_broker_check() -> None:
    """Drop the remembered result (tests; a process that knows the broker changed)."""
    global _broker_last
    with _broker_lock:
        _broker_last = None


def _probe_broker() -> Check:
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
