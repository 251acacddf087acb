"""On PostgreSQL a connection prepares the statements it runs often (DB_PREPARED_STATEMENTS): the
database parses and plans a send's statements once per connection instead of on every send."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from deliveries import services
from deliveries.models import Delivery
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
