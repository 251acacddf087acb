"""Opt-outs and flood control: what is held back is recorded, never sent, and summarised once."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from deliveries import services
from deliveries.models import Attempt, Delivery, OptOut
from deliveries.services import flood
from tests.conftest import Intake, Tenant, make_delivery, make_user
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.django_db


def _send(delivery: Delivery, trigger: str = "automatic") -> Delivery:
    services.delivery_send(delivery_id=str(delivery.id), trigger=trigger)
    delivery.refresh_from_db()
    return delivery


def test_a_21610_records_an_opt_out_and_later_texts_to_the_pair_are_suppressed_without_calling_twilio(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.plan("error", status=400, code=21610, message="Attempt to send to unsubscribed recipient")
    intake.run(tenant, body="first alert")
    first = Delivery.objects.get()
    assert first.status == "failed" and first.error_code == 21610
    opt_out = OptOut.objects.get()
    assert (opt_out.sender, opt_out.recipient, opt_out.source_delivery_id) == (
        tenant.sender,
        tenant.recipient,
        first.id,
    )

    intake.run(tenant, body="second alert")

    second = Delivery.objects.exclude(id=first.id).get()
    assert (second.status, second.hold) == ("suppressed", "opted_out")
    assert second.status_reason == "The recipient opted out of texts from this sender (Twilio 21610)."
    assert second.attempts.count() == 0 and len(fake_twilio.posts()) == 1


def test_an_opt_out_applies_to_its_sender_only(intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio) -> None:
    org = make_delivery(tenant).organization
    OptOut.objects.create(organization=org, sender="+15005550009", recipient=tenant.recipient)

    intake.run(tenant)

    assert Delivery.objects.filter(status="queued").count() == 1 and len(fake_twilio.posts()) == 1


def test_a_cleared_opt_out_no_longer_suppresses(tenant: Tenant, fake_twilio: FakeTwilio) -> None:
    delivery = make_delivery(tenant)
    OptOut.objects.create(
        organization=delivery.organization,
        sender=tenant.sender,
        recipient=tenant.recipient,
        cleared_at=timezone.now(),
        cleared_reason="recipient texted START",
    )
    assert _send(delivery).status == "queued"


def test_an_identical_text_to_the_same_recipient_within_the_window_is_held_back(
    tenant: Tenant, fake_twilio: FakeTwilio, settings: Any
) -> None:
    settings.FLOOD_DUPLICATE_SECONDS = 300
    first = _send(make_delivery(tenant, body="Ransomware on fs-01"))
    again = _send(make_delivery(tenant, body="Ransomware on fs-01"))
    other_text = _send(make_delivery(tenant, body="Ransomware on fs-02"))

    assert (first.status, again.status, other_text.status) == ("queued", "suppressed", "queued")
    assert again.hold == "duplicate"
    assert [p["Body"] for p in fake_twilio.posts()] == ["Ransomware on fs-01", "Ransomware on fs-02"]


def test_the_per_recipient_limit_holds_back_texts_beyond_it(
    tenant: Tenant, fake_twilio: FakeTwilio, settings: Any
) -> None:
    settings.FLOOD_RECIPIENT_LIMIT, settings.FLOOD_WINDOW_SECONDS = 3, 3600
    results = [_send(make_delivery(tenant, body=f"alert {n}")).status for n in range(5)]
    other_recipient = _send(make_delivery(tenant, body="alert 6", to_number="+15005550002"))

    assert results == ["queued"] * 3 + ["suppressed"] * 2
    assert other_recipient.status == "queued"
    assert Delivery.objects.filter(hold="recipient_limit").count() == 2
    assert len(fake_twilio.posts()) == 4


def test_the_per_organisation_limit_holds_back_texts_beyond_it(
    tenant: Tenant, fake_twilio: FakeTwilio, settings: Any
) -> None:
    settings.FLOOD_ORG_LIMIT = 2
    results = [_send(make_delivery(tenant, body=f"a{n}", to_number=f"+1500555000{n}")).status for n in range(4)]
    assert results == ["queued", "queued", "suppressed", "suppressed"]
    assert set(Delivery.objects.filter(status="suppressed").values_list("hold", flat=True)) == {"org_limit"}


def test_texts_older_than_the_window_do_not_count(tenant: Tenant, fake_twilio: FakeTwilio, settings: Any) -> None:
    settings.FLOOD_RECIPIENT_LIMIT, settings.FLOOD_WINDOW_SECONDS = 1, 600
    make_delivery(tenant, status="delivered", claimed_at=timezone.now() - timedelta(seconds=601))
    assert _send(make_delivery(tenant, body="new")).status == "queued"


def test_an_operators_resend_is_never_held_back(tenant: Tenant, fake_twilio: FakeTwilio, settings: Any) -> None:
    settings.FLOOD_RECIPIENT_LIMIT = 1
    _send(make_delivery(tenant, body="one"))
    held = _send(make_delivery(tenant, body="two"))
    assert held.status == "suppressed"

    Delivery.objects.filter(id=held.id).update(status="pending")
    assert _send(held, trigger="resend").status == "queued"


def test_when_the_window_closes_the_recipient_gets_one_summary_of_what_was_held_back(
    tenant: Tenant, fake_twilio: FakeTwilio, settings: Any
) -> None:
    settings.FLOOD_RECIPIENT_LIMIT, settings.FLOOD_WINDOW_SECONDS = 1, 600
    _send(make_delivery(tenant, body="storm 0"))
    held = [_send(make_delivery(tenant, body=f"storm {n}")) for n in range(1, 4)]
    assert {d.status for d in held} == {"suppressed"}

    assert services.flood_summaries_send(now=timezone.now()) == 0  # window still open
    later = timezone.now() + timedelta(seconds=601)
    assert services.flood_summaries_send(now=later) == 1
    assert services.flood_summaries_send(now=later) == 0  # once only

    summary = Delivery.objects.get(kind="summary")
    assert summary.status == "queued"  # sent (eager), and not held back by the limit it reports on
    assert (
        fake_twilio.posts()[-1]["Body"]
        == "ext-twilio: 3 further alerts were held back by flood control; see the audit desk."
    )
    assert set(Delivery.objects.filter(summary=summary).values_list("id", flat=True)) == {d.id for d in held}


def test_opted_out_recipients_get_no_summary(tenant: Tenant, fake_twilio: FakeTwilio, settings: Any) -> None:
    delivery = make_delivery(tenant)
    OptOut.objects.create(organization=delivery.organization, sender=tenant.sender, recipient=tenant.recipient)
    assert _send(delivery).status == "suppressed"
    assert services.flood_summaries_send(now=timezone.now() + timedelta(days=1)) == 0
    assert fake_twilio.posts() == []


def test_a_busy_twilio_account_makes_the_delivery_wait_its_turn_without_an_attempt(
    tenant: Tenant, fake_twilio: FakeTwilio, settings: Any
) -> None:
    settings.TWILIO_MAX_CONCURRENT_PER_ACCOUNT = 2
    for n in range(2):
        make_delivery(tenant, status="sending", body=f"in flight {n}", to_number=f"+1500555001{n}")
    waiting = make_delivery(tenant, body="waits")

    decision = services.delivery_send(delivery_id=str(waiting.id))

    waiting.refresh_from_db()
    assert waiting.status == "pending" and decision.retry_in is not None and 0.5 <= decision.retry_in <= 1.5
    assert waiting.attempts.count() == 0 and fake_twilio.posts() == []


def test_an_operators_resend_is_never_held_back_but_waits_its_turn_at_a_busy_account(
    tenant: Tenant, fake_twilio: FakeTwilio, settings: Any
) -> None:
    settings.TWILIO_MAX_CONCURRENT_PER_ACCOUNT = 1
    fake_twilio.plan("error", status=400, code=21211, message="Invalid 'To' Phone Number")
    failed = make_delivery(tenant)
    services.delivery_send(delivery_id=str(failed.id))
    in_flight = make_delivery(tenant, status="sending", body="in flight", to_number="+15005550019")
    services.delivery_resend(delivery=Delivery.objects.get(id=failed.id), by=make_user("operator"), reason="retry")

    decision = services.delivery_send(delivery_id=str(failed.id))  # the resend's task, while the account is busy
    failed.refresh_from_db()
    assert failed.status == "pending" and failed.hold == "" and decision.retry_in is not None
    assert failed.attempts.count() == 1 and len(fake_twilio.posts()) == 1

    Delivery.objects.filter(id=in_flight.id).update(status="queued")  # its answer came back
    services.delivery_send(delivery_id=str(failed.id))
    failed.refresh_from_db()
    assert failed.status == "queued"
    assert list(failed.attempts.values_list("trigger", "outcome")) == [
        ("automatic", "permanent"),
        ("resend", "accepted"),
    ]
    assert [p["To"] for p in fake_twilio.posts()] == [tenant.recipient] * 2


@pytest.mark.django_db(transaction=True)
def test_the_account_cap_holds_across_organisations_that_share_a_twilio_account(
    tenant: Tenant, fake_twilio: FakeTwilio, settings: Any
) -> None:
    """Org A's claim is in progress (its transaction not yet committed) on the account org B shares:
    B's claim waits for it and then sees A's send in flight, instead of both passing the cap."""
    settings.TWILIO_MAX_CONCURRENT_PER_ACCOUNT = 1
    other = Tenant(oid=str(uuid.uuid4()), jwt="x", account_sid=tenant.account_sid, auth_token=tenant.auth_token)
    a = make_delivery(tenant, body="org A")
    b = make_delivery(other, body="org B")
    locked, done = threading.Event(), threading.Event()

    def org_a_claiming() -> None:
        with transaction.atomic():
            claiming = Delivery.objects.select_related("credential").get(id=a.id)
            assert flood.hold_for(claiming, Attempt.Trigger.AUTOMATIC, timezone.now()) == flood.Decision()
            Delivery.objects.filter(id=a.id).update(status="sending")
            locked.set()
            done.wait(0.5)  # B tries meanwhile
        connection.close()

    thread = threading.Thread(target=org_a_claiming)
    thread.start()
    assert locked.wait(10)
    decision = services.delivery_send(delivery_id=str(b.id))
    done.set()
    thread.join(10)

    b.refresh_from_db()
    assert decision.retry_in is not None and b.status == "pending" and fake_twilio.posts() == []


def test_texts_twilio_refused_spend_no_budget(tenant: Tenant, fake_twilio: FakeTwilio, settings: Any) -> None:
    """A broken rule (a bogus credential: 20003) or an invalid number must not silence a person."""
    settings.FLOOD_RECIPIENT_LIMIT, settings.FLOOD_ORG_LIMIT = 2, 3
    for _ in range(5):
        fake_twilio.plan("error", status=400, code=21211, message="Invalid 'To' Phone Number")
    refused = [_send(make_delivery(tenant, body=f"refused {n}")).status for n in range(5)]

    assert refused == ["failed"] * 5
    assert _send(make_delivery(tenant, body="the real alert")).status == "queued"
    assert len(fake_twilio.posts()) == 6


def test_calls_have_their_own_limits_per_recipient_and_per_organisation(
    tenant: Tenant, fake_twilio: FakeTwilio, settings: Any
) -> None:
    settings.CALL_RECIPIENT_LIMIT_15_MINUTES, settings.CALL_ORG_LIMIT_HOUR = 3, 5
    settings.FLOOD_RECIPIENT_LIMIT = 1  # texts' limit: calls are not counted against it, nor it against calls
    settings.FLOOD_DUPLICATE_SECONDS = 0

    def call(to: str, n: int) -> Delivery:
        alert = make_delivery(tenant, to_number=to, body=f"alert {to} {n}", status="delivered", sent_at=timezone.now())
        return _send(
            make_delivery(tenant, to_number=to, body=alert.body, channel="voice", escalates=alert, alert=alert.alert)
        )

    first = [call("+14155550101", n) for n in range(4)]  # ordinary phones: calls refuse +1 500 numbers
    others = [call(f"+1415555011{n}", n) for n in range(3)]

    assert [c.status for c in first] == ["queued"] * 3 + ["suppressed"]
    assert (
        first[3].hold == "recipient_calls" and first[3].status_reason == "3 calls to this recipient within 15 minutes."
    )
    assert [c.status for c in others] == ["queued", "queued", "suppressed"]
    assert others[2].hold == "org_calls"
    assert len(fake_twilio.call_posts()) == 5


def test_an_escalation_step_is_never_held_back_by_the_recipients_limit_on_texts(
    tenant: Tenant, fake_twilio: FakeTwilio, settings: Any
) -> None:
    settings.FLOOD_RECIPIENT_LIMIT = 1
    first = _send(make_delivery(tenant, body="first alert to them"))
    alert = make_delivery(tenant, body="walks the list", to_number="+15005550009", status="delivered")
    step = _send(make_delivery(tenant, body="walks the list", escalates=alert, alert=alert.alert))
    ordinary = _send(make_delivery(tenant, body="an ordinary alert"))

    assert (first.status, step.status) == ("queued", "queued")
    assert (ordinary.status, ordinary.hold) == ("suppressed", "recipient_limit")
