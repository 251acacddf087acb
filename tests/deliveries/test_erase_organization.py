"""`manage.py erase_organization`: one organisation's every row goes, children first; another's stay;
without --confirm nothing changes."""

from __future__ import annotations

import io
import secrets
import uuid
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from deliveries.models import (
    AlertRequest,
    Attempt,
    Credential,
    Delivery,
    ErrorReport,
    Escalation,
    HandledCall,
    InboundMessage,
    OptOut,
    Organization,
    StatusEvent,
)
from tests.conftest import PUBLIC_BASE_URL, Intake, Tenant, post_webhook
from tests.fakes.twilio import FakeTwilio, signed

pytestmark = pytest.mark.django_db
SECOND = "+15005550002"
PER_ORGANISATION = (
    AlertRequest,
    Attempt,
    Credential,
    Delivery,
    Escalation,
    InboundMessage,
    OptOut,
    StatusEvent,
)


@pytest.fixture(autouse=True)
def public_url(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL
    settings.ALLOWED_HOSTS = ["testserver", "sms.example.com"]


def _history(client: Any, intake: Intake, fake: FakeTwilio, tenant: Tenant) -> None:
    """What an organisation leaves behind: an alert walking a list (texts, attempts, a timer), a receipt,
    a reply that acknowledges, a STOP, an event and an error report."""
    intake.run(tenant, to=f"{tenant.recipient},{SECOND}", ack_within="10", escalate="next")
    alert = Delivery.objects.get(organization__oid=tenant.oid, to_number=tenant.recipient)
    receipt = {"MessageSid": alert.twilio_sid, "MessageStatus": "delivered", "AccountSid": tenant.account_sid}
    url = f"{PUBLIC_BASE_URL}/twilio/status/{alert.id}/"
    assert post_webhook(client, signed(url, receipt, tenant.auth_token)).status_code == 200
    inbound = f"{PUBLIC_BASE_URL}/twilio/inbound/{tenant.oid}/"
    for body in (alert.ack_code, "STOP"):
        reply = {"From": tenant.recipient, "To": tenant.sender, "Body": body, "AccountSid": tenant.account_sid}
        webhook = fake.inbound_message(inbound, tenant.auth_token, **reply)
        assert post_webhook(client, webhook).status_code == 200
    org = {"oid": tenant.oid, "jwt": tenant.jwt, "ident": ""}
    intake.send("event", {"org": org, "event_name": "unsubscribe"})
    intake.send("error_report", {"error": "demo", "oid": tenant.oid})


def _counts(oid: str) -> dict[str, int]:
    by_org = {
        AlertRequest: "organization__oid",
        Attempt: "delivery__organization__oid",
        Credential: "organization__oid",
        Delivery: "organization__oid",
        Escalation: "alert__organization__oid",
        InboundMessage: "organization__oid",
        OptOut: "organization__oid",
        StatusEvent: "delivery__organization__oid",
    }
    counts = {model.__name__: model.objects.filter(**{by_org[model]: oid}).count() for model in PER_ORGANISATION}
    counts["HandledCall"] = HandledCall.objects.filter(oid=oid).count()
    counts["ErrorReport"] = ErrorReport.objects.filter(oid=oid).count()
    counts["Organization"] = Organization.objects.filter(oid=oid).count()
    return counts


def _erase(oid: str, *flags: str) -> str:
    out = io.StringIO()
    call_command("erase_organization", oid, *flags, stdout=out)
    return out.getvalue()


def test_it_erases_every_row_of_one_organisation_and_none_of_another(
    client: Any, intake: Intake, fake_twilio: FakeTwilio, tenant: Tenant, fake_lc: Any
) -> None:
    other = Tenant(
        oid=str(uuid.uuid4()),
        jwt="eyJ" + secrets.token_urlsafe(20),
        account_sid="AC" + secrets.token_hex(16),
        auth_token=secrets.token_hex(16),
    )
    fake_lc.add_org(other.oid, other.jwt)
    fake_lc.add_secret(other.oid, "twilio", other.credential)
    fake_twilio.add_account(other.account_sid, other.auth_token)
    _history(client, intake, fake_twilio, tenant)
    _history(client, intake, fake_twilio, other)
    before, theirs = _counts(tenant.oid), _counts(other.oid)
    assert all(before.values()), before  # every kind of row exists, so each is proven erased below

    output = _erase(tenant.oid, "--confirm")

    assert set(_counts(tenant.oid).values()) == {0}
    assert _counts(other.oid) == theirs
    assert f"{before['Delivery']:>8}  deliveries" in output


def test_without_confirm_it_only_counts(client: Any, intake: Intake, fake_twilio: FakeTwilio, tenant: Tenant) -> None:
    _history(client, intake, fake_twilio, tenant)
    before = _counts(tenant.oid)

    output = _erase(tenant.oid)

    assert _counts(tenant.oid) == before
    assert "Would delete" in output and "Nothing was changed" in output


def test_an_unknown_organisation_is_refused_by_name() -> None:
    oid = str(uuid.uuid4())
    with pytest.raises(CommandError, match=oid):
        _erase(oid, "--confirm")
