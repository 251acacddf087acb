"""What the loop's tests share: an organisation subscribed (its adapter made in the fake LimaCharlie),
Twilio's callbacks and replies signed as Twilio signs them, and the events the hook received."""

from __future__ import annotations

from typing import Any

from deliveries.models import OutboundEvent
from tests.conftest import PUBLIC_BASE_URL, Intake, Tenant, post_webhook, wait_for
from tests.fakes.limacharlie import FakeLimaCharlie
from tests.fakes.twilio import FakeTwilio, signed

SECOND, THIRD = "+15005550002", "+15005550003"
QUICK = "0.05"  # ack_within in minutes (3 s): the same countdown path as 5 minutes
CONTEXT = {"sid": "3109b3c7-c5ca-4029-b493-4d4e6766c4d3", "detect_id": "90609b8b-c2b8", "hostname": "ws-180"}


def subscribe(intake: Intake, tenant: Tenant) -> None:
    org = {"oid": tenant.oid, "jwt": tenant.jwt, "ident": "lc"}
    assert intake.send("event", {"org": org, "event_name": "subscribe", "data": {}, "config": {}}).status_code == 200


def reply(client: Any, fake: FakeTwilio, tenant: Tenant, body: str, from_: str | None = None) -> Any:
    url = f"{PUBLIC_BASE_URL}/twilio/inbound/{tenant.oid}/"
    webhook = fake.inbound_message(url, tenant.auth_token, From=from_ or tenant.recipient, To=tenant.sender, Body=body)
    return post_webhook(client, webhook)


def message_status(client: Any, tenant: Tenant, delivery: Any, status: str, **extra: str) -> Any:
    form = {
        "MessageSid": delivery.twilio_sid,
        "AccountSid": tenant.account_sid,
        "MessageStatus": status,
        "To": delivery.to_number,
        **extra,
    }
    return post_webhook(client, signed(f"{PUBLIC_BASE_URL}/twilio/status/{delivery.id}/", form, tenant.auth_token))


def all_sent() -> bool:
    return OutboundEvent.objects.exists() and not OutboundEvent.objects.filter(sent_at__isnull=True).exists()


def events_settled(fake: FakeLimaCharlie, tenant: Tenant, count: int, timeout: float = 45) -> list[dict[str, Any]]:
    """The events the organisation's hook received, once `count` have arrived and nothing waits."""
    wait_for(lambda: len(fake.events(tenant.oid)) >= count and all_sent(), timeout=timeout)
    return fake.events(tenant.oid)


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["kind"] for e in events]
