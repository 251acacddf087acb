"""What comes back from people: opt-outs, inbound messages (and the acknowledgements they carry), and
the timers that escalate an alert nobody acknowledged."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from deliveries.models.deliveries import Delivery
from deliveries.models.organizations import Organization


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


class InboundMessage(models.Model):
    """One message a person sent to an organisation's Twilio number, kept whole for audit."""

    class Meaning(models.TextChoices):
        STOP = "stop", "Opt-out (STOP)"
        START = "start", "Opt-in (START)"
        HELP = "help", "Help"
        ACK = "ack", "Acknowledgement"
        UNMATCHED = "unmatched", "No valid code"

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
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["from_number", "-received_at"], name="inbound_from_received")]

    def __str__(self) -> str:
        return f"{self.meaning} from {self.from_number}"


class Escalation(models.Model):
    """A timer: if `alert` is not acknowledged by `due_at`, do `action`. A Celery task with that
    countdown fires it; the row is what survives a lost task (the sweeper fires overdue ones). It
    fires at most once (`waiting` -> `fired` by a conditional update) and an acknowledgement cancels it."""

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
    state = models.CharField(max_length=16, choices=State.choices, default=State.WAITING)
    fired_at = models.DateTimeField(null=True, blank=True)
    result = models.ForeignKey(Delivery, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["alert", "action"], name="one_timer_per_alert_and_action")]
        indexes = [models.Index(fields=["state", "due_at"], name="escalation_state_due", condition=Q(state="waiting"))]

    def __str__(self) -> str:
        return f"{self.action} after {self.ack_within_seconds} s ({self.state})"
