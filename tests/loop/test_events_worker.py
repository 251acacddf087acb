"""Every outcome of an alert as one event in the organisation's LimaCharlie, end to end: signed `run`
calls at the intake, a real Celery worker sending texts, placing calls and posting events, the fake
Twilio playing handsets and the fake LimaCharlie's hook receiving the events."""

from __future__ import annotations

from typing import Any

import pytest

from deliveries.models import AlertRequest, Delivery, OutboundEvent
from tests.conftest import PUBLIC_BASE_URL, Intake, Tenant, post_webhook, wait_for
from tests.fakes.limacharlie import FakeLimaCharlie
from tests.fakes.twilio import FakeTwilio
from tests.loop.helpers import CONTEXT, QUICK, SECOND, events_settled, kinds, message_status, reply, subscribe

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def public_url(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL  # as the worker has it (tests/conftest.py)
    settings.ALLOWED_HOSTS = ["testserver", "sms.example.com"]


def _queued(count: int) -> list[Delivery]:
    wait_for(lambda: Delivery.objects.filter(status="queued", channel="sms").count() >= count)
    return list(Delivery.objects.filter(channel="sms").order_by("to_number"))


def test_an_acknowledged_alert_sends_one_event_with_who_how_and_the_rules_context(
    celery_worker: Any, client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, fake_lc: FakeLimaCharlie
) -> None:
    subscribe(intake, tenant)
    key = "run-ack-1"
    assert intake.run(tenant, key=key, body="Ransomware on ws-180", context=CONTEXT).status_code == 200
    (alert,) = _queued(1)
    message_status(client, tenant, alert, "delivered")  # not a default kind: no event

    reply(client, fake_twilio, tenant, alert.ack_code)

    (event,) = events_settled(fake_lc, tenant, 1)
    assert event["kind"] == "acknowledged" and event["source"] == "ext-twilio"
    assert event["alert_id"] == AlertRequest.objects.get().pk and event["idempotency_key"] == key
    assert event["ident"] == "dr-general/ext-twilio-rule" and event["context"] == CONTEXT
    assert (event["recipient"], event["delivery_id"]) == (tenant.recipient, str(alert.id))
    assert (event["acknowledged_by"], event["acknowledged_channel"]) == (tenant.recipient, "sms")
    assert event["seconds_to_acknowledge"] >= 0 and event["time"].endswith("Z")
    assert OutboundEvent.objects.get().event_id.hex == event["event_id"].replace("-", "")


def test_delivered_and_undelivered_are_sent_when_the_configuration_asks_for_them(
    celery_worker: Any, client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, fake_lc: FakeLimaCharlie
) -> None:
    subscribe(intake, tenant)
    block_config = {"events": ["delivered", "undelivered"]}
    response = intake.send("request", _run_block(tenant, to=f"{tenant.recipient},{SECOND}", config=block_config))
    assert response.status_code == 200
    first, second = _queued(2)

    message_status(client, tenant, first, "delivered")
    message_status(client, tenant, second, "undelivered", ErrorCode="30003")

    events = sorted(events_settled(fake_lc, tenant, 2), key=lambda e: e["recipient"])
    assert kinds(events) == ["delivered", "undelivered"]
    assert (events[1]["error_code"], events[1]["error_meaning"]) == (
        30003,
        "Unreachable handset (switched off or out of coverage; may succeed later)",
    )
    assert "error_code" not in events[0]


def test_a_failed_text_sends_one_failed_event_with_twilios_code_and_meaning(
    celery_worker: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, fake_lc: FakeLimaCharlie
) -> None:
    subscribe(intake, tenant)
    fake_twilio.plan("error", status=400, code=21211, message="Invalid 'To' Phone Number")

    intake.run(tenant, body="cannot be sent", context="ws-180")

    (event,) = events_settled(fake_lc, tenant, 1)
    assert event["kind"] == "failed" and event["context"] == "ws-180"
    assert (event["error_code"], event["error_meaning"]) == (21211, "Invalid 'To' number")


def test_an_unanswered_call_sends_escalated_then_unacknowledged_once_each(
    celery_worker: Any, client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, fake_lc: FakeLimaCharlie
) -> None:
    subscribe(intake, tenant)
    intake.run(tenant, body="Ransomware on fs-01", ack_within=QUICK, escalate="call", context=CONTEXT)
    call = wait_for(lambda: Delivery.objects.filter(channel="voice", status="queued").first(), timeout=45)
    played = fake_twilio.calls[0]

    post_webhook(client, fake_twilio.call_status(played, "no-answer", tenant.auth_token))

    escalated, unacknowledged = events_settled(fake_lc, tenant, 2)
    assert (escalated["kind"], escalated["action"], escalated["delivery_id"]) == ("escalated", "call", str(call.id))
    assert unacknowledged["kind"] == "unacknowledged" and unacknowledged["tried"] == [tenant.recipient]
    assert unacknowledged["context"] == CONTEXT
    post_webhook(client, fake_twilio.call_status(played, "completed", tenant.auth_token))  # late news: nothing
    assert OutboundEvent.objects.count() == 2


def test_next_that_runs_out_of_people_sends_unacknowledged(
    celery_worker: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, fake_lc: FakeLimaCharlie
) -> None:
    subscribe(intake, tenant)

    intake.run(tenant, body="walks the list", to=f"{tenant.recipient},{SECOND}", ack_within=QUICK, escalate="next")

    events = events_settled(fake_lc, tenant, 2, timeout=60)
    assert kinds(events) == ["escalated", "unacknowledged"]
    assert (events[0]["recipient"], events[0]["escalated_from"]) == (SECOND, tenant.recipient)
    assert events[1]["tried"] == sorted([tenant.recipient, SECOND])


def test_the_hook_down_then_up_gets_each_event_exactly_once(
    celery_worker: Any, client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, fake_lc: FakeLimaCharlie
) -> None:
    subscribe(intake, tenant)
    intake.run(tenant, body="while LimaCharlie is down", context=CONTEXT)
    (alert,) = _queued(1)
    fake_lc.hook_down(2)

    reply(client, fake_twilio, tenant, alert.ack_code)

    (event,) = events_settled(fake_lc, tenant, 1)
    assert event["kind"] == "acknowledged"
    stored = OutboundEvent.objects.get()
    assert stored.attempts == 3 and stored.last_error == "" and stored.sent_at is not None
    assert fake_lc.hook_posts == [(tenant.oid, "ext-twilio")] * 3


def _run_block(tenant: Tenant, *, config: dict[str, Any], **data: Any) -> dict[str, Any]:
    from tests.conftest import run_block

    block = run_block(tenant, **data)
    block["config"] = config
    return block


def test_a_call_that_was_never_placed_sends_failed_then_unacknowledged(
    celery_worker: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, fake_lc: FakeLimaCharlie
) -> None:
    subscribe(intake, tenant)
    intake.run(tenant, body="Ransomware on fs-02", ack_within=QUICK, escalate="call")
    _queued(1)
    fake_twilio.plan("500")  # the call's POST: nothing created, an ambiguous answer; not found on reconcile

    events = events_settled(fake_lc, tenant, 3, timeout=60)

    assert kinds(events) == ["escalated", "failed", "unacknowledged"]
    assert events[1]["channel"] == "voice" and "not found at Twilio" in events[1]["error_message"]
    assert Delivery.objects.get(channel="voice").status == "failed"
