"""Ambiguous outcomes: look for the message at Twilio, then adopt it or send again once."""

from __future__ import annotations

from typing import Any

import pytest

from deliveries import services
from deliveries.models import Delivery
from deliveries.tasks import send_delivery
from tests.conftest import Tenant, make_delivery
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.django_db


def _trail(delivery: Delivery) -> list[tuple[str, str]]:
    return list(delivery.attempts.order_by("number").values_list("trigger", "outcome"))


@pytest.mark.parametrize("plan", ["create_then_500", "create_then_reset"])
def test_a_message_created_despite_an_ambiguous_answer_is_found_and_adopted(
    tenant: Tenant, fake_twilio: FakeTwilio, plan: str
) -> None:
    fake_twilio.plan(plan)
    delivery = make_delivery(tenant)

    send_delivery.apply(args=(str(delivery.id),))  # eager: the reconcile runs at once

    delivery.refresh_from_db()
    assert _trail(delivery) == [("automatic", "ambiguous"), ("reconcile", "found_on_reconcile")]
    assert len(fake_twilio.posts()) == 1 and len(fake_twilio.messages) == 1
    assert (delivery.status, delivery.twilio_sid) == ("queued", fake_twilio.messages[0]["sid"])
    assert fake_twilio.lookups == [{"To": tenant.recipient, "From": tenant.sender, "PageSize": "50"}]


def test_a_read_timeout_whose_message_exists_is_adopted_not_resent(
    tenant: Tenant, fake_twilio: FakeTwilio, settings: Any
) -> None:
    settings.TWILIO_TIMEOUT_SECONDS = 1
    fake_twilio.plan("hang", seconds=2)
    delivery = make_delivery(tenant)

    send_delivery.apply(args=(str(delivery.id),))

    delivery.refresh_from_db()
    assert _trail(delivery) == [("automatic", "ambiguous"), ("reconcile", "found_on_reconcile")]
    assert len(fake_twilio.messages) == 1 and delivery.twilio_sid == fake_twilio.messages[0]["sid"]


def test_a_message_not_found_after_a_500_is_sent_again(tenant: Tenant, fake_twilio: FakeTwilio) -> None:
    fake_twilio.plan("500")
    delivery = make_delivery(tenant)

    send_delivery.apply(args=(str(delivery.id),))

    delivery.refresh_from_db()
    assert _trail(delivery) == [
        ("automatic", "ambiguous"),
        ("reconcile", "not_found_on_reconcile"),
        ("retry", "accepted"),
    ]
    assert delivery.status == "queued"
    assert len(fake_twilio.posts()) == 2 and len(fake_twilio.messages) == 1


def test_it_stops_sending_again_at_the_attempt_limit(tenant: Tenant, fake_twilio: FakeTwilio, settings: Any) -> None:
    settings.SEND_MAX_ATTEMPTS = 2
    fake_twilio.plan("500")
    fake_twilio.plan("500")
    delivery = make_delivery(tenant)

    send_delivery.apply(args=(str(delivery.id),))

    delivery.refresh_from_db()
    assert _trail(delivery) == [
        ("automatic", "ambiguous"),
        ("reconcile", "not_found_on_reconcile"),
        ("retry", "ambiguous"),
        ("reconcile", "not_found_on_reconcile"),
    ]
    assert delivery.status == "failed"
    assert delivery.error_message == (
        "Twilio's answer was ambiguous and the message was not found at Twilio; gave up after 2 attempts to send it."
    )
    assert len(fake_twilio.posts()) == 2 and fake_twilio.messages == []


def test_at_most_once_never_sends_again_after_an_ambiguous_answer(
    tenant: Tenant, fake_twilio: FakeTwilio, settings: Any
) -> None:
    settings.AMBIGUOUS_POLICY = "at-most-once"
    fake_twilio.plan("500")
    delivery = make_delivery(tenant)

    send_delivery.apply(args=(str(delivery.id),))

    delivery.refresh_from_db()
    assert _trail(delivery) == [("automatic", "ambiguous"), ("reconcile", "not_found_on_reconcile")]
    assert delivery.status == "failed" and "not re-sent (AMBIGUOUS_POLICY=at-most-once)" in delivery.error_message
    assert len(fake_twilio.posts()) == 1


def test_a_failed_lookup_keeps_it_ambiguous_and_tries_again(tenant: Tenant, fake_twilio: FakeTwilio) -> None:
    fake_twilio.plan("create_then_500")
    fake_twilio.lookup_failures = 2
    delivery = make_delivery(tenant)

    send_delivery.apply(args=(str(delivery.id),))

    delivery.refresh_from_db()
    assert _trail(delivery) == [
        ("automatic", "ambiguous"),
        ("reconcile", "reconcile_failed"),
        ("reconcile", "reconcile_failed"),
        ("reconcile", "found_on_reconcile"),
    ]
    assert delivery.status == "queued" and len(fake_twilio.posts()) == 1


def test_a_different_body_to_the_same_number_is_not_taken_for_the_lost_message(
    tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.create(tenant.account_sid, {"To": tenant.recipient, "From": tenant.sender, "Body": "an older alert"})
    fake_twilio.plan("500")
    delivery = make_delivery(tenant, body="the alert that was lost")

    send_delivery.apply(args=(str(delivery.id),))

    delivery.refresh_from_db()
    assert [o for _, o in _trail(delivery)] == ["ambiguous", "not_found_on_reconcile", "accepted"]
    assert delivery.twilio_sid == fake_twilio.messages[1]["sid"]


def test_reconcile_does_nothing_for_a_delivery_that_is_not_ambiguous(tenant: Tenant, fake_twilio: FakeTwilio) -> None:
    delivery = make_delivery(tenant, status=Delivery.Status.QUEUED)

    decision = services.delivery_reconcile(delivery_id=str(delivery.id))

    assert decision.status == "queued" and fake_twilio.lookups == [] and delivery.attempts.count() == 0
