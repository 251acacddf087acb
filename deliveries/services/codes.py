"""Acknowledgement codes: short, easy to type on a phone, and unique among one recipient's
unacknowledged alerts of an organisation, so that a reply names exactly one alert; and the replies
that carry them, with the limits that keep codes from being guessed (docs/security.md)."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime

from django.db import connection
from django.db.models import QuerySet

from deliveries.models import Delivery, InboundMessage, Organization
from deliveries.models.replies import CODE_LOCK_WINDOW
from deliveries.observability import metrics
from deliveries.services.acknowledge import alert_acknowledge

logger = logging.getLogger(__name__)
Meaning = InboundMessage.Meaning

# No 0/O, 1/I/L: a code read off a lock screen is typed without confusion. All GSM-7: it never
# changes an alert's encoding. 31^4 = 923,521 codes per recipient (docs/security.md: the odds).
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
LENGTH = 4
# The lengths a reply's word may have to be tried as a code: 3 is the length codes had before, and
# alerts sent then may still be waiting for theirs.
CANDIDATE_LENGTHS = frozenset({3, LENGTH})
# A reply holding more candidates than this acknowledges nothing: a person types one code (two words
# can look like codes, as in "ok 4K7Q"); a long text of words would otherwise try hundreds at once.
MAX_CANDIDATES = 2


# The alerts whose codes are taken: a recipient's unacknowledged ones (`to_number` follows, as `= %s`
# or `IN (…)`). Hand-written SQL (plain on SQLite and PostgreSQL): every alert text of a `run` call
# makes this read, and the ORM spent more CPU compiling it than the database spent answering it.
# `d`: the deliveries table's name in the query (with its dot); `organization`: a parameter (%s) or the
# organisation's id column of the enclosing query.
OUTSTANDING = (
    "{d}organization_id = {organization} AND {d}acknowledged_at IS NULL AND {d}ack_code <> '' AND {d}to_number"
)


def ack_code_new(
    *, organization_id: int, recipient: str, taken: set[str] | None = None, outstanding: set[str] | None = None
) -> str:
    """A code no unacknowledged alert of this recipient (in this organisation) holds, nor any of `taken`.
    `outstanding`: the codes of those alerts when the caller has read them already (the intake reads
    every recipient's at once, with its other reads: services.accept)."""
    if outstanding is None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT ack_code FROM deliveries_delivery WHERE {OUTSTANDING.format(d='', organization='%s')} = %s",
                [organization_id, recipient],
            )
            outstanding = {code for (code,) in cursor.fetchall()}
    used = outstanding | (taken or set())
    while True:
        code = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
        if code not in used:
            return code


def codes_in(text: str) -> list[str]:
    """The distinct words of a reply that could be codes, in order ("ok 4k7q", "4K7Q!", "4K7Q")."""
    words = "".join(ch if ch.isalnum() else " " for ch in text.upper()).split()
    return [w for w in dict.fromkeys(words) if len(w) in CANDIDATE_LENGTHS and all(ch in ALPHABET for ch in w)]


# --- a reply that may hold a code (README "What a recipient sees": the exact answers) -----------------

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
