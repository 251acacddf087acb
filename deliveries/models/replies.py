"""What comes back from people: opt-outs, inbound messages (and the acknowledgements they carry), and
the timers that escalate an alert nobody acknowledged."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import models
from django.db.models import Q

from deliveries.models.deliveries import Delivery
from deliveries.models.organizations import Organization

# How long wrong codes count towards a number's lock (settings.CODE_LOCK_WRONG_CODES of them).
CODE_LOCK_WINDOW = timedelta(hours=1)


class OptOut(models.Model):
    """A recipient who texted STOP to a sender (Twilio 21610). Cleared, never deleted."""

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="opt_outs")
    sender = models.CharField(max_length=34)
    recipient = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)
    source_delivery = models.ForeignKey(Delivery, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    cleared_at = models.DateTimeField(null=True, blank=True)
    cleared_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    cleared_reason = models.TextField(blank=True)
    # Set when the recipient themselves texted STOP / START (an inbound message), rather than
    # Twilio answering 21610 or an operator clearing it.
    source_inbound = models.ForeignKey(
        "InboundMessage", null=True, blank=True, on_delete=models.PROTECT, related_name="opt_outs_started"
    )
    cleared_by_inbound = models.ForeignKey(
        "InboundMessage", null=True, blank=True, on_delete=models.PROTECT, related_name="opt_outs_cleared"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "sender", "recipient"],
                condition=Q(cleared_at__isnull=True),
                name="one_active_opt_out_per_pair",
            ),
        ]
        permissions = [("clear_optout", "Can clear an opt-out")]

    def __str__(self) -> str:
        return f"{self.recipient} opted out of {self.sender}"


class CodeLock(NamedTuple):
    """A number whose code replies are refused: too many wrong codes within CODE_LOCK_WINDOW."""

    organization_id: int
    number: str
    wrong_codes: int
    until: datetime


class InboundMessageQuerySet(models.QuerySet["InboundMessage"]):
    def code_lock_until(self, *, organization_id: int, number: str, now: datetime) -> datetime | None:
        """Until when this number's code replies to this organisation are refused, or None.

        The window slides: the number is locked while the wrong codes it sent within the last
        CODE_LOCK_WINDOW add up to CODE_LOCK_WRONG_CODES, i.e. until the oldest of the wrong codes
        that make up that sum leaves the window. Replies refused during the lock test no code, so
        they count for nothing."""
        since = now - CODE_LOCK_WINDOW
        recent = (
            self.filter(organization_id=organization_id, from_number=number, received_at__gte=since, wrong_codes__gt=0)
            .order_by("-received_at")
            .values_list("received_at", "wrong_codes")
        )
        total = 0
        for received_at, wrong in recent:
            total += wrong
            if total >= settings.CODE_LOCK_WRONG_CODES:
                return received_at + CODE_LOCK_WINDOW
        return None

    def code_locks(self, *, now: datetime, organization_id: int | None = None) -> list[CodeLock]:
        """Every number locked now (for the desk and the metrics), newest lock first."""
        rows = self.filter(received_at__gte=now - CODE_LOCK_WINDOW, wrong_codes__gt=0)
        if organization_id is not None:
            rows = rows.filter(organization_id=organization_id)
        locks = []
        for org_id, number in rows.order_by().values_list("organization_id", "from_number").distinct():
            until = self.code_lock_until(organization_id=org_id, number=number, now=now)
            if until is not None:
                wrong = sum(
                    rows.filter(organization_id=org_id, from_number=number).values_list("wrong_codes", flat=True)
                )
                locks.append(CodeLock(org_id, number, wrong, until))
        return sorted(locks, key=lambda lock: lock.until, reverse=True)


class InboundMessage(models.Model):
    """One message a person sent to an organisation's Twilio number, kept whole for audit."""

    class Meaning(models.TextChoices):
        STOP = "stop", "Opt-out (STOP)"
        START = "start", "Opt-in (START)"
        HELP = "help", "Help"
        ACK = "ack", "Acknowledgement"
        UNMATCHED = "unmatched", "No code in it"
        WRONG_CODE = "wrong_code", "Wrong code"
        TOO_MANY_CODES = "too_many_codes", "Too many codes in one reply"
        CODE_LOCKED = "code_locked", "Refused: too many wrong codes lately"

    class Withheld(models.TextChoices):
        """Why no answer was sent (stored, not answered)."""

        NOT_ALERTED = "not_alerted", "The organisation has not alerted this number lately"
        REPLY_LIMIT = "reply_limit", "This number's answers per hour are used up"

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="inbound_messages")
    message_sid = models.CharField(max_length=34, blank=True)
    from_number = models.CharField("from", max_length=34)
    to_number = models.CharField("to", max_length=34)
    body = models.TextField(blank=True)
    meaning = models.CharField(max_length=16, choices=Meaning.choices)
    acknowledged = models.ForeignKey(
        Delivery, null=True, blank=True, on_delete=models.PROTECT, related_name="acknowledging_messages"
    )
    reply = models.TextField(blank=True, help_text="What we answered (TwiML <Message>), if anything.")
    withheld = models.CharField(
        "answer withheld because", max_length=16, choices=Withheld.choices, blank=True, default=""
    )
    # Codes this reply tried that name none of the sender's waiting alerts; they add up to a lock
    # (InboundMessage.objects.code_lock_until).
    wrong_codes = models.PositiveSmallIntegerField(default=0)
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)

    objects = InboundMessageQuerySet.as_manager()

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["from_number", "-received_at"], name="inbound_from_received")]
        constraints = [
            # Twilio's signature carries no time: without this a captured STOP could be replayed.
            models.UniqueConstraint(
                fields=["organization", "message_sid"],
                condition=~Q(message_sid=""),
                name="inbound_once_per_message_sid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.meaning} from {self.from_number}"


class Escalation(models.Model):
    """A timer: if `alert` is not acknowledged by `due_at`, do `action`. A Celery task fires it, armed in
    hops no longer than half the broker's visibility timeout (`armed_until`), so the broker never puts
    it back; the row is what survives a lost task (the sweeper fires overdue ones). It fires at most
    once (`waiting` -> `fired` by a conditional update) and an acknowledgement cancels it."""

    class Action(models.TextChoices):
        CALL = "call", "Call the same recipient"
        NEXT = "next", "Text the next recipient"

    class State(models.TextChoices):
        WAITING = "waiting", "Waiting"
        FIRED = "fired", "Fired"
        CANCELLED = "cancelled", "Cancelled (acknowledged)"

    alert = models.ForeignKey(Delivery, on_delete=models.PROTECT, related_name="timers")
    action = models.CharField(max_length=8, choices=Action.choices)
    ack_within_seconds = models.PositiveIntegerField()
    remaining = models.JSONField(default=list, blank=True, help_text="For `next`: the recipients still to try.")
    due_at = models.DateTimeField()
    # When the task armed last comes (at most half the broker's visibility timeout after it was armed):
    # a task that comes earlier is a copy and does nothing (services.escalate).
    armed_until = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.WAITING)
    fired_at = models.DateTimeField(null=True, blank=True)
    result = models.ForeignKey(Delivery, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["alert", "action"], name="one_timer_per_alert_and_action")]
        indexes = [models.Index(fields=["state", "due_at"], name="escalation_state_due", condition=Q(state="waiting"))]

    def __str__(self) -> str:
        return f"{self.action} after {self.ack_within_seconds} s ({self.state})"
