"""Calls only ring ordinary phones in allowed countries: refused at intake (400 naming the field) when
the rule asks for a call, and held back at send time (suppressed with its reason, never placed)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from deliveries.models import Delivery, Escalation
from deliveries.observability import metrics
from deliveries.services.calls import call_number_refusal
from deliveries.tasks import escalate as escalate_task
from deliveries.tasks import send_delivery
from tests.conftest import PUBLIC_BASE_URL, Intake, Tenant
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.django_db
US_PHONE, US_PREMIUM, US_TOLL_FREE = "+14155550101", "+19005550100", "+18005550100"
FR_MOBILE, GB_PREMIUM = "+33612345678", "+448712345678"


@pytest.fixture(autouse=True)
def public_url(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL
    settings.ALLOWED_HOSTS = ["testserver", "sms.example.com"]


@pytest.fixture
def commit(django_capture_on_commit_callbacks: Any) -> Callable[[Callable[[], Any]], Any]:
    def run(action: Callable[[], Any]) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return action()

    return run


@pytest.mark.parametrize(
    ("number", "words"),
    [
        (US_PREMIUM, "a premium-rate number"),
        (GB_PREMIUM, "a premium-rate number"),
        ("+15005550001", "a personal (forwarding) number"),
        (US_TOLL_FREE, "a toll-free number"),
        ("+15555550100", "a number of unknown type"),
    ],
)
def test_a_call_to_a_number_that_is_not_an_ordinary_phone_is_refused_at_intake(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, settings: Any, number: str, words: str
) -> None:
    settings.CALL_ALLOWED_COUNTRIES = ["*"]
    response = intake.run(tenant, to=f"{US_PHONE},{number}", ack_within="5", escalate="call")

    assert response.status_code == 400
    assert response.json()["error"] == f"request.data.to: {number} is {words}: calls ring ordinary phones only"
    assert not Delivery.objects.exists() and fake_twilio.posts() == []


def test_the_same_numbers_may_still_be_texted_without_a_call(intake: Intake, tenant: Tenant) -> None:
    assert intake.run(tenant, to="+15005550001", ack_within="5", escalate="next").status_code == 200


def test_calls_reach_only_the_senders_country_unless_allowed(intake: Intake, tenant: Tenant, settings: Any) -> None:
    refused = intake.run(tenant, to=FR_MOBILE, ack_within="5", escalate="call")
    assert refused.status_code == 400
    assert refused.json()["error"] == (
        f"request.data.to: {FR_MOBILE} is in FR; calls may reach only US (CALL_ALLOWED_COUNTRIES)"
    )

    settings.CALL_ALLOWED_COUNTRIES = ["US", "FR"]
    assert intake.run(tenant, to=FR_MOBILE, ack_within="5", escalate="call").status_code == 200
    settings.CALL_ALLOWED_COUNTRIES = ["*"]
    assert call_number_refusal(to=FR_MOBILE, from_="+15005550006") == ""
    assert "premium-rate" in call_number_refusal(to=GB_PREMIUM, from_="+15005550006")


def test_ack_within_is_at_least_a_minute_for_a_call(intake: Intake, tenant: Tenant) -> None:
    too_soon = intake.run(tenant, to=US_PHONE, ack_within="0.5", escalate="call")

    assert too_soon.status_code == 400
    assert too_soon.json()["error"].startswith("request.data.ack_within must be at least 1 minute with")
    assert intake.run(tenant, to=US_PHONE, ack_within="0.5", escalate="next").status_code == 200
    assert intake.run(tenant, to=US_PHONE, ack_within="1", escalate="call").status_code == 200


def test_a_call_step_to_a_number_no_longer_allowed_is_suppressed_and_never_placed(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, settings: Any, commit: Any
) -> None:
    settings.CALL_ALLOWED_COUNTRIES = ["FR"]
    assert intake.run(replace(tenant, recipient=FR_MOBILE), ack_within="5", escalate="call").status_code == 200
    settings.CALL_ALLOWED_COUNTRIES = []  # the operator narrowed the list before the timer fired
    before = metrics.CALLS_REFUSED.labels(reason="country")._value.get()
    Escalation.objects.update(due_at=timezone.now() - timedelta(seconds=1))

    commit(lambda: escalate_task.apply(args=(str(Escalation.objects.get().id),)))

    call = Delivery.objects.get(channel="voice")
    assert (call.status, call.hold) == ("suppressed", "call_refused")
    assert (
        call.status_reason
        == f"Call not placed: {FR_MOBILE} is in FR; calls may reach only US (CALL_ALLOWED_COUNTRIES)."
    )
    assert Escalation.objects.get().state == "fired"
    assert fake_twilio.call_posts() == [] and call.attempts.count() == 0
    assert metrics.CALLS_REFUSED.labels(reason="country")._value.get() == before + 1


def test_the_send_path_never_places_a_call_to_a_refused_number(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, commit: Any
) -> None:
    """A call step made by other means (a resend, an older row) meets the same rule when it is sent."""
    assert intake.run(replace(tenant, recipient=US_PHONE), ack_within="5", escalate="call").status_code == 200
    alert = Delivery.objects.get()
    call = Delivery.objects.create(
        organization=alert.organization,
        credential=alert.credential,
        idempotency_key=f"{alert.idempotency_key}:call",
        from_number=alert.from_number,
        to_number=US_PREMIUM,
        body=alert.body,
        original_length=alert.original_length,
        encoding="gsm7",
        segments=0,
        channel="voice",
        escalates=alert,
    )

    commit(lambda: send_delivery.apply(args=(str(call.id),)))

    call.refresh_from_db()
    assert (call.status, call.hold) == ("suppressed", "call_refused") and "premium-rate" in call.status_reason
    assert fake_twilio.call_posts() == []
