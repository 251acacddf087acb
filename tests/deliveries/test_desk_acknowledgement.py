"""The desk shows acknowledgement: on the delivery page's timeline, as a list filter with the time
to acknowledge, and at a glance; the search finds a number typed without its country code."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from deliveries.models import Escalation, InboundMessage
from tests.conftest import Tenant, make_delivery, make_user

pytestmark = pytest.mark.django_db
CHANGELIST = "admin:deliveries_delivery_changelist"


def _as(role: str) -> Client:
    client = Client()
    client.force_login(make_user(role))
    return client


def _acknowledged(tenant: Tenant, **fields: Any) -> Any:
    delivery = make_delivery(tenant, ack_code="4K7", status="delivered", **fields)
    delivery.acknowledged_at = delivery.created_at + timedelta(seconds=125)
    delivery.acknowledged_by, delivery.ack_channel = delivery.to_number, "voice"
    delivery.save()
    return delivery


def test_the_list_filters_acknowledged_and_not_and_shows_the_time_to_acknowledge(tenant: Tenant) -> None:
    acked = _acknowledged(tenant, to_number="+15005550011")
    waiting = make_delivery(tenant, ack_code="9QX", to_number="+15005550012", status="delivered")
    make_delivery(tenant, to_number="+15005550013")  # no code: neither
    client = _as("soc_lead")

    def listed(value: str) -> list[Any]:
        response = client.get(reverse(CHANGELIST), {"acknowledged": value})
        return [d.pk for d in response.context["cl"].result_list]

    assert listed("yes") == [acked.pk] and listed("no") == [waiting.pk]
    html = " ".join(client.get(reverse(CHANGELIST)).content.decode().split())
    assert "2 min 5 s ☎" in html and "not yet" in html


def test_the_delivery_page_timeline_shows_the_acknowledgement_and_the_escalation(tenant: Tenant) -> None:
    acked = _acknowledged(tenant)
    Escalation.objects.create(
        alert=acked, action="call", ack_within_seconds=300, due_at=acked.created_at, state="cancelled"
    )
    html = " ".join(
        _as("soc_lead").get(reverse("admin:deliveries_delivery_change", args=[acked.pk])).content.decode().split()
    )
    assert f"acknowledged by {acked.to_number} (Voice call), 125 s after the alert" in html
    assert "Call the same recipient if not acknowledged within 300 s: Cancelled (acknowledged)" in html


def test_the_index_shows_what_is_unacknowledged_linking_to_the_list(tenant: Tenant) -> None:
    waiting = make_delivery(tenant, ack_code="9QX", status="delivered")
    _acknowledged(tenant)
    client = _as("soc_lead")
    response = client.get(reverse("admin:index"))
    assert response.context["glance"].unacknowledged == 1
    html = response.content.decode()
    start = html.index('id="glance-unacknowledged" href="') + len('id="glance-unacknowledged" href="')
    link = html[start : html.index('"', start)].replace("&amp;", "&")
    assert [d.pk for d in client.get(link).context["cl"].result_list] == [waiting.pk]


@pytest.mark.parametrize("typed", ["(415) 555-0141", "415-555-0141", "415 555 0141"])
def test_the_search_finds_a_number_typed_without_its_country_code(typed: str, tenant: Tenant) -> None:
    target = make_delivery(tenant, to_number="+14155550141")
    make_delivery(tenant, to_number="+14155550142")
    response = _as("soc_lead").get(reverse(CHANGELIST), {"q": typed})
    assert [d.pk for d in response.context["cl"].result_list] == [target.pk]


def test_inbound_messages_have_their_own_read_only_page(tenant: Tenant) -> None:
    delivery = make_delivery(tenant)
    InboundMessage.objects.create(
        organization=delivery.organization,
        from_number=tenant.recipient,
        to_number=tenant.sender,
        body="STOP",
        meaning="stop",
        payload={"Body": "STOP"},
    )
    client = _as("soc_lead")
    html = client.get(reverse("admin:deliveries_inboundmessage_changelist")).content.decode()
    assert "Opt-out (STOP)" in html and tenant.recipient in html
    assert client.get(reverse("admin:deliveries_inboundmessage_add")).status_code == 403
