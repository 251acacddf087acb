"""Accepting a `run` call: one alert, its deliveries tied to it, codes a recipient can tell apart, a
remembered credential reused only while it may be, and a repeated key that stores nothing twice."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from deliveries.models import AlertRequest, Credential, Delivery, Organization
from deliveries.services import codes
from deliveries.services.accept import CredentialGone, alert_request_reply, deliveries_accept
from deliveries.services.escalate import AckPlan
from deliveries.sms import prepare_body
from tests.conftest import Tenant, make_delivery

pytestmark = pytest.mark.django_db


def _codes_drawn(monkeypatch: pytest.MonkeyPatch, *codes_in_order: str) -> None:
    """secrets.choice draws these codes, one character at a time, in this order."""
    characters = iter("".join(codes_in_order))
    monkeypatch.setattr(codes.secrets, "choice", lambda _alphabet: next(characters))


def _accept(tenant: Tenant, key: str, recipients: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    return deliveries_accept(
        oid=tenant.oid,
        idempotency_key=key,
        ident="rule",
        inv_id="inv",
        from_number=tenant.sender,
        recipients=recipients or [tenant.recipient],
        body=prepare_body("Detection", 1600),
        account_sid=tenant.account_sid,
        auth_token=tenant.auth_token,
        **fields,
    ).reply


def test_a_new_code_is_never_one_the_recipient_still_has_outstanding(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = make_delivery(tenant, ack_code="ABCD")
    _codes_drawn(monkeypatch, "ABCD", "WXYZ")
    assert codes.ack_code_new(organization_id=held.organization_id, recipient=tenant.recipient) == "WXYZ"


def test_a_code_acknowledged_or_held_elsewhere_is_free_again(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    acknowledged = make_delivery(tenant, ack_code="ABCD", acknowledged_at=timezone.now())
    make_delivery(tenant, ack_code="DEFG", to_number="+15005550199")  # another recipient's
    _codes_drawn(monkeypatch, "ABCD", "DEFG")
    org_id = acknowledged.organization_id
    assert codes.ack_code_new(organization_id=org_id, recipient=tenant.recipient) == "ABCD"
    assert codes.ack_code_new(organization_id=org_id, recipient=tenant.recipient) == "DEFG"


def test_one_call_is_one_alert_holding_each_recipients_text(tenant: Tenant) -> None:
    second = "+15005550199"
    reply = _accept(tenant, "k1", recipients=[tenant.recipient, second], ack=AckPlan())

    alert = AlertRequest.objects.get()
    texts = Delivery.objects.filter(alert=alert).order_by("to_number")
    assert [d.to_number for d in texts] == [tenant.recipient, second]
    assert {d.idempotency_key for d in texts} == {"k1"}
    assert alert.reply == reply
    assert {d["id"] for d in reply["deliveries"]} == {str(d.id) for d in texts}
    assert all(len(d.ack_code) == codes.LENGTH for d in texts)


def test_a_remembered_credential_is_reused_only_while_it_is_the_organisations_unrefused_token(
    tenant: Tenant,
) -> None:
    credential = make_delivery(tenant).credential
    other = Tenant(oid="00000000-0000-4000-8000-000000000000", jwt="j", account_sid="AC" + "1" * 32, auth_token="t")
    keys_before = set(AlertRequest.objects.values_list("idempotency_key", flat=True))

    def accepted(who: Tenant, key: str) -> bool:
        try:
            _accept(who, key, credential_id=credential.id)
        except CredentialGone:
            return False
        return True

    assert accepted(tenant, "k1")
    assert not accepted(other, "k2")  # another organisation's
    Credential.objects.filter(id=credential.id).update(rejected_at=timezone.now())
    assert not accepted(tenant, "k3")
    Credential.objects.filter(id=credential.id).update(rejected_at=None, auth_token="")  # erased at unsubscribe
    assert not accepted(tenant, "k4")
    assert set(AlertRequest.objects.values_list("idempotency_key", flat=True)) - keys_before == {"k1"}
    assert not Delivery.objects.filter(idempotency_key__in=["k2", "k3", "k4"]).exists()


def test_a_repeated_key_stores_no_second_set_of_deliveries_and_gets_the_first_reply(tenant: Tenant) -> None:
    first = _accept(tenant, "k1")
    again = deliveries_accept(
        oid=tenant.oid,
        idempotency_key="k1",
        ident="rule",
        inv_id="inv",
        from_number=tenant.sender,
        recipients=["+15005550199"],
        body=prepare_body("Another", 1600),
        account_sid=tenant.account_sid,
        auth_token=tenant.auth_token,
    )

    assert again.duplicate and again.reply == first
    assert list(Delivery.objects.values_list("to_number", flat=True)) == [tenant.recipient]
    assert AlertRequest.objects.get().reply == first


def test_the_first_reply_is_found_by_organisation_and_key_only(tenant: Tenant) -> None:
    assert alert_request_reply(oid=tenant.oid, idempotency_key="k1") is None  # an organisation never seen
    first = _accept(tenant, "k1")
    assert alert_request_reply(oid=tenant.oid, idempotency_key="k1") == first
    assert alert_request_reply(oid=tenant.oid, idempotency_key="k2") is None
    Organization.objects.create(oid="00000000-0000-4000-8000-000000000000")
    assert alert_request_reply(oid="00000000-0000-4000-8000-000000000000", idempotency_key="k1") is None
