"""Escalation declared by the rule: ack_within + escalate call / next. The timers are fired here by
hand (eager tasks; tests/test_escalation_worker.py runs them through a real worker's countdown)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from deliveries import services
from deliveries.models import Delivery, Escalation, StatusEvent
from deliveries.tasks import escalate as escalate_task
from deliveries.tasks import reconcile_delivery as reconcile_task
from deliveries.tasks import sweep
from tests.conftest import PUBLIC_BASE_URL, Intake, Tenant, post_webhook, run_block
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.django_db
SECOND, THIRD = "+15005550002", "+15005550003"
CALLABLE = "+14155550101"


@pytest.fixture
def tenant(tenant: Tenant) -> Tenant:
    """Calls ring ordinary phones only: the recipient is a fixed or mobile number in the sender's country
    (the tenant's usual +1 500 number is a personal, forwarding number, which calls refuse)."""
    return replace(tenant, recipient=CALLABLE)


@pytest.fixture(autouse=True)
def public_url(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL
    settings.ALLOWED_HOSTS = ["testserver", "sms.example.com"]


@pytest.fixture
def commit(django_capture_on_commit_callbacks: Any) -> Callable[[Callable[[], Any]], Any]:
    def run(action: Callable[[], Any]) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return action()

    return run


def _run(intake: Intake, tenant: Tenant, **data: Any) -> Any:
    response = intake.run(tenant, **data)
    assert response.status_code == 200, response.json()
    return response.json()["data"]


def _time_is_up(commit: Callable[..., Any]) -> None:
    """Every waiting timer's moment has come: fire each as its countdown task would."""
    Escalation.objects.filter(state="waiting").update(due_at=timezone.now() - timedelta(seconds=1))
    for timer_id in Escalation.objects.filter(state="waiting").values_list("id", flat=True):
        commit(lambda t=timer_id: escalate_task.apply(args=(str(t),)))


def _ack_by_reply(client: Any, fake: FakeTwilio, tenant: Tenant, delivery: Delivery) -> None:
    url = f"{PUBLIC_BASE_URL}/twilio/inbound/{tenant.oid}/"
    webhook = fake.inbound_message(
        url, tenant.auth_token, From=delivery.to_number, To=tenant.sender, Body=delivery.ack_code
    )
    assert post_webhook(client, webhook).status_code == 200


def test_without_escalation_nothing_is_timed(intake: Intake, tenant: Tenant) -> None:
    _run(intake, tenant, to=f"{tenant.recipient},{SECOND}")
    assert Escalation.objects.count() == 0 and Delivery.objects.count() == 2


def test_an_unacknowledged_alert_gets_exactly_one_call_after_ack_within(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, commit: Any
) -> None:
    _run(intake, tenant, body="Ransomware on fs-01", ack_within="5", escalate="call")
    alert = Delivery.objects.get()
    timer = Escalation.objects.get()
    assert (timer.action, timer.ack_within_seconds, timer.alert) == ("call", 300, alert)
    assert (
        timer.due_at == alert.created_at + timedelta(minutes=5)
        or abs((timer.due_at - alert.created_at).total_seconds() - 300) < 2
    )
    assert fake_twilio.call_posts() == []  # the countdown task arrived early: nothing yet

    _time_is_up(commit)
    _time_is_up(commit)  # a second firing (a redelivered task, the sweeper) changes nothing
    commit(lambda: escalate_task.apply(args=(str(timer.id),)))

    call = Delivery.objects.get(channel="voice")
    assert (call.to_number, call.from_number, call.escalates, call.status) == (
        tenant.recipient,
        tenant.sender,
        alert,
        "queued",
    )
    (posted,) = fake_twilio.call_posts()
    assert (posted["To"], posted["From"], posted["Timeout"]) == (tenant.recipient, tenant.sender, "30")
    assert posted["StatusCallback"] == f"{PUBLIC_BASE_URL}/twilio/status/{call.id}/"
    assert "<Say>ext-twilio security alert. Ransomware on fs-01</Say>" in posted["Twiml"]
    assert f'action="{PUBLIC_BASE_URL}/twilio/voice/{call.id}/gather/"' in posted["Twiml"]
    assert 'numDigits="1"' in posted["Twiml"]
    attempt = call.attempts.get()
    assert (attempt.outcome, call.twilio_sid) == ("accepted", fake_twilio.calls[0]["sid"])
    assert call.twilio_sid.startswith("CA")


def test_a_keypress_acknowledges_the_alert_and_voicemail_never_does(
    client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, commit: Any
) -> None:
    _run(intake, tenant, ack_within="1", escalate="call")
    _time_is_up(commit)
    alert, call = Delivery.objects.get(channel="sms"), Delivery.objects.get(channel="voice")
    played = fake_twilio.calls[0]

    # A voicemail greeting: the call is answered and completes, no key is ever pressed.
    for status in ("ringing", "in-progress", "completed"):
        assert post_webhook(client, fake_twilio.call_status(played, status, tenant.auth_token)).status_code == 200
    call.refresh_from_db()
    alert.refresh_from_db()
    assert call.status == "delivered" and alert.acknowledged_at is None
    assert list(call.status_events.values_list("message_status", flat=True)) == ["ringing", "in-progress", "completed"]

    answer = post_webhook(client, fake_twilio.gather(played, "1", tenant.auth_token))
    assert answer.status_code == 200 and "<Say>Acknowledged. Thank you.</Say>" in answer.content.decode()
    alert.refresh_from_db()
    assert (alert.acknowledged_by, alert.ack_channel) == (tenant.recipient, "voice")
    assert StatusEvent.objects.filter(delivery=call, message_status="gather:1").count() == 1


def test_a_wrong_key_acknowledges_nothing_and_a_call_takes_one_keypress(
    client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, commit: Any
) -> None:
    _run(intake, tenant, ack_within="1", escalate="call")
    _time_is_up(commit)
    played = fake_twilio.calls[0]

    answer = post_webhook(client, fake_twilio.gather(played, "2", tenant.auth_token))
    assert "Not acknowledged" in answer.content.decode()
    # The call hung up after its one <Gather>: a second keypress for it is a replay, and changes nothing.
    replayed = post_webhook(client, fake_twilio.gather(played, "1", tenant.auth_token))

    assert replayed.status_code == 200
    assert replayed.content.decode() == '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    assert Delivery.objects.get(channel="sms").acknowledged_at is None
    assert list(StatusEvent.objects.values_list("message_status", flat=True)) == ["gather:2"]


def test_a_forged_keypress_gets_403(
    client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, commit: Any
) -> None:
    _run(intake, tenant, ack_within="1", escalate="call")
    _time_is_up(commit)
    response = post_webhook(client, fake_twilio.gather(fake_twilio.calls[0], "1", "forged-token"))
    assert response.status_code == 403
    assert Delivery.objects.get(channel="sms").acknowledged_at is None
    assert not StatusEvent.objects.exists()


def test_nothing_is_called_after_an_acknowledgement(
    client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, commit: Any
) -> None:
    _run(intake, tenant, ack_within="5", escalate="call")
    _ack_by_reply(client, fake_twilio, tenant, Delivery.objects.get())

    assert Escalation.objects.get().state == "cancelled"
    _time_is_up(commit)
    commit(lambda: escalate_task.apply(args=(str(Escalation.objects.get().id),)))
    assert fake_twilio.call_posts() == [] and not Delivery.objects.filter(channel="voice").exists()


def test_an_ambiguous_call_is_never_placed_twice(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, commit: Any, settings: Any
) -> None:
    _run(intake, tenant, ack_within="1", escalate="call")
    fake_twilio.plan("500")  # nothing created, answer 500: the call may exist as far as we know
    _time_is_up(commit)

    call = Delivery.objects.get(channel="voice")
    assert list(call.attempts.values_list("trigger", "outcome")) == [
        ("automatic", "ambiguous"),
        ("reconcile", "not_found_on_reconcile"),
    ]
    assert call.status == "failed" and "never placed twice" in call.error_message
    assert len(fake_twilio.call_posts()) == 1
    assert fake_twilio.lookups[-1]["To"] == tenant.recipient


def test_an_ambiguous_call_is_not_adopted_by_to_and_from_alone_but_by_its_own_callback(
    client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, commit: Any, settings: Any
) -> None:
    _run(intake, tenant, ack_within="1", escalate="call")
    fake_twilio.plan("create_then_500")
    _time_is_up(commit)

    # A call to this person from this number exists, but so could another step's: nothing proves it is this one.
    call = Delivery.objects.get(channel="voice")
    assert (call.status, call.twilio_sid) == ("ambiguous", "")
    looks = call.attempts.filter(trigger="reconcile")  # eager tasks: every look-up at once, then an operator's
    assert {a.outcome for a in looks} == {"reconcile_failed"} and looks.count() == settings.SEND_MAX_ATTEMPTS
    assert all("none proven this step's" in a.twilio_message for a in looks)

    # Its status callback comes to this step's own URL (our delivery id): that is the proof.
    played = fake_twilio.calls[0]
    assert post_webhook(client, fake_twilio.call_status(played, "ringing", tenant.auth_token)).status_code == 200
    call.refresh_from_db()
    assert (call.status, call.twilio_sid) == ("sent", played["sid"])
    assert len(fake_twilio.call_posts()) == 1


def test_an_ambiguous_call_whose_callback_came_first_is_adopted_on_reconcile(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, commit: Any
) -> None:
    _run(intake, tenant, ack_within="1", escalate="call")
    fake_twilio.plan("create_then_500")
    _time_is_up(commit)
    call = Delivery.objects.get(channel="voice")
    played = fake_twilio.calls[0]
    StatusEvent.objects.create(delivery=call, message_sid=played["sid"], message_status="initiated", payload={})

    commit(lambda: reconcile_task.apply(args=(str(call.id),)))

    call.refresh_from_db()
    assert (call.status, call.twilio_sid) == ("queued", played["sid"])
    assert call.attempts.filter(outcome="found_on_reconcile").count() == 1
    assert len(fake_twilio.call_posts()) == 1


def test_an_opted_out_recipient_is_not_called(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, commit: Any
) -> None:
    _run(intake, tenant, ack_within="1", escalate="call")
    services.opt_out_record(delivery=Delivery.objects.get())
    _time_is_up(commit)
    call = Delivery.objects.get(channel="voice")
    assert (call.status, call.hold) == ("suppressed", "opted_out") and fake_twilio.call_posts() == []


def test_next_walks_the_list_only_while_nobody_acknowledges(
    client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, commit: Any
) -> None:
    data = _run(intake, tenant, to=f"{tenant.recipient},{SECOND},{THIRD}", ack_within="5", escalate="next")
    assert [d["to"] for d in data["deliveries"]] == [tenant.recipient] and data["next"] == [SECOND, THIRD]
    assert [p["To"] for p in fake_twilio.posts()] == [tenant.recipient]

    _time_is_up(commit)  # the first did not acknowledge: the second is texted
    assert [p["To"] for p in fake_twilio.posts()] == [tenant.recipient, SECOND]
    second = Delivery.objects.get(to_number=SECOND)
    assert second.ack_code and second.escalates == Delivery.objects.get(to_number=tenant.recipient)

    _ack_by_reply(client, fake_twilio, tenant, second)  # the second acknowledges: the third never is
    _time_is_up(commit)
    assert [p["To"] for p in fake_twilio.posts()] == [tenant.recipient, SECOND]
    assert not Delivery.objects.filter(to_number=THIRD).exists()
    assert list(Escalation.objects.order_by("created_at").values_list("state", flat=True)) == ["fired", "cancelled"]


def test_the_sweeper_fires_a_timer_whose_task_was_lost(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, commit: Any, settings: Any
) -> None:
    _run(intake, tenant, ack_within="1", escalate="call")
    Escalation.objects.update(due_at=timezone.now() - timedelta(seconds=settings.SWEEP_PENDING_SECONDS + 5))

    commit(lambda: sweep.apply())

    assert Escalation.objects.get().state == "fired" and len(fake_twilio.call_posts()) == 1


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"escalate": "call"}, "request.data.escalate needs request.data.ack_within"),
        ({"escalate": "page", "ack_within": "5"}, "request.data.escalate"),
        ({"ack_within": "0", "escalate": "call"}, "request.data.ack_within"),
        ({"ack_within": "soon", "escalate": "call"}, "request.data.ack_within"),
        ({"ack_within": "5", "escalate": "call", "from": "MG" + "a" * 32}, "a Messaging Service cannot call"),
    ],
)
def test_bad_escalation_parameters_get_400(intake: Intake, tenant: Tenant, data: dict[str, Any], error: str) -> None:
    response = intake.run(tenant, **data)
    assert response.status_code == 400 and error in response.json()["error"]
    assert not Delivery.objects.exists()


def test_a_yaml_list_of_recipients_is_accepted(intake: Intake, tenant: Tenant) -> None:
    response = intake.send("request", run_block(tenant, to=[tenant.recipient, SECOND]))
    assert response.status_code == 200
    assert set(Delivery.objects.values_list("to_number", flat=True)) == {tenant.recipient, SECOND}


def test_next_with_a_single_recipient_times_nothing(intake: Intake, tenant: Tenant) -> None:
    _run(intake, tenant, ack_within="5", escalate="next")
    assert Escalation.objects.count() == 0 and Delivery.objects.count() == 1


def test_a_long_timer_waits_in_hops_of_half_the_visibility_timeout_and_a_copy_adds_no_hop(
    intake: Intake, tenant: Tenant, commit: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    armed: list[tuple[list[str], float | None]] = []

    def escalate(ids: list[str], countdown: float | None = None) -> int:
        armed.append((list(ids), countdown))
        return len(ids)

    monkeypatch.setattr("deliveries.services.queue.escalate", escalate)
    _run(intake, tenant, ack_within="1440", escalate="call")  # 24 hours
    timer = Escalation.objects.get()
    hop = settings.BROKER_VISIBILITY_TIMEOUT_SECONDS / 2
    assert armed == [([str(timer.id)], hop)]
    assert timer.armed_until is not None and abs((timer.armed_until - timer.created_at).total_seconds() - hop) < 1

    # A copy of the task that comes before the hop ends (put back by the broker) arms nothing.
    assert commit(lambda: escalate_task.apply(args=(str(timer.id),))).get() == "early"
    assert len(armed) == 1

    # The hop's own task, at its end, arms the next hop from the row.
    Escalation.objects.update(armed_until=timezone.now())
    assert commit(lambda: escalate_task.apply(args=(str(timer.id),))).get() == "early"
    timer.refresh_from_db()
    assert armed[1] == ([str(timer.id)], hop) and timer.state == "waiting"
    assert timer.armed_until is not None and abs((timer.armed_until - timezone.now()).total_seconds() - hop) < 2


def test_one_call_reads_out_a_persons_alerts_due_together_and_one_key_acknowledges_them_all(
    client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, commit: Any
) -> None:
    for n in range(3):
        _run(intake, tenant, body=f"alert {n}", ack_within="1", escalate="call")
    _run(intake, tenant, body="later", ack_within="30", escalate="call")
    later = Escalation.objects.get(alert__body="later")
    Escalation.objects.exclude(id=later.id).update(due_at=timezone.now() - timedelta(seconds=1))

    for timer_id in Escalation.objects.exclude(id=later.id).values_list("id", flat=True):
        commit(lambda t=timer_id: escalate_task.apply(args=(str(t),)))

    (call,) = Delivery.objects.filter(channel="voice")
    (placed,) = fake_twilio.call_posts()
    assert (
        "<Say>ext-twilio: 3 security alerts waiting. Alert 1: alert 0. Alert 2: alert 1. Alert 3: alert 2."
        in (placed["Twiml"])
    )
    assert "Press 1 to acknowledge all three." in placed["Twiml"]
    fired = Escalation.objects.exclude(id=later.id)
    assert set(fired.values_list("state", "result")) == {("fired", call.id)}
    assert Escalation.objects.get(id=later.id).state == "waiting"  # not due yet: not read out

    answer = post_webhook(client, fake_twilio.gather(fake_twilio.calls[0], "1", tenant.auth_token))

    assert "Acknowledged. Thank you." in answer.content.decode()
    acknowledged = Delivery.objects.filter(channel="sms", acknowledged_at__isnull=False)
    assert sorted(acknowledged.values_list("body", "ack_channel")) == [(f"alert {n}", "voice") for n in range(3)]
    assert Delivery.objects.get(body="later", channel="sms").acknowledged_at is None
