"""The extension's webhook adapter in the organisation, made and removed through the intake with each
event's JWT, against the fake LimaCharlie API (installation keys, the cloud_sensor Hive, org URLs)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from deliveries.models import WebhookAdapter
from tests.conftest import Intake, Tenant
from tests.fakes.limacharlie import FakeLimaCharlie

pytestmark = pytest.mark.django_db
NAME = "ext-twilio"


def _event(intake: Intake, tenant: Tenant, name: str, jwt: str | None = None) -> Any:
    org = {"oid": tenant.oid, "jwt": tenant.jwt if jwt is None else jwt, "ident": "lc"}
    return intake.send("event", {"org": org, "event_name": name, "data": {}, "config": {}})


def _record(fake: FakeLimaCharlie, tenant: Tenant) -> dict[str, Any] | None:
    return fake.cloud_sensors.get((tenant.oid, NAME))


def test_subscribe_creates_one_tagged_key_and_a_webhook_record_holding_our_encrypted_secret(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie
) -> None:
    assert _event(intake, tenant, "subscribe").status_code == 200

    keys = fake_lc.keys(tenant.oid)
    assert len(keys) == 1
    ((iid, key),) = keys.items()
    assert key["tags"] == ["lc:system", "ext:ext-twilio"] and key["desc"] == "ext ext-twilio webhook adapter"
    record = _record(fake_lc, tenant)
    assert record is not None and record["usr_mtd"] == {"enabled": True, "tags": ["lc:system", "ext:ext-twilio"]}
    webhook = record["data"]["webhook"]
    assert record["data"]["sensor_type"] == "webhook"
    assert webhook["client_options"] == {
        "hostname": NAME,
        "identity": {"oid": tenant.oid, "installation_key": iid},
        "platform": "json",
        "sensor_seed_key": NAME,
        "mapping": {},
    }
    adapter = WebhookAdapter.objects.get(organization__oid=tenant.oid)
    assert adapter.secret == webhook["secret"] and len(adapter.secret) >= 40
    assert adapter.installation_key == iid and adapter.ready_at is not None
    assert adapter.hooks_url == f"https://{tenant.oid[:8]}.hook.limacharlie.io"
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM deliveries_webhookadapter WHERE id = %s", [adapter.id])
        assert adapter.secret not in cursor.fetchone()[0]  # stored encrypted


def test_a_second_subscribe_makes_no_second_key_and_keeps_the_secret(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie
) -> None:
    _event(intake, tenant, "subscribe")
    first = _record(fake_lc, tenant)

    _event(intake, tenant, "subscribe")

    assert len(fake_lc.keys(tenant.oid)) == 1
    assert _record(fake_lc, tenant) == first
    assert WebhookAdapter.objects.count() == 1


def test_it_reuses_the_key_the_record_names_and_deletes_duplicates_of_ours_only(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie
) -> None:
    _event(intake, tenant, "subscribe")
    (named,) = fake_lc.keys(tenant.oid)
    with fake_lc.lock:
        keys = fake_lc.installation_keys[tenant.oid]
        keys["dup"] = {"iid": "dup", "desc": "x", "tags": ["lc:system", "ext:ext-twilio"]}
        keys["sensors"] = {"iid": "sensors", "desc": "the SOC's own", "tags": ["windows"]}

    _event(intake, tenant, "subscribe")

    assert set(fake_lc.keys(tenant.oid)) == {named, "sensors"}


def test_unsubscribe_deletes_the_record_and_the_key_and_erases_the_secret(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie
) -> None:
    _event(intake, tenant, "subscribe")

    assert _event(intake, tenant, "unsubscribe").status_code == 200

    assert _record(fake_lc, tenant) is None and fake_lc.keys(tenant.oid) == {}
    adapter = WebhookAdapter.objects.get()
    assert (adapter.secret, adapter.ready_at, adapter.last_error) == ("", None, "")


def test_unsubscribe_of_an_adapter_already_gone_is_done(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie
) -> None:
    assert _event(intake, tenant, "unsubscribe").status_code == 200

    assert ("DELETE", f"/v1/hive/cloud_sensor/{tenant.oid}/{NAME}") in fake_lc.calls
    assert WebhookAdapter.objects.get().last_error == ""


def test_a_failure_never_fails_the_subscribe_or_shows_a_secret_and_the_next_update_makes_it(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie, caplog: pytest.LogCaptureFixture
) -> None:
    fake_lc.fail_next(500)

    response = _event(intake, tenant, "subscribe")

    assert response.status_code == 200 and response.json().get("error", "") == ""
    adapter = WebhookAdapter.objects.get()
    assert adapter.ready_at is None and "HTTP 500" in adapter.last_error
    for text in (adapter.last_error, caplog.text):
        assert tenant.jwt not in text and adapter.secret not in text

    _event(intake, tenant, "update")

    adapter.refresh_from_db()
    assert adapter.ready_at is not None and adapter.last_error == ""
    assert len(fake_lc.keys(tenant.oid)) == 1 and _record(fake_lc, tenant) is not None


def test_an_update_with_the_adapter_whole_only_reads_its_record(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie
) -> None:
    _event(intake, tenant, "subscribe")
    fake_lc.calls.clear()

    _event(intake, tenant, "update")

    adapter_calls = [call for call in fake_lc.calls if call != ("GET", f"/v1/orgs/{tenant.oid}")]  # but its name
    assert adapter_calls == [("GET", f"/v1/hive/cloud_sensor/{tenant.oid}/{NAME}/data")]


def test_an_update_makes_again_an_adapter_deleted_in_the_organisation_with_the_same_key_and_secret(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie
) -> None:
    _event(intake, tenant, "subscribe")
    made = _record(fake_lc, tenant)
    with fake_lc.lock:
        del fake_lc.cloud_sensors[(tenant.oid, NAME)]  # someone deleted the adapter in LimaCharlie

    _event(intake, tenant, "update")

    assert _record(fake_lc, tenant) == made and len(fake_lc.keys(tenant.oid)) == 1


def test_a_refused_jwt_is_kept_as_an_error_naming_the_step(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie
) -> None:
    assert _event(intake, tenant, "subscribe", jwt="eyJwrong").status_code == 200

    error = WebhookAdapter.objects.get().last_error
    assert error == (
        "could not read the cloud_sensor record (HTTP 401, the event's JWT was refused, or the extension lacks the permission)"
    )
    assert fake_lc.keys(tenant.oid) == {}
