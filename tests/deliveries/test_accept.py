"""deliveries_accept stores the credential it was given, without rewriting an unchanged one each call."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from deliveries.models import Organization
from tests.conftest import Intake, Tenant
from tests.fakes.limacharlie import FakeLimaCharlie
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.django_db


def test_a_burst_with_the_same_credential_writes_the_organisation_once(intake: Intake, tenant: Tenant) -> None:
    intake.run(tenant)
    first = Organization.objects.get(oid=tenant.oid)
    intake.run(tenant)
    intake.run(tenant)

    again = Organization.objects.get(oid=tenant.oid)
    assert again.updated_at == first.updated_at
    assert again.credential_refreshed_at == first.credential_refreshed_at
    assert (again.twilio_account_sid, again.twilio_auth_token) == (tenant.account_sid, tenant.auth_token)


def test_a_changed_credential_is_saved_at_once(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie, fake_twilio: FakeTwilio
) -> None:
    intake.run(tenant)
    new_token = "f" * 32
    fake_lc.add_secret(tenant.oid, "twilio", f"{tenant.account_sid}/{new_token}")
    fake_twilio.add_account(tenant.account_sid, new_token)

    intake.run(tenant, body="a later alert")  # another text: the same one would be held back as a repeat

    assert Organization.objects.get(oid=tenant.oid).twilio_auth_token == new_token
    assert fake_twilio.received[-1].headers["Authorization"] != fake_twilio.received[0].headers["Authorization"]


def test_the_refresh_time_is_renewed_after_a_minute(intake: Intake, tenant: Tenant) -> None:
    intake.run(tenant)
    old = timezone.now() - timedelta(minutes=2)
    Organization.objects.filter(oid=tenant.oid).update(credential_refreshed_at=old)

    intake.run(tenant)

    refreshed = Organization.objects.get(oid=tenant.oid).credential_refreshed_at
    assert refreshed is not None and refreshed > old
