"""Inbound texts an attacker would forge or replay: only a credential read from the organisation's
Secrets Manager vouches for one, `To` must be a sender of the organisation's alerts, and each
MessageSid (each status, each keypress) acts once. Signed exactly as Twilio signs (tests/fakes/twilio.py)."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from django.utils import timezone

from deliveries.models import Credential, Delivery, InboundMessage, OptOut, StatusEvent
from tests.conftest import PUBLIC_BASE_URL, Intake, Tenant, make_delivery, post_webhook
from tests.fakes.twilio import FakeTwilio, signed

pytestmark = pytest.mark.django_db
EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


@pytest.fixture(autouse=True)
def public_url(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL
    settings.ALLOWED_HOSTS = ["testserver", "sms.example.com"]


def _inbound(client: Any, fake: FakeTwilio, tenant: Tenant, body: str, **extra: str) -> Any:
    fields = {"From": tenant.recipient, "To": tenant.sender, "Body": body, "AccountSid": tenant.account_sid, **extra}
    token = fields.pop("token", tenant.auth_token)
    return post_webhook(
        client, fake.inbound_message(f"{PUBLIC_BASE_URL}/twilio/inbound/{tenant.oid}/", token, **fields)
    )


def test_a_credential_pasted_into_a_rule_never_verifies_an_inbound_text(
    client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    # The rule's author holds a second Twilio account and pastes it inline: its texts go out with it...
    attacker_sid, attacker_token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    fake_twilio.add_account(attacker_sid, attacker_token)
    assert intake.run(tenant, body="real alert").status_code == 200
    assert intake.run(tenant, body="bait", secret=f"{attacker_sid}/{attacker_token}").status_code == 200
    real = Delivery.objects.get(body="real alert")
    assert Credential.objects.get(account_sid=attacker_sid).from_secrets_manager is False
    assert Credential.objects.get(account_sid=tenant.account_sid).from_secrets_manager is True

    # ...but a text signed with it, naming its account, acknowledges nothing and opts nobody out.
    ack = _inbound(client, fake_twilio, tenant, real.ack_code, AccountSid=attacker_sid, token=attacker_token)
    stop = _inbound(client, fake_twilio, tenant, "STOP", AccountSid=attacker_sid, token=attacker_token)

    assert (ack.status_code, stop.status_code) == (403, 403)
    real.refresh_from_db()
    assert real.acknowledged_at is None
    assert not InboundMessage.objects.exists() and not OptOut.objects.exists()


def test_a_credential_twilio_refused_never_verifies_an_inbound_text(
    client: Any, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    alert = make_delivery(tenant, ack_code="K7QM")
    Credential.objects.update(rejected_at=timezone.now())

    assert _inbound(client, fake_twilio, tenant, "K7QM").status_code == 403
    alert.refresh_from_db()
    assert alert.acknowledged_at is None and not InboundMessage.objects.exists()


def test_a_credential_once_read_from_the_secrets_manager_stays_trusted_when_pasted_later(
    client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    assert intake.run(tenant, body="from the secret").status_code == 200
    assert intake.run(tenant, body="the same, inline", secret=tenant.credential).status_code == 200

    assert Credential.objects.get().from_secrets_manager is True
    assert _inbound(client, fake_twilio, tenant, "HELP").status_code == 200


def test_a_text_to_a_number_the_organisation_never_sent_from_is_refused(
    client: Any, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    make_delivery(tenant)

    assert _inbound(client, fake_twilio, tenant, "STOP", To="+15005550099").status_code == 403
    assert not InboundMessage.objects.exists() and not OptOut.objects.exists()


def test_a_replayed_stop_after_start_changes_nothing(client: Any, tenant: Tenant, fake_twilio: FakeTwilio) -> None:
    make_delivery(tenant)
    url = f"{PUBLIC_BASE_URL}/twilio/inbound/{tenant.oid}/"
    fields = {"From": tenant.recipient, "To": tenant.sender, "AccountSid": tenant.account_sid}
    stop = fake_twilio.inbound_message(url, tenant.auth_token, Body="STOP", **fields)
    assert post_webhook(client, stop).status_code == 200
    assert _inbound(client, fake_twilio, tenant, "START").status_code == 200

    replayed = post_webhook(client, stop)

    assert replayed.status_code == 200 and replayed.content.decode() == EMPTY
    assert list(OptOut.objects.values_list("cleared_at", flat=True).order_by("id"))[0] is not None
    assert not OptOut.objects.filter(cleared_at__isnull=True).exists()
    assert InboundMessage.objects.count() == 2


def test_a_replayed_question_gets_nothing_back(
    client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    intake.run(tenant, body="Beaconing from wks-9")
    url = f"{PUBLIC_BASE_URL}/twilio/inbound/{tenant.oid}/"
    question = fake_twilio.inbound_message(
        url, tenant.auth_token, From=tenant.recipient, To=tenant.sender, AccountSid=tenant.account_sid, Body="?"
    )
    assert "Waiting:" in post_webhook(client, question).content.decode()

    assert post_webhook(client, question).content.decode() == EMPTY
    assert InboundMessage.objects.count() == 1


def test_an_inbound_text_without_a_message_sid_is_refused(client: Any, tenant: Tenant, fake_twilio: FakeTwilio) -> None:
    make_delivery(tenant)
    url = f"{PUBLIC_BASE_URL}/twilio/inbound/{tenant.oid}/"
    form = {"From": tenant.recipient, "To": tenant.sender, "AccountSid": tenant.account_sid, "Body": "STOP"}

    response = post_webhook(client, signed(url, form, tenant.auth_token))

    assert response.status_code == 400
    assert not InboundMessage.objects.exists() and not OptOut.objects.exists()


def test_a_replayed_status_callback_is_answered_and_changes_nothing(
    client: Any, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    delivery = make_delivery(tenant, status="sent", twilio_sid="SM" + "b" * 32)
    url = f"{PUBLIC_BASE_URL}/twilio/status/{delivery.id}/"
    form = {"MessageSid": delivery.twilio_sid, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    form |= {"AccountSid": tenant.account_sid, "From": tenant.sender, "To": tenant.recipient}
    callback = signed(url, form, tenant.auth_token)
    assert post_webhook(client, callback).status_code == 200
    delivery.refresh_from_db()
    settled = delivery.settled_at

    again = post_webhook(client, callback)

    assert again.status_code == 200 and again.content.decode() == EMPTY
    delivery.refresh_from_db()
    assert (delivery.status, delivery.settled_at) == ("undelivered", settled)
    assert StatusEvent.objects.count() == 1


def test_a_keypress_on_a_call_made_with_a_pasted_credential_acknowledges_nothing(
    client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, django_capture_on_commit_callbacks: Any
) -> None:
    from datetime import timedelta

    from deliveries.models import Escalation
    from deliveries.tasks import escalate

    attacker_sid, attacker_token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    fake_twilio.add_account(attacker_sid, attacker_token)
    callee = "+14155550101"
    inline = f"{attacker_sid}/{attacker_token}"
    assert intake.run(tenant, to=callee, ack_within="1", escalate="call", secret=inline).status_code == 200
    Escalation.objects.update(due_at=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        escalate.apply(args=(str(Escalation.objects.get().id),))
    (played,) = fake_twilio.calls

    response = post_webhook(client, fake_twilio.gather(played, "1", attacker_token))

    assert response.status_code == 403
    assert Delivery.objects.get(channel="sms").acknowledged_at is None and not StatusEvent.objects.exists()
