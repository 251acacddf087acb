"""Approvals from a phone, end to end: a signed `request_approval` at the intake, the real worker texting
the question (and placing the call), handsets answering through the fake Twilio, and the decision
arriving once as an event at the organisation's LimaCharlie hook."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from deliveries import services
from deliveries.models import Approval, Delivery, OutboundEvent
from tests.conftest import PUBLIC_BASE_URL, Intake, Tenant, post_webhook, run_block, wait_for
from tests.fakes.limacharlie import FakeLimaCharlie
from tests.fakes.twilio import FakeTwilio
from tests.loop.helpers import CONTEXT, QUICK, SECOND, events_settled, reply, subscribe

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
QUESTION = "Isolate ws-180 from the network?"
ISOLATE = {"action": "isolate network", "sid": CONTEXT["sid"]}


@pytest.fixture(autouse=True)
def public_url(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL  # as the worker has it (tests/conftest.py)
    settings.ALLOWED_HOSTS = ["testserver", "sms.example.com"]


def _ask(intake: Intake, tenant: Tenant, **data: Any) -> Any:
    block = run_block(tenant, **data)
    block["action"] = "request_approval"
    del block["data"]["body"]
    block["data"].update(question=QUESTION, approved_content=ISOLATE, context=CONTEXT)
    response = intake.send("request", block)
    assert response.status_code == 200, response.content
    return response.json()["data"]


def _texts(fake: FakeTwilio, count: int) -> list[dict[str, str]]:
    wait_for(lambda: len(fake.message_posts()) >= count)
    return fake.message_posts()


def test_an_approval_answered_by_text_sends_one_approved_event_with_its_content_and_context(
    celery_worker: Any, client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, fake_lc: FakeLimaCharlie
) -> None:
    subscribe(intake, tenant)
    code = _ask(intake, tenant)["code"]
    (text,) = _texts(fake_twilio, 1)
    assert text["Body"] == (
        f"{QUESTION} Reply {code} Y to approve or {code} N to deny. (Denied in 5 minutes without an answer.)"
    )

    answer = reply(client, fake_twilio, tenant, f"{code.lower()} y")

    assert "ext-twilio: approved. Thank you." in answer.content.decode()
    (event,) = events_settled(fake_lc, tenant, 1)
    assert (event["kind"], event["content"], event["context"]) == ("approved", ISOLATE, CONTEXT)
    assert (event["responder"], event["responder_channel"], event["question"]) == (tenant.recipient, "sms", QUESTION)
    approval = Approval.objects.get()
    assert (approval.decision, approval.decided_by, approval.decided_channel) == ("approved", tenant.recipient, "sms")


def test_an_approval_denied_by_a_keypress_on_its_call(
    celery_worker: Any, client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, fake_lc: FakeLimaCharlie
) -> None:
    subscribe(intake, tenant)
    _ask(intake, tenant, ack_within=QUICK, escalate="call")
    wait_for(lambda: Delivery.objects.filter(channel="voice", status="queued").exists(), timeout=45)
    played = fake_twilio.calls[0]
    assert "Isolate ws-180 from the network?" in played["twiml"] and "Press 1 to approve, 2 to deny." in played["twiml"]

    answer = post_webhook(client, fake_twilio.gather(played, "2", tenant.auth_token))

    assert "<Say>Denied. Thank you.</Say>" in answer.content.decode()
    (event,) = events_settled(fake_lc, tenant, 1)
    assert (event["kind"], event["responder_channel"], event["content"]) == ("denied", "voice", None)
    assert event["delivery_id"] == str(Delivery.objects.get(channel="voice").id)


def test_the_first_of_two_people_decides_and_the_second_is_told_who_and_when(
    celery_worker: Any, client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, fake_lc: FakeLimaCharlie
) -> None:
    subscribe(intake, tenant)
    code = _ask(intake, tenant, to=f"{tenant.recipient},{SECOND}")["code"]
    _texts(fake_twilio, 2)

    reply(client, fake_twilio, tenant, f"{code} N")
    late = reply(client, fake_twilio, tenant, f"{code} Y", from_=SECOND).content.decode()

    decided = Approval.objects.get().decided_at
    assert f"ext-twilio: already denied by {tenant.recipient} at {decided:%H:%M} UTC." in late
    (event,) = events_settled(fake_lc, tenant, 1)
    assert event["kind"] == "denied" and event["responder"] == tenant.recipient
    assert OutboundEvent.objects.count() == 1


def test_a_timed_out_approval_is_decided_by_its_timeout_choice_once(
    celery_worker: Any,
    client: Any,
    intake: Intake,
    tenant: Tenant,
    fake_twilio: FakeTwilio,
    fake_lc: FakeLimaCharlie,
    settings: Any,
) -> None:
    subscribe(intake, tenant)
    code = _ask(intake, tenant, timeout_seconds=60, timeout_choice="approved")["code"]
    (text,) = _texts(fake_twilio, 1)
    assert text["Body"].endswith("(Approved in 1 minute without an answer.)")
    # Its countdown task is a minute away: as if it was lost, and the moment has long passed.
    Approval.objects.update(due_at=timezone.now() - timedelta(seconds=settings.SWEEP_PENDING_SECONDS + 5))

    services.deliveries_sweep()

    (event,) = events_settled(fake_lc, tenant, 1)
    assert (event["kind"], event["responder"], event["responder_channel"]) == ("approved", "timeout", "timeout")
    assert event["content"] == ISOLATE and event["recipient"] == ""
    late = reply(client, fake_twilio, tenant, f"{code} N").content.decode()
    assert "ext-twilio: already approved by the timeout at" in late
    assert OutboundEvent.objects.count() == 1


def test_only_the_people_asked_can_answer(
    celery_worker: Any, client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, fake_lc: FakeLimaCharlie
) -> None:
    subscribe(intake, tenant)
    code = _ask(intake, tenant)["code"]
    _texts(fake_twilio, 1)

    answer = reply(client, fake_twilio, tenant, f"{code} Y", from_=SECOND).content.decode()

    assert answer.endswith("<Response/>")  # a number this organisation never alerted gets no answer
    assert Approval.objects.get().decided_at is None and not OutboundEvent.objects.exists()
