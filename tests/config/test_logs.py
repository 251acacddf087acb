"""Structured logs: JSON lines that carry the organisation, idempotency key and delivery id, in the
web process and inside Celery tasks; and never a JWT, token or secret."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings

from deliveries.models import Delivery
from deliveries.observability import logcontext
from tests.conftest import LOG as WORKER_LOG
from tests.conftest import ROOT, Intake, Tenant, run_block, wait_for
from tests.fakes.limacharlie import FakeLimaCharlie
from tests.fakes.twilio import FakeTwilio


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Everything logged, at DEBUG, through the configured console handler's formatter and filters
    (the real LOG_FORMAT=json pipeline), into a buffer."""
    console = next(h for h in logging.getLogger().handlers if h.name == "console")
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(console.formatter)
    for f in console.filters:
        handler.addFilter(f)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield buffer
    root.removeHandler(handler)
    root.setLevel(level)


def _lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def _secrets_of(tenant: Tenant) -> list[str]:
    basic = base64.b64encode(f"{tenant.account_sid}:{tenant.auth_token}".encode()).decode()
    return [
        tenant.jwt,
        tenant.auth_token,
        basic,
        django_settings.LC_SHARED_SECRET,
        django_settings.SECRET_KEY,
        *django_settings.FIELD_ENCRYPTION_KEY.split(","),
    ]


@pytest.mark.django_db
def test_every_log_line_is_json_and_carries_the_ids_it_is_about(
    json_logs: io.StringIO, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.plan("429")
    intake.run(tenant, key="key-ids-1")

    delivery = Delivery.objects.get()
    lines = _lines(json_logs)
    accepted = next(line for line in lines if line["message"].startswith("accepted 1 deliveries"))
    assert accepted["oid"] == tenant.oid and accepted["idempotency_key"] == "key-ids-1"
    assert accepted["level"] == "INFO" and accepted["logger"] == "deliveries.services.accept"
    sends = [line for line in lines if line["message"].startswith(f"delivery {delivery.id} attempt")]
    assert len(sends) == 2  # the 429 and the retry that was accepted
    for line in sends:
        assert (line["delivery_id"], line["oid"], line["idempotency_key"]) == (
            str(delivery.id),
            tenant.oid,
            "key-ids-1",
        )


@pytest.mark.django_db
def test_the_log_context_does_not_leak_into_the_next_request(
    json_logs: io.StringIO, intake: Intake, tenant: Tenant
) -> None:
    intake.run(tenant, key="key-leak-1")
    assert logcontext.current() == {}
    logging.getLogger("tests").info("after the request")
    assert "oid" not in _lines(json_logs)[-1]


@pytest.mark.django_db
def test_a_full_flow_with_failures_logs_no_jwt_token_or_secret(
    json_logs: io.StringIO, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, fake_lc: FakeLimaCharlie
) -> None:
    assert (
        intake.send("conf_validation", {"org": {"oid": tenant.oid, "jwt": tenant.jwt}, "conf": {}}).status_code == 200
    )
    assert (
        intake.send("event", {"org": {"oid": tenant.oid, "jwt": tenant.jwt}, "event_name": "subscribe"}).status_code
        == 200
    )
    # Distinct bodies: flood control would hold back the same text to the same recipient.
    assert intake.run(tenant, body="alert 1").status_code == 200  # accepted and sent
    fake_lc.fail_next(500)
    assert intake.run(tenant, body="alert 2").status_code == 500  # LimaCharlie's API failing
    fake_lc.fail_next(401)
    assert intake.run(tenant, body="alert 3").status_code == 400  # the JWT refused
    fake_twilio.plan("429")
    fake_twilio.plan("error", status=401, code=20003, message="Authenticate")
    assert intake.run(tenant, body="alert 4").status_code == 200  # not processed, retried, then bad credentials
    fake_twilio.plan("create_then_500")
    assert intake.run(tenant, body="alert 5").status_code == 200  # ambiguous, then found on reconcile
    fake_twilio.plan("error", status=400, code=21211, message="Invalid 'To' Phone Number")
    assert intake.run(tenant, body="alert 6").status_code == 200  # permanent
    assert intake.send("request", run_block(tenant), secret="a-wrong-secret").status_code == 401
    assert (
        intake.send("event", {"org": {"oid": tenant.oid, "jwt": tenant.jwt}, "event_name": "unsubscribe"}).status_code
        == 200
    )

    logged = json_logs.getvalue()
    assert Delivery.objects.filter(status="failed").count() == 2
    assert Delivery.objects.filter(attempts__outcome="found_on_reconcile").count() == 1
    assert "refusing a LimaCharlie call with a wrong lc-ext-sig" in logged  # the failures were logged
    assert tenant.oid in logged
    for secret in _secrets_of(tenant):
        assert secret not in logged


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_worker_logs_json_with_the_delivery_ids_and_no_secret(
    celery_worker_process: Any, live_server: Any, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    from django.core.management import call_command

    fake_twilio.plan("429")
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
        "--to",
        tenant.recipient,
        "--body",
        "Worker log test",
        "--idempotency-key",
        "worker-log-1",
        stdout=io.StringIO(),
    )
    delivery = wait_for(
        lambda: Delivery.objects.filter(status="queued", organization__oid=tenant.oid).first(), timeout=45
    )

    def task_lines() -> list[dict[str, Any]]:
        found = []
        for raw in WORKER_LOG.read_text().splitlines():
            if raw.startswith("{"):
                line = json.loads(raw)
                if line.get("delivery_id") == str(delivery.id):
                    found.append(line)
        return found

    lines = wait_for(lambda: len(task_lines()) >= 2 and task_lines())
    assert {(line["oid"], line["idempotency_key"]) for line in lines} == {(tenant.oid, "worker-log-1")}
    assert [line["message"].split(":")[0] for line in lines[:2]] == [
        f"delivery {delivery.id} attempt 1",
        f"delivery {delivery.id} attempt 2",
    ]
    worker_log = WORKER_LOG.read_text()
    # Celery's own "received" and "succeeded" lines are not written at INFO: the send's line says more.
    celery_task_lines = [
        raw for raw in worker_log.splitlines() if '"celery.worker.strategy"' in raw or '"celery.app.trace"' in raw
    ]
    assert celery_task_lines == []
    for secret in _secrets_of(tenant):
        assert secret not in worker_log


def test_log_format_plain_appends_the_ids_to_a_readable_line() -> None:
    code = (
        "import django, logging; django.setup(); from deliveries.observability import logcontext\n"
        "with logcontext.scope(oid='org-1', delivery_id='d-1'): logging.getLogger('x').warning('hello')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "LOG_FORMAT": "plain"},
    )
    assert result.stderr.strip().endswith("WARNING x hello oid=org-1 delivery_id=d-1")


def test_an_unknown_log_format_stops_start_up() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "LOG_FORMAT": "xml"},
    )
    assert result.returncode != 0 and "LOG_FORMAT must be json or plain, got 'xml'" in result.stderr
