"""Inbound messages: signed by the organisation's Auth Token, stored, and acted on (STOP, START,
HELP, and replies that acknowledge an alert by its code)."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from deliveries.models import Delivery, InboundMessage, OptOut
from deliveries.services.inbound import HELP_REPLY
from tests.conftest import PUBLIC_BASE_URL, Intake, Tenant, make_delivery, post_webhook
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.django_db
OTHER = "+15005550002"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def known(tenant: Tenant) -> Tenant:
    """The organisation as the service knows it after its first alert (credential stored)."""
    make_delivery(tenant)
    return tenant


@pytest.fixture(autouse=True)
def public_url(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL
    settings.ALLOWED_HOSTS = ["testserver", "sms.example.com"]


def inbound(client: Any, fake: FakeTwilio, tenant: Tenant, body: str, token: str | None = None, **extra: str) -> Any:
    """A text from `From` (the tenant's recipient unless given) to the tenant's Twilio number."""
    fields = {"From": tenant.recipient, "To": tenant.sender, "Body": body, "AccountSid": tenant.account_sid, **extra}
    url = f"{PUBLIC_BASE_URL}/twilio/inbound/{tenant.oid}/"
    return post_webhook(client, fake.inbound_message(url, token or tenant.auth_token, **fields))


def alerts(intake: Intake, tenant: Tenant, *bodies: str, to: str | None = None) -> list[Delivery]:
    for body in bodies:
        assert intake.run(tenant, body=body, to=to or tenant.recipient).status_code == 200
    return list(Delivery.objects.filter(body__in=bodies).order_by("created_at"))


def test_a_forged_or_unsigned_inbound_message_gets_403_and_nothing_is_stored(
    client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    alerts(intake, tenant, "Ransomware on fs-01")

    assert inbound(client, fake_twilio, tenant, "STOP", token="not-the-token").status_code == 403
    form = "From=%2B15005550001&To=%2B15005550006&Body=STOP"
    unsigned = client.post(f"/twilio/inbound/{tenant.oid}/", form, content_type=FORM)
    assert unsigned.status_code == 403
    unknown = client.post("/twilio/inbound/no-such-org/", form, content_type=FORM, HTTP_X_TWILIO_SIGNATURE="x")
    assert unknown.status_code == 403
    assert InboundMessage.objects.count() == 0 and OptOut.objects.count() == 0


def test_stop_then_start_from_a_handset_opts_out_and_back_in(
    client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    alerts(intake, tenant, "first alert")

    stop = inbound(client, fake_twilio, tenant, "Stop")
    assert stop.status_code == 200 and stop["Content-Type"].startswith("text/xml")
    opt_out = OptOut.objects.get()
    assert (opt_out.sender, opt_out.recipient, opt_out.cleared_at) == (tenant.sender, tenant.recipient, None)
    assert opt_out.source_inbound == InboundMessage.objects.get(meaning="stop")

    held = alerts(intake, tenant, "second alert")[0]
    held.refresh_from_db()
    assert (held.status, held.hold) == ("suppressed", "opted_out")
    assert len(fake_twilio.posts()) == 1

    assert inbound(client, fake_twilio, tenant, "START").status_code == 200
    opt_out.refresh_from_db()
    assert opt_out.cleared_at is not None and opt_out.cleared_by_inbound == InboundMessage.objects.get(meaning="start")
    assert "Cleared by the recipient" in opt_out.cleared_reason and opt_out.cleared_by is None
    alerts(intake, tenant, "third alert")
    assert len(fake_twilio.posts()) == 2


@pytest.mark.parametrize("word", ["STOPALL", "unsubscribe", "cancel", "End", "QUIT"])
def test_every_opt_out_word_records_an_opt_out(client: Any, known: Tenant, fake_twilio: FakeTwilio, word: str) -> None:
    tenant = known
    assert inbound(client, fake_twilio, tenant, word).status_code == 200
    assert OptOut.objects.filter(recipient=tenant.recipient, cleared_at__isnull=True).count() == 1


def test_twilios_opt_out_type_decides_and_covers_the_messaging_service(
    client: Any, known: Tenant, fake_twilio: FakeTwilio
) -> None:
    tenant = known
    service = "MG" + "c" * 32
    inbound(client, fake_twilio, tenant, "arrête", OptOutType="STOP", MessagingServiceSid=service)
    assert set(OptOut.objects.values_list("sender", flat=True)) == {tenant.sender, service}


def test_help_gets_a_short_answer_naming_the_service(client: Any, known: Tenant, fake_twilio: FakeTwilio) -> None:
    tenant = known
    response = inbound(client, fake_twilio, tenant, "help")
    assert response.status_code == 200
    assert response.content.decode().endswith(f"<Message>{HELP_REPLY}</Message></Response>")
    assert "ext-twilio" in HELP_REPLY and len(HELP_REPLY) <= 160
    assert InboundMessage.objects.get().meaning == "help"


def test_a_reply_acknowledges_the_right_alert_among_several_outstanding(
    client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    first, second, third = alerts(intake, tenant, "alert one", "alert two", "alert three")
    assert len({first.ack_code, second.ack_code, third.ack_code}) == 3

    response = inbound(client, fake_twilio, tenant, f"ack {second.ack_code.lower()}")

    assert response.status_code == 200
    assert "<Message>Acknowledged: alert two</Message>" in response.content.decode()
    for d in (first, second, third):
        d.refresh_from_db()
    assert [d.acknowledged_at is not None for d in (first, second, third)] == [False, True, False]
    assert (second.acknowledged_by, second.ack_channel) == (tenant.recipient, "sms")
    message = InboundMessage.objects.get()
    assert (message.meaning, message.acknowledged, message.payload["Body"]) == (
        "ack",
        second,
        f"ack {second.ack_code.lower()}",
    )


def test_a_reply_without_a_valid_code_lists_what_is_outstanding(
    client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    (alert,) = alerts(intake, tenant, "Beaconing from wks-9")

    response = inbound(client, fake_twilio, tenant, "on it")

    assert f"Waiting: {alert.ack_code} (Beaconing from wks-9)" in response.content.decode()
    alert.refresh_from_db()
    assert alert.acknowledged_at is None and InboundMessage.objects.get().meaning == "unmatched"
    inbound(client, fake_twilio, tenant, alert.ack_code)
    again = inbound(client, fake_twilio, tenant, alert.ack_code)  # a second reply, not a guess
    assert "that alert was acknowledged already" in again.content.decode()
    assert InboundMessage.objects.filter(wrong_codes__gt=0).count() == 0


def test_another_recipients_code_acknowledges_nothing(
    client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    (theirs,) = alerts(intake, tenant, "Lateral movement", to=OTHER)
    alerts(intake, tenant, "an alert to the replying number, since acknowledged", to=tenant.recipient)
    Delivery.objects.filter(to_number=tenant.recipient).update(acknowledged_at=timezone.now())

    response = inbound(client, fake_twilio, tenant, theirs.ack_code)  # from tenant.recipient, not OTHER

    theirs.refresh_from_db()
    assert theirs.acknowledged_at is None
    assert "no alert is waiting" in response.content.decode()


def test_acknowledgement_codes_can_be_turned_off_by_the_configuration(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    from tests.conftest import run_block

    block = run_block(tenant, body="plain alert")
    block["config"] = {"ack_by_reply": False}
    assert intake.send("request", block).status_code == 200

    assert Delivery.objects.get().ack_code == ""
    assert fake_twilio.posts()[0]["Body"] == "plain alert"


def test_the_others_can_be_told_who_acknowledged(
    client: Any,
    intake: Intake,
    tenant: Tenant,
    fake_twilio: FakeTwilio,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from tests.conftest import run_block

    block = run_block(tenant, body="Domain admin added", to=[tenant.recipient, OTHER])
    block["config"] = {"ack_notify_others": True}
    assert intake.send("request", block).status_code == 200
    mine = Delivery.objects.get(to_number=tenant.recipient)

    with django_capture_on_commit_callbacks(execute=True):
        inbound(client, fake_twilio, tenant, mine.ack_code)

    notice = Delivery.objects.get(kind="notice")
    assert notice.to_number == OTHER and notice.status == "queued"
    assert fake_twilio.posts()[-1]["Body"].startswith(f"ext-twilio: acknowledged by {tenant.recipient} at ")


def test_conf_validation_reports_the_inbound_webhook_url(intake: Intake, tenant: Tenant) -> None:
    block = {"org": {"oid": tenant.oid, "jwt": tenant.jwt, "ident": "x"}, "conf": {"ack_by_reply": True}}
    response = intake.send("conf_validation", block)
    assert response.status_code == 200
    assert response.json()["data"] == {"inbound_webhook_url": f"{PUBLIC_BASE_URL}/twilio/inbound/{tenant.oid}/"}
    block["conf"] = {"ack_by_reply": "sometimes"}
    refused = intake.send("conf_validation", block)
    assert refused.status_code == 400 and "ack_by_reply must be true or false" in refused.json()["error"]
