"""Twilio status callbacks: signed, stored, forward-only, and tied to the row by our own id."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from deliveries.models import Delivery, OptOut, StatusEvent
from tests.conftest import Intake, Tenant, make_delivery
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.django_db
PUBLIC = "https://sms.example.com"
FORM = "application/x-www-form-urlencoded"  # as Twilio posts callbacks


@pytest.fixture(autouse=True)
def public_url(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = PUBLIC
    settings.ALLOWED_HOSTS = ["testserver", "sms.example.com"]


def _callback(
    client: Any,
    tenant: Tenant,
    delivery_id: Any,
    status: str,
    token: str | None = None,
    url: str | None = None,
    **extra: str,
) -> Any:
    """A callback shaped like Twilio's, signed like Twilio signs it (over the public URL)."""
    params = {
        "MessageSid": extra.pop("MessageSid", "SM" + "a" * 32),
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": tenant.account_sid,
        "From": tenant.sender,
        "To": tenant.recipient,
        "ApiVersion": "2010-04-01",
        **extra,
    }
    path = f"/twilio/status/{delivery_id}/"
    signature = RequestValidator(token or tenant.auth_token).compute_signature(url or PUBLIC + path, params)
    return client.post(path, urlencode(params), content_type=FORM, HTTP_X_TWILIO_SIGNATURE=signature)


def test_every_send_asks_for_callbacks_at_the_deliverys_own_url(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    intake.run(tenant)

    delivery = Delivery.objects.get()
    assert fake_twilio.posts()[0]["StatusCallback"] == f"{PUBLIC}/twilio/status/{delivery.id}/"


def test_without_a_public_url_no_callback_is_asked_for(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, settings: Any
) -> None:
    settings.PUBLIC_BASE_URL = ""
    intake.run(tenant)
    assert "StatusCallback" not in fake_twilio.posts()[0]


def test_a_valid_callback_is_stored_whole_and_moves_the_status_forward(client: Any, tenant: Tenant) -> None:
    delivery = make_delivery(tenant, status="queued", twilio_sid="SM" + "a" * 32)

    response = _callback(client, tenant, delivery.id, "delivered", RawDlrDoneDate="2611261420", NewField="kept")

    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.status == "delivered" and delivery.settled_at is not None
    event = StatusEvent.objects.get()
    assert (event.message_status, event.message_sid) == ("delivered", "SM" + "a" * 32)
    assert event.payload["RawDlrDoneDate"] == "2611261420" and event.payload["NewField"] == "kept"


def test_callbacks_out_of_order_and_repeated_never_move_a_final_status_back(client: Any, tenant: Tenant) -> None:
    delivery = make_delivery(tenant, status="queued", twilio_sid="SM" + "a" * 32)

    for status in ["sent", "delivered", "sending", "sent", "delivered", "queued"]:
        assert _callback(client, tenant, delivery.id, status).status_code == 200

    delivery.refresh_from_db()
    assert delivery.status == "delivered"
    # Each status kept once as evidence; a repeat (Twilio's retry, or a replay) is answered and changes nothing.
    events = StatusEvent.objects.filter(delivery=delivery).order_by("id")
    assert list(events.values_list("message_status", flat=True)) == ["sent", "delivered", "sending", "queued"]


def test_an_undelivered_callback_keeps_the_error_code_with_its_meaning(client: Any, tenant: Tenant) -> None:
    delivery = make_delivery(tenant, status="sent")

    _callback(client, tenant, delivery.id, "undelivered", ErrorCode="30003")

    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code) == ("undelivered", 30003)
    assert delivery.error_message == "Unreachable handset (switched off or out of coverage; may succeed later)"
    assert StatusEvent.objects.get().error_code == 30003


def test_a_callback_adopts_the_sid_of_a_claim_whose_worker_died_before_saving_it(client: Any, tenant: Tenant) -> None:
    delivery = make_delivery(tenant, status="sending")

    _callback(client, tenant, delivery.id, "sent", MessageSid="SM" + "b" * 32)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.twilio_sid) == ("sent", "SM" + "b" * 32)


@pytest.mark.parametrize(
    "forgery",
    [
        {"token": "f" * 32},  # signed with another token
        {"url": "http://testserver/twilio/status/{id}/"},  # signed over the internal URL, not the public one
    ],
)
def test_a_forged_callback_gets_403_and_nothing_is_stored(client: Any, tenant: Tenant, forgery: dict[str, str]) -> None:
    delivery = make_delivery(tenant, status="queued")
    if "url" in forgery:
        forgery = {"url": forgery["url"].format(id=delivery.id)}

    response = _callback(client, tenant, delivery.id, "delivered", **forgery)

    assert response.status_code == 403
    delivery.refresh_from_db()
    assert delivery.status == "queued" and not StatusEvent.objects.exists()


def test_an_unsigned_callback_gets_403(client: Any, tenant: Tenant) -> None:
    delivery = make_delivery(tenant, status="queued")
    response = client.post(f"/twilio/status/{delivery.id}/", "MessageStatus=delivered", content_type=FORM)
    assert response.status_code == 403 and not StatusEvent.objects.exists()


def test_a_callback_for_an_unknown_id_gets_200_and_nothing_is_stored(client: Any, tenant: Tenant) -> None:
    response = _callback(client, tenant, uuid.uuid4(), "delivered")
    assert response.status_code == 200 and not StatusEvent.objects.exists()


def test_a_21610_callback_records_an_opt_out(client: Any, tenant: Tenant) -> None:
    delivery = make_delivery(tenant, status="sent")
    _callback(client, tenant, delivery.id, "failed", ErrorCode="21610")
    assert OptOut.objects.filter(sender=tenant.sender, recipient=tenant.recipient, cleared_at__isnull=True).count() == 1


def test_behind_a_proxy_the_signature_is_checked_over_the_configured_public_url(client: Any, tenant: Tenant) -> None:
    delivery = make_delivery(tenant, status="queued")
    # The proxy forwarded it as plain HTTP to "testserver"; Twilio signed https://sms.example.com/...
    response = _callback(client, tenant, delivery.id, "sent", url=f"{PUBLIC}/twilio/status/{delivery.id}/")
    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.status == "sent"
