"""A web process reuses the credential a secret resolved to for CREDENTIAL_CACHE_SECONDS, and reads
the Secrets Manager again as soon as that credential may no longer be used."""

from __future__ import annotations

import time
from typing import Any

import pytest

from deliveries.models import Credential, Delivery
from deliveries.services import credentials as cache
from tests.conftest import Intake, Tenant
from tests.fakes.limacharlie import FakeLimaCharlie
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def cache_on(settings: Any) -> None:
    settings.CREDENTIAL_CACHE_SECONDS = 60


def _hive_reads(fake_lc: FakeLimaCharlie) -> int:
    return sum(1 for path, _ in fake_lc.requests if path.startswith("/v1/hive/secret/"))


def test_a_burst_reads_the_secret_once_and_binds_every_alert_to_that_credential(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie, fake_twilio: FakeTwilio
) -> None:
    for n in range(5):
        assert intake.run(tenant, body=f"alert {n}", to=f"+1500555010{n}").status_code == 200

    assert _hive_reads(fake_lc) == 1
    credential = Credential.objects.get()
    assert set(Delivery.objects.values_list("credential_id", flat=True)) == {credential.id}
    assert len(fake_twilio.posts()) == 5


def test_after_the_ttl_the_secret_is_read_again(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.CREDENTIAL_CACHE_SECONDS = 60
    intake.run(tenant, body="first")
    later = time.monotonic() + 60
    monkeypatch.setattr(cache.time, "monotonic", lambda: later)  # the clock, a minute on
    intake.run(tenant, body="second")
    assert _hive_reads(fake_lc) == 2


def test_a_credential_twilio_refused_is_not_reused(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie, fake_twilio: FakeTwilio
) -> None:
    intake.run(tenant, body="first")
    fake_twilio.add_account(tenant.account_sid, "revoked-" + tenant.auth_token)  # the token was revoked
    intake.run(tenant, body="refused with 20003")
    assert Delivery.objects.get(body__startswith="refused with 20003").error_code == 20003

    intake.run(tenant, body="third")

    assert _hive_reads(fake_lc) == 2  # the refusal sent the third call back to the Secrets Manager


def test_an_unsubscribe_or_an_update_makes_the_next_call_read_the_secret(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie
) -> None:
    org = {"oid": tenant.oid, "jwt": tenant.jwt, "ident": "x"}
    intake.run(tenant, body="first")
    intake.send("event", {"org": org, "event_name": "update", "data": {}, "config": {}})
    intake.run(tenant, body="after the update")
    intake.send("event", {"org": org, "event_name": "unsubscribe", "data": {}, "config": {}})
    cache.remember(oid=tenant.oid, reference="twilio", credential_id=Credential.objects.get().id)  # another process
    intake.run(tenant, body="after leaving")

    assert _hive_reads(fake_lc) == 3  # the erased token is never reused, even by a process that remembers it


def test_a_credential_pasted_in_place_of_a_secret_name_is_never_kept(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie
) -> None:
    intake.run(tenant, secret=tenant.credential)
    assert fake_lc.requests == []
    assert cache.recall(oid=tenant.oid, reference=tenant.credential) is None


def test_a_call_with_a_remembered_credential_binds_it_without_reading_the_secret_again(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie
) -> None:
    intake.run(tenant, body="first")
    assert intake.run(tenant, body="second").status_code == 200

    assert _hive_reads(fake_lc) == 1
    assert Delivery.objects.filter(body__startswith="second").get().credential_id == Credential.objects.get().id
