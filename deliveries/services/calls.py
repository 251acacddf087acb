"""A voice delivery (an escalation's call) at Twilio: place it, or look for it after an ambiguous
answer. The send claim, attempts and status callbacks are the same as a text's (services.send)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import phonenumbers
from django.conf import settings
from django.urls import reverse
from phonenumbers import PhoneNumberType

from deliveries.models import Approval, Delivery, Escalation
from deliveries.observability import metrics
from deliveries.twilio import client as twilio
from deliveries.twilio import voice
from deliveries.twilio.errors import Outcome

# What a call may ring: a person's own phone. Premium-rate, shared-cost, UAN and personal numbers (and
# pagers, voicemail, toll-free lines and numbers of no known type) bill the caller, forward at the
# caller's cost, or reach no person: an escalation is not a way to run up a bill (docs/security.md).
ORDINARY = frozenset(
    {PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE, PhoneNumberType.VOIP}
)
_TYPE_NAMES = {
    PhoneNumberType.PREMIUM_RATE: "a premium-rate number",
    PhoneNumberType.SHARED_COST: "a shared-cost number",
    PhoneNumberType.UAN: "a UAN (universal access) number",
    PhoneNumberType.PERSONAL_NUMBER: "a personal (forwarding) number",
    PhoneNumberType.TOLL_FREE: "a toll-free number",
    PhoneNumberType.PAGER: "a pager",
    PhoneNumberType.VOICEMAIL: "a voicemail access number",
}


def call_number_refusal(*, to: str, from_: str) -> str:
    """Why `to` may not be called from `from_` (both E.164), or "" when it may: it must be an ordinary
    phone (phonenumbers' number type) in a country CALL_ALLOWED_COUNTRIES allows (by default the
    calling number's own country only)."""
    return _refusal(to, from_)[1]


def call_request_refusal(recipients: Sequence[str], from_: str, ack_within_seconds: int | None) -> str:
    """Why a `run` call asking for `escalate: call` is refused, as "FIELD: why", or "": every recipient
    an ordinary phone in an allowed country, and `ack_within` at least CALL_MIN_ACK_WITHIN_SECONDS."""
    if (ack_within_seconds or 0) < settings.CALL_MIN_ACK_WITHIN_SECONDS:
        minutes = settings.CALL_MIN_ACK_WITHIN_SECONDS / 60
        unit = "minute" if minutes == 1 else "minutes"
        return f"ack_within must be at least {minutes:g} {unit} with escalate: call (a call is the step that costs)"
    for to in recipients:
        refusal = call_number_refusal(to=to, from_=from_)
        if refusal:
            return f"to: {refusal}"
    return ""


def _refusal(to: str, from_: str) -> tuple[str, str]:
    """(the metric's reason, the words) or ("", "")."""
    try:
        number = phonenumbers.parse(to, None)
    except phonenumbers.NumberParseException:
        return "number_type", f"{to} is not a phone number that can be called"
    kind = phonenumbers.number_type(number)
    if kind not in ORDINARY:
        name = _TYPE_NAMES.get(kind, "a number of unknown type")
        return "number_type", f"{to} is {name}: calls ring ordinary phones only"
    country = phonenumbers.region_code_for_number(number) or "unknown"
    allowed = settings.CALL_ALLOWED_COUNTRIES
    if "*" in allowed:
        return "", ""
    if not allowed:
        allowed = [_country_of(from_)]
    if country not in allowed:
        return "country", f"{to} is in {country}; calls may reach only {', '.join(allowed)} (CALL_ALLOWED_COUNTRIES)"
    return "", ""


def _country_of(number: str) -> str:
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(number, None)) or "none"
    except phonenumbers.NumberParseException:
        return "none"  # a Messaging Service SID: it places no call anyway


def callback_urls(delivery: Delivery) -> tuple[str, str]:
    """(status callback, <Gather> action): our delivery id is in both, as for a text."""
    base = settings.PUBLIC_BASE_URL
    if not base:
        return "", ""
    return (
        base + reverse("twilio-status-callback", args=[delivery.id]),
        base + reverse("twilio-call-gather", args=[delivery.id]),
    )


def call_hold(delivery: Delivery) -> tuple[str, str]:
    """(hold, why) when this voice delivery must not be placed (services.send holds it back as
    suppressed, never placed), or ("", "")."""
    if delivery.channel != Delivery.Channel.VOICE:
        return "", ""
    reason, refusal = _refusal(delivery.to_number, delivery.from_number)
    if not refusal:
        return "", ""
    metrics.call_refused(reason)
    return Delivery.Hold.CALL_REFUSED, f"Call not placed: {refusal}."


def call_post(delivery: Delivery) -> twilio.SendResult:
    credential = delivery.credential
    if credential is None or not credential.usable:
        return twilio.SendResult(
            outcome=Outcome.PERMANENT,
            duration_ms=0,
            twilio_message="No Twilio credential is stored for this delivery (its organisation unsubscribed).",
        )
    refusal = call_number_refusal(to=delivery.to_number, from_=delivery.from_number)
    if refusal:  # the last line: services.send holds such a call back before it claims it (call_hold)
        return twilio.SendResult(outcome=Outcome.PERMANENT, duration_ms=0, twilio_message=f"Never placed: {refusal}.")
    status_url, gather_url = callback_urls(delivery)
    approval = Approval.objects.filter(alert_id=delivery.alert_id).first() if delivery.alert_id else None
    if approval is not None:  # an approval's call asks its question: press 1 to approve, 2 to deny
        twiml = voice.approval_twiml(question=approval.question, gather_url=gather_url)
    else:
        twiml = voice.call_twiml(alert_text=delivery.body, gather_url=gather_url, alerts=len(call_alerts(delivery)))
    return voice.place_call(
        account_sid=credential.account_sid,
        auth_token=credential.auth_token,
        to=delivery.to_number,
        from_=delivery.from_number,
        twiml=twiml,
        status_callback=status_url,
    )


def call_alerts(call: Delivery) -> list[Delivery]:
    """The alerts one escalation call is about: the one it escalates, and those whose call timers it
    fired too (services.escalate reads a person's alerts due a call out in one call)."""
    timers = Escalation.objects.filter(result=call, action=Escalation.Action.CALL).exclude(alert=call.escalates_id)
    joined = [t.alert for t in timers.select_related("alert").order_by("alert__created_at")]
    return ([call.escalates] if call.escalates else []) + joined


def call_find(delivery: Delivery, since: datetime) -> twilio.LookupResult:
    credential = delivery.credential
    if credential is None or not credential.usable:
        return twilio.LookupResult(twilio.LookupOutcome.FAILED, 0, twilio_message="No Twilio credential is stored.")
    # A SID that came in a status callback to this delivery's own URL is this step's call (voice.find_call).
    proven = delivery.status_events.exclude(message_sid="")
    return voice.find_call(
        account_sid=credential.account_sid,
        auth_token=credential.auth_token,
        to=delivery.to_number,
        from_=delivery.from_number,
        since=since,
        proven=frozenset(proven.values_list("message_sid", flat=True)),
    )
