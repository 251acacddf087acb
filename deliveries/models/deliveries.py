"""Deliveries: one message (a text, or an escalation's call) to one recipient, each try to hand it to
Twilio, and each status Twilio reported."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q

from deliveries.models.organizations import AlertRequest, Credential, Organization
from deliveries.sms import ack_instruction
from deliveries.status import Status


class Delivery(models.Model):
    """One SMS to one recipient. Never deleted: the audit trail is the product."""

    # The statuses and what each means live in deliveries.status; `Delivery.Status` is kept as the
    # name the ORM and the tests use.
    Status = Status

    class Kind(models.TextChoices):
        ALERT = "alert", "Alert"
        SUMMARY = "summary", "Flood-control summary"
        NOTICE = "notice", "Acknowledgement notice"

    class Channel(models.TextChoices):
        SMS = "sms", "SMS"
        VOICE = "voice", "Voice call"

    class Hold(models.TextChoices):
        """Why a delivery was deliberately not sent."""

        OPTED_OUT = "opted_out", "Recipient opted out"
        DUPLICATE = "duplicate", "Same text to the same recipient shortly before"
        RECIPIENT_LIMIT = "recipient_limit", "Recipient's limit reached"
        ORG_LIMIT = "org_limit", "Organisation's limit reached"
        ACKNOWLEDGED = "acknowledged", "The alert was acknowledged first"
        RECIPIENT_CALLS = "recipient_calls", "Recipient's call limit reached"
        ORG_CALLS = "org_calls", "Organisation's call limit reached"
        CALL_REFUSED = "call_refused", "Not an ordinary phone, or a country calls may not reach"

    FLOOD_HOLDS = frozenset({Hold.DUPLICATE, Hold.RECIPIENT_LIMIT, Hold.ORG_LIMIT})

    class Encoding(models.TextChoices):
        GSM7 = "gsm7", "GSM-7"
        UCS2 = "ucs2", "UCS-2"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: every index below that starts with the organisation serves its lookups.
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="deliveries", db_index=False)
    credential = models.ForeignKey(
        Credential,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="deliveries",
        help_text="The Twilio credential it was accepted with, and is sent, reconciled and checked with.",
    )
    # The alert (one accepted `run` call) this text or call belongs to: its every recipient, escalation
    # step and acknowledgement notice. None for a flood-control summary, which speaks for several alerts.
    alert = models.ForeignKey(AlertRequest, null=True, blank=True, on_delete=models.PROTECT, related_name="deliveries")
    # The key of the `run` call the alert came from, as LimaCharlie sent it ("" for a summary): shown and
    # searched on the desk. Replays are stopped by AlertRequest's own unique key.
    idempotency_key = models.CharField(max_length=255, blank=True)
    ident = models.CharField("caller identity", max_length=255, blank=True)
    inv_id = models.CharField("investigation id", max_length=255, blank=True)
    from_number = models.CharField("from", max_length=34, help_text="E.164 number or Messaging Service SID")
    to_number = models.CharField("to", max_length=16)
    body = models.TextField(
        help_text="The alert text after normalisation and truncation; a text also carries the acknowledgement "
        "instruction when it has an ack code (see text_sent), a call reads it out."
    )
    original_length = models.PositiveIntegerField()
    truncated = models.BooleanField(default=False)
    encoding = models.CharField(max_length=4, choices=Encoding.choices)
    segments = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    status_reason = models.CharField(max_length=255, blank=True)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.ALERT)
    hold = models.CharField("held back because", max_length=16, choices=Hold.choices, blank=True)
    summary = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="summarized",
        help_text="The summary text that told the recipient about this held-back alert.",
        db_index=False,  # indexed where set (Meta.indexes says why)
    )
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.SMS)
    # Acknowledgement (services.acknowledge). The code is what the recipient replies with; it is
    # unique among the recipient's unacknowledged alerts of the organisation, so a reply names one.
    ack_code = models.CharField("acknowledgement code", max_length=8, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField("acknowledged by", max_length=16, blank=True)
    ack_channel = models.CharField("acknowledged by channel", max_length=8, choices=Channel.choices, blank=True)
    notify_on_ack = models.BooleanField(
        default=False, help_text="Text the alert's other recipients who acknowledged it (the configuration's choice)."
    )
    escalates = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="escalations",
        help_text="For a call: the alert text whose acknowledgement it asks for.",
        db_index=False,  # indexed where set (Meta)
    )
    twilio_sid = models.CharField(max_length=34, blank=True)
    error_code = models.PositiveIntegerField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    attempt_count = models.PositiveIntegerField(
        "sends to Twilio", default=0, help_text="POSTs made; looks at Twilio after an ambiguous answer are not counted."
    )
    # Copies of the latest attempt's trigger and outcome, for the admin's filters: joining each
    # delivery to its latest attempt cannot use an index in the list's order, and took 0.3-0.9 s
    # at a million rows. Written only by services.attempts, with the attempt itself.
    last_trigger = models.CharField(max_length=16, blank=True)
    last_outcome = models.CharField(max_length=32, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="When a worker last claimed it.")
    # An operator's resend waiting for its send: kept on the row (not only in the task's arguments), so
    # that whichever task sends it (the resend's own, or the sweeper's after a broker outage) records
    # the operator and the reason, and flood control leaves it alone. Cleared by the claim.
    resend_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,  # indexed where set (Meta)
    )
    resend_reason = models.TextField(blank=True)
    # The sweeper's cursor: when the task that moves this delivery on (a send while pending, a
    # reconcile while ambiguous) is due. Set by whoever makes it due (services.queue); null when
    # nothing is due, e.g. a reconcile that gave up and waits for an operator.
    due_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True, help_text="When Twilio accepted it.")
    settled_at = models.DateTimeField(null=True, blank=True, help_text="When it reached a final status.")

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["-created_at"]
        constraints = [
            # One text per recipient of an alert (its first recipients, then each `next` step), one call
            # per recipient (a `call` step), one acknowledgement notice per recipient.
            models.UniqueConstraint(
                fields=["alert", "to_number", "channel"],
                condition=Q(kind="alert"),
                name="delivery_once_per_alert_recipient_channel",
            ),
            models.UniqueConstraint(
                fields=["alert", "to_number"], condition=Q(kind="notice"), name="notice_once_per_alert_recipient"
            ),
        ]
        # The admin lists newest first and Django appends the primary key to make that order total
        # (created_at DESC, id DESC), so the list's indexes end in both: a filtered page of a million
        # rows is then one index range read in order, with no sort and no scan of other statuses.
        # (Measured: status + date filter 154 ms -> 3 ms at 1M rows; see bench/admin_scale.py.)
        indexes = [
            # INCLUDE status: the index's per-hour chart counts by status without reading the table
            # (PostgreSQL only; elsewhere a plain index).
            models.Index(fields=["-created_at", "-id"], name="delivery_created_id", include=["status"]),
            models.Index(fields=["status", "-created_at", "-id"], name="delivery_status_created_id"),
            models.Index(fields=["to_number", "-created_at"], name="delivery_to_created"),
            models.Index(fields=["twilio_sid"], name="delivery_sid", condition=~Q(twilio_sid="")),
            models.Index(fields=["idempotency_key"], name="delivery_key"),
            # Flood control counts what was claimed per recipient and per organisation in a window.
            models.Index(fields=["organization", "to_number", "claimed_at"], name="delivery_org_to_claimed"),
            models.Index(fields=["organization", "claimed_at"], name="delivery_org_claimed"),
            models.Index(fields=["organization", "-created_at", "-id"], name="delivery_org_created_id"),
            models.Index(
                fields=["error_code", "-created_at", "-id"],
                name="delivery_error_created_id",
                condition=Q(error_code__isnull=False),
            ),
            models.Index(
                fields=["-created_at", "-id"], name="delivery_truncated_created_id", condition=Q(truncated=True)
            ),
            models.Index(fields=["last_outcome", "-created_at", "-id"], name="delivery_outcome_created_id"),
            models.Index(fields=["last_trigger", "-created_at", "-id"], name="delivery_trigger_created_id"),
            models.Index(fields=["hold", "-created_at", "-id"], name="delivery_hold_created_id", condition=~Q(hold="")),
            # The inbound reply: a recipient's unacknowledged alerts with a code.
            models.Index(
                fields=["organization", "to_number", "ack_code"],
                name="delivery_ack_open",
                condition=~Q(ack_code="") & Q(acknowledged_at__isnull=True),
            ),
            models.Index(
                fields=["-created_at", "-id"],
                name="delivery_unacked_created_id",
                condition=~Q(ack_code="") & Q(acknowledged_at__isnull=True),
            ),
            models.Index(
                fields=["-created_at", "-id"],
                name="delivery_acked_created_id",
                condition=Q(acknowledged_at__isnull=False),
            ),
            # The sweeper: rows of a status whose task is overdue.
            models.Index(fields=["status", "due_at"], name="delivery_status_due", condition=Q(due_at__isnull=False)),
            # The sweeper's flood summaries: the alerts held back by flood control that no summary has told
            # the recipient about yet, by recipient. Partial, so that a sweep reads the alerts still waiting
            # and not every alert ever held back (services.sweep writes the same terms into its statement).
            # The holds are FLOOD_HOLDS, spelt out: a class's own names are out of reach in its Meta.
            models.Index(
                fields=["organization", "from_number", "to_number", "created_at"],
                name="delivery_unsummarised",
                condition=Q(
                    status="suppressed", hold__in=["duplicate", "org_limit", "recipient_limit"], summary__isnull=True
                ),
            ),
            # The links that are almost always empty, indexed only where set: every lookup by them names a
            # row (a strict `=`, so PostgreSQL uses the partial index, generic plans included). A full
            # index takes an entry for every version of every row, and no write of a delivery (the
            # intake's, the claim's, the result's, a receipt's) is a HOT update, since each changes an
            # indexed column. In process (a `run` call and its send, one thread, three interleaved rounds),
            # PostgreSQL's CPU per alert: 2.9 ms on average with these three indexes full, 2.5 partial.
            *(
                models.Index(fields=[link], name=f"delivery_{link}", condition=Q(**{f"{link}__isnull": False}))
                for link in ("summary", "escalates", "resend_by")
            ),
        ]
        permissions = [("resend_delivery", "Can resend a delivery")]

    def __str__(self) -> str:
        return f"{self.to_number} ({self.status})"

    @property
    def text_sent(self) -> str:
        """What the handset gets: the alert, and the instruction to acknowledge when it has a code."""
        return self.body + ack_instruction(self.ack_code) if self.ack_code else self.body

    @property
    def time_to_ack(self) -> timedelta | None:
        return self.acknowledged_at - self.created_at if self.acknowledged_at else None


class Attempt(models.Model):
    """One try to hand a delivery to Twilio. Created when the try starts; finished exactly once and
    never changed afterwards. An attempt with no `finished_at` is a worker that died mid-try."""

    class Trigger(models.TextChoices):
        AUTOMATIC = "automatic", "Automatic"
        RETRY = "retry", "Retry"
        RESEND = "resend", "Resend"
        RECONCILE = "reconcile", "Reconcile"

    class Outcome(models.TextChoices):
        ACCEPTED = "accepted", "Accepted by Twilio"
        NOT_PROCESSED = "not_processed", "Not processed (safe to retry)"
        PERMANENT = "permanent", "Permanent failure"
        AMBIGUOUS = "ambiguous", "Ambiguous (may exist at Twilio)"
        FOUND_ON_RECONCILE = "found_on_reconcile", "Found at Twilio on reconcile"
        NOT_FOUND_ON_RECONCILE = "not_found_on_reconcile", "Not found at Twilio on reconcile"
        RECONCILE_FAILED = "reconcile_failed", "Could not ask Twilio (reconcile)"

    delivery = models.ForeignKey(Delivery, on_delete=models.PROTECT, related_name="attempts")
    number = models.PositiveIntegerField()
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.TextField(blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=32, choices=Outcome.choices, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    twilio_code = models.PositiveIntegerField(null=True, blank=True)
    twilio_message = models.TextField(blank=True)
    twilio_request_id = models.CharField(max_length=64, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="attempt_number_per_delivery")]
        indexes = [models.Index(fields=["outcome", "-started_at"], name="attempt_outcome_started")]

    def __str__(self) -> str:
        return f"attempt {self.number} ({self.outcome or 'in flight'})"


class StatusEvent(models.Model):
    """One Twilio status callback, every field kept as received."""

    delivery = models.ForeignKey(Delivery, on_delete=models.PROTECT, related_name="status_events")
    message_sid = models.CharField(max_length=34)
    message_status = models.CharField(max_length=32)
    error_code = models.PositiveIntegerField(null=True, blank=True)
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["received_at", "id"]
        constraints = [
            # Each webhook acts once: Twilio's signature carries no time, so a captured callback could be
            # replayed. A status is reported once per delivery; a call's keypress once per call.
            models.UniqueConstraint(
                fields=["delivery", "message_status"],
                condition=~Q(message_status__startswith="gather:"),
                name="status_event_once_per_status",
            ),
            models.UniqueConstraint(
                fields=["message_sid"], condition=Q(message_status__startswith="gather:"), name="keypress_once_per_call"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.message_status} ({self.message_sid or 'no SID'})"
