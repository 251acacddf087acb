"""Breaking things on purpose, with a real worker process and the real broker and database:
never zero messages for an accepted alert, never two."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from deliveries import services
from deliveries.models import Delivery
from tests.conftest import Intake, Tenant, Worker, wait_for
from tests.fakes.twilio import FakeTwilio

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_worker_killed_while_twilio_is_slow_ends_with_exactly_one_message(
    celery_worker: Worker, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, settings: Any
) -> None:
    fake_twilio.plan("slow", seconds=3)  # Twilio creates the message, then takes 3 s to answer
    intake.run(tenant, body="Credential dumping on dc-01")
    wait_for(lambda: len(fake_twilio.messages) == 1)

    celery_worker.kill()  # SIGKILL mid-POST: no chance to record anything
    delivery = Delivery.objects.get()
    assert delivery.status == "sending"
    celery_worker.start()

    # Time passes: the claim is now older than any live worker could hold it.
    Delivery.objects.filter(id=delivery.id).update(
        claimed_at=timezone.now() - timedelta(seconds=settings.SWEEP_STUCK_SECONDS + 1)
    )
    report = services.deliveries_sweep()
    assert report.lost_in_flight == 1

    delivery = wait_for(lambda: Delivery.objects.filter(status="queued").first())
    assert delivery.twilio_sid == fake_twilio.messages[0]["sid"]
    assert len(fake_twilio.messages) == 1 and len(fake_twilio.posts()) == 1
    assert list(delivery.attempts.values_list("outcome", flat=True)) == ["ambiguous", "found_on_reconcile"]


def test_a_429_storm_and_a_500_on_every_third_call_still_deliver_everything_exactly_once(
    celery_worker: Worker, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    for _ in range(8):
        fake_twilio.plan("429")
    fake_twilio.every_nth = (3, "500")
    recipients = [f"+1500555{n:04d}" for n in range(12)]
    for number in recipients:
        assert intake.run(tenant, to=number, body=f"Alert for {number}").status_code == 200

    wait_for(lambda: Delivery.objects.filter(status="queued").count() == len(recipients), timeout=90)

    per_recipient = Counter(m["to"] for m in fake_twilio.messages)
    assert per_recipient == Counter(dict.fromkeys(recipients, 1))
    outcomes = Counter(o for d in Delivery.objects.all() for o in d.attempts.values_list("outcome", flat=True))
    assert outcomes["not_processed"] >= 8 and outcomes["ambiguous"] >= 1
