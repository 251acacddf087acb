"""The send task and its policy, against the fake Twilio answering each error class."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from deliveries import services
from deliveries.models import Attempt, Delivery
from deliveries.tasks import send_delivery
from tests.conftest import Intake, Tenant, make_delivery
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.django_db


def _attempts(delivery: Delivery) -> list[tuple[int, str, str, int | None, int | None]]:
    return list(delivery.attempts.values_list("number", "trigger", "outcome", "http_status", "twilio_code"))


def test_a_429_is_retried_with_backoff_and_then_delivered_once(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.plan("429")
    fake_twilio.plan(
        "error", status=400, code=21611, message="This 'From' number has exceeded the maximum number of queued messages"
    )
    intake.run(tenant)

    delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.QUEUED
    assert _attempts(delivery) == [
        (1, "automatic", "not_processed", 429, 20429),
        (2, "retry", "not_processed", 400, 21611),
        (3, "retry", "accepted", 201, None),
    ]
    assert len(fake_twilio.posts()) == 3 and len(fake_twilio.messages) == 1


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (21211, "The 'To' number +15005550001 is not a valid phone number."),
        (21608, "The number is unverified. Trial accounts cannot send messages to unverified numbers"),
        (21610, "Attempt to send to unsubscribed recipient"),
    ],
)
def test_a_permanent_error_fails_at_once_with_the_code_and_message(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, code: int, message: str
) -> None:
    fake_twilio.plan("error", status=400, code=code, message=message)
    intake.run(tenant)

    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.error_code, delivery.error_message) == ("failed", code, message)
    assert delivery.settled_at is not None
    assert _attempts(delivery) == [(1, "automatic", "permanent", 400, code)]
    assert len(fake_twilio.posts()) == 1


def test_wrong_credentials_fail_permanently_without_a_retry(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.add_account(tenant.account_sid, "a-rotated-token")
    intake.run(tenant)

    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.error_code) == ("failed", 20003)
    assert _attempts(delivery) == [(1, "automatic", "permanent", 401, 20003)]


def test_a_read_timeout_is_ambiguous_and_not_reposted(tenant: Tenant, fake_twilio: FakeTwilio, settings: Any) -> None:
    settings.TWILIO_TIMEOUT_SECONDS = 1
    fake_twilio.plan("hang", seconds=2)
    delivery = make_delivery(tenant)

    services.delivery_send(delivery_id=str(delivery.id))

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.AMBIGUOUS
    assert delivery.error_message == "requests.exceptions.ReadTimeout"
    assert len(fake_twilio.posts()) == 1
    assert len(fake_twilio.messages) == 1  # it does exist at Twilio: why a blind re-send would double it


def test_connection_refused_is_not_processed_and_retried_until_the_attempt_limit(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, settings: Any
) -> None:
    settings.TWILIO_API_BASE_URL = "http://127.0.0.1:9"
    settings.SEND_MAX_ATTEMPTS = 3
    intake.run(tenant)

    delivery = Delivery.objects.get()
    assert delivery.status == Delivery.Status.FAILED
    assert [a[2] for a in _attempts(delivery)] == ["not_processed"] * 3
    assert delivery.error_message == "Gave up after 3 attempts: requests.exceptions.ConnectionError"


def test_a_delivery_past_its_deadline_is_not_retried(tenant: Tenant, fake_twilio: FakeTwilio, settings: Any) -> None:
    settings.SEND_DEADLINE_SECONDS = 10
    delivery = make_delivery(tenant)
    Delivery.objects.filter(id=delivery.id).update(created_at=timezone.now() - timedelta(seconds=11))
    fake_twilio.plan("429")

    send_delivery.apply(args=(str(delivery.id),))

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED and len(fake_twilio.posts()) == 1
    assert delivery.error_message == "Gave up after 1 attempts: Too Many Requests"


def test_a_claimed_or_finished_delivery_is_never_sent_again(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    intake.run(tenant)
    delivery = Delivery.objects.get()

    # A redelivered task (worker died after the POST, broker delivered again) finds nothing to do.
    assert send_delivery.apply(args=(str(delivery.id),)).get() == "queued"
    Delivery.objects.filter(id=delivery.id).update(status=Delivery.Status.SENDING)
    assert send_delivery.apply(args=(str(delivery.id),)).get() == "sending"

    assert len(fake_twilio.posts()) == 1 and Attempt.objects.count() == 1


def test_an_organisation_without_a_credential_fails_the_delivery_without_calling_twilio(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.plan("429")  # first try is refused, so the delivery waits for a retry...
    intake.run(tenant)
    delivery = Delivery.objects.get()
    services.organization_record_event(oid=tenant.oid, event_name="unsubscribe")
    Delivery.objects.filter(id=delivery.id).update(status=Delivery.Status.PENDING)

    services.delivery_send(delivery_id=str(delivery.id), trigger="retry")  # ...and the org left meanwhile

    delivery.refresh_from_db()
    assert delivery.status == "failed"
    assert delivery.error_message.startswith("No usable Twilio credential for this delivery")


def test_the_backoff_doubles_from_the_base_and_is_capped(settings: Any) -> None:
    settings.SEND_RETRY_BASE_SECONDS, settings.SEND_RETRY_MAX_SECONDS = 2, 20
    delays = [services.retry_delay(n) for n in range(1, 7)]
    for delay, nominal in zip(delays, [2, 4, 8, 16, 20, 20], strict=True):
        assert 0.8 * nominal <= delay <= 1.2 * nominal
