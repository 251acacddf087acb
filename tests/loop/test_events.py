"""The outbox in process (tasks run eagerly): which events are written, how they wait for an adapter,
go in one POST per organisation, and what the sweeper does with a lost task. The rule's `context`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from deliveries import services
from deliveries.lclinks import detection_url
from deliveries.models import AlertRequest, OutboundEvent
from deliveries.services import events
from tests.conftest import Intake, Tenant, make_delivery
from tests.fakes.limacharlie import FakeLimaCharlie
from tests.loop.helpers import CONTEXT, subscribe

pytestmark = pytest.mark.django_db


def _acknowledge_new_alert(tenant: Tenant, **alert: Any) -> Any:
    delivery = make_delivery(tenant, ack_code="4K7")
    AlertRequest.objects.filter(pk=delivery.alert_id).update(**alert)
    assert services.alert_acknowledge(delivery=delivery, by=tenant.recipient, channel="sms")
    return delivery


def test_events_wait_for_the_adapter_and_go_in_one_post_once_it_is_made(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            _acknowledge_new_alert(tenant, context=CONTEXT)
    assert fake_lc.hook_posts == [] and OutboundEvent.objects.filter(sent_at__isnull=True).count() == 3

    subscribe(intake, tenant)  # the adapter is made, and what waited is posted

    assert fake_lc.hook_posts == [(tenant.oid, "ext-twilio")]
    assert [e["kind"] for e in fake_lc.events(tenant.oid)] == ["acknowledged"] * 3
    assert not OutboundEvent.objects.filter(sent_at__isnull=True).exists()


def test_a_kind_the_configuration_left_out_is_never_written(tenant: Tenant, fake_lc: FakeLimaCharlie) -> None:
    _acknowledge_new_alert(tenant, event_kinds=["unacknowledged"])

    assert not OutboundEvent.objects.exists()


def test_a_claimed_event_is_not_posted_by_a_second_task(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie
) -> None:
    subscribe(intake, tenant)
    delivery = make_delivery(tenant)
    assert events.record("escalated", delivery=delivery)
    OutboundEvent.objects.update(claimed_at=timezone.now())  # another task holds it

    assert events.events_post(organization_id=delivery.organization_id) is None
    assert fake_lc.hook_posts == []


def test_the_sweeper_enqueues_an_organisation_whose_task_was_lost(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie, settings: Any
) -> None:
    subscribe(intake, tenant)
    delivery = make_delivery(tenant)
    events.record("escalated", delivery=delivery)  # outside a transaction's commit: its task never went
    OutboundEvent.objects.update(due_at=timezone.now() - timedelta(seconds=settings.SWEEP_PENDING_SECONDS + 1))

    services.deliveries_sweep()

    assert [e["kind"] for e in fake_lc.events(tenant.oid)] == ["escalated"]


def test_an_unreachable_hook_leaves_the_event_due_later_with_the_error(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie, settings: Any
) -> None:
    subscribe(intake, tenant)
    settings.LC_HOOK_BASE_URL = "http://127.0.0.1:9"  # nothing listens there
    delivery = make_delivery(tenant)
    events.record("escalated", delivery=delivery)

    again = events.events_post(organization_id=delivery.organization_id)

    event = OutboundEvent.objects.get()
    assert again is not None and 0.8 <= again <= 1.2  # LC_HOOK_RETRY_BASE_SECONDS in the tests, with jitter
    assert event.sent_at is None and event.attempts == 1 and event.claimed_at is None
    assert event.last_error == "no answer from the hook (NewConnectionError)"
    assert event.due_at is not None and event.due_at > timezone.now()


def test_run_stores_the_rules_context_and_refuses_a_bad_one_by_name(intake: Intake, tenant: Tenant) -> None:
    assert intake.run(tenant, key="k1", context=CONTEXT).status_code == 200
    assert intake.run(tenant, key="k2", context="{{ .routing.sid }}").status_code == 200
    assert dict(AlertRequest.objects.values_list("idempotency_key", "context")) == {
        "k1": CONTEXT,
        "k2": "{{ .routing.sid }}",
    }

    for bad, why in (
        (["a list"], "request.data.context: must be a JSON object or a string"),
        ({"x": "y" * 5000}, "request.data.context: is 5008 bytes as JSON, more than the 4096 allowed"),
    ):
        response = intake.run(tenant, context=bad)
        assert (response.status_code, response.json()["error"]) == (400, why)


def test_an_unknown_event_kind_in_the_configuration_is_refused_by_name(intake: Intake, tenant: Tenant) -> None:
    from tests.conftest import run_block

    block = run_block(tenant)
    block["config"] = {"events": ["acknowledged", "paged"]}
    response = intake.send("request", block)
    assert response.status_code == 400
    assert response.json()["error"].startswith("request.config.events: paged is not an event kind")


def test_the_detection_link_is_the_detections_own_or_built_from_its_id() -> None:
    oid = "01304add-3354-4cca-b574-b0a54d7bb6f4"
    own = f"https://app.limacharlie.io/orgs/{oid}/sensors/s/timeline?time=1&selected=a"
    assert detection_url(oid=oid, context={"link": own, "detect_id": "x"}) == own
    assert detection_url(oid=oid, context={"detect_id": "90609b8b-c2b8-4537-b17e-5d1665fd8717"}) == (
        f"https://app.limacharlie.io/orgs/{oid}/detections/90609b8b-c2b8-4537-b17e-5d1665fd8717"
    )
    assert detection_url(oid=oid, context={"link": "https://evil.example/orgs/x"}) == ""
    assert detection_url(oid=oid, context="ws-180") == ""


def test_a_call_held_back_by_its_limit_leaves_the_alert_unacknowledged_not_escalated(
    tenant: Tenant, fake_twilio: Any, settings: Any
) -> None:
    """The event a SOC needs most must come also when the call never rang."""
    from deliveries.models import Delivery

    settings.CALL_RECIPIENT_LIMIT_15_MINUTES = 1
    callable_number = "+14155550101"
    earlier = make_delivery(tenant, to_number=callable_number, body="earlier", status="delivered")
    make_delivery(
        tenant,
        to_number=callable_number,
        body="earlier",
        channel="voice",
        escalates=earlier,
        alert=earlier.alert,
        status="delivered",
        claimed_at=timezone.now(),
        sent_at=timezone.now(),
    )
    alert = make_delivery(tenant, to_number=callable_number, body="Ransomware on fs-01", status="delivered")
    call = make_delivery(
        tenant, to_number=callable_number, body=alert.body, channel="voice", escalates=alert, alert=alert.alert
    )

    services.delivery_send(delivery_id=str(call.id))

    call.refresh_from_db()
    assert (call.status, call.hold) == ("suppressed", "recipient_calls")
    assert list(OutboundEvent.objects.filter(alert_id=alert.alert_id).values_list("kind", flat=True)) == [
        "unacknowledged"
    ]
    assert fake_twilio.call_posts() == []
    assert Delivery.objects.filter(alert_id=alert.alert_id, channel="voice").count() == 1


def test_an_event_s_post_waits_a_moment_so_that_a_storm_goes_in_few_posts(
    intake: Intake,
    tenant: Tenant,
    fake_lc: FakeLimaCharlie,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from deliveries.services import queue

    subscribe(intake, tenant)
    posts: list[tuple[list[int], float | None]] = []
    monkeypatch.setattr(queue, "post_events", lambda ids, countdown=None: posts.append((ids, countdown)))
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            events.record("escalated", delivery=make_delivery(tenant))
    organization_id = OutboundEvent.objects.values_list("organization_id", flat=True).distinct().get()

    assert posts == [([organization_id], events.BATCH_SECONDS)] * 3 and events.BATCH_SECONDS > 0
    assert events.events_post(organization_id=organization_id) is None  # the first task posts all three
    assert [e["kind"] for e in fake_lc.events(tenant.oid)] == ["escalated"] * 3 and len(fake_lc.hook_posts) == 1
    assert events.events_post(organization_id=organization_id) is None  # the others find nothing to post
    assert len(fake_lc.hook_posts) == 1
