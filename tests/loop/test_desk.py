"""The desk shows what waits for LimaCharlie, and never the adapter's secret."""

from __future__ import annotations

from typing import Any

import pytest

from deliveries.models import OutboundEvent, WebhookAdapter
from deliveries.services import events
from tests.conftest import Intake, Tenant, make_delivery, make_user
from tests.fakes.limacharlie import FakeLimaCharlie
from tests.loop.helpers import subscribe

pytestmark = pytest.mark.django_db


def test_a_soc_lead_sees_the_waiting_events_and_the_adapter_without_its_secret(
    client: Any, intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie, settings: Any
) -> None:
    subscribe(intake, tenant)
    settings.LC_HOOK_BASE_URL = "http://127.0.0.1:9"  # down: the event waits
    events.record("escalated", delivery=make_delivery(tenant))
    events.events_post(organization_id=OutboundEvent.objects.get().organization_id)
    user = make_user("soc_lead")
    client.force_login(user)

    waiting = client.get("/admin/deliveries/outboundevent/?sent=no").content.decode()
    adapters = client.get("/admin/deliveries/webhookadapter/").content.decode()

    assert "escalated" in waiting and "no answer from the hook" in waiting
    adapter = WebhookAdapter.objects.get()
    assert adapter.installation_key in adapters and adapter.secret not in adapters
    page = client.get(f"/admin/deliveries/webhookadapter/{adapter.pk}/change/").content.decode()
    assert adapter.secret not in page and adapter.installation_key in page
