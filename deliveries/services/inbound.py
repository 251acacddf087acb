"""Twilio's inbound webhooks: a message a person sent to an organisation's number, and the key
pressed during an escalation's call. Each is checked with X-Twilio-Signature and an Auth Token the
service read from that organisation's Secrets Manager (never one pasted into a rule, never one
Twilio refused), stored whole for audit before anything acts on it, and acted on once: a second
webhook with the same MessageSid (or a call's second keypress) is answered with nothing.

A message is an opt-out (STOP and Twilio's other words, or OptOutType), an opt-in (START), a
request for help, or a reply that acknowledges one alert by its code (code_reply). HELP is
always answered; other answers go only to numbers the organisation alerted lately, a few an hour."""

from __future__ import annotations

import enum
import logging
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from deliveries.models import Credential, Delivery, InboundMessage, OptOut, Organization, StatusEvent
from deliveries.models.replies import CODE_LOCK_WINDOW
from deliveries.observability import metrics
from deliveries.services import approvals
from deliveries.services.acknowledge import alert_acknowledge
from deliveries.services.calls import call_alerts
from deliveries.services.codes import MAX_CANDIDATES, codes_in
from deliveries.twilio.callbacks import InboundReport, messaging_twiml, parse_inbound_message, signature_valid
from deliveries.twilio.voice import gather_answer, say_twiml

logger = logging.getLogger(__name__)
Meaning = InboundMessage.Meaning
Withheld = InboundMessage.Withheld

# docs/recipients.md quotes the exact answers.
HELP_REPLY = (
    "ext-twilio security alerts from your organisation's LimaCharlie. Reply with an alert's code to "
    "acknowledge it. Reply STOP to stop these texts, START to resume."
)


class WebhookResult(enum.StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"  # acted on before: answered 200 with nothing, changes nothing
    REFUSED = "refused"  # not a webhook Twilio sends (no MessageSid): 400
    UNKNOWN = "unknown"  # no such organisation or delivery, or nothing to check the signature with
    FORGED = "forged"


@dataclass(frozen=True)
class InboundAnswer:
    result: WebhookResult
    twiml: str = ""


def inbound_message_record(*, oid: str, url: str, params: dict[str, str], signature: str) -> InboundAnswer:
    org = Organization.objects.filter(oid=oid).first()
    # Checked with the tokens read from this organisation's Secrets Manager, for the account Twilio names.
    tokens = _tokens(org, params.get("AccountSid", ""))
    if org is None or not tokens:
        logger.warning("inbound message for unknown organisation %s (or no credential to check it)", oid)
        return InboundAnswer(WebhookResult.UNKNOWN)
    if not any(signature_valid(auth_token=t, url=url, params=params, signature=signature) for t in tokens):
        logger.warning("inbound message for organisation %s with an invalid X-Twilio-Signature", oid)
        return InboundAnswer(WebhookResult.FORGED)
    report = parse_inbound_message(params)
    if not report.message_sid:
        logger.warning("inbound message for organisation %s without a MessageSid: refused", oid)
        return InboundAnswer(WebhookResult.REFUSED)
    senders = {report.to_number, params.get("MessagingServiceSid", "")} - {""}
    if not Delivery.objects.filter(organization=org, from_number__in=senders).exists():
        # Signed for the account, but to a number none of this organisation's alerts came from.
        logger.warning("inbound message for organisation %s to %s, not a sender of its alerts", oid, report.to_number)
        return InboundAnswer(WebhookResult.UNKNOWN)
    now = timezone.now()
    with transaction.atomic():
        _one_at_a_time(org.id, report.from_number)
        message = _stored(org, report, params)
        if message is None:
            metrics.webhook_duplicate("inbound")
            logger.info("inbound message %s for organisation %s seen before: ignored", report.message_sid, oid)
            return InboundAnswer(WebhookResult.DUPLICATE, messaging_twiml(""))
        reply = _act(org, message, report, senders, now)
        if reply and message.meaning != Meaning.HELP:
            message.withheld = _withheld(org, report.from_number, now)
            if message.withheld:
                metrics.inbound_withheld(message.withheld)
                reply = ""
        message.reply = reply
        message.save(update_fields=["reply", "meaning", "acknowledged", "wrong_codes", "withheld"])
    logger.info("inbound %s from %s for organisation %s", message.meaning, report.from_number, oid)
    return InboundAnswer(WebhookResult.STORED, messaging_twiml(reply))


def _one_at_a_time(organization_id: int, number: str) -> None:
    """One number's messages to one organisation are handled one after another (PostgreSQL: an advisory
    lock until commit), so that concurrent texts cannot all try codes before the first wrong one counts.
    SQLite's writers already take turns."""
    if connection.vendor == "postgresql":
        key = zlib.crc32(f"inbound:{organization_id}:{number}".encode())
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _stored(org: Organization, report: InboundReport, params: dict[str, str]) -> InboundMessage | None:
    """The message, stored; None when this MessageSid was stored before (a retry or a replay)."""
    try:
        with transaction.atomic():  # a savepoint: the unique key refuses a second one
            return InboundMessage.objects.create(
                organization=org,
                message_sid=report.message_sid,
                from_number=report.from_number,
                to_number=report.to_number,
                body=report.body,
                meaning=report.keyword or Meaning.UNMATCHED,
                payload=params,
            )
    except IntegrityError:
        return None


def _act(org: Organization, message: InboundMessage, report: InboundReport, senders: set[str], now: datetime) -> str:
    """Do what the message asks; the answer it would get ("" for none)."""
    if report.keyword in ("stop", "start") and not _is_e164(report.from_number):
        return ""  # e.g. a WhatsApp sender: not a recipient this service texts
    if report.keyword == "stop":
        _opt_out(org, message, senders)
        return ""  # Twilio confirms an opt-out itself, and blocks anything we would add
    if report.keyword == "start":
        _opt_in(message, org, senders)
        return ""
    if report.keyword == "help":
        return HELP_REPLY
    return code_reply(organization=org, message=message, now=now)


def _withheld(org: Organization, number: str, now: datetime) -> str:
    """Why an answer (other than HELP's) is not sent to `number`, or "": each one costs the organisation,
    so strangers get none (SMS pumping, a loop with another auto-responder), and nobody gets more than
    INBOUND_ANSWERS_PER_HOUR."""
    alerted = Delivery.objects.filter(
        organization=org,
        to_number=number,
        created_at__gte=now - timedelta(days=settings.INBOUND_ANSWER_DAYS),
    ).exclude(status__in=[Delivery.Status.SUPPRESSED, Delivery.Status.FAILED])
    if not alerted.exists():
        return Withheld.NOT_ALERTED
    answered = (
        InboundMessage.objects.filter(organization=org, from_number=number, received_at__gte=now - timedelta(hours=1))
        .exclude(reply="")
        .exclude(meaning=Meaning.HELP)
    )
    if answered.count() >= settings.INBOUND_ANSWERS_PER_HOUR:
        return Withheld.REPLY_LIMIT
    return ""


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


def _tokens(org: Organization | None, account_sid: str) -> list[str]:
    """The Auth Tokens read from this organisation's Secrets Manager for this Twilio account (more than
    one while a rotated token is still in use), not refused by Twilio. A token pasted into a rule is not
    one: it proves only that the rule's author holds some Twilio account (docs/security.md)."""
    if org is None or not account_sid:
        return []
    rows = Credential.objects.trusted().filter(organization=org, account_sid=account_sid)
    return [c.auth_token for c in rows.order_by("-last_used_at")[:5]]


# --- a reply that may hold a code (docs/recipients.md quotes the exact answers) --------------------------

ACK_REPLY = "Acknowledged: {text}"
ALREADY_REPLY = "ext-twilio: that alert was acknowledged already."
NONE_OUTSTANDING = "ext-twilio: no alert is waiting for your acknowledgement."
WAITING_REPLY = "ext-twilio: that is not the code of an alert waiting for you. Waiting: {codes}"
TOO_MANY_REPLY = (
    "ext-twilio: nothing acknowledged. Your reply holds {count} words that could be codes; reply with one code only."
)
LOCKED_REPLY = (
    "ext-twilio: too many wrong codes from this number. Codes from it are refused until {until} UTC; "
    "press 1 on the call, or ask your SOC to acknowledge on the desk."
)


def code_reply(*, organization: Organization, message: InboundMessage, now: datetime) -> str:
    """Act on a reply that is not a keyword: acknowledge the sender's one alert whose code it holds, or
    say why not. Sets the message's meaning (and its wrong codes, acknowledged alert); returns the answer.

    A code is looked up among the sender's own waiting alerts only, so another person's code names
    nothing. Guessing is bounded: at most MAX_CANDIDATES codes tried per reply, and after
    CODE_LOCK_WRONG_CODES wrong ones within an hour the number's code replies are refused."""
    codes = codes_in(message.body)
    number = message.from_number
    waiting = Delivery.objects.filter(organization=organization, to_number=number, acknowledged_at__isnull=True)
    waiting = waiting.exclude(ack_code="")
    if not codes:
        message.meaning = Meaning.UNMATCHED
        return _waiting_list(waiting)
    lock = InboundMessage.objects.code_lock_until(organization_id=organization.id, number=number, now=now)
    if lock is not None:
        message.meaning = Meaning.CODE_LOCKED
        metrics.code_lock("refused")
        return ""  # the reply that locked it said so: once
    if len(codes) > MAX_CANDIDATES:
        message.meaning = Meaning.TOO_MANY_CODES
        return TOO_MANY_REPLY.format(count=len(codes))
    answered = approvals.approval_answer(
        organization=organization, message=message, from_number=number, body=message.body
    )
    if answered:  # an approval's answer ("4K7Q Y"), under the same protections as a code
        return answered
    alert = waiting.filter(ack_code__in=codes).order_by("-created_at").first()
    if alert is not None and alert_acknowledge(delivery=alert, by=number, channel="sms"):
        message.meaning, message.acknowledged = Meaning.ACK, alert
        return ACK_REPLY.format(text=alert.body[:80])
    mine = Delivery.objects.filter(organization=organization, to_number=number, ack_code__in=codes)
    if mine.filter(acknowledged_at__gte=now - CODE_LOCK_WINDOW).exists():
        message.meaning = Meaning.ACK
        return ALREADY_REPLY  # a second reply with the same code (or a race with the call): not a guess
    message.meaning, message.wrong_codes = Meaning.WRONG_CODE, len(codes)
    message.save(update_fields=["meaning", "wrong_codes"])
    lock = InboundMessage.objects.code_lock_until(organization_id=organization.id, number=number, now=now)
    if lock is not None:
        metrics.code_lock("locked")
        logger.warning("code replies from %s to organisation %s locked until %s", number, organization.oid, lock)
        return LOCKED_REPLY.format(until=lock.strftime("%H:%M"))
    return _waiting_list(waiting)


def _waiting_list(waiting: QuerySet[Delivery]) -> str:
    open_codes = [f"{d.ack_code} ({d.body[:30]})" for d in waiting.order_by("-created_at")[:3]]
    return WAITING_REPLY.format(codes="; ".join(open_codes)) if open_codes else NONE_OUTSTANDING


def call_gather_record(*, delivery_id: str, url: str, params: dict[str, str], signature: str) -> InboundAnswer:
    """The <Gather> of an escalation's call: Digits=1 acknowledges the alert the call is about.
    Only a person pressing a key gets here with digits; a voicemail greeting never does. Checked with
    the call's own credential, and only if it came from the Secrets Manager; one keypress per call."""
    call = Delivery.objects.select_related("credential", "escalates").filter(id=delivery_id).first()
    credential = call.credential if call is not None else None
    if call is None or call.escalates is None or credential is None or not credential.usable:
        return InboundAnswer(WebhookResult.UNKNOWN)
    if not credential.from_secrets_manager:
        logger.warning("call keypress for delivery %s: its credential was pasted into a rule; not trusted", call.id)
        return InboundAnswer(WebhookResult.UNKNOWN)
    if not signature_valid(auth_token=credential.auth_token, url=url, params=params, signature=signature):
        logger.warning("call keypress for delivery %s with an invalid X-Twilio-Signature", delivery_id)
        return InboundAnswer(WebhookResult.FORGED)
    call_sid = params.get("CallSid", "")[:34]
    if not call_sid:
        return InboundAnswer(WebhookResult.REFUSED)
    if call.twilio_sid and call_sid != call.twilio_sid:
        logger.warning("call keypress for delivery %s names another call (%s)", call.id, call_sid)
        return InboundAnswer(WebhookResult.UNKNOWN)
    digits = params.get("Digits", "")[:8]
    try:
        with transaction.atomic():
            StatusEvent.objects.create(
                delivery=call, message_sid=call_sid, message_status=f"gather:{digits}", payload=params
            )
    except IntegrityError:
        metrics.webhook_duplicate("keypress")
        logger.info("keypress of call %s seen before: ignored", call_sid)
        return InboundAnswer(WebhookResult.DUPLICATE, messaging_twiml(""))
    answered = approvals.approval_keypress(call=call, digits=digits)  # 1 or 2 on an approval's call
    if answered is not None:
        return InboundAnswer(WebhookResult.STORED, say_twiml(answered))
    if digits != "1":
        return InboundAnswer(WebhookResult.STORED, gather_answer(False))
    # One call may read out several of the person's alerts: 1 acknowledges them all.
    for alert in call_alerts(call):
        alert_acknowledge(delivery=alert, by=call.to_number, channel="voice")
    return InboundAnswer(WebhookResult.STORED, gather_answer(True))
