"""Replies, acknowledgement and escalation end to end: the intake takes signed run calls, a real
Celery worker on the configured broker sends texts and places calls (escalation timers are its
countdown tasks), and the fake Twilio plays the handset: inbound texts, call status callbacks and
the <Gather> keypress, each signed as Twilio signs them. These are the issue's checked scenarios."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from deliveries.models import Delivery, Escalation, OptOut
from tests.conftest import PUBLIC_BASE_URL, Intake, Tenant, post_webhook, wait_for
from tests.fakes.twilio import FakeTwilio

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
SECOND, THIRD = "+15005550002", "+15005550003"
CALLABLE = "+14155550101"
QUICK = "0.05"  # ack_within in minutes (3 s): the same countdown path as 5 minutes


@pytest.fixture
def tenant(tenant: Tenant) -> Tenant:
    """Calls ring ordinary phones only: the recipient is a fixed or mobile number in the sender's country
    (the tenant's usual +1 500 number is a personal, forwarding number, which calls refuse)."""
    return replace(tenant, recipient=CALLABLE)


@pytest.fixture(autouse=True)
def public_url(settings: Any) -> None:
    # A call needs ack_within of a minute or more (CALL_MIN_ACK_WITHIN_SECONDS); the intake runs here, so
    # these tests lower it to keep the same countdown path to seconds.
    settings.CALL_MIN_ACK_WITHIN_SECONDS = 0
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL  # as the worker has it (tests/conftest.py)
    settings.ALLOWED_HOSTS = ["testserver", "sms.example.com"]


def _reply(client: Any, fake: FakeTwilio, tenant: Tenant, body: str, from_: str | None = None) -> Any:
    url = f"{PUBLIC_BASE_URL}/twilio/inbound/{tenant.oid}/"
    webhook = fake.inbound_message(url, tenant.auth_token, From=from_ or tenant.recipient, To=tenant.sender, Body=body)
    return post_webhook(client, webhook)


def _timers_come_due_and_the_sweeper_passes() -> None:
    """What could still send or call after a test's last step: every timer's countdown task, run now as
    if its moment had come (a redelivered task does the same), then a whole pass of the sweeper."""
    from datetime import timedelta

    from django.utils import timezone

    from deliveries import services

    Escalation.objects.update(due_at=timezone.now() - timedelta(seconds=2))
    for timer_id in Escalation.objects.values_list("id", flat=True):
        services.escalation_fire(timer_id=str(timer_id))
    services.deliveries_sweep()


def _sent(fake: FakeTwilio, count: int) -> list[dict[str, str]]:
    wait_for(lambda: len(fake.message_posts()) >= count)
    return fake.message_posts()


def test_a_reply_acknowledges_the_right_alert_among_several_and_stops_its_escalation(
    celery_worker: Any, client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    for n in range(3):
        assert intake.run(tenant, body=f"alert {n}", ack_within="1", escalate="call").status_code == 200
    posts = _sent(fake_twilio, 3)
    wait_for(lambda: Delivery.objects.filter(status="queued").count() == 3)
    middle = Delivery.objects.get(body="alert 1")
    assert any(p["Body"] == f"alert 1\nReply {middle.ack_code} to acknowledge" for p in posts)

    answer = _reply(client, fake_twilio, tenant, middle.ack_code)

    assert "Acknowledged: alert 1" in answer.content.decode()
    assert list(Delivery.objects.filter(acknowledged_at__isnull=False).values_list("body", flat=True)) == ["alert 1"]
    assert Escalation.objects.get(alert=middle).state == "cancelled"
    assert Escalation.objects.filter(state="waiting").count() == 2


def test_stop_then_start_from_a_handset(
    celery_worker: Any, client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    intake.run(tenant, body="first")
    _sent(fake_twilio, 1)
    assert _reply(client, fake_twilio, tenant, "STOP").status_code == 200

    intake.run(tenant, body="second")
    wait_for(lambda: Delivery.objects.filter(body="second", status="suppressed", hold="opted_out").exists())
    assert _reply(client, fake_twilio, tenant, "START").status_code == 200
    assert OptOut.objects.get().cleared_by_inbound is not None

    intake.run(tenant, body="third")
    assert [p["Body"].split("\n")[0] for p in _sent(fake_twilio, 2)] == ["first", "third"]


def test_another_recipients_code_is_refused_and_a_forged_reply_gets_403(
    celery_worker: Any, client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    intake.run(tenant, body="for the second person", to=SECOND)
    intake.run(tenant, body="mine", to=tenant.recipient)
    _sent(fake_twilio, 2)
    theirs = Delivery.objects.get(to_number=SECOND)

    answer = _reply(client, fake_twilio, tenant, theirs.ack_code).content.decode()
    assert "that is not the code of an alert waiting for you" in answer and "(mine)" in answer
    forged = fake_twilio.inbound_message(
        f"{PUBLIC_BASE_URL}/twilio/inbound/{tenant.oid}/",
        "guessed",
        From=SECOND,
        To=tenant.sender,
        Body=theirs.ack_code,
    )
    assert post_webhook(client, forged).status_code == 403
    assert not Delivery.objects.filter(acknowledged_at__isnull=False).exists()


def test_an_unacknowledged_alert_produces_exactly_one_call_and_a_keypress_acknowledges_it(
    celery_worker: Any, client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    intake.run(tenant, body="Ransomware on fs-01", ack_within=QUICK, escalate="call")

    call = wait_for(lambda: Delivery.objects.filter(channel="voice", status="queued").first(), timeout=45)
    assert Escalation.objects.get().state == "fired"
    _timers_come_due_and_the_sweeper_passes()  # a duplicate timer task or a sweep would place a second call
    assert len(fake_twilio.call_posts()) == 1 and call.escalates.body == "Ransomware on fs-01"
    played = fake_twilio.calls[0]
    for status in ("ringing", "in-progress"):
        post_webhook(client, fake_twilio.call_status(played, status, tenant.auth_token))

    answer = post_webhook(client, fake_twilio.gather(played, "1", tenant.auth_token))

    assert "Acknowledged" in answer.content.decode()
    alert = Delivery.objects.get(channel="sms")
    assert (alert.acknowledged_by, alert.ack_channel) == (tenant.recipient, "voice")
    assert Delivery.objects.get(channel="voice").status == "sent"


def test_next_reaches_the_second_person_only_when_the_first_does_not_acknowledge(
    celery_worker: Any, client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    intake.run(
        tenant, body="walks the list", to=f"{tenant.recipient},{SECOND},{THIRD}", ack_within=QUICK, escalate="next"
    )
    assert [p["To"] for p in _sent(fake_twilio, 1)] == [tenant.recipient]

    second = wait_for(lambda: Delivery.objects.filter(to_number=SECOND, status="queued").first(), timeout=45)
    assert [p["To"] for p in fake_twilio.message_posts()] == [tenant.recipient, SECOND]
    _reply(client, fake_twilio, tenant, second.ack_code, from_=SECOND)

    _timers_come_due_and_the_sweeper_passes()  # past the second's ack_within: nothing more happens
    assert [p["To"] for p in fake_twilio.message_posts()] == [tenant.recipient, SECOND]
    assert not Delivery.objects.filter(to_number=THIRD).exists()


def test_nothing_is_sent_or_called_after_an_acknowledgement(
    celery_worker: Any, client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    intake.run(tenant, body="called unless acknowledged", ack_within=QUICK, escalate="call")
    intake.run(
        tenant,
        body="texted next unless acknowledged",
        to=f"{tenant.recipient},{SECOND}",
        ack_within=QUICK,
        escalate="next",
    )
    _sent(fake_twilio, 2)
    for alert in Delivery.objects.all():
        _reply(client, fake_twilio, tenant, alert.ack_code)

    _timers_come_due_and_the_sweeper_passes()  # both timers' moments come
    assert len(fake_twilio.message_posts()) == 2 and fake_twilio.call_posts() == []
    assert set(Escalation.objects.values_list("state", flat=True)) == {"cancelled"}


def test_a_lost_timer_is_fired_by_the_sweeper_and_an_ambiguous_call_is_never_placed_twice(
    celery_worker: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, settings: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from deliveries import services

    intake.run(tenant, body="timer lost with the broker", ack_within="10", escalate="call")
    _sent(fake_twilio, 1)
    # Its countdown task is 10 minutes away; pretend it was lost and the moment has long passed.
    Escalation.objects.update(due_at=timezone.now() - timedelta(seconds=settings.SWEEP_PENDING_SECONDS + 5))
    fake_twilio.plan("500")  # the call's POST: nothing created, an ambiguous answer

    services.deliveries_sweep()

    call = wait_for(lambda: Delivery.objects.filter(channel="voice", status="failed").first(), timeout=45)
    assert list(call.attempts.values_list("trigger", "outcome")) == [
        ("automatic", "ambiguous"),
        ("reconcile", "not_found_on_reconcile"),
    ]
    _timers_come_due_and_the_sweeper_passes()
    assert len(fake_twilio.call_posts()) == 1 and Escalation.objects.get().state == "fired"


def test_a_persons_alerts_due_a_call_together_ring_one_call_and_one_key_acknowledges_them_all(
    celery_worker: Any, client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    # The second is due within a minute of the first: the first's call reads both out. (Two timers due
    # at the same instant in two worker threads each leave the other's locked row alone, and ring apart.)
    intake.run(tenant, body="Ransomware on fs-01", ack_within=QUICK, escalate="call")
    intake.run(tenant, body="Beaconing from wks-9", ack_within="0.5", escalate="call")

    call = wait_for(lambda: Delivery.objects.filter(channel="voice", status="queued").first(), timeout=45)
    wait_for(lambda: not Escalation.objects.filter(state="waiting").exists())
    _timers_come_due_and_the_sweeper_passes()  # both timers' tasks, again: a second call would be placed
    (placed,) = fake_twilio.call_posts()
    assert "2 security alerts waiting" in placed["Twiml"] and "Press 1 to acknowledge all two." in placed["Twiml"]
    assert set(Escalation.objects.values_list("state", "result")) == {("fired", call.id)}

    answer = post_webhook(client, fake_twilio.gather(fake_twilio.calls[0], "1", tenant.auth_token))

    assert "Acknowledged" in answer.content.decode()
    assert Delivery.objects.filter(channel="sms", acknowledged_at__isnull=False, ack_channel="voice").count() == 2
