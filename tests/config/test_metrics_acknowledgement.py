"""Metrics of acknowledgement: acknowledgements by channel, time to acknowledge, escalations by kind."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from deliveries import services
from deliveries.models import Escalation
from tests.conftest import Tenant, make_delivery

pytestmark = pytest.mark.django_db


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_an_acknowledgement_and_an_escalation_are_counted_and_shown(
    client: Any, tenant: Tenant, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.PUBLIC_BASE_URL = "https://sms.example.com"
    acks, slow = (
        _value("ext_twilio_acknowledgements_total", channel="sms"),
        _value("ext_twilio_time_to_acknowledge_seconds_bucket", channel="sms", le="60.0"),
    )
    calls = _value("ext_twilio_escalations_total", kind="call")
    alert = make_delivery(tenant, ack_code="4K7")
    other = make_delivery(tenant, ack_code="9QX", to_number="+15005550002")
    Escalation.objects.create(
        alert=other, action="call", ack_within_seconds=60, due_at=timezone.now() - timedelta(seconds=1)
    )

    assert services.alert_acknowledge(delivery=alert, by=tenant.recipient, channel="sms")
    assert not services.alert_acknowledge(delivery=alert, by=tenant.recipient, channel="sms")  # once
    with django_capture_on_commit_callbacks(execute=True):
        services.escalation_fire(timer_id=str(Escalation.objects.get().id))

    assert _value("ext_twilio_acknowledgements_total", channel="sms") == acks + 1
    assert _value("ext_twilio_time_to_acknowledge_seconds_bucket", channel="sms", le="60.0") == slow + 1
    assert _value("ext_twilio_escalations_total", kind="call") == calls + 1
    text = client.get("/metrics").content.decode()
    assert (
        "ext_twilio_time_to_acknowledge_seconds_bucket" in text and 'ext_twilio_escalations_total{kind="call"}' in text
    )
