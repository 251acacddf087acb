"""/metrics: Prometheus text, guarded by METRICS_TOKEN when set, counting what the service did."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from deliveries.models import Delivery
from tests.conftest import ROOT, Intake, Tenant, make_delivery
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.django_db


def _scrape(client: Any, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_are_open_when_no_token_is_set(client: Any, settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    samples = _scrape(client)
    assert ("ext_twilio_deliveries", (("status", "pending"),)) in samples


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "bearer s3cret-metrics", "s3cret-metrics"])
def test_metrics_refuse_a_missing_or_wrong_bearer_token(client: Any, settings: Any, header: str | None) -> None:
    settings.METRICS_TOKEN = "s3cret-metrics"
    headers = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/metrics", **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"ext_twilio" not in response.content


def test_metrics_answer_the_right_bearer_token(client: Any, settings: Any) -> None:
    settings.METRICS_TOKEN = "s3cret-metrics"
    samples = _scrape(client, HTTP_AUTHORIZATION="Bearer s3cret-metrics")
    assert ("ext_twilio_deliveries_suppressed", ()) in samples


def test_an_accepted_run_counts_the_intake_call_the_attempt_and_the_twilio_latency(
    client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    before = {
        "calls": _value("ext_twilio_intake_calls_total", message_type="request", outcome="ok"),
        "accepted": _value("ext_twilio_attempts_total", outcome="accepted"),
        "latency": _value("ext_twilio_twilio_request_seconds_count", outcome="accepted"),
    }
    assert intake.run(tenant).status_code == 200

    samples = _scrape(client)
    calls = samples[("ext_twilio_intake_calls_total", (("message_type", "request"), ("outcome", "ok")))]
    assert calls == before["calls"] + 1
    assert samples[("ext_twilio_attempts_total", (("outcome", "accepted"),))] == before["accepted"] + 1
    assert samples[("ext_twilio_twilio_request_seconds_count", (("outcome", "accepted"),))] == before["latency"] + 1
    assert samples[("ext_twilio_deliveries", (("status", "queued"),))] == 1


def test_refused_and_unauthorised_calls_are_counted_by_outcome(intake: Intake, tenant: Tenant) -> None:
    refused = _value("ext_twilio_intake_calls_total", message_type="request", outcome="refused")
    unauthorised = _value("ext_twilio_intake_calls_total", message_type="-", outcome="unauthorized")

    assert intake.run(tenant, to="not-a-number").status_code == 400
    assert intake.run(tenant, secret=None).status_code == 200
    assert intake.post_bytes(b'{"heartbeat":{}}', secret="not-the-secret").status_code == 401

    assert _value("ext_twilio_intake_calls_total", message_type="request", outcome="refused") == refused + 1
    assert _value("ext_twilio_intake_calls_total", message_type="-", outcome="unauthorized") == unauthorised + 1


def test_a_429_counts_a_not_processed_attempt_and_a_retry(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    retries = _value("ext_twilio_send_retries_total")
    not_processed = _value("ext_twilio_attempts_total", outcome="not_processed")
    fake_twilio.plan("429")

    intake.run(tenant)

    assert Delivery.objects.get().status == Delivery.Status.QUEUED
    assert _value("ext_twilio_send_retries_total") == retries + 1
    assert _value("ext_twilio_attempts_total", outcome="not_processed") == not_processed + 1


def test_state_gauges_come_from_the_database(client: Any, tenant: Tenant) -> None:
    old = make_delivery(tenant, to_number="+15005550011")
    Delivery.objects.filter(id=old.id).update(created_at=timezone.now() - timedelta(minutes=10))
    make_delivery(tenant, to_number="+15005550012")
    make_delivery(tenant, to_number="+15005550013", status=Delivery.Status.SUPPRESSED)
    make_delivery(tenant, to_number="+15005550014", status=Delivery.Status.FAILED)

    samples = _scrape(client)

    assert samples[("ext_twilio_deliveries", (("status", "pending"),))] == 2
    assert samples[("ext_twilio_deliveries", (("status", "suppressed"),))] == 1
    assert samples[("ext_twilio_deliveries", (("status", "failed"),))] == 1
    assert samples[("ext_twilio_deliveries", (("status", "delivered"),))] == 0
    assert samples[("ext_twilio_deliveries_suppressed", ())] == 1
    assert 600 <= samples[("ext_twilio_oldest_pending_delivery_age_seconds", ())] < 3600


def test_the_oldest_pending_age_is_zero_when_nothing_waits(client: Any, tenant: Tenant) -> None:
    make_delivery(tenant, status=Delivery.Status.QUEUED)
    assert _scrape(client)[("ext_twilio_oldest_pending_delivery_age_seconds", ())] == 0


def test_counts_from_several_processes_are_summed_with_a_multiprocess_dir(tmp_path: Path) -> None:
    """Gunicorn runs several workers: with PROMETHEUS_MULTIPROC_DIR, /metrics in any one of them
    shows the sum of all."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    count = textwrap.dedent("""
        import django; django.setup()
        from deliveries.observability import metrics
        metrics.intake_call("heartbeat", 200)
        metrics.twilio_call("accepted", 120)
    """)
    for _ in range(2):
        subprocess.run([sys.executable, "-c", count], env=env, cwd=ROOT, check=True, timeout=60)
    read = textwrap.dedent("""
        import os
        import django; django.setup()
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        print(generate_latest(registry).decode())
    """)
    out = subprocess.run(
        [sys.executable, "-c", read], env=env, cwd=ROOT, check=True, timeout=60, capture_output=True, text=True
    ).stdout
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(out)
        for s in family.samples
    }
    assert samples[("ext_twilio_intake_calls_total", (("message_type", "heartbeat"), ("outcome", "ok")))] == 2
    assert samples[("ext_twilio_twilio_request_seconds_count", (("outcome", "accepted"),))] == 2
