"""On PostgreSQL a connection prepares the statements it runs often (DB_PREPARED_STATEMENTS): the
database parses and plans a send's statements once per connection instead of on every send."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest.mock import patch

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from deliveries import services
from deliveries.models import Delivery, Escalation
from deliveries.services import escalate, flood, queue, sql, sweep
from tests.conftest import Tenant, make_delivery
from tests.fakes.twilio import FakeTwilio

ROOT = Path(__file__).resolve().parent.parent


def _prepared() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [statement for (statement,) in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
def test_a_connection_prepares_the_send_path_s_statements_after_a_few_sends(
    tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's; SQLite keeps its own statement cache")
    deliveries = [make_delivery(tenant, to_number=f"+1500555{n:04d}") for n in range(6)]

    for delivery in deliveries:
        services.delivery_send(delivery_id=str(delivery.id))

    assert Delivery.objects.filter(status=Delivery.Status.QUEUED).count() == 6
    assert len(fake_twilio.posts()) == 6
    prepared = _prepared()
    # Sent together (sql.at_once), and prepared all the same: the organisation's and the delivery's locks
    # with the delivery's read; the account's lock; the counts, the credential and the claim.
    assert any("FOR NO KEY UPDATE OF o, d" in statement for statement in prepared), prepared
    assert any("ORDER BY id LIMIT 1 FOR NO KEY UPDATE" in statement for statement in prepared), prepared
    assert any(
        "COUNT(d.id) FILTER" in s and "LEFT JOIN deliveries_credential" in s and "INSERT INTO deliveries_attempt" in s
        for s in prepared
    ), prepared


def _options(**env: str) -> str:
    script = "import django; django.setup(); from django.conf import settings; print(settings.DATABASES['default']['OPTIONS'])"
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_prepared_statements_are_on_by_default_on_postgresql_and_can_be_turned_off() -> None:
    url = "postgres://postgres@127.0.0.1:5432/ext_twilio"

    assert "'server_side_binding': True, 'prepare_threshold': 5" in _options(DATABASE_URL=url)
    assert "server_side_binding" not in _options(DATABASE_URL=url, DB_PREPARED_STATEMENTS="0")
    assert "server_side_binding" not in _options(DATABASE_URL="sqlite:////tmp/ext-twilio-options.sqlite3")


@pytest.mark.django_db(transaction=True)
def test_a_claims_prepared_counts_read_the_window_and_the_requests_in_flight_not_every_delivery(
    tenant: Tenant,
) -> None:
    """PostgreSQL plans a prepared statement once for any parameters (its generic plan). The claim's
    counts must still read only the window's deliveries and those `sending`: with an index on the
    organisation alone, or the status as a parameter, that plan read the organisation's or the
    credential's every delivery (18-21 and 9 ms a claim at 60,000)."""
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    pending = make_delivery(tenant)
    old = timezone.now() - timedelta(days=3)
    fields = {"organization": pending.organization, "credential": pending.credential, "body": "old", "segments": 1}
    Delivery.objects.bulk_create(
        Delivery(
            **fields,
            idempotency_key=f"old-{n}",
            from_number=tenant.sender,
            to_number=f"+1500666{n % 1000:04d}",
            original_length=3,
            encoding="gsm7",
            status="delivered",
            claimed_at=old,
        )
        for n in range(3000)
    )
    now = timezone.now()
    counting = flood.counts_statement(pending.id, now, capped=True, held=True)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE deliveries_delivery")
        cursor.execute("SET plan_cache_mode = force_generic_plan")
    try:
        for _ in range(6):  # psycopg prepares a statement on its fifth run
            counts = flood.Counts.of(sql.with_credential(counting, pending))
        query, params = sql.credential_joined(f"({counting[0]}) k", "%s", [*counting[1], pending.credential_id])
        with connection.cursor() as cursor:
            cursor.execute("SELECT name FROM pg_prepared_statements WHERE statement LIKE %s", ["%COUNT(d.id) FILTER%"])
            (name,) = cursor.fetchone()
        explain = psycopg.ClientCursor(connection.connection)
        explain.execute(f"EXPLAIN (ANALYZE) EXECUTE {name}({', '.join(['%s'] * len(params))})", params)
        plan = [line for (line,) in explain.fetchall()]
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET plan_cache_mode")

    assert counts == flood.Counts(False, 0, 0, 0, 0)
    removed = sum(int(line.rsplit(":", 1)[1]) for line in plan if "Rows Removed by Filter" in line)
    assert removed < 100, "\n".join(plan)


def _generic_plan(marker: str, run: Callable[[], object]) -> list[str]:
    """The plan PostgreSQL's generic plan gives the statement containing `marker` that `run` sends: run
    six times (psycopg prepares it on its fifth), then EXPLAIN (ANALYZE) of the prepared statement with the
    parameters it was last sent with."""
    sent: list[tuple[str, Sequence[object]]] = []

    def capture(execute: Callable[..., object], sql_: str, params: Any, many: bool, context: Any) -> object:
        if marker in sql_:
            sent.append((sql_, params))
        return execute(sql_, params, many, context)

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        cursor.execute("SET plan_cache_mode = force_generic_plan")
    try:
        with connection.execute_wrapper(capture):
            for _ in range(6):
                run()
        with connection.cursor() as cursor:
            cursor.execute("SELECT name FROM pg_prepared_statements WHERE statement LIKE %s", [f"%{marker}%"])
            (name,) = cursor.fetchone()
        params = list(sent[-1][1])
        explain = psycopg.ClientCursor(connection.connection)
        explain.execute(f"EXPLAIN (ANALYZE) EXECUTE {name}({', '.join(['%s'] * len(params))})", params)
        return [line for (line,) in explain.fetchall()]
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET plan_cache_mode")


def _removed(plan: list[str]) -> int:
    return sum(int(line.rsplit(":", 1)[1]) for line in plan if "Rows Removed by Filter" in line)


@pytest.mark.django_db(transaction=True)
def test_the_sweeper_s_prepared_reads_go_through_their_indexes_not_every_delivery_or_timer(tenant: Tenant) -> None:
    """The sweeper runs on worker connections, and with a long DB_CONN_MAX_AGE its statements are prepared
    like any other. With the status and the state as parameters their generic plans read every delivery (the
    flood summaries: 179 ms at 250,000) and every timer (lost timers: the partial index on `waiting` ones
    cannot serve a state the plan does not know); they are written into the statements (`sql.written`)."""
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    alert = make_delivery(tenant)
    old = timezone.now() - timedelta(days=3)
    fields = {"organization": alert.organization, "credential": alert.credential, "body": "old", "segments": 1}
    settled = Delivery.objects.bulk_create(
        Delivery(
            **fields,
            idempotency_key=f"old-{n}",
            from_number=tenant.sender,
            to_number=f"+1500666{n % 1000:04d}",
            original_length=3,
            encoding="gsm7",
            status="delivered",
            claimed_at=old,
        )
        for n in range(3000)
    )
    Escalation.objects.bulk_create(
        Escalation(alert=d, action="call", ack_within_seconds=60, due_at=old, state="fired") for d in settled
    )
    Escalation.objects.create(alert=alert, action="call", ack_within_seconds=60, due_at=old)  # lost, overdue
    now = timezone.now()

    summaries = _generic_plan("MIN(", lambda: sweep.flood_summaries_send(now=now))
    with patch.object(queue, "escalate", return_value=1) as escalate_ids:
        timers = _generic_plan('FROM "deliveries_escalation"', lambda: escalate.timers_sweep(now=now))

    assert Delivery.objects.filter(kind=Delivery.Kind.SUMMARY).count() == 0  # nothing held back: no summary
    assert escalate_ids.call_count == 6 and escalate_ids.call_args.args[0] == [str(alert.timers.get().id)]
    assert _removed(summaries) < 100, "\n".join(summaries)
    assert _removed(timers) < 100 and "escalation_state_due" in "\n".join(timers), "\n".join(timers)


@pytest.mark.django_db(transaction=True)
def test_flood_summaries_read_only_the_alerts_still_waiting_for_one_not_every_alert_ever_held_back(
    tenant: Tenant,
) -> None:
    """Every sweep looks for held-back alerts that no summary has told the recipient about yet. Once
    summarised an alert is never looked at again, but each sweep read past every alert ever held back
    (opted-out ones too) and, under the generic plan, every delivery: 3,004 rows here, with none waiting,
    more as the table grew. The partial index
    `delivery_unsummarised` holds only the alerts still waiting, and the statement writes its status and
    holds into its text (`sql.written`), so that PostgreSQL's generic plan can use it."""
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    alert = make_delivery(tenant)
    summary = make_delivery(tenant, kind=Delivery.Kind.SUMMARY, idempotency_key="summary:old", status="delivered")
    old = timezone.now() - timedelta(days=3)
    fields = {"organization": alert.organization, "credential": alert.credential, "body": "old", "segments": 1}
    Delivery.objects.bulk_create(
        Delivery(
            **fields,
            idempotency_key=f"old-{n}",
            from_number=tenant.sender,
            to_number=f"+1500666{n % 1000:04d}",
            original_length=3,
            encoding="gsm7",
            status=Delivery.Status.SUPPRESSED,
            hold=[Delivery.Hold.DUPLICATE, Delivery.Hold.RECIPIENT_LIMIT, Delivery.Hold.OPTED_OUT][n % 3],
            summary=None if n % 3 == 2 else summary,  # opted-out alerts are never summarised
            created_at=old,
        )
        for n in range(3000)
    )
    waiting = make_delivery(
        tenant, status=Delivery.Status.SUPPRESSED, hold=Delivery.Hold.ORG_LIMIT, idempotency_key="waiting"
    )
    Delivery.objects.filter(id=waiting.id).update(created_at=old)
    now = timezone.now()

    plan = _generic_plan("MIN(", lambda: sweep.flood_summaries_send(now=now))

    waiting.refresh_from_db()
    assert waiting.summary is not None  # the one alert still waiting got its summary, on the first sweep
    assert Delivery.objects.filter(kind=Delivery.Kind.SUMMARY).count() == 2
    assert "delivery_unsummarised" in "\n".join(plan), "\n".join(plan)
    assert _removed(plan) < 100, "\n".join(plan)


def test_the_unsummarised_index_holds_exactly_the_alerts_flood_control_held_back() -> None:
    """The index's holds are spelt out in the model's Meta: they must be flood control's, or a sweep
    could no longer use the index (a hold missing) or would read alerts it never summarises (one too many)."""
    index = next(index for index in Delivery._meta.indexes if index.name == "delivery_unsummarised")
    terms = dict(index.condition.children)

    assert set(terms["hold__in"]) == Delivery.FLOOD_HOLDS
    assert terms["status"] == Delivery.Status.SUPPRESSED and terms["summary__isnull"] is True
