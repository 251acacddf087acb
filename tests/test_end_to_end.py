"""The whole path with real processes: `lc_request` signs and gzips a run request like LimaCharlie,
a live server takes it, a real Celery worker on the configured broker sends it to the fake Twilio."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from deliveries.models import Delivery
from tests.conftest import Tenant, wait_for
from tests.fakes.twilio import FakeTwilio

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _lc_request(live_server: Any, tenant: Tenant, *extra: str) -> str:
    out = io.StringIO()
    call_command(
        "lc_request",
        "--url",
        f"{live_server.url}/extension/",
        "--oid",
        tenant.oid,
        "--jwt",
        tenant.jwt,
        "--from",
        tenant.sender,
        *extra,
        stdout=out,
    )
    return out.getvalue()


def test_a_run_request_from_lc_request_is_sent_once_by_a_real_worker(
    celery_worker: Any, live_server: Any, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    output = _lc_request(
        live_server,
        tenant,
        "--to",
        "+15005550001,+15005550002",
        "--body",
        "Ransomware on fs-01",
        "--idempotency-key",
        "e2e-1",
    )

    assert output.startswith("HTTP 200")
    wait_for(lambda: Delivery.objects.filter(status="queued").count() == 2)
    code = dict(Delivery.objects.values_list("to_number", "ack_code"))  # acknowledgement by reply: on by default
    assert sorted((p["To"], p["From"], p["Body"]) for p in fake_twilio.posts()) == [
        ("+15005550001", tenant.sender, f"Ransomware on fs-01\nReply {code['+15005550001']} to acknowledge"),
        ("+15005550002", tenant.sender, f"Ransomware on fs-01\nReply {code['+15005550002']} to acknowledge"),
    ]
    assert {d.attempts.count() for d in Delivery.objects.all()} == {1}

    # LimaCharlie retrying the same call changes nothing.
    assert _lc_request(
        live_server, tenant, "--to", "+15005550001", "--body", "x", "--idempotency-key", "e2e-1"
    ).startswith("HTTP 200")
    assert Delivery.objects.count() == 2 and len(fake_twilio.posts()) == 2


def test_a_429_storm_is_retried_by_the_worker_until_delivered(
    celery_worker: Any, live_server: Any, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    for _ in range(2):
        fake_twilio.plan("429")
    _lc_request(live_server, tenant, "--to", tenant.recipient, "--body", "Beaconing from wks-9")

    delivery = wait_for(lambda: Delivery.objects.filter(status="queued").first(), timeout=45)
    assert list(delivery.attempts.values_list("trigger", "outcome")) == [
        ("automatic", "not_processed"),
        ("retry", "not_processed"),
        ("retry", "accepted"),
    ]
    assert len(fake_twilio.messages) == 1


def test_lc_request_reports_a_refusal(live_server: Any, tenant: Tenant) -> None:
    with pytest.raises(CommandError, match="the service answered HTTP 400"):
        _lc_request(live_server, tenant, "--to", "not-a-number", "--body", "x")
