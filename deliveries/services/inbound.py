"""Twilio's inbound webhooks: a message a person sent to an organisation's number, and the key
pressed during an escalation's call. Each is checked with X-Twilio-Signature and the Auth Token of
the organisation named in the URL, then stored whole for audit before anything acts on it.

A message is an opt-out (STOP and Twilio's other words, or OptOutType), an opt-in (START), a
request for help, or a reply that acknowledges one alert by its code."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from deliveries.models import Credential, Delivery, InboundMessage, OptOut, Organization, StatusEvent
from deliveries.services import approvals
from deliveries.services.acknowledge import alert_acknowledge
from deliveries.services.codes import codes_in
from deliveries.twilio.callbacks import InboundReport, messaging_twiml, parse_inbound_message, signature_valid
from deliveries.twilio.voice import gather_answer, say_twiml

logger = logging.getLogger(__name__)
Meaning = InboundMessage.Meaning

# README "What a recipient sees": the exact answers.
HELP_REPLY = (
    "ext-twilio security alerts from your organisation's LimaCharlie. Reply with an alert's code to "
    "acknowledge it. Reply STOP to stop these texts, START to resume."
)
ACK_REPLY = "Acknowledged: {text}"
NONE_OUTSTANDING = "ext-twilio: no alert is waiting for your acknowledgement."
OUTSTANDING = "ext-twilio: that is not the code of an alert waiting for you. Waiting: {codes}"


class WebhookResult(enum.StrEnum):
    STORED = "stored"
    UNKNOWN = "unknown"  # no such organisation or delivery, or nothing to check the signature with
    FORGED = "forged"


@dataclass(frozen=True)
class InboundAnswer:
    result: WebhookResult
    twiml: str = ""


def inbound_message_record(*, oid: str, url: str, params: dict[str, str], signature: str) -> InboundAnswer:
    org = Organization.objects.filter(oid=oid).first()
    # Checked with the tokens this organisation's alerts were sent with, for the account Twilio names.
    tokens = _tokens(org, params.get("AccountSid", ""))
    if org is None or not tokens:
        logger.warning("inbound message for unknown organisation %s (or no credential to check it)", oid)
        return InboundAnswer(WebhookResult.UNKNOWN)
    if not any(signature_valid(auth_token=t, url=url, params=params, signature=signature) for t in tokens):
        logger.warning("inbound message for organisation %s with an invalid X-Twilio-Signature", oid)
        return InboundAnswer(WebhookResult.FORGED)
    report = parse_inbound_message(params)
    with transaction.atomic():
        message = InboundMessage.objects.create(
            organization=org,
            message_sid=report.message_sid,
            from_number=report.from_number,
            to_number=report.to_number,
            body=report.body,
            meaning=report.keyword or Meaning.UNMATCHED,
            payload=params,
        )
        senders = {report.to_number, params.get("MessagingServiceSid", "")} - {""}
        if report.keyword in ("stop", "start") and not _is_e164(report.from_number):
            reply = ""  # e.g. a WhatsApp sender: not a recipient this service texts
        elif report.keyword == "stop":
            _opt_out(org, message, senders)
            reply = ""  # Twilio confirms an opt-out itself, and blocks anything we would add
        elif report.keyword == "start":
            _opt_in(message, org, senders)
            reply = ""
        elif report.keyword == "help":
            reply = HELP_REPLY
        else:  # an approval's answer ("4K7 Y"), or else an acknowledgement
            reply = approvals.approval_answer(
                organization=org, message=message, from_number=report.from_number, body=report.body
            ) or _acknowledge(org, message, report)
        message.reply = reply
        message.save(update_fields=["reply", "meaning", "acknowledged"])
    logger.info("inbound %s from %s for organisation %s", message.meaning, report.from_number, oid)
    return InboundAnswer(WebhookResult.STORED, messaging_twiml(reply))


def _is_e164(number: str) -> bool:
    return number.startswith("+") and number[1:].isdigit() and len(number) <= 16


def _opt_out(org: Organization, message: InboundMessage, senders: set[str]) -> None:
    for sender in senders:
        OptOut.objects.get_or_create(
            organization=org,
            sender=sender,
            recipient=message.from_number,
            cleared_at__isnull=True,
            defaults={"source_inbound": message},
        )


def _opt_in(message: InboundMessage, org: Organization, senders: set[str]) -> None:
    OptOut.objects.filter(
        organization=org, sender__in=senders, recipient=message.from_number, cleared_at__isnull=True
    ).update(
        cleared_at=timezone.now(),
        cleared_by_inbound=message,
        cleared_reason=f"Cleared by the recipient: they texted {message.body.strip()[:20]!r}.",
    )


def _acknowledge(org: Organization, message: InboundMessage, report: InboundReport) -> str:
    """The newest unacknowledged alert of this recipient whose code the reply holds: exactly one.
    A code is looked up among the sender's own alerts only, so another person's code names nothing."""
    waiting = Delivery.objects.filter(organization=org, to_number=report.from_number, acknowledged_at__isnull=True)
    waiting = waiting.exclude(ack_code="")
    codes = codes_in(report.body)
    alert = waiting.filter(ack_code__in=codes).order_by("-created_at").first() if codes else None
    if alert is not None and alert_acknowledge(delivery=alert, by=report.from_number, channel="sms"):
        message.meaning, message.acknowledged = Meaning.ACK, alert
        return ACK_REPLY.format(text=alert.body[:80])
    open_codes = [f"{d.ack_code} ({d.body[:30]})" for d in waiting.order_by("-created_at")[:3]]
    return OUTSTANDING.format(codes="; ".join(open_codes)) if open_codes else NONE_OUTSTANDING


def _tokens(org: Organization | None, account_sid: str) -> list[str]:
    """The stored Auth Tokens of this organisation for this Twilio account (more than one while a
    rotated token is still in use)."""
    if org is None or not account_sid:
        return []
    rows = Credential.objects.filter(organization=org, account_sid=account_sid).exclude(auth_token="")
    return [c.auth_token for c in rows.order_by("-last_used_at")[:5]]


def call_gather_record(*, delivery_id: str, url: str, params: dict[str, str], signature: str) -> InboundAnswer:
    """The <Gather> of an escalation's call: Digits=1 acknowledges the alert the call is about.
    Only a person pressing a key gets here with digits; a voicemail greeting never does."""
    call = Delivery.objects.select_related("credential", "escalates").filter(id=delivery_id).first()
    if call is None or call.escalates is None or call.credential is None or not call.credential.usable:
        return InboundAnswer(WebhookResult.UNKNOWN)
    if not signature_valid(auth_token=call.credential.auth_token, url=url, params=params, signature=signature):
        logger.warning("call keypress for delivery %s with an invalid X-Twilio-Signature", delivery_id)
        return InboundAnswer(WebhookResult.FORGED)
    digits = params.get("Digits", "")[:8]
    StatusEvent.objects.create(
        delivery=call, message_sid=params.get("CallSid", "")[:34], message_status=f"gather:{digits}", payload=params
    )
    answered = approvals.approval_keypress(call=call, digits=digits)  # 1 or 2 on an approval's call
    if answered is not None:
        return InboundAnswer(WebhookResult.STORED, say_twiml(answered))
    acknowledged = digits == "1" and alert_acknowledge(delivery=call.escalates, by=call.to_number, channel="voice")
    already = digits == "1" and call.escalates.acknowledged_at is not None
    return InboundAnswer(WebhookResult.STORED, gather_answer(acknowledged or already))
