"""deliveries_accept binds each delivery to the credential its call brought, stored once per
organisation and credential, without rewriting it on every call of a burst."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from deliveries.models import Credential, Delivery
from tests.conftest import Intake, Tenant
from tests.fakes.limacharlie import FakeLimaCharlie
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.django_db


def test_a_burst_with_the_same_credential_stores_it_once_and_writes_it_once(intake: Intake, tenant: Tenant) -> None:
    intake.run(tenant)
    first = Credential.objects.get()
    intake.run(tenant, body="second alert")
    intake.run(tenant, body="third alert")

    again = Credential.objects.get()
    assert again.last_used_at == first.last_used_at
    assert (again.account_sid, again.auth_token) == (tenant.account_sid, tenant.auth_token)
    assert set(Delivery.objects.values_list("credential_id", flat=True)) == {again.id}


def test_a_changed_credential_is_a_new_one_and_later_alerts_use_it(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie, fake_twilio: FakeTwilio
) -> None:
    intake.run(tenant)
    new_token = "f" * 32
    fake_lc.add_secret(tenant.oid, "twilio", f"{tenant.account_sid}/{new_token}")
    fake_twilio.add_account(tenant.account_sid, new_token)

    intake.run(tenant, body="a later alert")  # another text: the same one would be held back as a repeat

    assert sorted(Credential.objects.values_list("auth_token", flat=True)) == sorted([tenant.auth_token, new_token])
    later = Delivery.objects.get(body__startswith="a later alert").credential
    assert later is not None and later.auth_token == new_token
    assert fake_twilio.received[-1].headers["Authorization"] != fake_twilio.received[0].headers["Authorization"]


def test_the_last_use_is_renewed_after_a_minute(intake: Intake, tenant: Tenant) -> None:
    intake.run(tenant)
    old = timezone.now() - timedelta(minutes=2)
    Credential.objects.update(last_used_at=old)

    intake.run(tenant, body="later")

    assert Credential.objects.get().last_used_at > old
