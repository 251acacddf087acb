"""Codes cannot be guessed: a reply tries at most two codes, wrong codes lock a number for the rest of
the hour (said once, shown on the desk, counted in metrics), and answers other than HELP go only to
numbers the organisation alerted lately, a few an hour."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from deliveries.models import Delivery, InboundMessage
from deliveries.observability import metrics
from deliveries.services import codes
from deliveries.services.inbound import HELP_REPLY
from tests.conftest import PUBLIC_BASE_URL, Intake, Tenant, post_webhook
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.django_db
EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
STRANGER = "+15005550077"


@pytest.fixture(autouse=True)
def public_url(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL
    settings.ALLOWED_HOSTS = ["testserver", "sms.example.com"]


@pytest.fixture
def alert(intake: Intake, tenant: Tenant) -> Delivery:
    assert intake.run(tenant, body="Ransomware on fs-01").status_code == 200
    return Delivery.objects.get()


def _text(client: Any, fake: FakeTwilio, tenant: Tenant, body: str, from_: str | None = None) -> str:
    url = f"{PUBLIC_BASE_URL}/twilio/inbound/{tenant.oid}/"
    webhook = fake.inbound_message(url, tenant.auth_token, From=from_ or tenant.recipient, To=tenant.sender, Body=body)
    response = post_webhook(client, webhook)
    assert response.status_code == 200
    return str(response.content.decode())


def _wrong(code: str) -> str:
    """A code of the same shape that is not `code`."""
    return ("2" if code[0] != "2" else "3") + code[1:]


def test_codes_are_four_characters_of_the_unambiguous_alphabet(alert: Delivery) -> None:
    assert len(alert.ack_code) == 4 and set(alert.ack_code) <= set(codes.ALPHABET)
    assert alert.text_sent.endswith(f"\nReply {alert.ack_code} to acknowledge")


def test_a_reply_with_more_than_two_candidate_codes_acknowledges_nothing_and_says_why(
    client: Any, tenant: Tenant, fake_twilio: FakeTwilio, alert: Delivery
) -> None:
    # The right code hidden among many words that could be codes: nothing is tried.
    answer = _text(client, fake_twilio, tenant, f"WXYZ {alert.ack_code} 2345 QRST HJKM")

    assert "nothing acknowledged" in answer and "5 words that could be codes" in answer
    alert.refresh_from_db()
    assert alert.acknowledged_at is None
    message = InboundMessage.objects.get()
    assert (message.meaning, message.wrong_codes) == ("too_many_codes", 0)


def test_a_reply_with_the_code_and_one_other_word_still_acknowledges(
    client: Any, tenant: Tenant, fake_twilio: FakeTwilio, alert: Delivery
) -> None:
    assert "Acknowledged: Ransomware on fs-01" in _text(client, fake_twilio, tenant, f"ack {alert.ack_code}")


def test_five_wrong_codes_lock_the_number_for_the_rest_of_the_hour(
    client: Any, tenant: Tenant, fake_twilio: FakeTwilio, alert: Delivery
) -> None:
    locked_before = metrics.CODE_LOCKS.labels(event="locked")._value.get()
    refused_before = metrics.CODE_LOCKS.labels(event="refused")._value.get()
    wrong = _wrong(alert.ack_code)
    answers = [_text(client, fake_twilio, tenant, wrong) for _ in range(5)]

    assert all("that is not the code" in a for a in answers[:4])
    assert "too many wrong codes from this number" in answers[4] and "UTC" in answers[4]
    # The right code now acknowledges nothing, and the lock is not said again.
    assert _text(client, fake_twilio, tenant, alert.ack_code) == EMPTY
    alert.refresh_from_db()
    assert alert.acknowledged_at is None
    assert InboundMessage.objects.filter(meaning="code_locked").count() == 1
    assert metrics.CODE_LOCKS.labels(event="locked")._value.get() == locked_before + 1
    assert metrics.CODE_LOCKS.labels(event="refused")._value.get() == refused_before + 1
    # The desk reads the lock from the model.
    (lock,) = InboundMessage.objects.code_locks(now=timezone.now())
    assert (lock.number, lock.wrong_codes, lock.organization_id) == (tenant.recipient, 5, alert.organization_id)
    assert timedelta(minutes=59) < lock.until - timezone.now() <= timedelta(hours=1)


def test_the_lock_ends_when_the_wrong_codes_leave_the_hour(
    client: Any, tenant: Tenant, fake_twilio: FakeTwilio, alert: Delivery
) -> None:
    for _ in range(5):
        _text(client, fake_twilio, tenant, _wrong(alert.ack_code))
    InboundMessage.objects.update(received_at=timezone.now() - timedelta(minutes=61))

    assert "Acknowledged" in _text(client, fake_twilio, tenant, alert.ack_code)
    assert InboundMessage.objects.code_locks(now=timezone.now()) == []


def test_a_lock_is_per_number(
    client: Any, intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, alert: Delivery
) -> None:
    other = "+15005550002"
    assert intake.run(tenant, body="for the other", to=other).status_code == 200
    theirs = Delivery.objects.get(to_number=other)
    for _ in range(5):
        _text(client, fake_twilio, tenant, _wrong(alert.ack_code))

    assert "Acknowledged: for the other" in _text(client, fake_twilio, tenant, theirs.ack_code, from_=other)


def test_a_stranger_gets_help_but_no_other_answer(
    client: Any, tenant: Tenant, fake_twilio: FakeTwilio, alert: Delivery
) -> None:
    assert _text(client, fake_twilio, tenant, "who is this?", from_=STRANGER) == EMPTY
    assert _text(client, fake_twilio, tenant, alert.ack_code, from_=STRANGER) == EMPTY
    assert HELP_REPLY in _text(client, fake_twilio, tenant, "HELP", from_=STRANGER)

    stored = InboundMessage.objects.filter(from_number=STRANGER).order_by("received_at")
    assert list(stored.values_list("withheld", "reply")) == [("not_alerted", ""), ("not_alerted", ""), ("", HELP_REPLY)]
    alert.refresh_from_db()
    assert alert.acknowledged_at is None


def test_a_number_alerted_over_thirty_days_ago_gets_no_answer(
    client: Any, tenant: Tenant, fake_twilio: FakeTwilio, alert: Delivery
) -> None:
    Delivery.objects.update(created_at=timezone.now() - timedelta(days=31))
    assert _text(client, fake_twilio, tenant, "?") == EMPTY
    assert InboundMessage.objects.get().withheld == "not_alerted"


def test_an_alerted_number_gets_at_most_five_answers_an_hour(
    client: Any, tenant: Tenant, fake_twilio: FakeTwilio, alert: Delivery
) -> None:
    answers = [_text(client, fake_twilio, tenant, "status?") for _ in range(7)]

    assert all("Waiting:" in a for a in answers[:5]) and answers[5:] == [EMPTY, EMPTY]
    assert HELP_REPLY in _text(client, fake_twilio, tenant, "HELP")  # always answered
    assert InboundMessage.objects.filter(withheld="reply_limit").count() == 2
    assert "Acknowledged" not in answers[-1]
    # An acknowledgement still acts when its answer is withheld.
    assert _text(client, fake_twilio, tenant, alert.ack_code) == EMPTY
    alert.refresh_from_db()
    assert alert.acknowledged_at is not None
