"""delivery_resend and opt_out_clear: the services behind the audit desk's write actions."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from deliveries import services
from deliveries.models import Credential, Delivery, OptOut
from tests.conftest import Tenant, make_delivery, make_user
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.django_db


def _failed_delivery(tenant: Tenant, fake_twilio: FakeTwilio) -> Delivery:
    fake_twilio.plan("error", status=400, code=21211, message="Invalid 'To' Phone Number")
    delivery = make_delivery(tenant)
    services.delivery_send(delivery_id=str(delivery.id))
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED
    return delivery


def test_a_resend_sends_again_as_a_new_attempt_with_the_operator_and_reason(
    tenant: Tenant, fake_twilio: FakeTwilio, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    delivery = _failed_delivery(tenant, fake_twilio)
    first = delivery.attempts.get()
    first_values = Delivery.objects.filter(pk=delivery.pk).values("attempts__outcome", "attempts__finished_at")[0]
    operator = make_user("operator")

    with django_capture_on_commit_callbacks(execute=True):
        services.delivery_resend(delivery=delivery, by=operator, reason="  number fixed in the rule  ")

    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.QUEUED and delivery.settled_at is None
    assert (delivery.last_trigger, delivery.last_outcome) == ("resend", "accepted")
    assert list(delivery.attempts.values_list("number", "trigger", "triggered_by", "reason", "outcome")) == [
        (1, "automatic", None, "", "permanent"),
        (2, "resend", operator.pk, "number fixed in the rule", "accepted"),
    ]
    first.refresh_from_db()
    assert (first.outcome, first.finished_at) == (
        first_values["attempts__outcome"],
        first_values["attempts__finished_at"],
    )
    assert [(p["To"], p["Body"]) for p in fake_twilio.posts()] == [(tenant.recipient, "Detection: test")] * 2


def test_a_resend_is_enqueued_only_when_the_transaction_commits(
    tenant: Tenant, fake_twilio: FakeTwilio, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    delivery = _failed_delivery(tenant, fake_twilio)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.delivery_resend(delivery=delivery, by=make_user("operator"), reason="retry")

    assert Delivery.objects.get(pk=delivery.pk).status == Delivery.Status.PENDING
    assert len(callbacks) == 1 and len(fake_twilio.posts()) == 1


@pytest.mark.parametrize("status", ["pending", "sending"])
def test_an_in_flight_delivery_is_not_resent(tenant: Tenant, fake_twilio: FakeTwilio, status: str) -> None:
    delivery = make_delivery(tenant, status=status)
    with pytest.raises(services.Refused, match=f"it is {status}: a send is already on its way"):
        services.delivery_resend(delivery=delivery, by=make_user("operator"), reason="again")
    assert Delivery.objects.get(pk=delivery.pk).status == status and fake_twilio.posts() == []


def test_a_resend_of_an_unsubscribed_organisation_is_refused(tenant: Tenant, fake_twilio: FakeTwilio) -> None:
    delivery = _failed_delivery(tenant, fake_twilio)
    services.organization_record_event(oid=tenant.oid, event_name="unsubscribe")
    delivery.refresh_from_db()

    with pytest.raises(services.Refused, match=f"organisation {tenant.oid} has unsubscribed"):
        services.delivery_resend(delivery=delivery, by=make_user("operator"), reason="again")
    assert Delivery.objects.get(pk=delivery.pk).status == "failed" and delivery.attempts.count() == 1


def test_a_resend_without_a_stored_credential_is_refused(tenant: Tenant, fake_twilio: FakeTwilio) -> None:
    delivery = _failed_delivery(tenant, fake_twilio)
    Credential.objects.filter(organization__oid=tenant.oid).update(auth_token="")
    delivery.refresh_from_db()

    with pytest.raises(services.Refused, match="no Twilio credential is stored"):
        services.delivery_resend(delivery=delivery, by=make_user("operator"), reason="again")
    assert Delivery.objects.get(pk=delivery.pk).status == "failed"


def test_a_resend_needs_a_reason(tenant: Tenant, fake_twilio: FakeTwilio) -> None:
    delivery = _failed_delivery(tenant, fake_twilio)
    with pytest.raises(services.Refused, match="a reason is required"):
        services.delivery_resend(delivery=delivery, by=make_user("operator"), reason="   ")
    assert Delivery.objects.get(pk=delivery.pk).status == "failed"


def test_resending_a_delivered_message_needs_the_explicit_confirmation(
    tenant: Tenant, fake_twilio: FakeTwilio, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    delivery = make_delivery(tenant, status="delivered", attempt_count=0)
    operator = make_user("operator")
    with pytest.raises(services.Refused, match="Twilio reported it delivered"):
        services.delivery_resend(delivery=delivery, by=operator, reason="they lost the phone")
    assert fake_twilio.posts() == []

    with django_capture_on_commit_callbacks(execute=True):
        services.delivery_resend(delivery=delivery, by=operator, reason="they lost the phone", unusual_confirmed=True)
    assert len(fake_twilio.posts()) == 1
    assert Delivery.objects.get(pk=delivery.pk).status == "queued"


def test_resending_to_an_opted_out_recipient_needs_the_explicit_confirmation(
    tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    delivery = make_delivery(tenant, status="suppressed")
    OptOut.objects.create(organization=delivery.organization, sender=tenant.sender, recipient=tenant.recipient)

    with pytest.raises(services.Refused, match="opted out of texts from"):
        services.delivery_resend(delivery=delivery, by=make_user("operator"), reason="test")
    assert Delivery.objects.get(pk=delivery.pk).status == "suppressed" and fake_twilio.posts() == []


def test_clearing_an_opt_out_keeps_it_with_who_and_why(tenant: Tenant) -> None:
    delivery = make_delivery(tenant)
    opt_out = OptOut.objects.create(
        organization=delivery.organization, sender=tenant.sender, recipient=tenant.recipient
    )
    operator = make_user("operator")

    services.opt_out_clear(opt_out=opt_out, by=operator, reason="texted START on 26 Nov")

    opt_out.refresh_from_db()
    assert (opt_out.cleared_by, opt_out.cleared_reason) == (operator, "texted START on 26 Nov")
    assert opt_out.cleared_at is not None and OptOut.objects.count() == 1
    with pytest.raises(services.Refused, match="already cleared"):
        services.opt_out_clear(opt_out=opt_out, by=operator, reason="again")
    with pytest.raises(services.Refused, match="a reason is required"):
        services.opt_out_clear(opt_out=opt_out, by=operator, reason="")


@pytest.mark.parametrize(
    ("status", "why"),
    [
        ("ambiguous", "Twilio's answer was ambiguous"),
        ("queued", "Twilio accepted it (queued)"),
        ("sent", "Twilio accepted it (sent)"),
    ],
)
def test_resending_what_twilio_may_still_deliver_needs_the_explicit_confirmation(
    tenant: Tenant, fake_twilio: FakeTwilio, status: str, why: str
) -> None:
    delivery = make_delivery(tenant, status=status)
    with pytest.raises(services.Refused, match=re.escape(why)):
        services.delivery_resend(delivery=delivery, by=make_user("operator"), reason="again")
    assert Delivery.objects.get(pk=delivery.pk).status == status and fake_twilio.posts() == []


def test_the_migration_fills_the_last_trigger_and_outcome_of_earlier_deliveries(
    tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    import importlib

    from django.apps import apps

    fake_twilio.plan("429")
    delivery = make_delivery(tenant)
    services.delivery_send(delivery_id=str(delivery.id))
    services.delivery_send(delivery_id=str(delivery.id), trigger="retry")
    never_sent = make_delivery(tenant, to_number="+15005550099")
    Delivery.objects.update(last_trigger="", last_outcome="")

    importlib.import_module("deliveries.migrations.0005_delivery_last_attempt_backfill").backfill(apps, None)

    assert Delivery.objects.filter(pk=delivery.pk).values_list("last_trigger", "last_outcome").get() == (
        "retry",
        "accepted",
    )
    assert Delivery.objects.filter(pk=never_sent.pk).values_list("last_trigger", "last_outcome").get() == ("", "")


def test_a_resend_the_broker_could_not_take_keeps_its_operator_and_reason_when_the_sweeper_sends_it(
    tenant: Tenant,
    fake_twilio: FakeTwilio,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    delivery = _failed_delivery(tenant, fake_twilio)
    operator = make_user("operator")
    with monkeypatch.context() as patch, django_capture_on_commit_callbacks(execute=True):
        patch.setattr("deliveries.tasks.send_delivery.apply_async", lambda *a, **k: (_ for _ in ()).throw(OSError()))
        services.delivery_resend(delivery=delivery, by=operator, reason="carrier outage is over")
    assert Delivery.objects.get(pk=delivery.pk).status == "pending"

    Delivery.objects.filter(pk=delivery.pk).update(due_at=timezone.now() - timedelta(hours=1))
    assert services.deliveries_sweep().requeued == 1

    resend = Delivery.objects.get(pk=delivery.pk).attempts.order_by("number").last()
    assert resend is not None
    assert (resend.trigger, resend.triggered_by, resend.reason) == ("resend", operator, "carrier outage is over")
    assert Delivery.objects.get(pk=delivery.pk).status == "queued" and len(fake_twilio.posts()) == 2
