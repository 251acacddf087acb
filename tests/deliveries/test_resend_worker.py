"""A resend from the desk, end to end through the real Celery path: a live server takes the
operator's POST, a real worker on the configured broker sends it to the fake Twilio."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from deliveries import services
from deliveries.models import Attempt, Delivery
from tests.conftest import Tenant, make_delivery, make_user, wait_for
from tests.fakes.twilio import FakeTwilio

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_an_operators_resend_is_sent_again_by_a_real_worker_and_audited(
    celery_worker_process: Any, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.plan("error", status=400, code=21608, message="The number is unverified.")
    delivery = make_delivery(tenant)
    services.delivery_send(delivery_id=str(delivery.id))  # the first try, failed for good
    assert Delivery.objects.get(pk=delivery.pk).status == "failed"
    operator = make_user("operator")
    client = Client()
    client.force_login(operator)

    response = client.post(
        reverse("admin:deliveries_delivery_resend"),
        {"ids": [delivery.pk], "reason": "number verified in Twilio console"},
    )

    assert response.status_code == 302
    resent = wait_for(lambda: Delivery.objects.filter(pk=delivery.pk, status="queued").first())
    assert resent.twilio_sid.startswith("SM") and resent.attempt_count == 2
    assert list(
        Attempt.objects.filter(delivery=delivery)
        .order_by("number")
        .values_list("number", "trigger", "triggered_by", "reason", "outcome", "twilio_code")
    ) == [
        (1, "automatic", None, "", "permanent", 21608),
        (2, "resend", operator.pk, "number verified in Twilio console", "accepted", None),
    ]
    posts = fake_twilio.posts()
    assert len(posts) == 2 and posts[1]["To"] == tenant.recipient and posts[1]["Body"] == "Detection: test"
    assert len(fake_twilio.messages) == 1
