"""A voice delivery (an escalation's call) at Twilio: place it, or look for it after an ambiguous
answer. The send claim, attempts and status callbacks are the same as a text's (services.send)."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.urls import reverse

from deliveries.models import Approval, Delivery
from deliveries.twilio import client as twilio
from deliveries.twilio import voice
from deliveries.twilio.errors import Outcome


def callback_urls(delivery: Delivery) -> tuple[str, str]:
    """(status callback, <Gather> action): our delivery id is in both, as for a text."""
    base = settings.PUBLIC_BASE_URL
    if not base:
        return "", ""
    return (
        base + reverse("twilio-status-callback", args=[delivery.id]),
        base + reverse("twilio-call-gather", args=[delivery.id]),
    )


def call_post(delivery: Delivery) -> twilio.SendResult:
    credential = delivery.credential
    if credential is None or not credential.usable:
        return twilio.SendResult(
            outcome=Outcome.PERMANENT,
            duration_ms=0,
            twilio_message="No Twilio credential is stored for this delivery (its organisation unsubscribed).",
        )
    status_url, gather_url = callback_urls(delivery)
    approval = Approval.objects.filter(alert_id=delivery.alert_id).first() if delivery.alert_id else None
    if approval is not None:  # an approval's call asks its question: press 1 to approve, 2 to deny
        twiml = voice.approval_twiml(question=approval.question, gather_url=gather_url)
    else:
        twiml = voice.call_twiml(alert_text=delivery.body, gather_url=gather_url)
    return voice.place_call(
        account_sid=credential.account_sid,
        auth_token=credential.auth_token,
        to=delivery.to_number,
        from_=delivery.from_number,
        twiml=twiml,
        status_callback=status_url,
    )


def call_find(delivery: Delivery, since: datetime) -> twilio.LookupResult:
    credential = delivery.credential
    if credential is None or not credential.usable:
        return twilio.LookupResult(twilio.LookupOutcome.FAILED, 0, twilio_message="No Twilio credential is stored.")
    return voice.find_call(
        account_sid=credential.account_sid,
        auth_token=credential.auth_token,
        to=delivery.to_number,
        from_=delivery.from_number,
        since=since,
    )
