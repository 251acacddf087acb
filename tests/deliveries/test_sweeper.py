"""The sweeper: nothing accepted is lost, and a lost claim is reconciled, never blindly re-sent."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from kombu.exceptions import OperationalError

from deliveries import services
from deliveries.models import Attempt, Delivery
from tests.conftest import Intake, Tenant, make_delivery
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.django_db


def _age(delivery: Delivery, seconds: int, **fields: Any) -> None:
    past = timezone.now() - timedelta(seconds=seconds)
    Delivery.objects.filter(id=delivery.id).update(due_at=past, **fields)


def test_a_request_accepted_while_the_broker_is_down_is_kept_and_sent_by_a_later_sweep(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    tries: list[tuple[Any, ...]] = []

    def broker_down(*args: Any, **kwargs: Any) -> None:
        tries.append(args)
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    with monkeypatch.context() as patch:
        patch.setattr("deliveries.tasks.send_delivery.apply_async", broker_down)
        response = intake.run(tenant, to="+15005550001,+15005550002,+15005550003")

    assert response.status_code == 200
    assert len(tries) == 1  # it stops at the first failure instead of waiting on the broker three times
    assert set(Delivery.objects.values_list("status", flat=True)) == {"pending"} and fake_twilio.posts() == []

    assert services.deliveries_sweep().requeued == 0  # not stuck yet: its task may still be on its way
    for delivery in Delivery.objects.all():
        _age(delivery, settings.SWEEP_PENDING_SECONDS + 1)
    assert services.deliveries_sweep().requeued == 3

    assert set(Delivery.objects.values_list("status", flat=True)) == {"queued"} and len(fake_twilio.posts()) == 3


def test_a_claim_whose_worker_died_is_reconciled_and_the_existing_message_adopted(
    tenant: Tenant, fake_twilio: FakeTwilio, settings: Any
) -> None:
    delivery = make_delivery(tenant, status="sending", attempt_count=1)
    Attempt.objects.create(delivery=delivery, number=1, trigger="automatic", started_at=timezone.now())
    message = fake_twilio.create(
        tenant.account_sid, {"To": tenant.recipient, "From": tenant.sender, "Body": delivery.body}
    )
    _age(delivery, 0, claimed_at=timezone.now() - timedelta(seconds=settings.SWEEP_STUCK_SECONDS + 1))

    report = services.deliveries_sweep()

    assert (report.lost_in_flight, report.reconciles) == (1, 1)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.twilio_sid) == ("queued", message["sid"])
    assert list(delivery.attempts.values_list("number", "outcome", "twilio_message")) == [
        (1, "ambiguous", "worker lost during the attempt"),
        (2, "found_on_reconcile", f"found {message['sid']}"),
    ]
    assert fake_twilio.posts() == []  # no second POST


def test_a_live_claim_is_left_alone(tenant: Tenant, fake_twilio: FakeTwilio) -> None:
    delivery = make_delivery(tenant, status="sending", claimed_at=timezone.now())
    assert services.deliveries_sweep().lost_in_flight == 0
    delivery.refresh_from_db()
    assert delivery.status == "sending"


def test_an_ambiguous_delivery_whose_reconcile_was_lost_is_reconciled_by_the_sweeper(
    tenant: Tenant, fake_twilio: FakeTwilio, settings: Any
) -> None:
    delivery = make_delivery(tenant, status="ambiguous")
    _age(delivery, settings.SWEEP_PENDING_SECONDS + 1)

    assert services.deliveries_sweep().reconciles == 1

    delivery.refresh_from_db()
    assert [a.outcome for a in delivery.attempts.all()] == ["not_found_on_reconcile", "accepted"]
    assert delivery.status == "queued" and len(fake_twilio.posts()) == 1


def test_the_sweep_runs_on_celery_beat(settings: Any) -> None:
    assert settings.CELERY_BEAT_SCHEDULE["sweep"] == {
        "task": "deliveries.sweep",
        "schedule": float(settings.SWEEP_INTERVAL_SECONDS),
    }
