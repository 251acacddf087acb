"""Closing the loop in LimaCharlie: the organisation's webhook adapter (where events go), the outbox
of events about alerts waiting to be posted to it, and approvals asked of people by text or call."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from deliveries.fields import EncryptedTextField
from deliveries.models.deliveries import Delivery
from deliveries.models.organizations import AlertRequest, Organization


class WebhookAdapter(models.Model):
    """The extension's webhook adapter in one organisation: a `cloud_sensor` Hive record and its
    installation key, made with a `subscribe` (or `update`) event's JWT. Posting to it needs no JWT:
    the hook URL and this secret are enough, so both are kept (the secret encrypted, like a token)."""

    organization = models.OneToOneField(Organization, on_delete=models.PROTECT, related_name="webhook_adapter")
    # Generated here, once per organisation; written into the Hive record; erased on unsubscribe.
    secret = EncryptedTextField(blank=True)
    hooks_url = models.CharField(
        "hook base URL", max_length=255, blank=True, help_text="https://<the organisation's hook domain>"
    )
    installation_key = models.CharField("installation key id", max_length=64, blank=True)
    ready_at = models.DateTimeField(null=True, blank=True, help_text="When the adapter was last made or found whole.")
    last_error = models.CharField(max_length=255, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"webhook adapter of {self.organization_id}"

    @property
    def usable(self) -> bool:
        return bool(self.secret and self.ready_at)


class OutboundEvent(models.Model):
    """One event about an alert for the organisation's LimaCharlie (the outbox): written in the
    transaction of the outcome it reports, posted by the events task in a batch per organisation.
    Never deleted, like every delivery: it is the record of what LimaCharlie was told."""

    class Kind(models.TextChoices):
        DELIVERED = "delivered", "Delivered"
        UNDELIVERED = "undelivered", "Undelivered"
        FAILED = "failed", "Failed"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        ESCALATED = "escalated", "Escalated"
        UNACKNOWLEDGED = "unacknowledged", "Unacknowledged"
        APPROVED = "approved", "Approved"
        DENIED = "denied", "Denied"

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="outbound_events")
    alert = models.ForeignKey(
        AlertRequest, null=True, blank=True, on_delete=models.PROTECT, related_name="outbound_events"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    # The task's cursor: when the next post of this event is due (null once sent).
    due_at = models.DateTimeField(null=True, blank=True)
    # Set by the task that posts it (a conditional update), so two tasks never post one event at once.
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim = models.UUIDField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["organization", "due_at"], name="event_org_due", condition=Q(sent_at__isnull=True)),
            models.Index(fields=["due_at"], name="event_due", condition=Q(sent_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.kind} event {self.event_id}"


class Approval(models.Model):
    """A `request_approval` call: a question put to people by text (and call), answered once: by the
    first valid answer, or by the timeout. The decision is claimed by a conditional update, so an
    answer and the timeout can never both win."""

    class Decision(models.TextChoices):
        APPROVED = "approved", "Approved"
        DENIED = "denied", "Denied"

    alert = models.OneToOneField(AlertRequest, on_delete=models.PROTECT, related_name="approval")
    question = models.TextField()
    # One code for the whole approval (its every recipient and `next` step): "<code> Y" or "<code> N".
    code = models.CharField(max_length=8)
    approved_content = models.JSONField(null=True, blank=True)
    denied_content = models.JSONField(null=True, blank=True)
    timeout_seconds = models.PositiveIntegerField()
    timeout_choice = models.CharField(max_length=8, choices=Decision.choices)
    due_at = models.DateTimeField(help_text="When the timeout decides.")
    decision = models.CharField(max_length=8, choices=Decision.choices, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.CharField("decided by", max_length=16, blank=True, help_text="A number, or 'timeout'.")
    decided_channel = models.CharField(max_length=8, blank=True, help_text="sms, voice or timeout.")
    decided_delivery = models.ForeignKey(Delivery, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["due_at"], name="approval_open_due", condition=Q(decided_at__isnull=True)),
            models.Index(fields=["code"], name="approval_open_code", condition=Q(decided_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"approval {self.decision or 'waiting'}: {self.question[:40]}"
